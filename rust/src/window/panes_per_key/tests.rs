//! Tests of the per-key layout: cache-line fit, the window combiner, inline capacity.

use super::*;
use crate::batch::Batch;

fn fits_cache_lines<const N: usize>() {
    assert_eq!(std::mem::offset_of!(KeyState<N>, panes) + std::mem::offset_of!(Panes<N>, inline), 56);
    assert_eq!(
        std::mem::size_of::<KeyState<N>>(),
        56 + 64 * N,
        "key + head fit one line, then one line per inline pane"
    );
}

#[test]
fn hot_state_fits_cache_lines() {
    assert_eq!(std::mem::size_of::<Pane>(), 64, "a pane is one cache line");
    fits_cache_lines::<2>();
    fits_cache_lines::<3>();
    fits_cache_lines::<4>();
    fits_cache_lines::<7>();
}

proptest::proptest! {
    /// Window aggregates from suffixes and a running prefix equal merging each window's
    /// panes one by one, for every window of a pane (dyadic amounts: sums exact).
    #[test]
    fn window_combos_equal_direct_merges(
        panes in proptest::collection::vec((0i64..3, proptest::collection::vec((0i64..8, 0i64..70), 1..4)), 1..12),
        pick in 0usize..12,
        size_panes in 1i64..6,
    ) {
        use crate::aggregate::{AggKind, AggSpec};
        use crate::batch::Values;
        let layout = Layout::new(&[
            AggSpec::new("n", AggKind::Count, None),
            AggSpec::new("s", AggKind::Sum, Some("x")),
            AggSpec::new("lo", AggKind::Min, Some("x")),
            AggSpec::new("first", AggKind::First, Some("x")),
            AggSpec::new("last", AggKind::Last, Some("x")),
            AggSpec::new("d", AggKind::CountDistinct, Some("c")),
        ]).unwrap();
        // panes 10 ms long, gaps of 0..3 panes between them
        let mut start = 0;
        let mut list = Vec::new();
        for (gap, events) in &panes {
            start += 10 * (gap + 1);
            let xs: Vec<f64> = events.iter().map(|e| e.0 as f64 / 4.0).collect();
            let cs: Vec<i64> = events.iter().map(|e| e.1).collect();
            let times: Vec<i64> = events.iter().enumerate().map(|(i, _)| start + i as i64).collect();
            let keys = vec![0; xs.len()];
            let b = Batch { values: vec![Values::F64(&xs), Values::I64(&cs)], ..Batch::new(&keys, &times) };
            let mut acc = layout.new_acc();
            for (row, &t) in times.iter().enumerate() {
                layout.add(&mut acc, &b, row, t);
            }
            list.push(Pane { start, acc });
        }
        let idx = pick % list.len();
        let g = geo(10 * size_panes, 10);
        let ps = list[idx].start;
        let panes = PaneList { layout: &layout, panes: &list };
        let mut combos = WindowCombos::new(layout.new_acc());
        combos.start(&panes, idx, g.first_end(ps) - g.size);
        let (mut got, mut want) = (layout.new_acc(), layout.new_acc());
        let mut end = g.first_end(ps);
        while end <= g.last_end(ps) {
            let window = (end - g.size, end);
            combos.window(&panes, window, &mut got);
            combine(&panes, window, &mut want);
            for agg in 0..6 {
                proptest::prop_assert_eq!(layout.value(&got, agg).to_bits(), layout.value(&want, agg).to_bits(), "agg {} window {:?}", agg, window);
            }
            end += g.slide;
        }
    }
}

fn geo(size: i64, slide: i64) -> Geometry {
    Geometry::of(&crate::window::WindowSpec::Hopping { size, slide, offset: 0 }).unwrap()
}

#[test]
fn inline_capacity_follows_the_geometry() {
    // HOP(5 min, 1 min) with 5 s of disorder: panes of 5 windows, one more for disorder,
    // one opened by a jump ahead.
    assert_eq!(inline_panes(&geo(300_000, 60_000), 0, Some(5_000)), 7);
    assert_eq!(inline_panes(&geo(300_000, 60_000), 0, Some(0)), 7);
    assert_eq!(inline_panes(&geo(60_000, 60_000), 0, Some(0)), 2, "tumbling, in order");
    assert_eq!(inline_panes(&geo(60_000, 60_000), 0, Some(5_000)), 3, "tumbling, disorder");
    assert_eq!(inline_panes(&geo(60_000, 60_000), 60_000, Some(5_000)), 4, "with lateness");
    assert_eq!(inline_panes(&geo(600_000, 300_000), 0, Some(1_000)), 4);
    assert_eq!(inline_panes(&geo(3_600_000, 60_000), 0, Some(0)), 7, "capped");
    assert_eq!(inline_panes(&geo(60_000, 60_000), 0, None), 7, "unbounded disorder");
    assert_eq!(inline_panes(&geo(i64::MAX / 2, 1), i64::MAX, Some(i64::MAX)), 7, "no overflow");
}
