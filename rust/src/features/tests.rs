//! Engine-level properties of the feature engine: every feature equals a brute-force
//! evaluation of its definition; batch boundaries, snapshots and sweeps change nothing; the
//! delay model equals label events at `time + D`; bad batches change nothing; state is bounded.

use proptest::prelude::*;

use super::customer::{ratio, zscore};
use super::*;

#[derive(Debug, Clone)]
struct Tx {
    id: i64,
    time: i64,
    customer: i64,
    terminal: i64,
    amount: f64,
    fraud: i64,
    country: i64,
}

#[derive(Debug, Clone)]
struct Stream {
    tx: Vec<Tx>,
    ids: Vec<i64>,
    times: Vec<i64>,
    customers: Vec<i64>,
    terminals: Vec<i64>,
    amounts: Vec<f64>,
    frauds: Vec<i64>,
    countries: Vec<i64>,
}

impl Stream {
    fn new(tx: Vec<Tx>) -> Self {
        Stream {
            ids: tx.iter().map(|t| t.id).collect(),
            times: tx.iter().map(|t| t.time).collect(),
            customers: tx.iter().map(|t| t.customer).collect(),
            terminals: tx.iter().map(|t| t.terminal).collect(),
            amounts: tx.iter().map(|t| t.amount).collect(),
            frauds: tx.iter().map(|t| t.fraud).collect(),
            countries: tx.iter().map(|t| t.country).collect(),
            tx,
        }
    }

