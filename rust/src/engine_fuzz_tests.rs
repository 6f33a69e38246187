//! Fuzzing the batch entry point (issue 8): arbitrary input, valid or not, never panics, and a
//! rejected batch leaves the state exactly as it was; corrupted state bytes are errors.

use proptest::prelude::*;

use super::*;

/// Event times: mostly valid (also at both ends of the supported range), some anything at all.
fn fuzz_time() -> impl Strategy<Value = i64> {
    use crate::time::{MAX_EVENT_TIME, MIN_EVENT_TIME};
    prop_oneof![
        6 => 0i64..200,
        2 => (MAX_EVENT_TIME - 200)..=MAX_EVENT_TIME,
        1 => any::<i64>(),
        1 => prop_oneof![
            Just(MIN_EVENT_TIME),
            Just(-1),
            Just(MAX_EVENT_TIME + 1),
            Just(i64::MIN),
            Just(i64::MAX)
        ],
    ]
}

/// Values: mostly ordinary amounts, some NaN, infinities, extremes and arbitrary bit patterns.
fn fuzz_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (0u32..1000).prop_map(|x| f64::from(x) / 10.0),
        1 => any::<u64>().prop_map(f64::from_bits),
        1 => prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(-0.0),
            Just(f64::MIN_POSITIVE)
        ],
    ]
}

/// A batch as columns that may disagree: lengths, partitions out of range, a value column
/// missing or of the other type.
#[derive(Debug, Clone)]
struct FuzzBatch {
    keys: Vec<i64>,
    times: Vec<i64>,
    amounts: Vec<f64>,
    countries: Vec<i64>,
    partitions: Option<Vec<i64>>,
    amounts_as_ints: bool,
    missing_value: bool,
    now: Option<i64>,
}

impl FuzzBatch {
    fn batch(&self) -> (Batch<'_>, Vec<i64>) {
        let ints: Vec<i64> = self.amounts.iter().map(|a| a.to_bits() as i64).collect();
        (
            Batch {
                keys: &self.keys,
                times: &self.times,
                partitions: self.partitions.as_deref(),
                values: Vec::new(),
            },
            ints,
        )
    }
}

fn fuzz_batch() -> impl Strategy<Value = FuzzBatch> {
    prop_oneof![3 => Just(true), 2 => Just(false)].prop_flat_map(fuzz_batch_of)
}

/// A clean batch (every row valid, so state builds up) or a dirty one (anything goes).
fn fuzz_batch_of(clean: bool) -> impl Strategy<Value = FuzzBatch> {
    let (time, amount) = if clean {
        (prop_oneof![0i64..200].boxed(), (0u32..1000).prop_map(|x| f64::from(x) / 10.0).boxed())
    } else {
        (fuzz_time().boxed(), fuzz_f64().boxed())
    };
    let row = (
        prop_oneof![4 => 0i64..4, 1 => any::<i64>()],
        time,
        amount,
        prop_oneof![4 => 0i64..4, 1 => any::<i64>()],
        prop_oneof![8 => 0i64..2, 1 => any::<i64>()],
    );
    let dirty = !clean;
    (
        prop::collection::vec(row, 0..40),
        if dirty { (0usize..12).boxed() } else { Just(99usize).boxed() },
        any::<bool>(),
        prop::bool::weighted(if dirty { 0.3 } else { 0.0 }),
        prop::bool::weighted(if dirty { 0.05 } else { 0.0 }),
        prop::bool::weighted(if dirty { 0.05 } else { 0.0 }),
        prop_oneof![3 => Just(None), 2 => (0i64..1_000).prop_map(Some), 1 => any::<i64>().prop_map(Some)],
    )
        .prop_map(|(rows, resize, grow, with_partitions, amounts_as_ints, missing_value, now)| {
            let mut b = FuzzBatch {
                keys: rows.iter().map(|r| r.0).collect(),
                times: rows.iter().map(|r| r.1).collect(),
                amounts: rows.iter().map(|r| r.2).collect(),
                countries: rows.iter().map(|r| r.3).collect(),
                partitions: with_partitions.then(|| rows.iter().map(|r| r.4).collect()),
                amounts_as_ints,
                missing_value,
                now,
            };
            // one column (of five) one row longer or shorter than the keys, now and then
            match (resize, grow) {
                (0, true) => b.times.push(1),
                (0, false) => drop(b.times.pop()),
                (1, true) => b.amounts.push(1.0),
                (1, false) => drop(b.amounts.pop()),
                (2, true) => b.countries.push(1),
                (2, false) => drop(b.countries.pop()),
                (3, true) => b.keys.push(1),
                (3, false) => drop(b.keys.pop()),
                (4, _) => {
                    if let Some(p) = b.partitions.as_mut() {
                        p.push(0);
                    }
                }
                _ => {}
            }
            b
        })
}

