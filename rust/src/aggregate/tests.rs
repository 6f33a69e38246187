//! Tests of the aggregates: every function, merges, distinct sets, state bytes.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::batch::{Batch, Values};
use crate::snapshot::{Reader, Writer};

fn layout() -> Layout {
    Layout::new(&[
        AggSpec::new("n", AggKind::Count, None),
        AggSpec::new("total", AggKind::Sum, Some("amount")),
        AggSpec::new("lo", AggKind::Min, Some("amount")),
        AggSpec::new("hi", AggKind::Max, Some("amount")),
        AggSpec::new("avg", AggKind::Mean, Some("amount")),
        AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
        AggSpec::new("first", AggKind::First, Some("amount")),
        AggSpec::new("last", AggKind::Last, Some("amount")),
    ])
    .unwrap()
}

fn add_all(l: &Layout, acc: &mut Acc, times: &[i64], amounts: &[f64], countries: &[i64]) {
    let keys = vec![0; times.len()];
    let b = Batch { values: vec![Values::F64(amounts), Values::I64(countries)], ..Batch::new(&keys, times) };
    for (row, &t) in times.iter().enumerate() {
        l.add(acc, &b, row, t);
    }
}

#[test]
fn columns_in_order_of_first_use() {
    assert_eq!(layout().columns(), ["amount", "country"]);
    assert_eq!(layout().output_widths(), (2, 6));
}

#[test]
fn every_function_over_one_accumulator() {
    let l = layout();
    let mut acc = l.new_acc();
    add_all(&l, &mut acc, &[5, 3, 9, 9], &[10.0, 2.0, 7.0, 8.0], &[1, 2, 1, 3]);
    let v = |i| l.value(&acc, i);
    assert_eq!((v(0), v(1), v(2), v(3), v(4), v(5)), (4.0, 27.0, 2.0, 10.0, 6.75, 3.0));
    assert_eq!(v(6), 2.0, "first = value at the earliest time");
    assert_eq!(v(7), 8.0, "last = later arrival among equal latest times");
}

#[test]
fn merge_equals_adding_everything_to_one() {
    let l = layout();
    let (mut a, mut b, mut whole) = (l.new_acc(), l.new_acc(), l.new_acc());
    add_all(&l, &mut a, &[1, 2], &[1.0, 2.0], &[7, 8]);
    add_all(&l, &mut b, &[3, 4], &[3.0, 4.0], &[8, 9]);
    add_all(&l, &mut whole, &[1, 2, 3, 4], &[1.0, 2.0, 3.0, 4.0], &[7, 8, 8, 9]);
    l.merge(&mut a, &b);
    for i in 0..8 {
        assert_eq!(l.value(&a, i), l.value(&whole, i), "aggregate {i}");
    }
}

#[test]
fn distinct_set_spills_to_a_hash_set_exactly() {
    let mut s = DistinctSet::default();
    for v in 0..100 {
        s.insert(v % 70);
    }
    assert!(matches!(s, DistinctSet::Large(_)));
    assert_eq!(s.len(), 70);
}

fn distinct_layout() -> Layout {
    Layout::new(&[
        AggSpec::new("n", AggKind::Count, None),
        AggSpec::new("a", AggKind::CountDistinct, Some("x")),
        AggSpec::new("s", AggKind::Sum, Some("y")),
        AggSpec::new("b", AggKind::CountDistinct, Some("y")),
    ])
    .unwrap()
}

fn add_values(l: &Layout, acc: &mut Acc, xs: &[i64]) {
    let keys = vec![0; xs.len()];
    let ys: Vec<f64> = xs.iter().map(|&x| (x % 7) as f64).collect();
    let b = Batch { values: vec![Values::I64(xs), Values::F64(&ys)], ..Batch::new(&keys, &keys) };
    for row in 0..xs.len() {
        l.add(acc, &b, row, 0);
    }
}

/// Values around the bitmap bounds, small codes and large ids.
fn value() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..64, -3i64..3, 60i64..70, any::<i64>(), Just(i64::MIN), Just(i64::MAX)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The compact distinct set (bitmap for [0, 64) + inline/hashed rest) against a BTreeSet:
    /// add, merge, snapshot round trip and reset.
    #[test]
    fn compact_distinct_set_matches_btreeset(
        xs in proptest::collection::vec(value(), 0..80),
        ys in proptest::collection::vec(value(), 0..80),
    ) {
        let l = distinct_layout();
        let (mut a, mut b) = (l.new_acc(), l.new_acc());
        add_values(&l, &mut a, &xs);
        add_values(&l, &mut b, &ys);
        let oracle_a: BTreeSet<i64> = xs.iter().copied().collect();
        prop_assert_eq!(l.value(&a, 1), oracle_a.len() as f64);
        prop_assert_eq!(a.distinct_values(1, 0), oracle_a.iter().copied().collect::<Vec<_>>());
        l.merge(&mut a, &b);
        let oracle: BTreeSet<i64> = xs.iter().chain(&ys).copied().collect();
        prop_assert_eq!(l.value(&a, 1), oracle.len() as f64);
        prop_assert_eq!(a.distinct_values(1, 0), oracle.iter().copied().collect::<Vec<_>>());
        let ys_oracle: BTreeSet<i64> = xs.iter().chain(&ys).map(|&x| Values::F64(&[(x % 7) as f64]).identity(0)).collect();
        prop_assert_eq!(l.value(&a, 3), ys_oracle.len() as f64);
        prop_assert_eq!(a.count, (xs.len() + ys.len()) as u64);

        let mut w = Writer::default();
        l.write_acc(&a, &mut w);
        let bytes = w.into_bytes();
        let back = l.read_acc(&mut Reader::new(&bytes)).unwrap();
        let mut w2 = Writer::default();
        l.write_acc(&back, &mut w2);
        prop_assert_eq!(w2.into_bytes(), bytes, "round trip gives the same bytes");
        prop_assert_eq!(l.value(&back, 1), oracle.len() as f64);

        l.reset(&mut a);
        prop_assert_eq!(l.value(&a, 1), 0.0);
        prop_assert_eq!(l.value(&a, 3), 0.0);
        add_values(&l, &mut a, &ys);
        let oracle_b: BTreeSet<i64> = ys.iter().copied().collect();
        prop_assert_eq!(a.distinct_values(1, 0), oracle_b.iter().copied().collect::<Vec<_>>());
    }
}

#[test]
fn accumulator_is_compact() {
    assert_eq!(std::mem::size_of::<Acc>(), 56);
}

#[test]
fn configuration_errors() {
    assert!(Layout::new(&[]).is_err());
    assert!(Layout::new(&[AggSpec::new("s", AggKind::Sum, None)]).is_err());
    assert!(Layout::new(&[AggSpec::new("n", AggKind::Count, Some("x"))]).is_err());
    let dup = [AggSpec::new("n", AggKind::Count, None), AggSpec::new("n", AggKind::Count, None)];
    assert!(Layout::new(&dup).is_err());
    assert!("median".parse::<AggKind>().is_err());
    assert_eq!("avg".parse::<AggKind>().unwrap(), AggKind::Mean);
}

#[test]
fn snapshot_round_trip() {
    let l = layout();
    let mut acc = l.new_acc();
    add_all(&l, &mut acc, &[5, 3], &[10.0, 2.0], &[1, 2]);
    let mut w = Writer::default();
    l.write_acc(&acc, &mut w);
    let bytes = w.into_bytes();
    let back = l.read_acc(&mut Reader::new(&bytes)).unwrap();
    for i in 0..8 {
        assert_eq!(l.value(&acc, i).to_bits(), l.value(&back, i).to_bits());
    }
}
