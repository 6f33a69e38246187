//! Engine-level properties: batch boundaries never change the output, snapshots restore
//! exactly, flush empties the state, rejected batches change nothing, and state stays bounded.

use proptest::prelude::*;

use super::*;
use crate::aggregate::AggKind;
use crate::batch::Values;
use crate::window::output::{EmitKind, NO_TRIGGER};

#[path = "engine_fuzz_tests.rs"]
mod fuzz;

#[derive(Debug, Clone)]
struct Stream {
    keys: Vec<i64>,
    times: Vec<i64>,
    amounts: Vec<f64>,
    countries: Vec<i64>,
    partitions: Vec<i64>,
}

impl Stream {
    fn batch(&self, lo: usize, hi: usize, with_partitions: bool) -> Batch<'_> {
        Batch {
            keys: &self.keys[lo..hi],
            times: &self.times[lo..hi],
            partitions: with_partitions.then(|| &self.partitions[lo..hi]),
            values: vec![Values::F64(&self.amounts[lo..hi]), Values::I64(&self.countries[lo..hi])],
        }
    }
}

fn stream() -> impl Strategy<Value = Stream> {
    prop::collection::vec((0i64..4, 0i64..120, 0u32..1000, 0i64..4, 0i64..2), 0..120).prop_map(|rows| {
        Stream {
            keys: rows.iter().map(|r| r.0).collect(),
            times: rows.iter().map(|r| r.1).collect(),
            amounts: rows.iter().map(|r| f64::from(r.2) / 10.0).collect(),
            countries: rows.iter().map(|r| r.3).collect(),
            partitions: rows.iter().map(|r| r.4).collect(),
        }
    })
}

fn window() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1i64..30, 0i64..5).prop_map(|(size, o)| WindowSpec::Tumbling { size, offset: o % size }),
        (1i64..8, 1i64..5, 0i64..3).prop_map(|(k, slide, o)| WindowSpec::Hopping {
            size: slide * k + (k % 3),
            slide,
            offset: o % slide
        }),
        (1i64..15).prop_map(|gap| WindowSpec::Session { gap }),
    ]
    .prop_filter("valid", |w| w.validate().is_ok())
}

fn config() -> impl Strategy<Value = EngineConfig> {
    (window(), 0i64..20, 0i64..20, 0usize..3, 1usize..3, 0usize..4).prop_map(
        |(w, delay, lateness, early, parts, cap)| {
            let mut c = EngineConfig::new(
                w,
                vec![
                    AggSpec::new("n", AggKind::Count, None),
                    AggSpec::new("total", AggKind::Sum, Some("amount")),
                    AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
                    AggSpec::new("first", AggKind::First, Some("amount")),
                    AggSpec::new("last", AggKind::Last, Some("amount")),
                ],
            );
            c.out_of_orderness = delay;
            c.allowed_lateness = lateness;
            c.partitions = parts;
            c.early = match early {
                0 => EarlyFiring::Never,
                1 => EarlyFiring::EveryUpdate,
                _ => EarlyFiring::When("countries >= 2 and n >= 3".into()),
            };
            if cap > 0 {
                c.max_keys = Some(cap); // the stream has 4 keys: evictions happen
            }
            c
        },
    )
}

/// Runs the stream cut at `cuts`, snapshotting and restoring at each cut when `restore`.
fn run(config: &EngineConfig, s: &Stream, cuts: &[usize], restore: bool) -> Output {
    let parts = config.partitions > 1;
    let mut engine = Engine::new(config.clone()).unwrap();
    let mut out = Output::for_layout(engine.layout());
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(s.keys.len())).collect();
    bounds.push(0);
    bounds.push(s.keys.len());
    bounds.sort_unstable();
    for w in bounds.windows(2) {
        let o = engine.process(&s.batch(w[0], w[1], parts), None).unwrap();
        out.append(o, w[0] as u64);
        if restore {
            engine = Engine::restore(config.clone(), &engine.snapshot()).unwrap();
        }
    }
    out.append(engine.flush(), 0);
    let size = engine.state_size();
    assert_eq!((size.keys, size.windows), (0, 0), "flush must empty the state");
    out
}

