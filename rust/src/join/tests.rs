use proptest::prelude::*;

use super::lookup::LookupTable;
use super::*;

fn config(kind: JoinKind, table_disorder: i64, probe_disorder: i64) -> JoinConfig {
    JoinConfig { columns: vec!["a".into(), "b".into()], table_disorder, probe_disorder, kind }
}

fn up(j: &mut TemporalJoin, key: i64, time: i64, a: f64, delete: bool) -> Joined {
    j.update(&Updates { keys: &[key], times: &[time], values: &[&[a], &[a * 2.0]], deletes: Some(&[delete]) })
        .unwrap()
}

fn probe(j: &mut TemporalJoin, key: i64, time: i64, id: i64) -> Joined {
    j.process(&Probes { keys: &[key], times: &[time], ids: &[id] }).unwrap()
}

#[test]
fn probe_waits_for_the_table_watermark_and_takes_the_version_at_its_time() {
    let mut j = TemporalJoin::new(config(JoinKind::Left, 10, 0)).unwrap();
    up(&mut j, 1, 100, 1.0, false);
    assert!(probe(&mut j, 1, 150, 7).is_empty(), "table wm 90 < 150: waits");
    let out = up(&mut j, 1, 160, 2.0, false);
    assert!(out.is_empty(), "table wm 150 does not pass 150");
    let out = up(&mut j, 2, 161, 9.0, false);
    assert_eq!(out.ids, vec![7]);
    assert_eq!(out.values[0], vec![1.0], "the version valid at 150, not the later one at 160");
    assert_eq!(out.version_times, vec![100]);
}

#[test]
fn emitted_at_once_when_the_table_is_ahead() {
    let mut j = TemporalJoin::new(config(JoinKind::Left, 10, 0)).unwrap();
    up(&mut j, 1, 100, 1.0, false);
    up(&mut j, 1, 200, 2.0, false);
    let out = probe(&mut j, 1, 150, 7);
    assert_eq!(
        (out.ids.clone(), out.values[0].clone(), out.values[1].clone()),
        (vec![7], vec![1.0], vec![2.0])
    );
}

#[test]
fn deletes_unmatched_left_and_inner() {
    for kind in [JoinKind::Left, JoinKind::Inner] {
        let mut j = TemporalJoin::new(config(kind, 0, 0)).unwrap();
        up(&mut j, 1, 100, 1.0, false);
        up(&mut j, 1, 120, 0.0, true);
        up(&mut j, 5, 1000, 0.0, false);
        let out = j.process(&Probes { keys: &[1, 1, 2], times: &[110, 130, 130], ids: &[1, 2, 3] }).unwrap();
        match kind {
            JoinKind::Left => {
                assert_eq!(out.matched, vec![true, false, false]);
                assert!(out.values[0][1].is_nan() && out.version_times[2] == i64::MIN);
            }
            JoinKind::Inner => assert_eq!(out.ids, vec![1]),
        }
        assert_eq!((j.counters().matched, j.counters().unmatched), (1, 2));
    }
}

#[test]
fn late_updates_and_probes_are_counted_and_dropped() {
    let mut j = TemporalJoin::new(config(JoinKind::Left, 5, 5)).unwrap();
    let out = j
        .update(&Updates {
            keys: &[1, 1, 1],
            times: &[100, 96, 94],
            values: &[&[1.0, 2.0, 3.0], &[0.0; 3]],
            deletes: None,
        })
        .unwrap();
    assert_eq!(out.late_rows, vec![2], "94 < wm 95 is late; 96 is not");
    let out = j.process(&Probes { keys: &[1, 1, 1], times: &[50, 44, 45], ids: &[1, 2, 3] }).unwrap();
    assert_eq!(out.late_rows, vec![1]);
    assert_eq!(out.ids, vec![1, 3]);
    assert_eq!(j.counters().late_updates, 1);
    assert_eq!(j.counters().late_probes, 1);
}

