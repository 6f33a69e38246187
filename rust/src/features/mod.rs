//! Streaming fraud features: per-key rolling ("OVER window") aggregates computed per
//! transaction in event-time order, and the batch model scorer.
//!
//! A [`FeatureEngine`] takes transactions as columns and returns one row of features per
//! transaction, computed from the transactions and labels before it:
//! - calendar flags: weekend (Saturday/Sunday, UTC) and night (UTC hour <= 6);
//! - per card ([`customer`]), for every window `w`: count and mean amount over `(t - w, t]`
//!   including the current transaction, the amount's z-score against the previous ones, and
//!   the number of distinct countries; the amount over the mean of the previous transactions
//!   in the longest window, the time since the card's previous transaction and whether the
//!   terminal is new for the card (both capped at / relative to the longest window);
//! - per terminal ([`terminal`]), for every window `n` and label delay `D`: count, known
//!   frauds and risk (frauds / count, 0 when empty) over `(t - (n + D), t - D]`, and whether
//!   the latest transaction with a known label was a fraud.
//!
//! Invariants:
//! - Event order is (time, transaction id), strictly increasing across all calls; a batch
//!   that breaks it is rejected whole (as any bad batch: nothing changes). At equal times only
//!   transactions earlier in that order count ("lower ids").
//! - A label event with arrival time `a` is applied before every transaction with time `>= a`
//!   processed after it was given; one given after transactions at or past `a` were processed
//!   is applied at once and counted as late (it changes only later transactions' features).
//! - Work per transaction is O(windows) amortized (deques with one pointer per window, no
//!   rescans); each batch of `n` also examines `n` slots of each key table (a sweep), so a
//!   table of `k` keys is swept once per `k` transactions.
//! - State is bounded: a card holds its transactions of the longest card window, a terminal
//!   those of its longest window plus the delay (older ones are dropped when the key is next
//!   touched); the sweep drops keys whose every transaction is that old. Neither ever changes
//!   a feature value, only when memory is released.
//! - Features never depend on how the stream is cut into batches; a snapshot restored into an
//!   engine of the same configuration continues exactly as the uninterrupted one.
//! - Snapshots are canonical: their bytes depend only on the input (transactions and label
//!   events, in order), never on its cuts into batches nor on when the sweep ran. A snapshot
//!   holds the keys live at the engine's time (the sweep's expiry predicate, applied without
//!   freeing anything), in ascending key order, with positions relative to each key's first
//!   held transaction; a label for a terminal that has expired is unmatched whether or not the
//!   sweep freed it yet (an expired terminal holds no transaction inside a window).
//! - With a cap on live cards ([`FeatureConfig::card_cap`], see [`cards`]), a transaction of a
//!   card that is not live while the cap is reached first evicts the card seen least recently:
//!   its state is dropped before that row (its later transactions start afresh) and the
//!   eviction is returned ([`FeatureColumns::evicted`]) so that a caller drops the card's other
//!   state at the same row. The live cards are part of the snapshot.

pub mod cards;
mod columns;
pub mod customer;
pub mod rolling;
pub mod score;
mod table;
pub mod terminal;

use std::collections::VecDeque;

use crate::snapshot::{Reader, Writer};
use crate::time::{check_duration, is_valid_event_time, Millis, MAX_EVENT_TIME, MIN_EVENT_TIME};
use crate::{CoreError, CoreResult};
pub use cards::CardCap;
use cards::LiveCards;
use columns::Label;
pub use columns::{ColumnNames, FeatureColumns, Labels, Transactions};
use customer::{CardEvent, CustomerState, CustomerWindows};
use table::Table;
use terminal::{LabelOutcome, TerminalState, TerminalWindows};

/// How many transactions ahead the state of upcoming keys is prefetched.
const PREFETCH_DISTANCE: usize = 8;
/// Each batch of `n` transactions examines `n * SWEEP_PER_EVENT` slots of each key table
/// (a cheap look at one field, in slot order).
const SWEEP_PER_EVENT: usize = 1;