/// Runs the stream cut at `cuts`, keeping a changelog: a snapshot after the first cut, then the
/// changes after every later cut; at every cut the engine is rebuilt from that changelog.
fn run_from_changelog(config: &EngineConfig, s: &Stream, cuts: &[usize]) -> Output {
    let parts = config.partitions > 1;
    let mut engine = Engine::new(config.clone()).unwrap();
    engine.track_changes(true);
    let mut out = Output::for_layout(engine.layout());
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(s.keys.len())).collect();
    bounds.push(0);
    bounds.push(s.keys.len());
    bounds.sort_unstable();
    let mut log: Vec<Vec<u8>> = Vec::new();
    for w in bounds.windows(2) {
        let o = engine.process(&s.batch(w[0], w[1], parts), None).unwrap();
        out.append(o, w[0] as u64);
        if log.is_empty() {
            log.push(engine.snapshot());
            let _ = engine.take_changes(); // the snapshot holds them
        } else {
            log.push(engine.take_changes());
        }
        let mut rebuilt = Engine::restore(config.clone(), &log[0]).unwrap();
        for changes in &log[1..] {
            rebuilt.apply_changes(changes).unwrap();
        }
        rebuilt.track_changes(true);
        assert_eq!(rebuilt.snapshot(), engine.snapshot(), "snapshot + changes rebuild the state exactly");
        engine = rebuilt;
    }
    out.append(engine.flush(), 0);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn snapshot_plus_changes_continue_identically(
        config in config(), s in stream(), cuts in prop::collection::vec(0usize..120, 1..6)
    ) {
        prop_assert_eq!(run_from_changelog(&config, &s, &cuts), run(&config, &s, &[], false));
    }

    #[test]
    fn batch_boundaries_never_change_the_output(
        config in config(), s in stream(), cuts in prop::collection::vec(0usize..120, 0..6)
    ) {
        let whole = run(&config, &s, &[], false);
        let one_by_one: Vec<usize> = (1..s.keys.len()).collect();
        prop_assert_eq!(&run(&config, &s, &one_by_one, false), &whole);
        prop_assert_eq!(&run(&config, &s, &cuts, false), &whole);
    }

    #[test]
    fn snapshot_restore_continues_identically(
        config in config(), s in stream(), cuts in prop::collection::vec(0usize..120, 1..4)
    ) {
        prop_assert_eq!(run(&config, &s, &cuts, true), run(&config, &s, &[], false));
    }

    #[test]
    fn every_event_is_counted_once_per_window_or_returned_late(config in config(), s in stream()) {
        let out = run(&config, &s, &[], false);
        let engine_late = out.late_rows.len();
        // Tumbling windows partition time: final + update rows of the last emission per window
        // hold every accepted event exactly once (unless a cap evicted some).
        if let (WindowSpec::Tumbling { .. }, None) = (config.window, config.max_keys) {
            let mut last = std::collections::BTreeMap::new();
            for i in 0..out.len() {
                if out.kinds[i] != EmitKind::Early as u8 {
                    last.insert((out.keys[i], out.starts[i]), out.ints[0][i]);
                }
            }
            let counted: i64 = last.values().sum();
            prop_assert_eq!(counted as usize + engine_late, s.keys.len());
        }
    }
}

#[test]
fn rejected_batch_changes_nothing() {
    let config = EngineConfig::new(
        WindowSpec::Hopping { size: 10, slide: 5, offset: 0 },
        vec![AggSpec::new("total", AggKind::Sum, Some("amount"))],
    );
    let mut engine = Engine::new(config).unwrap();
    let amounts = [1.0, 2.0, 3.0];
    let ok = Batch { values: vec![Values::F64(&amounts)], ..Batch::new(&[1, 2, 3], &[1, 2, 3]) };
    engine.process(&ok, None).unwrap();
    let before = engine.snapshot();
    let bad_amounts = [1.0, 2.0, f64::NAN];
    let bad = Batch { values: vec![Values::F64(&bad_amounts)], ..Batch::new(&[1, 2, 3], &[4, 50, 6]) };
    assert!(matches!(engine.process(&bad, None), Err(CoreError::InvalidValue { row: 2, .. })));
    assert_eq!(engine.snapshot(), before);
    assert_eq!(engine.watermark(), 3, "the watermark did not see the rejected batch");
}

#[test]
fn state_follows_open_windows_not_events() {
    let config = EngineConfig::new(
        WindowSpec::Hopping { size: 300_000, slide: 60_000, offset: 0 },
        vec![AggSpec::new("n", AggKind::Count, None)],
    );
    let mut engine = Engine::new(config).unwrap();
    let mut peak_keys = 0;
    // 2M events over ~5.5 hours, each key active for about ten minutes: state must stay near
    // the number of keys active within one window, not grow with the events.
    for chunk in 0..200i64 {
        let times: Vec<i64> = (0..10_000).map(|i| (chunk * 10_000 + i) * 10).collect();
        let keys: Vec<i64> = times.iter().map(|t| t / 600_000 * 1_000 + t % 997).collect();
        engine.process(&Batch::new(&keys, &times), None).unwrap();
        peak_keys = peak_keys.max(engine.state_size().keys);
    }
    assert!(peak_keys <= 2 * 997, "peak keys {peak_keys}");
    let _ = engine.flush();
    assert_eq!(engine.state_size().keys, 0);
}