#[test]
fn versions_before_the_horizon_are_freed_keeping_the_one_valid_there() {
    let mut j = TemporalJoin::new(config(JoinKind::Left, 30, 0)).unwrap();
    for t in [10, 20, 30, 40] {
        up(&mut j, 1, t, t as f64, false);
    }
    up(&mut j, 2, 15, 0.0, true);
    assert_eq!(j.state_size(), (2, 5, 0), "no probe yet: nothing freed");
    probe(&mut j, 1, 35, 1);
    assert_eq!(j.state_size(), (2, 5, 1), "table watermark 10: an update at 11..35 may still come");
    up(&mut j, 3, 100, 0.0, false);
    assert_eq!(j.state_size(), (2, 3, 0), "horizon 35: key 1 keeps 30 and 40, tombstone 15 goes");
    let out = probe(&mut j, 1, 36, 2);
    assert_eq!(out.values[0], vec![30.0]);
    // flush, then everything waits no more
    probe(&mut j, 1, 80, 3);
    assert_eq!(j.flush().values[0], vec![40.0]);
}

#[test]
fn a_tombstone_is_not_freed_while_an_older_upsert_can_still_arrive() {
    // table disorder 15: after the delete at 100 the table watermark is 85, so an upsert at
    // 85 is not late; it must not become the version valid at 115 (the delete is)
    let mut j = TemporalJoin::new(config(JoinKind::Left, 15, 0)).unwrap();
    probe(&mut j, 0, 0, 1);
    probe(&mut j, 0, 115, 2);
    up(&mut j, 0, 100, 0.0, true);
    up(&mut j, 0, 85, 7.0, false);
    let out = j.flush();
    assert_eq!((out.ids.clone(), out.matched.clone()), (vec![2], vec![false]));
}

#[test]
fn bad_batches_change_nothing() {
    let mut j = TemporalJoin::new(config(JoinKind::Left, 0, 0)).unwrap();
    let before = j.snapshot();
    assert!(j
        .update(&Updates { keys: &[1, 2], times: &[1], values: &[&[1.0, 2.0], &[1.0, 2.0]], deletes: None })
        .is_err());
    assert!(j.update(&Updates { keys: &[1], times: &[1], values: &[&[1.0]], deletes: None }).is_err());
    assert!(j
        .update(&Updates {
            keys: &[1, 2],
            times: &[1, -5],
            values: &[&[1.0, 2.0], &[1.0, 2.0]],
            deletes: None
        })
        .is_err());
    assert!(j.process(&Probes { keys: &[1, 2], times: &[1, i64::MAX], ids: &[1, 2] }).is_err());
    assert!(j.process(&Probes { keys: &[1], times: &[1], ids: &[] }).is_err());
    assert_eq!(j.snapshot(), before);
    assert!(TemporalJoin::new(JoinConfig {
        columns: vec!["a".into(), "a".into()],
        ..config(JoinKind::Left, 0, 0)
    })
    .is_err());
    assert!(TemporalJoin::new(config(JoinKind::Left, -1, 0)).is_err());
    assert!(TemporalJoin::new(JoinConfig {
        columns: vec!["matched".into()],
        ..config(JoinKind::Left, 0, 0)
    })
    .is_err());
    assert!(LookupTable::new(vec!["matched".into()]).is_err());
}

#[test]
fn bad_snapshot_bytes_are_errors() {
    let mut j = TemporalJoin::new(config(JoinKind::Left, 0, 0)).unwrap();
    up(&mut j, 1, 10, 1.0, false);
    probe(&mut j, 1, 20, 1);
    let snap = j.snapshot();
    for cut in 0..snap.len() {
        assert!(j.restore(&snap[..cut]).is_err());
    }
    let mut other = TemporalJoin::new(config(JoinKind::Inner, 0, 0)).unwrap();
    assert!(other.restore(&snap).is_err(), "another configuration");
    assert!(j.apply_changes(&snap).is_err(), "a snapshot is not changes");
    j.restore(&snap).unwrap();
    assert_eq!(j.snapshot(), snap);
}

#[test]
fn lookup_table_is_latest_by_arrival() {
    let mut t = LookupTable::new(vec!["a".into()]).unwrap();
    t.track_changes(true);
    t.update(&[1, 2, 1], &[&[1.0, 2.0, 3.0]], None).unwrap();
    t.update(&[2], &[&[0.0]], Some(&[true])).unwrap();
    let out = t.lookup(&[1, 2, 3]);
    assert_eq!(out.matched, vec![true, false, false]);
    assert_eq!(out.values[0][0], 3.0);
    let mut copy = LookupTable::new(vec!["a".into()]).unwrap();
    copy.restore(&LookupTable::new(vec!["a".into()]).unwrap().snapshot()).unwrap();
    copy.apply_changes(&t.take_changes()).unwrap();
    assert_eq!(copy.snapshot(), t.snapshot());
    assert!(t.update(&[1, 2], &[&[1.0]], None).is_err());
    assert!(copy.restore(&t.take_changes()).is_err());
}