/// Tag of the snapshot layout written: live keys in ascending key order, positions relative to
/// each key's first held transaction.
const SNAPSHOT_TAG: &str = "features/2";
/// Tag of the first layout (keys in slot order, absolute positions), still read.
const SNAPSHOT_TAG_V1: &str = "features";

/// One day in milliseconds.
pub const DAY: Millis = 86_400_000;
const HOUR: Millis = 3_600_000;

/// Everything a [`FeatureEngine`] is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureConfig {
    /// Card windows `w` (ms): features over `(t - w, t]`.
    pub customer_windows: Vec<Millis>,
    /// Terminal windows `n` (ms): features over `(t - (n + D), t - D]`.
    pub terminal_windows: Vec<Millis>,
    /// Label delay `D` (ms): a delay-model label is known `D` after its transaction.
    pub label_delay: Millis,
    /// Whether transactions carry a country column (distinct-country features).
    pub countries: bool,
    /// Column names for error messages.
    pub names: ColumnNames,
    /// A cap on live cards (see [`cards`]); `None`: unbounded.
    pub card_cap: Option<CardCap>,
}

impl FeatureConfig {
    /// The handbook's configuration: windows of 1, 7 and 30 days, a 7-day label delay.
    #[must_use]
    pub fn handbook() -> Self {
        FeatureConfig {
            customer_windows: vec![DAY, 7 * DAY, 30 * DAY],
            terminal_windows: vec![DAY, 7 * DAY, 30 * DAY],
            label_delay: 7 * DAY,
            countries: false,
            names: ColumnNames::default(),
            card_cap: None,
        }
    }

    fn validate(&self) -> CoreResult<(CustomerWindows, TerminalWindows)> {
        for (what, list) in
            [("customer_windows", &self.customer_windows), ("terminal_windows", &self.terminal_windows)]
        {
            if list.is_empty() || list.len() > 64 {
                return Err(CoreError::Config(format!(
                    "{what} must hold 1 to 64 windows, got {}",
                    list.len()
                )));
            }
            for &w in list {
                check_duration(what, w, false)?;
            }
        }
        check_duration("label_delay", self.label_delay, true)?;
        if let Some(cap) = self.card_cap {
            let longest = self.customer_windows.iter().copied().max().unwrap_or(0);
            if cap.max_cards == 0 || cap.horizon < longest {
                return Err(CoreError::Config(format!(
                    "a card cap needs max_cards >= 1 and a horizon of at least the longest card \
                     window ({longest} ms), got {} and {} ms",
                    cap.max_cards, cap.horizon
                )));
            }
        }
        let longest = |v: &[Millis]| (0..v.len()).max_by_key(|&i| (v[i], usize::MAX - i)).unwrap_or(0);
        Ok((
            CustomerWindows {
                sizes: self.customer_windows.clone(),
                longest: longest(&self.customer_windows),
                countries: self.countries,
            },
            TerminalWindows {
                sizes: self.terminal_windows.clone(),
                longest: longest(&self.terminal_windows),
                delay: self.label_delay,
            },
        ))
    }
}

/// Counters since the engine was created (or restored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureCounters {
    /// Transactions processed.
    pub transactions: u64,
    /// Label events applied to a held transaction.
    pub labels_applied: u64,
    /// Label events whose transaction was not held (unknown, or outside every window).
    pub labels_unmatched: u64,
    /// Label events given after transactions at or past their arrival time were processed.
    pub labels_late: u64,
}

/// Size of the engine's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureStateSize {
    /// Cards with state.
    pub customers: usize,
    /// Terminals with state.
    pub terminals: usize,
    /// Transactions held by cards and terminals together.
    pub entries: usize,
    /// Label events waiting for the stream to reach their arrival time.
    pub pending_labels: usize,
    /// Approximate bytes held.
    pub bytes: usize,
}