#[test]
fn early_firing_on_the_predicate_fires_once_per_window() {
    let mut config = EngineConfig::new(
        WindowSpec::Hopping { size: 300_000, slide: 60_000, offset: 0 },
        vec![
            AggSpec::new("n", AggKind::Count, None),
            AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
        ],
    );
    config.early = EarlyFiring::When("distinct(country) >= 3 and count >= 5".into());
    let mut engine = Engine::new(config).unwrap();
    let times = [0, 10_000, 20_000, 30_000, 40_000, 50_000];
    let countries = [1, 2, 3, 1, 1, 2];
    let batch = Batch { values: vec![Values::I64(&countries)], ..Batch::new(&[9; 6], &times) };
    let out = engine.process(&batch, None).unwrap();
    // The 5th event makes the predicate true for all five windows containing [0, 60s).
    assert_eq!(out.len(), 5);
    assert!(out.kinds.iter().all(|&k| k == EmitKind::Early as u8));
    assert_eq!(out.ints[0], vec![5; 5]);
    let finals = engine.flush();
    assert_eq!(finals.len(), 5);
    assert!(finals.kinds.iter().all(|&k| k == EmitKind::Final as u8));
    assert_eq!(finals.ints[0], vec![6; 5]);
}

#[test]
fn keys_seen_only_in_late_events_leave_no_state() {
    let config = EngineConfig::new(
        WindowSpec::Tumbling { size: 10, offset: 0 },
        vec![AggSpec::new("n", AggKind::Count, None)],
    );
    let mut engine = Engine::new(config).unwrap();
    engine.process(&Batch::new(&[1], &[100]), None).unwrap();
    let out = engine.process(&Batch::new(&[7, 8, 1], &[5, 6, 101]), None).unwrap();
    assert_eq!(out.late_rows, vec![0, 1]);
    assert_eq!(engine.state_size().keys, 1, "keys 7 and 8 were only late: no state for them");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Panes kept by pane time (`PanesByTime`) and per key (`PanesPerKey`) are two layouts of one state:
    /// same rows, snapshots and changelogs after every batch. With `wide`, some distinct values
    /// fall outside the bitmaps (beside the flat accumulators in `PanesByTime`).
    #[test]
    fn panes_by_time_and_per_key_agree(
        config in config(),
        s in stream(),
        cuts in prop::collection::vec(0usize..120, 0..5),
        wide in any::<bool>(),
    ) {
        let mut config = config;
        config.partitions = 1;
        let mut s = s;
        if wide {
            s.countries.iter_mut().filter(|c| **c == 3).for_each(|c| *c = 1_000);
        }
        let mut by_time = Engine::new(config.clone()).unwrap();
        let mut per_key = Engine::new(config.clone()).unwrap();
        per_key.panes_per_key();
        by_time.track_changes(true);
        per_key.track_changes(true);
        prop_assert!(!per_key.op.by_time());
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(s.keys.len())).collect();
        bounds.extend([0, s.keys.len()]);
        bounds.sort_unstable();
        for w in bounds.windows(2) {
            let a = by_time.process(&s.batch(w[0], w[1], false), None).unwrap();
            let b = per_key.process(&s.batch(w[0], w[1], false), None).unwrap();
            prop_assert_eq!(a, b);
            prop_assert_eq!(by_time.snapshot(), per_key.snapshot());
            prop_assert_eq!(by_time.take_changes(), per_key.take_changes(), "same changelog");
            prop_assert_eq!(by_time.state_size().windows, per_key.state_size().windows);
        }
        prop_assert_eq!(by_time.flush(), per_key.flush());
        prop_assert_eq!(by_time.state_size().keys, 0);
        let sessions = matches!(config.window, WindowSpec::Session { .. });
        prop_assert!(sessions || by_time.op.by_time(), "still kept by pane time");
    }
}

/// A key whose window fired but whose pane stays (allowed lateness) is in the changelog of the
/// pane-time layout too: a per-key reader of that changelog must not fire the window again.
#[test]
fn changelog_of_panes_by_time_names_keys_that_fired() {
    let mut config = EngineConfig::new(
        WindowSpec::Tumbling { size: 10, offset: 0 },
        vec![AggSpec::new("n", AggKind::Count, None)],
    );
    config.allowed_lateness = 50;
    let mut writer = Engine::new(config.clone()).unwrap();
    assert!(writer.op.by_time());
    writer.track_changes(true);
    writer.process(&Batch::new(&[2], &[100]), None).unwrap();
    let mut reader = Engine::restore(config.clone(), &writer.snapshot()).unwrap();
    reader.panes_per_key();
    let _ = writer.take_changes();
    // [100, 110) of key 2 fires; its pane stays until 159.
    let fired = writer.process(&Batch::new(&[3], &[115]), None).unwrap();
    assert_eq!((fired.len(), fired.keys[0], fired.ends[0]), (1, 2, 110));
    reader.apply_changes(&writer.take_changes()).unwrap();
    assert_eq!(reader.snapshot(), writer.snapshot());
    let (w, r) = (writer.flush(), reader.flush());
    assert_eq!(r.keys, w.keys, "the reader fires nothing twice");
}