/// Configurations at the extremes too: the largest durations, offsets and lateness, idleness.
fn fuzz_config() -> impl Strategy<Value = EngineConfig> {
    use crate::time::MAX_DURATION;
    let extreme_window = prop_oneof![
        (1i64..8).prop_map(|k| WindowSpec::Tumbling { size: MAX_DURATION / k, offset: MAX_DURATION / k - 1 }),
        (1i64..8).prop_map(|k| WindowSpec::Hopping {
            size: MAX_DURATION - MAX_DURATION % k,
            slide: MAX_DURATION / k,
            offset: 0
        }),
        Just(WindowSpec::Session { gap: MAX_DURATION }),
    ];
    let duration = prop_oneof![3 => 0i64..20, 1 => Just(MAX_DURATION), 1 => 0..=MAX_DURATION];
    (
        config(),
        prop_oneof![3 => window(), 1 => extreme_window],
        duration.clone(),
        duration,
        prop_oneof![3 => Just(None), 1 => (1i64..50).prop_map(Some), 1 => Just(Some(MAX_DURATION))],
    )
        .prop_map(|(mut c, w, delay, lateness, idle)| {
            c.window = w;
            c.out_of_orderness = delay;
            c.allowed_lateness = lateness;
            c.idle_timeout = idle;
            c
        })
}

/// Processes `b` and checks the property: an error leaves snapshot and watermark unchanged.
fn process_checked(engine: &mut Engine, b: &FuzzBatch) -> Result<(), TestCaseError> {
    let (mut batch, ints) = b.batch();
    let amounts = if b.amounts_as_ints { Values::I64(&ints) } else { Values::F64(&b.amounts) };
    batch.values = vec![amounts, Values::I64(&b.countries)];
    if b.missing_value {
        batch.values.pop();
    }
    let before = engine.snapshot();
    let watermark = engine.watermark();
    match engine.process(&batch, b.now) {
        Ok(out) => prop_assert_eq!(out.len(), out.kinds.len()),
        Err(err) => {
            prop_assert!(!err.to_string().is_empty());
            prop_assert_eq!(engine.snapshot(), before, "rejected batch changed the state: {}", err);
            prop_assert_eq!(engine.watermark(), watermark);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn arbitrary_batches_never_panic_and_rejected_ones_change_nothing(
        config in fuzz_config(), batches in prop::collection::vec(fuzz_batch(), 1..8)
    ) {
        let Ok(mut engine) = Engine::new(config.clone()) else { return Ok(()) };
        engine.track_changes(true);
        for b in &batches {
            process_checked(&mut engine, b)?;
            let _ = engine.tick(b.now.unwrap_or(0));
        }
        // the state is still whole: it round-trips, and flushing empties it
        let restored = Engine::restore(config, &engine.snapshot()).unwrap();
        prop_assert_eq!(restored.snapshot(), engine.snapshot());
        let _ = engine.take_changes();
        let _ = engine.advance_to(crate::time::MAX_EVENT_TIME);
        let _ = engine.flush();
        let size = engine.state_size();
        prop_assert_eq!((size.keys, size.windows), (0, 0));
    }

    #[test]
    fn corrupted_snapshots_and_changes_are_errors_not_panics(
        config in config(),
        s in stream(),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let parts = config.partitions > 1;
        let mut engine = Engine::new(config.clone()).unwrap();
        engine.track_changes(true);
        engine.process(&s.batch(0, s.keys.len(), parts), None).unwrap();
        let snapshot = engine.snapshot();
        let changes = engine.take_changes();
        let _ = Engine::restore(config.clone(), &garbage);
        let _ = Engine::restore(config.clone(), &snapshot[..cut.index(snapshot.len() + 1)]);
        for bytes in [&snapshot, &changes] {
            let mut bad = bytes.clone();
            if !bad.is_empty() {
                for (at, x) in &flips {
                    let i = at.index(bad.len());
                    bad[i] ^= x;
                }
            }
            let _ = Engine::restore(config.clone(), &bad);
            let mut target = Engine::restore(config.clone(), &snapshot).unwrap();
            let _ = target.apply_changes(&bad);
            let _ = target.apply_changes(&garbage);
        }
    }
}