/// Weekend and night flags of an epoch-ms time (UTC).
#[must_use]
pub fn calendar_flags(t: Millis) -> (i8, i8) {
    let days = t.div_euclid(DAY);
    // 1970-01-01 was a Thursday: weekday 3 with Monday = 0
    let weekday = (days + 3).rem_euclid(7);
    let hour = t.rem_euclid(DAY) / HOUR;
    (i8::from(weekday >= 5), i8::from(hour <= 6))
}

/// Rolling fraud features over a transaction stream and a label stream.
#[derive(Debug, Clone)]
pub struct FeatureEngine {
    config: FeatureConfig,
    cw: CustomerWindows,
    tw: TerminalWindows,
    customers: Table<CustomerState>,
    terminals: Table<TerminalState>,
    last: Option<(Millis, i64)>,
    pending: VecDeque<Label>,
    counters: FeatureCounters,
    /// The live cards, with a cap.
    cards: Option<LiveCards>,
    /// Slots of the current batch's cards and terminals (scratch, reused between batches).
    cslots: Vec<u32>,
    tslots: Vec<u32>,
}

impl FeatureEngine {
    /// Builds an engine.
    ///
    /// # Errors
    /// [`CoreError::Config`] for empty window lists or out-of-range durations.
    ///
    /// # Examples
    /// ```
    /// use fraudstream::features::{FeatureConfig, FeatureEngine, Transactions, DAY};
    ///
    /// let mut engine = FeatureEngine::new(FeatureConfig::handbook()).unwrap();
    /// let day0 = 1_533_081_600_000; // 2018-08-01, a Wednesday
    /// let out = engine
    ///     .process(&Transactions {
    ///         ids: &[1, 2, 3],
    ///         times: &[day0, day0 + 1_000, day0 + 8 * DAY],
    ///         customers: &[7, 7, 7],
    ///         terminals: &[5, 5, 5],
    ///         amounts: &[10.0, 30.0, 50.0],
    ///         frauds: Some(&[1, 0, 0]),
    ///         countries: None,
    ///     })
    ///     .unwrap();
    /// assert_eq!(out.customer_nb_tx[0], vec![1, 2, 1]);
    /// assert_eq!(out.customer_avg_amount[1], vec![10.0, 20.0, 50.0]);
    /// assert_eq!(out.terminal_nb_tx[0], vec![0, 0, 1]); // (t - 8d, t - 7d] holds id 2 only
    /// assert_eq!(out.terminal_risk[1], vec![0.0, 0.0, 0.5]); // ids 1 and 2, one fraud
    /// ```
    pub fn new(config: FeatureConfig) -> CoreResult<Self> {
        let (cw, tw) = config.validate()?;
        Ok(FeatureEngine {
            cards: config.card_cap.map(LiveCards::new),
            config,
            cw,
            tw,
            customers: Table::default(),
            terminals: Table::default(),
            last: None,
            pending: VecDeque::new(),
            counters: FeatureCounters::default(),
            cslots: Vec::new(),
            tslots: Vec::new(),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// Counters.
    #[must_use]
    pub fn counters(&self) -> FeatureCounters {
        self.counters
    }

    /// Cards evicted by the cap on live cards.
    #[must_use]
    pub fn cards_evicted(&self) -> u64 {
        self.cards.as_ref().map_or(0, LiveCards::evicted)
    }

    /// (time, id) of the latest transaction processed.
    #[must_use]
    pub fn last_event(&self) -> Option<(Millis, i64)> {
        self.last
    }

    /// Size of the state (walks the key tables).
    #[must_use]
    pub fn state_size(&self) -> FeatureStateSize {
        let (mut entries, mut bytes) = (0, self.customers.table_bytes() + self.terminals.table_bytes());
        for (_, c) in self.customers.iter() {
            entries += c.len();
            bytes += c.heap_bytes();
        }
        for (_, t) in self.terminals.iter() {
            entries += t.len();
            bytes += t.heap_bytes();
        }
        bytes += self.pending.capacity() * std::mem::size_of::<Label>();
        bytes += self.cards.as_ref().map_or(0, LiveCards::bytes);
        FeatureStateSize {
            customers: self.customers.len(),
            terminals: self.terminals.len(),
            entries,
            pending_labels: self.pending.len(),
            bytes,
        }
    }

    fn validate(&self, tx: &Transactions<'_>) -> CoreResult<()> {
        let n = tx.len();
        let names = &self.config.names;
        let lengths = [
            (&names.time, tx.times.len()),
            (&names.customer, tx.customers.len()),
            (&names.terminal, tx.terminals.len()),
            (&names.amount, tx.amounts.len()),
            (&names.fraud, tx.frauds.map_or(n, <[i64]>::len)),
            (&names.country, tx.countries.map_or(n, <[i64]>::len)),
        ];
        for (column, actual) in lengths {
            if actual != n {
                return Err(CoreError::LengthMismatch { column: column.clone(), expected: n, actual });
            }
        }
        if self.config.countries && tx.countries.is_none() {
            return Err(CoreError::Config(format!(
                "the engine tracks countries: a '{}' column is required",
                names.country
            )));
        }
        let mut prev = self.last;
        for row in 0..n {
            let (t, id) = (tx.times[row], tx.ids[row]);
            if !is_valid_event_time(t) {
                return Err(CoreError::invalid(
                    &names.time,
                    row,
                    format!("{t} is outside the event-time range [{MIN_EVENT_TIME}, {MAX_EVENT_TIME}]"),
                ));
            }
            if let Some((pt, pid)) = prev {
                if (t, id) <= (pt, pid) {
                    return Err(CoreError::invalid(
                        &names.time,
                        row,
                        format!(
                            "transactions must come in (time, id) order: ({t}, {id}) is not after ({pt}, {pid})"
                        ),
                    ));
                }
            }
            prev = Some((t, id));
            if !tx.amounts[row].is_finite() {
                return Err(CoreError::invalid(
                    &names.amount,
                    row,
                    format!("{} is not finite", tx.amounts[row]),
                ));
            }
            if let Some(f) = tx.frauds {
                if f[row] != 0 && f[row] != 1 {
                    return Err(CoreError::invalid(&names.fraud, row, format!("{} is not 0 or 1", f[row])));
                }
            }
        }
        Ok(())
    }

    /// Applies a label at stream time `now`. A terminal expired at `now` holds no transaction
    /// inside a window (it is the sweep's to free): the label is unmatched, as it is once the
    /// terminal is freed, so the outcome does not depend on when the sweep runs.
    fn apply(&mut self, label: Label, now: Millis) {
        let tw = &self.tw;
        let outcome = match self.terminals.get_mut(label.terminal) {
            Some(t) if !t.expired(tw, now) => t.apply_label(label.tx_time, label.tx_id, label.fraud),
            _ => LabelOutcome::Unmatched,
        };
        match outcome {
            LabelOutcome::Applied => self.counters.labels_applied += 1,
            LabelOutcome::Unmatched => self.counters.labels_unmatched += 1,
        }
    }

    /// Adds label events (fraud feedback). Each is applied before the first transaction at
    /// or after its arrival time; labels whose time the stream has already reached are
    /// applied now (and counted as late).
    ///
    /// # Errors
    /// A bad batch is rejected whole: [`CoreError::LengthMismatch`], or
    /// [`CoreError::InvalidValue`] for a time out of range or a flag other than 0/1.
    pub fn add_labels(&mut self, labels: &Labels<'_>) -> CoreResult<()> {
        let n = labels.times.len();
        for (column, actual) in [
            ("label_terminal", labels.terminals.len()),
            ("label_transaction_time", labels.tx_times.len()),
            ("label_transaction_id", labels.tx_ids.len()),
            ("label_fraud", labels.frauds.len()),
        ] {
            if actual != n {
                return Err(CoreError::LengthMismatch { column: column.into(), expected: n, actual });
            }
        }
        for row in 0..n {
            for (column, t) in
                [("label_time", labels.times[row]), ("label_transaction_time", labels.tx_times[row])]
            {
                if !is_valid_event_time(t) {
                    return Err(CoreError::invalid(
                        column,
                        row,
                        format!("{t} is outside the event-time range"),
                    ));
                }
            }
            if labels.frauds[row] != 0 && labels.frauds[row] != 1 {
                return Err(CoreError::invalid(
                    "label_fraud",
                    row,
                    format!("{} is not 0 or 1", labels.frauds[row]),
                ));
            }
        }
        for row in 0..n {
            let label = Label {
                time: labels.times[row],
                terminal: labels.terminals[row],
                tx_time: labels.tx_times[row],
                tx_id: labels.tx_ids[row],
                fraud: labels.frauds[row] == 1,
            };
            match self.last {
                Some((t, _)) if label.time <= t => {
                    self.counters.labels_late += 1;
                    self.apply(label, t);
                }
                _ => {
                    let at = self.pending.partition_point(|p| p.time <= label.time);
                    self.pending.insert(at, label);
                }
            }
        }
        Ok(())
    }

    /// Computes the features of a batch of transactions (in event order) and adds them to
    /// the state.
    ///
    /// # Errors
    /// A bad batch is rejected before any state changes: [`CoreError::LengthMismatch`],
    /// [`CoreError::InvalidValue`] (time out of range or out of order, amount not finite,
    /// label not 0/1) or [`CoreError::Config`] (a country column is required).
    pub fn process(&mut self, tx: &Transactions<'_>) -> CoreResult<FeatureColumns> {
        self.validate(tx)?;
        let n = tx.len();
        let mut out = FeatureColumns::new(self.cw.sizes.len(), self.tw.sizes.len(), self.cw.countries, n);
        let (cw, tw) = (&self.cw, &self.tw);
        if let Some((now, _)) = self.last {
            let budget = n * SWEEP_PER_EVENT;
            self.customers.sweep(budget, |c| !c.expired(cw, now));
            self.terminals.sweep(budget, |s| !s.expired(tw, now));
        }
        // resolve every row's state first (no key is dropped until the next batch), so
        // upcoming states can be prefetched while earlier rows are processed
        self.cslots.clear();
        self.tslots.clear();
        for row in 0..n {
            self.cslots.push(self.customers.slot(tx.customers[row], || CustomerState::new(cw)));
            self.tslots.push(self.terminals.slot(tx.terminals[row], || TerminalState::new(tw)));
        }
        for row in 0..n {
            self.prefetch(row);
            let t = tx.times[row];
            while self.pending.front().is_some_and(|l| l.time <= t) {
                if let Some(label) = self.pending.pop_front() {
                    self.apply(label, t);
                }
            }
            if self.cards.is_some() {
                self.admit(tx.customers[row], t, row, &mut out);
            }
            let (weekend, night) = calendar_flags(t);
            out.during_weekend.push(weekend);
            out.during_night.push(night);
            let ev = CardEvent {
                time: t,
                amount: tx.amounts[row],
                terminal: tx.terminals[row],
                country: tx.countries.map_or(0, |c| c[row]),
            };
            self.customers.state_mut(self.cslots[row]).on_event(&self.cw, ev, &mut out);
            let fraud = tx.frauds.is_some_and(|f| f[row] == 1);
            self.terminals.state_mut(self.tslots[row]).on_event(&self.tw, t, tx.ids[row], fraud, &mut out);
        }
        if let Some(row) = n.checked_sub(1) {
            self.last = Some((tx.times[row], tx.ids[row]));
        }
        self.counters.transactions += n as u64;
        for &(_, card) in &out.evicted {
            // (its slot was held for the batch; free it unless the card came back since)
            self.customers.remove_if(card, CustomerState::is_fresh);
        }
        Ok(out)
    }

    /// Records the transaction of `card` at `t` (row `row`) under the cap, evicting first when
    /// it is reached.
    fn admit(&mut self, card: i64, t: Millis, row: usize, out: &mut FeatureColumns) {
        let Some(cards) = &mut self.cards else { return };
        let mut victims: smallvec::SmallVec<[i64; 1]> = smallvec::SmallVec::new();
        cards.touch(card, t, |victim| victims.push(victim));
        for victim in victims {
            self.evict(victim, row, out);
        }
    }

    /// Drops the state of `card`, evicted by the cap before `row`: a fresh state in its slot
    /// (the batch may hold the slot for a later row of the card), freed after the batch.
    #[cold]
    fn evict(&mut self, card: i64, row: usize, out: &mut FeatureColumns) {
        if let Some(st) = self.customers.get_mut(card) {
            *st = CustomerState::new(&self.cw);
        }
        out.evicted.push((row, card));
    }

    fn prefetch(&self, row: usize) {
        if let (Some(&c), Some(&t)) =
            (self.cslots.get(row + 2 * PREFETCH_DISTANCE), self.tslots.get(row + 2 * PREFETCH_DISTANCE))
        {
            self.customers.prefetch(c);
            self.terminals.prefetch(t);
        }
        if let (Some(&c), Some(&t)) =
            (self.cslots.get(row + PREFETCH_DISTANCE), self.tslots.get(row + PREFETCH_DISTANCE))
        {
            if let Some(st) = self.customers.state(c) {
                st.prefetch_entries();
            }
            if let Some(st) = self.terminals.state(t) {
                st.prefetch_entries();
            }
        }
    }

    fn fingerprint(&self) -> String {
        let c = &self.config;
        // (the cap only when set: the fingerprint of existing snapshots stays)
        let cap = c.card_cap.map_or(String::new(), |cap| format!("/cap {}/{}", cap.max_cards, cap.horizon));
        format!("{}{cap}", self.uncapped_fingerprint())
    }

    /// The fingerprint of this configuration without a card cap.
    fn uncapped_fingerprint(&self) -> String {
        let c = &self.config;
        format!("{:?}/{:?}/{}/{}", c.customer_windows, c.terminal_windows, c.label_delay, c.countries)
    }

    /// The whole state as versioned bytes, canonical (see the module invariants): the keys
    /// live at the time of the latest transaction, as the next sweep would judge them (none is
    /// freed: a snapshot changes nothing), in ascending key order.
    #[must_use]
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::with_header();
        w.str(SNAPSHOT_TAG);
        w.str(&self.fingerprint());
        match self.last {
            Some((t, id)) => {
                w.u8(1);
                w.i64(t);
                w.i64(id);
            }
            None => w.u8(0),
        }
        let c = self.counters;
        for v in [c.transactions, c.labels_applied, c.labels_unmatched, c.labels_late] {
            w.u64(v);
        }
        w.count(self.pending.len());
        for l in &self.pending {
            w.i64(l.time);
            w.i64(l.terminal);
            w.i64(l.tx_time);
            w.i64(l.tx_id);
            w.u8(u8::from(l.fraud));
        }
        let (cw, tw) = (&self.cw, &self.tw);
        let now = self.last.map_or(Millis::MIN, |(t, _)| t);
        let customers = self.customers.sorted(|c| !c.expired(cw, now));
        write_states(&mut w, &customers, CustomerState::prefetch_held, CustomerState::write);
        let terminals = self.terminals.sorted(|t| !t.expired(tw, now));
        write_states(&mut w, &terminals, TerminalState::prefetch_held, TerminalState::write);
        if let Some(cards) = &self.cards {
            cards.write(&mut w);
        }
        w.into_bytes()
    }

    /// An engine with `config` and the state of `bytes` (from [`FeatureEngine::snapshot`] of
    /// an engine with the same configuration; snapshots of the first layout, which listed
    /// every key held in slot order, are read too).
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] for malformed bytes, an unknown layout or another configuration.
    pub fn restore(config: FeatureConfig, bytes: &[u8]) -> CoreResult<Self> {
        let mut engine = FeatureEngine::new(config)?;
        let mut r = Reader::with_header(bytes)?;
        let absolute = match r.str()?.as_str() {
            SNAPSHOT_TAG => false,
            SNAPSHOT_TAG_V1 => true,
            tag if tag.starts_with("features/") => {
                return Err(CoreError::Snapshot(format!(
                    "feature-engine snapshot layout {tag:?}: this build reads {SNAPSHOT_TAG:?} and \
                     {SNAPSHOT_TAG_V1:?}"
                )))
            }
            _ => return Err(CoreError::Snapshot("not a feature-engine snapshot".into())),
        };
        let fingerprint = r.str()?;
        // A capped engine takes the state of an uncapped one (a cap set on a running deployment):
        // its live cards are rebuilt from the cards held, by their latest transaction, ties by card.
        let uncapped = engine.config.card_cap.is_some() && fingerprint == engine.uncapped_fingerprint();
        if fingerprint != engine.fingerprint() && !uncapped {
            return Err(CoreError::Snapshot(format!(
                "snapshot was taken with another configuration: {fingerprint}"
            )));
        }
        engine.last = match r.u8()? {
            0 => None,
            _ => Some((r.i64()?, r.i64()?)),
        };
        engine.counters = FeatureCounters {
            transactions: r.u64()?,
            labels_applied: r.u64()?,
            labels_unmatched: r.u64()?,
            labels_late: r.u64()?,
        };
        for _ in 0..r.count()? {
            engine.pending.push_back(Label {
                time: r.i64()?,
                terminal: r.i64()?,
                tx_time: r.i64()?,
                tx_id: r.i64()?,
                fraud: r.u8()? != 0,
            });
        }
        for _ in 0..r.count()? {
            let key = r.i64()?;
            let st = CustomerState::read(&engine.cw, &mut r, absolute)?;
            if !engine.customers.insert(key, st) {
                return Err(CoreError::Snapshot(format!("card {key} appears twice")));
            }
        }
        for _ in 0..r.count()? {
            let key = r.i64()?;
            let st = TerminalState::read(&engine.tw, &mut r, absolute)?;
            if !engine.terminals.insert(key, st) {
                return Err(CoreError::Snapshot(format!("terminal {key} appears twice")));
            }
        }
        match engine.config.card_cap {
            Some(cap) if uncapped => {
                let mut held: Vec<(Millis, i64)> =
                    engine.customers.iter().map(|(card, st)| (st.latest(), card)).collect();
                held.sort_unstable();
                engine.cards = Some(LiveCards::of(cap, &held));
            }
            Some(cap) => engine.cards = Some(LiveCards::read(cap, &mut r)?),
            None => {}
        }
        r.finish()?;
        Ok(engine)
    }
}

/// Writes the count, then each key and its state, in the order given (ascending keys): the
/// states lie at random in memory, so each one's struct and then its held entries are fetched
/// a few states ahead (a snapshot was mostly waiting for memory: 100 ms for 36 MB).
fn write_states<S>(
    w: &mut Writer,
    states: &[(i64, &S)],
    prefetch_held: impl Fn(&S),
    write: impl Fn(&S, &mut Writer),
) {
    w.count(states.len());
    for (i, &(key, st)) in states.iter().enumerate() {
        if let Some(&(_, ahead)) = states.get(i + 2 * PREFETCH_DISTANCE) {
            crate::prefetch::prefetch(ahead);
        }
        if let Some(&(_, ahead)) = states.get(i + PREFETCH_DISTANCE) {
            prefetch_held(ahead); // (its struct was fetched PREFETCH_DISTANCE states ago)
        }
        w.i64(key);
        write(st, w);
    }
}

#[cfg(test)]
mod tests;