/// Rows as comparable tuples, without the rows of keys `>= below`.
fn rows_below(out: &Output, below: i64) -> Vec<(i64, i64, i64, u8, i64)> {
    (0..out.len())
        .filter(|&i| out.keys[i] < below)
        .map(|i| (out.keys[i], out.starts[i], out.ends[i], out.kinds[i], out.ints[0][i]))
        .collect()
}

#[test]
fn state_shrinks_after_a_spike_and_the_remaining_keys_continue_identically() {
    for window in [
        WindowSpec::Hopping { size: 300_000, slide: 60_000, offset: 0 },
        WindowSpec::Tumbling { size: 60_000, offset: 0 },
        WindowSpec::Session { gap: 60_000 },
    ] {
        let config = EngineConfig::new(window, vec![AggSpec::new("n", AggKind::Count, None)]);
        // `spiked` sees 100k keys once, then only the 100 keys `plain` sees.
        let mut spiked = Engine::new(config.clone()).unwrap();
        let mut plain = Engine::new(config.clone()).unwrap();
        let spike: Vec<i64> = (1_000..101_000).collect();
        let spike_times: Vec<i64> = spike.iter().map(|k| k % 50_000).collect();
        spiked.process(&Batch::new(&spike, &spike_times), None).unwrap();
        let peak = spiked.state_size().bytes;
        let few: Vec<i64> = (0..100).collect();
        let mut got = Vec::new();
        let mut want = Vec::new();
        for step in 0..8i64 {
            // The spike's windows fire inside the first of these batches (the watermark moves
            // after every event), the table compacts at the batch end.
            let times: Vec<i64> = few.iter().map(|k| 400_000 + step * 70_000 + k).collect();
            got.extend(rows_below(&spiked.process(&Batch::new(&few, &times), None).unwrap(), 1_000));
            want.extend(rows_below(&plain.process(&Batch::new(&few, &times), None).unwrap(), 1_000));
            assert_eq!(spiked.state_size().keys, plain.state_size().keys);
            assert_eq!(spiked.state_size().windows, plain.state_size().windows);
        }
        let after = spiked.state_size().bytes;
        assert!(after * 20 < peak, "{window:?}: {after} bytes after the spike, {peak} at its peak");
        let mut restored = Engine::restore(config.clone(), &spiked.snapshot()).unwrap();
        let last = rows_below(&spiked.flush(), 1_000);
        assert_eq!(rows_below(&restored.flush(), 1_000), last, "{window:?}: restored after compaction");
        got.extend(last);
        want.extend(rows_below(&plain.flush(), 1_000));
        assert_eq!(got, want, "{window:?}");
        assert!(!got.is_empty());
    }
}

// -- `final_rows` off: the early rows only, the same state.