// ---------------------------------------------------------------------------------------------
// Properties: batch cuts change nothing; snapshot + changes continue exactly

#[derive(Debug, Clone)]
enum Op {
    Update { key: i64, time: i64, value: f64, delete: bool },
    Probe { key: i64, time: i64, id: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..4, 0i64..200, -5.0f64..5.0, prop::bool::weighted(0.2))
            .prop_map(|(key, time, value, delete)| Op::Update { key, time, value, delete }),
        (0i64..5, 0i64..200, 0i64..1000).prop_map(|(key, time, id)| Op::Probe { key, time, id }),
    ]
}

/// Emitted rows of a run, late counts per side, final snapshot.
type Run = (Vec<(i64, i64, i64, bool, i64, u64, u64)>, u64, u64, Vec<u8>);

fn collect(out: &Joined, rows: &mut Vec<(i64, i64, i64, bool, i64, u64, u64)>) {
    for i in 0..out.len() {
        rows.push((
            out.keys[i],
            out.times[i],
            out.ids[i],
            out.matched[i],
            out.version_times[i],
            out.values[0][i].to_bits(),
            out.values[1][i].to_bits(),
        ));
    }
}

/// Runs `ops` cut into batches at `cuts` (a batch also ends where the side changes).
fn run(
    j: &mut TemporalJoin,
    ops: &[Op],
    cuts: &[bool],
    rows: &mut Vec<(i64, i64, i64, bool, i64, u64, u64)>,
) {
    let mut i = 0;
    while i < ops.len() {
        let mut end = i + 1;
        let same = |a: &Op, b: &Op| {
            matches!((a, b), (Op::Update { .. }, Op::Update { .. }) | (Op::Probe { .. }, Op::Probe { .. }))
        };
        while end < ops.len() && same(&ops[i], &ops[end]) && !cuts.get(end).copied().unwrap_or(true) {
            end += 1;
        }
        match &ops[i] {
            Op::Update { .. } => {
                let (mut keys, mut times, mut a, mut b, mut d) = (vec![], vec![], vec![], vec![], vec![]);
                for o in &ops[i..end] {
                    if let Op::Update { key, time, value, delete } = *o {
                        keys.push(key);
                        times.push(time);
                        a.push(value);
                        b.push(-value);
                        d.push(delete);
                    }
                }
                let out = j
                    .update(&Updates { keys: &keys, times: &times, values: &[&a, &b], deletes: Some(&d) })
                    .unwrap();
                collect(&out, rows);
            }
            Op::Probe { .. } => {
                let (mut keys, mut times, mut ids) = (vec![], vec![], vec![]);
                for o in &ops[i..end] {
                    if let Op::Probe { key, time, id } = *o {
                        keys.push(key);
                        times.push(time);
                        ids.push(id);
                    }
                }
                let out = j.process(&Probes { keys: &keys, times: &times, ids: &ids }).unwrap();
                collect(&out, rows);
            }
        }
        i = end;
    }
}