    fn batch(&self, lo: usize, hi: usize, with_frauds: bool) -> Transactions<'_> {
        Transactions {
            ids: &self.ids[lo..hi],
            times: &self.times[lo..hi],
            customers: &self.customers[lo..hi],
            terminals: &self.terminals[lo..hi],
            amounts: &self.amounts[lo..hi],
            frauds: with_frauds.then(|| &self.frauds[lo..hi]),
            countries: Some(&self.countries[lo..hi]),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Lbl {
    time: i64,
    terminal: i64,
    tx_time: i64,
    tx_id: i64,
    fraud: i64,
}

fn config() -> FeatureConfig {
    FeatureConfig {
        customer_windows: vec![7, 30, 3],
        terminal_windows: vec![5, 20],
        label_delay: 6,
        countries: true,
        names: ColumnNames::default(),
        card_cap: None,
    }
}

/// [`config`] with a cap of `max_cards` live cards (none for 0), live `extra` ms past the
/// longest card window.
fn capped(max_cards: usize, extra: i64) -> FeatureConfig {
    let cap = (max_cards > 0).then_some(CardCap { max_cards, horizon: 30 + extra });
    FeatureConfig { card_cap: cap, ..config() }
}

fn stream_strategy() -> impl Strategy<Value = Stream> {
    prop::collection::vec((0i64..4, 0i64..4, 0i64..3, 1u32..5000, any::<bool>(), 0i64..3), 1..120).prop_map(
        |rows| {
            let mut time = 0;
            let tx = rows
                .into_iter()
                .enumerate()
                .map(|(i, (step, customer, terminal, cents, fraud, country))| {
                    time += step * step; // many ties, some long gaps
                    Tx {
                        id: i as i64 * 3 + 1,
                        time,
                        customer,
                        terminal,
                        amount: f64::from(cents) / 100.0,
                        fraud: i64::from(fraud),
                        country,
                    }
                })
                .collect();
            Stream::new(tx)
        },
    )
}

fn labels_for(s: &Stream, picks: &[(usize, i64, bool)]) -> Vec<Lbl> {
    let mut labels: Vec<Lbl> = picks
        .iter()
        .map(|&(i, lag, fraud)| {
            let tx = &s.tx[i % s.tx.len()];
            Lbl {
                time: tx.time + lag,
                terminal: tx.terminal,
                tx_time: tx.time,
                tx_id: tx.id,
                fraud: i64::from(fraud),
            }
        })
        .collect();
    labels.sort_by_key(|l| l.time); // stable: equal times keep their order
    labels
}

fn add_labels(engine: &mut FeatureEngine, labels: &[Lbl]) {
    let col = |f: fn(&Lbl) -> i64| labels.iter().map(f).collect::<Vec<_>>();
    let (times, terminals, tx_times, tx_ids, frauds) =
        (col(|l| l.time), col(|l| l.terminal), col(|l| l.tx_time), col(|l| l.tx_id), col(|l| l.fraud));
    engine
        .add_labels(&Labels {
            times: &times,
            terminals: &terminals,
            tx_times: &tx_times,
            tx_ids: &tx_ids,
            frauds: &frauds,
        })
        .unwrap();
}

/// The definitions, evaluated by brute force for row `i` (labels all given up front).
fn naive(cfg: &FeatureConfig, s: &Stream, labels: &[Lbl], delay_model: bool, i: usize) -> FeatureColumns {
    let mut out = FeatureColumns::new(cfg.customer_windows.len(), cfg.terminal_windows.len(), true, 1);
    let me = &s.tx[i];
    let t = me.time;
    let (we, ni) = calendar_flags(t);
    out.during_weekend.push(we);
    out.during_night.push(ni);
    let before = &s.tx[..i];
    let mine: Vec<&Tx> = before.iter().filter(|x| x.customer == me.customer).collect();
    let horizon = *cfg.customer_windows.iter().max().unwrap();
    for (j, &w) in cfg.customer_windows.iter().enumerate() {
        let prev: Vec<&&Tx> = mine.iter().filter(|x| x.time > t - w).collect();
        let n = prev.len() as u64;
        let sum: f64 = prev.iter().map(|x| x.amount).sum();
        let sq: f64 = prev.iter().map(|x| x.amount * x.amount).sum();
        out.customer_amount_z[j].push(zscore(me.amount, n, sum, sq));
        out.customer_nb_tx[j].push(n as i64 + 1);
        out.customer_avg_amount[j].push((sum + me.amount) / (n + 1) as f64);
        let mut countries: Vec<i64> = prev.iter().map(|x| x.country).chain([me.country]).collect();
        countries.sort_unstable();
        countries.dedup();
        out.customer_countries[j].push(countries.len() as i64);
        if w == horizon {
            out.customer_amount_ratio.push(ratio(me.amount, n, sum));
            out.customer_new_terminal.push(i8::from(prev.iter().all(|x| x.terminal != me.terminal)));
        }
    }
    out.customer_ms_since_prev.push(mine.last().map_or(horizon, |p| (t - p.time).min(horizon)));
    let d = cfg.label_delay;
    let known = |x: &Tx| -> bool {
        let mut flag = delay_model && x.fraud == 1;
        for l in labels {
            if l.terminal == x.terminal
                && l.tx_time == x.time
                && l.tx_id == x.id
                && x.time < l.time
                && l.time <= t
            {
                flag = l.fraud == 1;
            }
        }
        flag
    };
    let term: Vec<&Tx> = before.iter().filter(|x| x.terminal == me.terminal).collect();
    let tmax = *cfg.terminal_windows.iter().max().unwrap();
    for (j, &n) in cfg.terminal_windows.iter().enumerate() {
        let win: Vec<&&Tx> = term.iter().filter(|x| x.time > t - (n + d) && x.time <= t - d).collect();
        let frauds = win.iter().filter(|x| known(x)).count() as i64;
        out.terminal_nb_tx[j].push(win.len() as i64);
        out.terminal_nb_fraud[j].push(frauds);
        out.terminal_risk[j].push(if win.is_empty() { 0.0 } else { frauds as f64 / win.len() as f64 });
    }
    let last = term.iter().rev().find(|x| x.time <= t - d && x.time > t - (tmax + d));
    out.terminal_last_known_fraud.push(i8::from(last.is_some_and(|x| known(x))));
    out
}

fn row(out: &FeatureColumns, i: usize) -> FeatureColumns {
    let pick_i = |v: &Vec<Vec<i64>>| v.iter().map(|c| vec![c[i]]).collect::<Vec<_>>();
    let pick_f = |v: &Vec<Vec<f64>>| v.iter().map(|c| vec![c[i]]).collect::<Vec<_>>();
    FeatureColumns {
        during_weekend: vec![out.during_weekend[i]],
        during_night: vec![out.during_night[i]],
        customer_nb_tx: pick_i(&out.customer_nb_tx),
        customer_avg_amount: pick_f(&out.customer_avg_amount),
        customer_amount_z: pick_f(&out.customer_amount_z),
        customer_countries: pick_i(&out.customer_countries),
        customer_amount_ratio: vec![out.customer_amount_ratio[i]],
        customer_ms_since_prev: vec![out.customer_ms_since_prev[i]],
        customer_new_terminal: vec![out.customer_new_terminal[i]],
        terminal_nb_tx: pick_i(&out.terminal_nb_tx),
        terminal_nb_fraud: pick_i(&out.terminal_nb_fraud),
        terminal_risk: pick_f(&out.terminal_risk),
        terminal_last_known_fraud: vec![out.terminal_last_known_fraud[i]],
        evicted: out.evicted.iter().filter(|e| e.0 == i).map(|&(_, card)| (0, card)).collect(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-3)
}

fn assert_same(got: &FeatureColumns, want: &FeatureColumns, i: usize) {
    let floats = |a: &Vec<Vec<f64>>, b: &Vec<Vec<f64>>| {
        a.iter().zip(b).all(|(x, y)| x.iter().zip(y).all(|(x, y)| close(*x, *y)))
    };
    let ok = got.during_weekend == want.during_weekend
        && got.during_night == want.during_night
        && got.customer_nb_tx == want.customer_nb_tx
        && floats(&got.customer_avg_amount, &want.customer_avg_amount)
        && floats(&got.customer_amount_z, &want.customer_amount_z)
        && got.customer_countries == want.customer_countries
        && close(got.customer_amount_ratio[0], want.customer_amount_ratio[0])
        && got.customer_ms_since_prev == want.customer_ms_since_prev
        && got.customer_new_terminal == want.customer_new_terminal
        && got.terminal_nb_tx == want.terminal_nb_tx
        && got.terminal_nb_fraud == want.terminal_nb_fraud
        && got.terminal_risk == want.terminal_risk
        && got.terminal_last_known_fraud == want.terminal_last_known_fraud;
    assert!(ok, "row {i}:\n got {got:?}\nwant {want:?}");
}

fn concat(parts: Vec<FeatureColumns>) -> FeatureColumns {
    let mut all = parts[0].clone();
    for p in &parts[1..] {
        let at = all.len();
        all.evicted.extend(p.evicted.iter().map(|&(row, card)| (row + at, card)));
        all.during_weekend.extend(&p.during_weekend);
        all.during_night.extend(&p.during_night);
        for (a, b) in all.customer_nb_tx.iter_mut().zip(&p.customer_nb_tx) {
            a.extend(b);
        }
        for (a, b) in all.customer_avg_amount.iter_mut().zip(&p.customer_avg_amount) {
            a.extend(b);
        }
        for (a, b) in all.customer_amount_z.iter_mut().zip(&p.customer_amount_z) {
            a.extend(b);
        }
        for (a, b) in all.customer_countries.iter_mut().zip(&p.customer_countries) {
            a.extend(b);
        }
        all.customer_amount_ratio.extend(&p.customer_amount_ratio);
        all.customer_ms_since_prev.extend(&p.customer_ms_since_prev);
        all.customer_new_terminal.extend(&p.customer_new_terminal);
        for (a, b) in all.terminal_nb_tx.iter_mut().zip(&p.terminal_nb_tx) {
            a.extend(b);
        }
        for (a, b) in all.terminal_nb_fraud.iter_mut().zip(&p.terminal_nb_fraud) {
            a.extend(b);
        }
        for (a, b) in all.terminal_risk.iter_mut().zip(&p.terminal_risk) {
            a.extend(b);
        }
        all.terminal_last_known_fraud.extend(&p.terminal_last_known_fraud);
    }
    all
}

fn run_in_batches(
    engine: &mut FeatureEngine,
    s: &Stream,
    cuts: &[usize],
    delay_model: bool,
) -> FeatureColumns {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (s.tx.len() + 1)).collect();
    bounds.extend([0, s.tx.len()]);
    bounds.sort_unstable();
    let parts =
        bounds.windows(2).map(|w| engine.process(&s.batch(w[0], w[1], delay_model)).unwrap()).collect();
    concat(parts)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn features_equal_their_definitions(
        s in stream_strategy(),
        cuts in prop::collection::vec(0usize..200, 0..6),
        picks in prop::collection::vec((0usize..200, 0i64..30, any::<bool>()), 0..30),
        delay_model in any::<bool>(),
    ) {
        let cfg = config();
        let labels = labels_for(&s, &picks);
        let mut engine = FeatureEngine::new(cfg.clone()).unwrap();
        add_labels(&mut engine, &labels);
        let out = run_in_batches(&mut engine, &s, &cuts, delay_model);
        prop_assert_eq!(out.len(), s.tx.len());
        for i in 0..s.tx.len() {
            assert_same(&row(&out, i), &naive(&cfg, &s, &labels, delay_model, i), i);
        }
    }

    #[test]
    fn snapshot_restore_continues_exactly(s in stream_strategy(), cut in 0usize..200, delay_model in any::<bool>()) {
        let cfg = config();
        let mut whole = FeatureEngine::new(cfg.clone()).unwrap();
        let expect = whole.process(&s.batch(0, s.tx.len(), delay_model)).unwrap();
        let cut = cut % (s.tx.len() + 1);
        let mut first = FeatureEngine::new(cfg.clone()).unwrap();
        let a = first.process(&s.batch(0, cut, delay_model)).unwrap();
        let mut second = FeatureEngine::restore(cfg, &first.snapshot()).unwrap();
        let b = second.process(&s.batch(cut, s.tx.len(), delay_model)).unwrap();
        prop_assert_eq!(concat(vec![a, b]), expect);
        prop_assert_eq!(second.counters(), whole.counters());
    }

    #[test]
    fn delay_model_equals_label_events_at_time_plus_delay(s in stream_strategy()) {
        let cfg = config();
        let mut delayed = FeatureEngine::new(cfg.clone()).unwrap();
        let expect = delayed.process(&s.batch(0, s.tx.len(), true)).unwrap();
        let labels: Vec<Lbl> = s.tx.iter().map(|x| Lbl {
            time: x.time + cfg.label_delay, terminal: x.terminal, tx_time: x.time, tx_id: x.id, fraud: x.fraud,
        }).collect();
        let mut events = FeatureEngine::new(cfg).unwrap();
        add_labels(&mut events, &labels);
        prop_assert_eq!(events.process(&s.batch(0, s.tx.len(), false)).unwrap(), expect);
    }
}

/// Label events as part of the input: each batch of labels is given right before the
/// transaction at its position (so late labels, whose time the stream has passed, occur too).
type Drops = Vec<(usize, Vec<Lbl>)>;

fn drops_for(s: &Stream, picks: &[(usize, i64, bool, usize)]) -> Drops {
    let mut drops: Drops = Vec::new();
    for &(i, lag, fraud, at) in picks {
        let label = labels_for(s, &[(i, lag, fraud)])[0];
        let at = at % (s.tx.len() + 1);
        match drops.iter_mut().find(|(q, _)| *q == at) {
            Some((_, list)) => list.push(label),
            None => drops.push((at, vec![label])),
        }
    }
    for (_, list) in &mut drops {
        list.sort_by_key(|l| l.time);
    }
    drops
}

/// Feeds rows `from..to` cut at `cuts` (and wherever labels are given), with the labels given
/// before rows in that range.
fn feed(
    engine: &mut FeatureEngine,
    s: &Stream,
    (from, to): (usize, usize),
    cuts: &[usize],
    drops: &Drops,
) -> Vec<FeatureColumns> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (s.tx.len() + 1)).collect();
    bounds.extend(drops.iter().map(|(q, _)| *q));
    bounds.retain(|&b| from < b && b < to);
    bounds.extend([from, to]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut parts = Vec::new();
    for w in bounds.windows(2) {
        for (_, labels) in drops.iter().filter(|(q, _)| *q == w[0]) {
            add_labels(engine, labels);
        }
        parts.push(engine.process(&s.batch(w[0], w[1], false)).unwrap());
    }
    parts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Snapshot bytes are a function of the input sequence (transactions and label events),
    /// never of its cuts into batches, though keys expire and the sweep frees them per batch;
    /// a restored engine continues with the same features and ends in the same state.
    #[test]
    fn snapshot_bytes_depend_only_on_the_input_and_restore_continues_exactly(
        s in stream_strategy(),
        cuts_a in prop::collection::vec(0usize..200, 0..8),
        cuts_b in prop::collection::vec(0usize..200, 0..8),
        picks in prop::collection::vec((0usize..200, 0i64..30, any::<bool>(), 0usize..200), 0..12),
        at in 0usize..200,
        cap in 0usize..4,
        extra in 0i64..40,
    ) {
        let cfg = capped(cap, extra);
        let drops = drops_for(&s, &picks);
        let n = s.tx.len();
        let at = at % (n + 1);
        let mut whole = FeatureEngine::new(cfg.clone()).unwrap();
        let expect = concat(feed(&mut whole, &s, (0, n), &[], &drops));
        let (mut a, mut b) = (FeatureEngine::new(cfg.clone()).unwrap(), FeatureEngine::new(cfg.clone()).unwrap());
        let mut got = feed(&mut a, &s, (0, at), &cuts_a, &drops);
        feed(&mut b, &s, (0, at), &cuts_b, &drops);
        prop_assert_eq!(a.snapshot(), b.snapshot(), "same input, other cuts: same bytes");
        let mut restored = FeatureEngine::restore(cfg.clone(), &a.snapshot()).unwrap();
        prop_assert_eq!(restored.snapshot(), a.snapshot(), "a restored engine writes what it read");
        got.extend(feed(&mut restored, &s, (at, n), &cuts_b, &drops));
        prop_assert_eq!(concat(got), expect);
        feed(&mut a, &s, (at, n), &cuts_a, &drops);
        prop_assert_eq!(restored.counters(), whole.counters());
        prop_assert_eq!(restored.snapshot(), whole.snapshot());
        prop_assert_eq!(a.snapshot(), whole.snapshot());
    }
}

#[test]
fn a_bad_batch_changes_nothing_and_names_the_row() {
    let s = Stream::new(
        (0..5)
            .map(|i| Tx { id: i, time: 10 * i, customer: 1, terminal: 2, amount: 1.0, fraud: 0, country: 0 })
            .collect(),
    );
    let mut engine = FeatureEngine::new(config()).unwrap();
    engine.process(&s.batch(0, 2, true)).unwrap();
    let before = engine.snapshot();
    let err = engine.process(&s.batch(1, 5, true)).unwrap_err();
    assert!(
        matches!(&err, CoreError::InvalidValue { column, row: 0, .. } if column == "TX_TIME_MS"),
        "{err}"
    );
    let mut amounts = s.amounts.clone();
    amounts[4] = f64::NAN;
    let bad = Transactions { amounts: &amounts[2..5], ..s.batch(2, 5, true) };
    let err = engine.process(&bad).unwrap_err();
    assert!(matches!(&err, CoreError::InvalidValue { column, row: 2, .. } if column == "TX_AMOUNT"), "{err}");
    let short = Transactions { terminals: &s.terminals[2..4], ..s.batch(2, 5, true) };
    assert!(matches!(engine.process(&short), Err(CoreError::LengthMismatch { .. })));
    let no_country = Transactions { countries: None, ..s.batch(2, 5, true) };
    assert!(matches!(engine.process(&no_country), Err(CoreError::Config(_))));
    assert_eq!(engine.snapshot(), before);
    assert_eq!(engine.process(&s.batch(2, 5, true)).unwrap().len(), 3);
}

#[test]
fn state_stays_bounded_with_churning_keys() {
    let cfg = FeatureConfig { countries: false, ..FeatureConfig::handbook() };
    let mut engine = FeatureEngine::new(cfg).unwrap();
    let n = 200_000i64;
    // a new card and terminal every 100 transactions, one transaction per minute: ~1,400
    // cards live in the 30-day card window, ~1,700 terminals in the 37-day terminal horizon
    let ids: Vec<i64> = (0..n).collect();
    let times: Vec<i64> = ids.iter().map(|i| i * 60_000).collect();
    let keys: Vec<i64> = ids.iter().map(|i| i / 100).collect();
    let amounts = vec![5.0; n as usize];
    let mut peak = FeatureStateSize::default();
    for lo in (0..n as usize).step_by(10_000) {
        let hi = lo + 10_000;
        let tx = Transactions {
            ids: &ids[lo..hi],
            times: &times[lo..hi],
            customers: &keys[lo..hi],
            terminals: &keys[lo..hi],
            amounts: &amounts[lo..hi],
            frauds: None,
            countries: None,
        };
        engine.process(&tx).unwrap();
        let size = engine.state_size();
        peak.customers = peak.customers.max(size.customers);
        peak.terminals = peak.terminals.max(size.terminals);
        peak.entries = peak.entries.max(size.entries);
    }
    assert_eq!(engine.counters().transactions, n as u64);
    assert!(peak.customers <= 2 * 433 + 50, "{peak:?}"); // 30 days of minutes / 100, plus sweep lag
    assert!(peak.terminals <= 2 * 533 + 50, "{peak:?}");
    assert!(peak.entries <= 2 * (43_200 + 53_280) + 10_000, "{peak:?}");
}

#[test]
fn calendar_flags_are_utc() {
    // 2018-08-04 was a Saturday; 2018-08-06 a Monday
    let sat = 1_533_340_800_000;
    assert_eq!(calendar_flags(sat), (1, 1));
    assert_eq!(calendar_flags(sat + 6 * 3_600_000 + 3_599_999), (1, 1));
    assert_eq!(calendar_flags(sat + 7 * 3_600_000), (1, 0));
    assert_eq!(calendar_flags(sat + 2 * DAY + 12 * 3_600_000), (0, 0));
    assert_eq!(calendar_flags(sat + DAY + 23 * 3_600_000), (1, 0));
}

#[test]
fn late_and_unmatched_labels_are_counted() {
    let s = Stream::new(
        (0..4)
            .map(|i| Tx { id: i, time: 10 * i, customer: 1, terminal: 2, amount: 1.0, fraud: 0, country: 0 })
            .collect(),
    );
    let mut engine = FeatureEngine::new(config()).unwrap();
    engine.process(&s.batch(0, 3, false)).unwrap();
    let labels = [
        Lbl { time: 15, terminal: 2, tx_time: 10, tx_id: 1, fraud: 1 }, // late: the stream is at 20
        Lbl { time: 25, terminal: 2, tx_time: 0, tx_id: 0, fraud: 1 },  // pending until t=30
        Lbl { time: 26, terminal: 9, tx_time: 0, tx_id: 0, fraud: 1 },  // unknown terminal
    ];
    add_labels(&mut engine, &labels);
    assert_eq!(engine.state_size().pending_labels, 2);
    engine.process(&s.batch(3, 4, false)).unwrap();
    let c = engine.counters();
    assert_eq!((c.labels_late, c.labels_applied, c.labels_unmatched), (1, 2, 1));
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// A snapshot of the first layout (keys in slot order, absolute positions; this one was written
/// by the engine before snapshots were canonical and holds an expired card and terminal and a
/// pending label) restores, and the engine goes on as one that ran uninterrupted, its next
/// snapshots canonical. A later layout is refused by name.
#[test]
fn snapshots_of_the_first_layout_are_read_and_later_ones_refused() {
    let first_layout = from_hex(concat!(
        "4653545202000800000000000000666561747572657319000000000000005b372c2033302c20335d2f5b352c2032305d",
        "2f362f747275650128000000000000000400000000000000040000000000000000000000000000000000000000000000",
        "0000000000000000010000000000000032000000000000000a0000000000000028000000000000000400000000000000",
        "010200000000000000010000000000000000000000000000000500000000000000020000000000000000000000000000",
        "00000000000000f83f0a000000000000000100000000000000050000000000000000000000000008400b000000000000",
        "000100000000000000030000000000000000000000000000000000000000001240000000000000000000000000008026",
        "400000000000000000000000000000000000000000000012400000000000000000000000000080264000000000000000",
        "000100000000000000000000000000084000000000000000000000000000002240000000000000000002000000000000",
        "00010000000000000028000000000000000100000000000000280000000000000000000000000010400a000000000000",
        "000300000000000000030000000000000001000000000000000000000000001040000000000000000000000000000030",
        "400000000000000000010000000000000000000000000010400000000000000000000000000000304000000000000000",
        "000100000000000000000000000000104000000000000000000000000000003040000000000000000002000000000000",
        "000a00000000000000010000000000000001000000000000002800000000000000010000000000000028000000000000",
        "000400000000000000000200000000000000010000000000000001000000000000000b00000000000000000000000000",
        "000000000000000000000500000000000000020000000000000002000000000000000200000000000000010500000000",
        "000000030000000000000000020000000000000000000000000000000000000000000000",
    ));
    let tx = |id: i64, time: i64, customer: i64, terminal: i64, amount: f64, fraud: i64, country: i64| Tx {
        id,
        time,
        customer,
        terminal,
        amount,
        fraud,
        country,
    };
    let s = Stream::new(vec![
        tx(1, 0, 1, 10, 1.5, 0, 1),
        tx(2, 2, 2, 11, 2.25, 1, 2),
        tx(3, 5, 1, 11, 3.0, 0, 1),
        tx(4, 40, 2, 10, 4.0, 0, 3),
        tx(5, 50, 1, 11, 5.0, 1, 2),
        tx(6, 51, 2, 10, 6.0, 0, 1),
    ]);
    let mut whole = FeatureEngine::new(config()).unwrap();
    add_labels(&mut whole, &[Lbl { time: 50, terminal: 10, tx_time: 40, tx_id: 4, fraud: 1 }]);
    whole.process(&s.batch(0, 4, true)).unwrap();
    let mut restored = FeatureEngine::restore(config(), &first_layout).unwrap();
    assert_eq!(restored.counters(), whole.counters());
    assert_eq!(restored.snapshot(), whole.snapshot(), "canonical from now on");
    assert_eq!(restored.process(&s.batch(4, 6, true)).unwrap(), whole.process(&s.batch(4, 6, true)).unwrap());
    assert_eq!(restored.counters(), whole.counters());
    assert_eq!(restored.counters().labels_applied, 1);
    assert_eq!(restored.snapshot(), whole.snapshot());

    let mut later = whole.snapshot();
    let at = later.windows(10).position(|w| w == b"features/2").unwrap();
    later[at + 9] = b'9';
    let body = later.len() - 4; // a valid checksum, or the checksum refuses it first
    let crc = crate::snapshot::crc32(&later[..body]);
    later[body..].copy_from_slice(&crc.to_le_bytes());
    let err = FeatureEngine::restore(config(), &later).unwrap_err();
    assert!(err.to_string().contains("\"features/9\""), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// With a cap on live cards, the features are those of the uncapped engine over the same
    /// transactions where each eviction starts a new card, and the evictions are those of a
    /// naive model: a card is live until evicted or idle for the horizon; an unseen card while
    /// `cap` are live evicts the one whose latest transaction came first.
    #[test]
    fn a_capped_engine_is_the_uncapped_one_with_evicted_cards_started_afresh(
        s in stream_strategy(),
        cuts in prop::collection::vec(0usize..200, 0..6),
        cap in 1usize..4,
        extra in 0i64..40,
    ) {
        let cfg = capped(cap, extra);
        let horizon = cfg.card_cap.unwrap().horizon;
        let mut live: Vec<(i64, i64, usize)> = Vec::new(); // (card, latest time, row)
        let mut generation = [0i64; 4];
        let mut want_evicted = Vec::new();
        let mut relabelled = s.clone();
        for (i, tx) in s.tx.iter().enumerate() {
            live.retain(|&(_, t, _)| t > tx.time - horizon);
            if let Some(at) = live.iter().position(|l| l.0 == tx.customer) {
                live[at] = (tx.customer, tx.time, i);
            } else {
                if live.len() >= cap {
                    let oldest = (0..live.len()).min_by_key(|&j| (live[j].1, live[j].2)).unwrap();
                    let victim = live.remove(oldest).0;
                    generation[victim as usize] += 1;
                    want_evicted.push((i, victim));
                }
                live.push((tx.customer, tx.time, i));
            }
            relabelled.customers[i] = tx.customer * 1_000 + generation[tx.customer as usize];
        }
        let mut engine = FeatureEngine::new(cfg.clone()).unwrap();
        let got = run_in_batches(&mut engine, &s, &cuts, false);
        let mut plain = FeatureEngine::new(config()).unwrap();
        let mut want = run_in_batches(&mut plain, &relabelled, &[], false);
        prop_assert_eq!(&got.evicted, &want_evicted);
        want.evicted = want_evicted.clone();
        prop_assert_eq!(got, want);
        prop_assert_eq!(engine.cards_evicted(), want_evicted.len() as u64);
        // (cards idle past their windows wait for the sweep, capped or not)
        let now = s.times.last().copied().unwrap_or(0);
        let held = engine.customers.iter().filter(|(_, c)| !c.expired(&engine.cw, now)).count();
        prop_assert!(held <= cap && engine.cards.as_ref().unwrap().len() <= cap);
    }
}

#[test]
fn a_capped_engine_takes_the_state_of_an_uncapped_one() {
    let s = Stream::new(
        (0..6)
            .map(|i| Tx {
                id: i,
                time: 10 * i,
                customer: [5, 3, 8, 3, 7, 9][i as usize],
                terminal: 1,
                amount: 1.0,
                fraud: 0,
                country: 0,
            })
            .collect(),
    );
    let mut plain = FeatureEngine::new(config()).unwrap();
    plain.process(&s.batch(0, 5, false)).unwrap();
    let cfg = capped(3, 100);
    let mut capped_engine = FeatureEngine::restore(cfg.clone(), &plain.snapshot()).unwrap();
    // the snapshot holds cards 8 (t=20), 3 (t=30) and 7 (t=40) (card 5's t=0 is outside the
    // 30 ms windows at t=40); with a cap of 3, card 9 evicts the card whose latest transaction
    // is the oldest: 8
    let out = capped_engine.process(&s.batch(5, 6, false)).unwrap();
    assert_eq!(out.evicted, vec![(0, 8)]);
    assert!(FeatureEngine::restore(config(), &capped_engine.snapshot()).is_err(), "not the other way");
}