/// The rows of `out` whose kind is `Early`, with its late rows (what an engine with
/// `final_rows` off returns), and how many rows were of another kind.
fn early_rows(out: &Output) -> (Output, u64) {
    let keep: Vec<bool> = out.kinds.iter().map(|&k| k == EmitKind::Early as u8).collect();
    let mut early = out.clone();
    early.retain_rows_from(0, &keep);
    let closing = keep.iter().filter(|&&k| !k).count() as u64;
    (Output { withheld: closing, ..early }, closing)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// An engine with `final_rows` off returns exactly the early and late rows of one with it
    /// on and counts the others as withheld; after every batch (and at the end) both hold the
    /// same state: the same snapshot and changes bytes and counters. With `rebuild`, the engine
    /// without final rows is rebuilt from its changelog at every cut (state replaced key by key
    /// while windows are open, which the pane-time layout must see through when it counts).
    #[test]
    fn without_final_rows_only_the_early_rows_are_built_and_the_state_is_the_same(
        config in config(),
        s in stream(),
        cuts in prop::collection::vec(0usize..120, 0..6),
        advances in prop::collection::vec(0i64..140, 0..3),
        rebuild in any::<bool>(),
    ) {
        let parts = config.partitions > 1;
        let mut off_config = config.clone();
        off_config.final_rows = false;
        let mut on = Engine::new(config.clone()).unwrap();
        let mut off = Engine::new(off_config.clone()).unwrap();
        on.track_changes(true);
        off.track_changes(true);
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(s.keys.len())).collect();
        bounds.extend([0, s.keys.len()]);
        bounds.sort_unstable();
        let mut log: Vec<Vec<u8>> = Vec::new();
        for (i, w) in bounds.windows(2).enumerate() {
            let a = on.process(&s.batch(w[0], w[1], parts), None).unwrap();
            let b = off.process(&s.batch(w[0], w[1], parts), None).unwrap();
            prop_assert_eq!(&b, &early_rows(&a).0);
            if let Some(&t) = advances.get(i) {
                let (a, b) = (on.advance_to(t), off.advance_to(t));
                prop_assert_eq!(&b, &early_rows(&a).0);
            }
            prop_assert_eq!(on.counters(), off.counters());
            prop_assert_eq!(on.snapshot(), off.snapshot(), "same state bytes");
            let changes = on.take_changes();
            prop_assert_eq!(&changes, &off.take_changes(), "same changes");
            if rebuild {
                log.push(if log.is_empty() { on.snapshot() } else { changes });
                let mut rebuilt = Engine::restore(off_config.clone(), &log[0]).unwrap();
                for c in &log[1..] {
                    rebuilt.apply_changes(c).unwrap();
                }
                rebuilt.track_changes(true);
                prop_assert_eq!(rebuilt.snapshot(), off.snapshot());
                off = rebuilt;
            }
        }
        let (a, b) = (on.flush(), off.flush());
        prop_assert_eq!(&b, &early_rows(&a).0);
        prop_assert_eq!(on.counters(), off.counters());
        prop_assert_eq!(on.snapshot(), off.snapshot());
        prop_assert_eq!(on.take_changes(), off.take_changes());
        prop_assert_eq!((off.state_size().keys, off.state_size().windows), (0, 0));
    }
}

#[test]
fn without_final_rows_closing_windows_builds_no_row_and_frees_the_state() {
    let mut config = EngineConfig::new(
        WindowSpec::Hopping { size: 86_400_000, slide: 3_600_000, offset: 0 },
        vec![
            AggSpec::new("n", AggKind::Count, None),
            AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
        ],
    );
    config.early = EarlyFiring::When("n >= 25 and countries >= 4".into());
    config.final_rows = false;
    for per_key in [false, true] {
        let mut engine = Engine::new(config.clone()).unwrap();
        if per_key {
            engine.panes_per_key();
        }
        let keys: Vec<i64> = (0..10_000).collect();
        let times: Vec<i64> = keys.iter().map(|k| k * 100).collect();
        let countries = vec![1; keys.len()];
        let batch = Batch { values: vec![Values::I64(&countries)], ..Batch::new(&keys, &times) };
        assert!(engine.process(&batch, None).unwrap().is_empty());
        let out = engine.advance_to(3_600_000 - 1);
        assert_eq!((out.len(), out.withheld), (0, 10_000), "the window [-23 h, 1 h) closed for every key");
        let out = engine.flush();
        assert_eq!((out.len(), out.withheld), (0, 23 * 10_000));
        assert_eq!(engine.counters().emitted, 24 * 10_000);
        assert_eq!((engine.state_size().keys, engine.state_size().windows), (0, 0));
    }
}

/// State written before `final_rows` existed (format version 2, without checksum): an empty
/// engine's snapshot restores into an engine with the option on or off (the configuration check
/// reads the `Debug` form of the other fields), and the engine's own snapshot is that state in
/// format 3: the same fields, the eviction counter, a checksum.
#[test]
fn final_rows_is_not_part_of_the_state_bytes() {
    let mut config = EngineConfig::new(
        WindowSpec::Hopping { size: 300_000, slide: 60_000, offset: 0 },
        vec![
            AggSpec::new("n", AggKind::Count, None),
            AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
        ],
    );
    config.early = EarlyFiring::When("countries >= 3 and n >= 5".into());
    config.out_of_orderness = 5_000;
    let written_before = "465354520200537b01000000000000456e67696e65436f6e666967207b206b65795f636f6c756d6e3a20226b6579222c2074696d655f636f6c756d6e3a202274696d65222c2077696e646f773a20486f7070696e67207b2073697a653a203330303030302c20736c6964653a2036303030302c206f66667365743a2030207d2c206167677265676174696f6e733a205b41676753706563207b206e616d653a20226e222c206b696e643a20436f756e742c20636f6c756d6e3a204e6f6e65207d2c2041676753706563207b206e616d653a2022636f756e7472696573222c206b696e643a20436f756e7444697374696e63742c20636f6c756d6e3a20536f6d652822636f756e7472792229207d5d2c206f75745f6f665f6f726465726e6573733a20353030302c20616c6c6f7765645f6c6174656e6573733a20302c206561726c793a205768656e2822636f756e7472696573203e3d203320616e64206e203e3d203522292c20706172746974696f6e733a20312c2069646c655f74696d656f75743a204e6f6e65207d8813000000000000ffffffffffffffff000000000000008001000000000000000000000000000080000000000000000000000000000000000000000000000000000000000000000000";
    let bytes: Vec<u8> = (0..written_before.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&written_before[i..i + 2], 16).unwrap())
        .collect();
    for final_rows in [true, false] {
        config.final_rows = final_rows;
        let engine = Engine::new(config.clone()).unwrap();
        let restored = Engine::restore(config.clone(), &bytes).unwrap();
        assert_eq!(restored.snapshot(), engine.snapshot(), "final_rows={final_rows}");
        let mut v3 = bytes.clone();
        v3[4] = 3;
        v3.extend_from_slice(&0u64.to_le_bytes()); // no key evicted
        let crc = crate::snapshot::crc32(&v3);
        v3.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(engine.snapshot(), v3, "format 3: the fields of format 2, evictions, a checksum");
        let debug = format!("{config:?}")
            .replace(&format!(", final_rows: {final_rows}"), "")
            .replace(", max_keys: None", "");
        assert_eq!(config.fingerprint(), debug, "every other field, in its Debug form (no cap)");
    }
}