fn whole(kind: JoinKind, td: i64, pd: i64, ops: &[Op], cuts: &[bool]) -> Run {
    let mut j = TemporalJoin::new(config(kind, td, pd)).unwrap();
    let mut rows = vec![];
    run(&mut j, ops, cuts, &mut rows);
    let snap = j.snapshot();
    collect(&j.flush(), &mut rows);
    (rows, j.counters().late_updates, j.counters().late_probes, snap)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn batch_cuts_on_either_side_change_nothing(
        ops in prop::collection::vec(op(), 0..80),
        cuts in prop::collection::vec(any::<bool>(), 80),
        td in 0i64..30, pd in 0i64..30, inner in any::<bool>(),
    ) {
        let kind = if inner { JoinKind::Inner } else { JoinKind::Left };
        let one_by_one = whole(kind, td, pd, &ops, &[true; 80]);
        let batched = whole(kind, td, pd, &ops, &cuts);
        prop_assert_eq!(&one_by_one.0, &batched.0);
        prop_assert_eq!(one_by_one.1, batched.1);
        prop_assert_eq!(one_by_one.2, batched.2);
        prop_assert_eq!(&one_by_one.3, &batched.3, "state bytes depend on the rows, not the cuts");
    }

    #[test]
    fn snapshot_and_changes_continue_exactly(
        ops in prop::collection::vec(op(), 0..80),
        cuts in prop::collection::vec(any::<bool>(), 80),
        at in 0usize..80, td in 0i64..30, pd in 0i64..30,
    ) {
        let at = at.min(ops.len());
        let expected = whole(JoinKind::Left, td, pd, &ops, &cuts);
        // a snapshot at the start, then the changes of every batch applied to a replica
        let mut j = TemporalJoin::new(config(JoinKind::Left, td, pd)).unwrap();
        j.track_changes(true);
        let mut replica = TemporalJoin::new(config(JoinKind::Left, td, pd)).unwrap();
        replica.restore(&j.snapshot()).unwrap();
        let mut rows = vec![];
        run(&mut j, &ops[..at], &cuts, &mut rows);
        replica.apply_changes(&j.take_changes()).unwrap();
        prop_assert_eq!(replica.snapshot(), j.snapshot());
        // the replica continues where the original stopped
        let mut restored = TemporalJoin::new(config(JoinKind::Left, td, pd)).unwrap();
        restored.restore(&replica.snapshot()).unwrap();
        run(&mut restored, &ops[at..], &cuts[at..], &mut rows);
        let snap = restored.snapshot();
        collect(&restored.flush(), &mut rows);
        prop_assert_eq!(rows, expected.0);
        prop_assert_eq!(snap, expected.3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_input_is_a_result_never_a_panic(
        keys in prop::collection::vec(any::<i64>(), 0..20),
        times in prop::collection::vec(prop_oneof![any::<i64>(), 0i64..1000], 0..20),
        values in prop::collection::vec(any::<f64>(), 0..20),
        deletes in prop::collection::vec(any::<bool>(), 0..20),
        wm in any::<i64>(),
        disorder in any::<i64>(),
    ) {
        let _ = TemporalJoin::new(config(JoinKind::Left, disorder, disorder));
        let mut j = TemporalJoin::new(config(JoinKind::Left, 7, 3)).unwrap();
        let _ = j.update(&Updates { keys: &keys, times: &times, values: &[&values, &values], deletes: Some(&deletes) });
        let _ = j.process(&Probes { keys: &keys, times: &times, ids: &keys });
        let _ = j.advance_table_to(wm);
        let _ = j.update(&Updates { keys: &keys, times: &times, values: &[&values, &values], deletes: None });
        let _ = j.flush();
        let snap = j.snapshot();
        let mut copy = TemporalJoin::new(config(JoinKind::Left, 7, 3)).unwrap();
        copy.restore(&snap).unwrap();
        prop_assert_eq!(copy.snapshot(), snap);
    }

    #[test]
    fn corrupt_state_bytes_are_errors_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        flip in any::<usize>(),
        cut in any::<usize>(),
    ) {
        let mut j = TemporalJoin::new(config(JoinKind::Left, 0, 0)).unwrap();
        let _ = j.restore(&bytes);
        let _ = j.apply_changes(&bytes);
        up(&mut j, 1, 10, 1.0, false);
        up(&mut j, 1, 20, 0.0, true);
        probe(&mut j, 2, 30, 5);
        let snap = j.snapshot();
        let mut bad = snap.clone();
        let at = flip % bad.len();
        bad[at] ^= 0x5a;
        let mut fresh = TemporalJoin::new(config(JoinKind::Left, 0, 0)).unwrap();
        let before = fresh.snapshot();
        if fresh.restore(&bad).is_err() {
            prop_assert_eq!(fresh.snapshot(), before, "a refused snapshot changes nothing");
        }
        let _ = fresh.restore(&snap[..cut % (snap.len() + 1)]);
        let mut t = LookupTable::new(vec!["a".into()]).unwrap();
        let _ = t.restore(&bytes);
        let _ = t.apply_changes(&bad);
    }
}