/// Changes that replace a key's panes while its old window is open (not a changelog of this
/// engine's own past, but valid bytes): the pane-time layout still lists the key in the old
/// pane, without data; no row is built for it, and none is counted when rows are not built.
#[test]
fn without_final_rows_a_key_whose_panes_were_replaced_is_not_counted() {
    let mut config = EngineConfig::new(
        WindowSpec::Tumbling { size: 10, offset: 0 },
        vec![AggSpec::new("n", AggKind::Count, None)],
    );
    config.out_of_orderness = 10;
    let mut other = Engine::new(config.clone()).unwrap();
    other.track_changes(true);
    other.process(&Batch::new(&[1], &[15]), None).unwrap(); // key 1 in [10, 20) only, watermark 5
    let changes = other.take_changes();
    let mut closed = Vec::new();
    for final_rows in [true, false] {
        config.final_rows = final_rows;
        let mut engine = Engine::new(config.clone()).unwrap();
        assert!(engine.op.by_time());
        engine.process(&Batch::new(&[1, 2], &[5, 6]), None).unwrap();
        engine.apply_changes(&changes).unwrap();
        let out = engine.advance_to(9); // [0, 10) closes: key 2 has data there, key 1 no more
        closed.push((out, engine.counters(), engine.snapshot()));
    }
    let (on, off) = (&closed[0], &closed[1]);
    assert_eq!((on.0.keys.clone(), on.0.withheld), (vec![2], 0));
    assert_eq!((off.0.len(), off.0.withheld), (0, 1));
    assert_eq!((on.1, &on.2), (off.1, &off.2));
}

#[test]
fn a_key_cap_evicts_the_key_with_the_oldest_latest_event() {
    let mut config = EngineConfig::new(
        WindowSpec::Session { gap: 100 },
        vec![AggSpec::new("total", AggKind::Sum, Some("amount"))],
    );
    config.max_keys = Some(2);
    let mut engine = Engine::new(config.clone()).unwrap();
    let push = |engine: &mut Engine, key: i64, t: i64| {
        let amount = [1.0];
        let keys = [key];
        let times = [t];
        let b = Batch { values: vec![Values::F64(&amount)], ..Batch::new(&keys, &times) };
        engine.process(&b, None).unwrap()
    };
    push(&mut engine, 1, 10);
    push(&mut engine, 2, 5); // key 2's latest event is older than key 1's
    push(&mut engine, 1, 20);
    assert_eq!(engine.counters().evicted, 0);
    let restored_before = engine.snapshot();
    push(&mut engine, 3, 30); // evicts key 2
    assert_eq!((engine.state_size().keys, engine.counters().evicted), (2, 1));
    let out = engine.flush();
    assert_eq!(out.keys, vec![1, 3], "the evicted key's session is dropped, not emitted");
    // a restored engine evicts the same key
    let mut again = Engine::restore(config.clone(), &restored_before).unwrap();
    push(&mut again, 3, 30);
    assert_eq!(again.flush().keys, vec![1, 3]);
    // the cap is configuration: it is checked on restore
    let mut other = config.clone();
    other.max_keys = Some(3);
    assert!(Engine::restore(other, &restored_before).is_err());
    config.max_keys = Some(0);
    assert!(Engine::new(config).is_err());
}

#[test]
fn without_a_cap_the_fingerprint_is_unchanged() {
    let config =
        EngineConfig::new(WindowSpec::Session { gap: 100 }, vec![AggSpec::new("n", AggKind::Count, None)]);
    assert!(!config.fingerprint().contains("max_keys"), "existing snapshots keep restoring");
}

/// One event of `key` at `t` with amount 1.
fn push_one(engine: &mut Engine, key: i64, t: i64) -> Output {
    let (amount, keys, times) = ([1.0], [key], [t]);
    let b = Batch { values: vec![Values::F64(&amount)], ..Batch::new(&keys, &times) };
    engine.process(&b, None).unwrap()
}

#[test]
fn a_key_cap_on_tumbling_and_hopping_windows_evicts_the_key_with_the_oldest_newest_pane() {
    for (window, partitions) in [
        (WindowSpec::Tumbling { size: 100, offset: 0 }, 1),
        (WindowSpec::Hopping { size: 100, slide: 50, offset: 0 }, 1),
        (WindowSpec::Hopping { size: 100, slide: 50, offset: 0 }, 2), // panes per key
    ] {
        let mut config = EngineConfig::new(window, vec![AggSpec::new("total", AggKind::Sum, Some("amount"))]);
        config.max_keys = Some(2);
        config.out_of_orderness = 1_000; // nothing fires before the flush
        config.partitions = partitions;
        let mut engine = Engine::new(config.clone()).unwrap();
        push_one(&mut engine, 2, 60); // key 2: newest pane 50 (hopping) or 0 (tumbling)
        push_one(&mut engine, 1, 10);
        push_one(&mut engine, 1, 160); // key 1 moves on to a newer pane
        push_one(&mut engine, 2, 20); // an older pane: key 2's newest pane stays
        assert_eq!(engine.counters().evicted, 0);
        let before = engine.snapshot();
        push_one(&mut engine, 3, 70); // evicts key 2
        assert_eq!((engine.state_size().keys, engine.counters().evicted), (2, 1), "{window:?}");
        let mut keys = engine.flush().keys;
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys, vec![1, 3], "the evicted key's windows are dropped, not emitted");
        // a restored engine evicts the same key, and counts on from the snapshot
        let mut again = Engine::restore(config.clone(), &before).unwrap();
        push_one(&mut again, 3, 70);
        push_one(&mut again, 2, 80); // key 2 comes back afresh and evicts key 3, whose pane is older than 1's
        assert_eq!(again.counters().evicted, 2);
        let out = again.flush();
        let twos: Vec<f64> = (0..out.len()).filter(|&i| out.keys[i] == 2).map(|i| out.floats[0][i]).collect();
        assert!(twos.iter().all(|&x| x == 1.0), "only the event after the eviction: {twos:?}");
        assert!(!out.keys.contains(&3), "{window:?}");
    }
}

/// Rows as comparable tuples: trigger, key, window, kind, every value's bits.
fn row_tuples(out: &Output, key_of: impl Fn(i64) -> i64) -> Vec<(u64, i64, i64, i64, u8, Vec<u64>)> {
    (0..out.len())
        .map(|i| {
            let values =
                out.ints.iter().map(|c| c[i] as u64).chain(out.floats.iter().map(|c| c[i].to_bits()));
            (out.triggers[i], key_of(out.keys[i]), out.starts[i], out.ends[i], out.kinds[i], values.collect())
        })
        .collect()
}

/// Rows and late rows of the engine without a cap over `s` where each `(row, key)` of `drops`
/// starts `key` afresh from `row` on (its later events get a new key, in one-by-one batches),
/// less the rows of a dropped key from its drop on; keys as in `s`.
#[allow(clippy::type_complexity)]
fn reference_with_drops(
    config: &EngineConfig,
    s: &Stream,
    drops: &[(usize, i64)],
) -> (Vec<(u64, i64, i64, i64, u8, Vec<u64>)>, Vec<u64>) {
    const GENERATIONS: i64 = 1_000;
    let parts = config.partitions > 1;
    let mut plain_config = config.clone();
    plain_config.max_keys = None;
    let mut plain = Engine::new(plain_config).unwrap();
    let mut generation = [0i64; 4];
    let mut dropped_at: std::collections::BTreeMap<i64, usize> = std::collections::BTreeMap::new(); // label -> row
    let mut want = Output::for_layout(plain.layout());
    let mut pending = drops.iter().peekable();
    for i in 0..s.keys.len() {
        while let Some(&(_, key)) = pending.next_if(|d| d.0 <= i) {
            dropped_at.entry(key * GENERATIONS + generation[key as usize]).or_insert(i);
            generation[key as usize] += 1;
        }
        let label = [s.keys[i] * GENERATIONS + generation[s.keys[i] as usize]];
        let mut one = s.batch(i, i + 1, parts);
        one.keys = &label;
        want.append(plain.process(&one, None).unwrap(), i as u64);
    }
    want.append(plain.flush(), 0);
    let alive = |label: i64, trigger: u64| {
        dropped_at.get(&label).is_none_or(|&at| trigger != NO_TRIGGER && (trigger as usize) < at)
    };
    let rows = row_tuples(&want, |k| k)
        .into_iter()
        .filter(|r| alive(r.1, r.0))
        .map(|mut r| {
            r.1 /= GENERATIONS;
            r
        })
        .collect();
    (rows, want.late_rows)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A capped engine is the uncapped engine over the same events where every eviction starts
    /// a new key: an oracle tracks which keys are live (an accepted event in a pane whose
    /// cleanup time is past the watermark), evicts the one with the oldest newest pane (ties by
    /// key) when a new key comes while `cap` are live; the rows of an evicted key from its
    /// eviction on are left out. Everything else (rows, values, late rows) is the same.
    #[test]
    fn a_capped_engine_is_the_uncapped_one_with_evicted_keys_started_afresh(
        config in config(), s in stream(), cap in 1usize..4,
    ) {
        prop_assume!(!matches!(config.window, WindowSpec::Session { .. }));
        let parts = config.partitions > 1;
        let mut capped_config = config.clone();
        capped_config.max_keys = Some(cap);
        let mut capped = Engine::new(capped_config).unwrap();
        let got = capped.process(&s.batch(0, s.keys.len(), parts), None).unwrap();
        let mut got_all = got.clone();
        got_all.append(capped.flush(), 0);

        // the oracle of live keys, over the watermark before each event (which keys do not move)
        let mut unkeyed = config.clone();
        unkeyed.max_keys = None;
        let mut clock = Engine::new(unkeyed).unwrap();
        let g = Geometry::of(&config.window).unwrap();
        let cleanup = |ps: i64| g.last_end(ps) - 1 + config.allowed_lateness;
        let mut newest: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new(); // key -> pane
        let mut evictions = Vec::new();
        for i in 0..s.keys.len() {
            let (key, t) = (s.keys[i], s.times[i]);
            let wm = clock.watermark();
            clock.process(&s.batch(i, i + 1, parts), None).unwrap();
            newest.retain(|_, ps| cleanup(*ps) > wm);
            let ps = g.pane_start(t);
            if cleanup(ps) <= wm {
                continue; // late: changes nothing
            }
            if let Some(n) = newest.get_mut(&key) {
                *n = (*n).max(ps);
            } else {
                if newest.len() >= cap {
                    let (&victim, _) = newest.iter().min_by_key(|(k, p)| (**p, **k)).unwrap();
                    newest.remove(&victim);
                    evictions.push((i, victim));
                }
                newest.insert(key, ps);
            }
        }
        let (want_rows, want_late) = reference_with_drops(&config, &s, &evictions);
        prop_assert_eq!(row_tuples(&got_all, |k| k), want_rows);
        prop_assert_eq!(&got.late_rows, &want_late);
        prop_assert_eq!(capped.counters().evicted, evictions.len() as u64);
    }

    /// Keys dropped by the caller (`process_dropping`) start afresh from their row on, in any
    /// batches: the rows are those of the engine over
    /// the same events where each drop starts a new key, less the dropped keys' rows from the
    /// drop on.
    #[test]
    fn dropped_keys_start_afresh(
        config in config(),
        s in stream(),
        picks in prop::collection::vec((0usize..120, 0i64..4), 0..12),
        cuts in prop::collection::vec(0usize..120, 0..4),
    ) {
        let mut config = config;
        config.max_keys = None;
        let parts = config.partitions > 1;
        let n = s.keys.len();
        let mut drops: Vec<(usize, i64)> = picks.into_iter().filter(|d| d.0 < n).collect();
        drops.sort_by_key(|d| d.0);
        let mut engine = Engine::new(config.clone()).unwrap();
        let mut got = Output::for_layout(engine.layout());
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(n)).collect();
        bounds.extend([0, n]);
        bounds.sort_unstable();
        for w in bounds.windows(2) {
            let here: Vec<(usize, i64)> =
                drops.iter().filter(|d| (w[0]..w[1]).contains(&d.0)).map(|&(r, k)| (r - w[0], k)).collect();
            got.append(engine.process_dropping(&s.batch(w[0], w[1], parts), None, &here).unwrap(), w[0] as u64);
        }
        got.append(engine.flush(), 0);
        let (want_rows, want_late) = reference_with_drops(&config, &s, &drops);
        prop_assert_eq!(row_tuples(&got, |k| k), want_rows);
        prop_assert_eq!(&got.late_rows, &want_late);
        prop_assert_eq!(engine.counters().evicted, 0, "the caller counts its drops");
    }
}
