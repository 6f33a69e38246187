#![allow(missing_docs)]
//! Criterion benchmarks of the core engine: HOP(5 min, 1 min) count + sum + count_distinct per
//! card over 100k cards with 5 s of disorder, the workload of `benches/window_throughput.py`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fraudstream::aggregate::{AggKind, AggSpec};
use fraudstream::batch::{Batch, Values};
use fraudstream::engine::{EarlyFiring, Engine, EngineConfig};
use fraudstream::window::WindowSpec;

struct Events {
    keys: Vec<i64>,
    times: Vec<i64>,
    amounts: Vec<f64>,
    countries: Vec<i64>,
}

/// Deterministic pseudo-random stream (xorshift): skewed keys, 10k events/s, 5 s disorder.
fn events(n: usize) -> Events {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut e = Events { keys: vec![], times: vec![], amounts: vec![], countries: vec![] };
    for i in 0..n {
        let r = next();
        let hot = r % 4 == 0;
        e.keys.push(if hot { (r >> 8) as i64 % 1_000 } else { (r >> 8) as i64 % 100_000 });
        e.times.push(1_700_000_000_000 + i as i64 / 10 + (r >> 40) as i64 % 5_000);
        e.amounts.push(((r >> 20) % 50_000) as f64 / 100.0);
        e.countries.push(((r >> 32) % 30) as i64);
    }
    e
}

fn config(early: EarlyFiring) -> EngineConfig {
    let window = WindowSpec::Hopping { size: 300_000, slide: 60_000, offset: 0 };
    let mut c = EngineConfig::new(
        window,
        vec![
            AggSpec::new("n", AggKind::Count, None),
            AggSpec::new("total", AggKind::Sum, Some("amount")),
            AggSpec::new("countries", AggKind::CountDistinct, Some("country")),
        ],
    );
    c.out_of_orderness = 5_000;
    c.early = early;
    c
}

fn bench(c: &mut Criterion) {
    let n = 1_000_000;
    let e = events(n);
    let mut group = c.benchmark_group("hop_5m_1m");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(10);
    for (name, early) in [
        ("final", EarlyFiring::Never),
        ("alert_predicate", EarlyFiring::When("countries >= 3 and n >= 5".into())),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut engine = Engine::new(config(early.clone())).unwrap();
                let mut rows = 0;
                for start in (0..n).step_by(65_536) {
                    let end = (start + 65_536).min(n);
                    let batch = Batch {
                        values: vec![
                            Values::F64(&e.amounts[start..end]),
                            Values::I64(&e.countries[start..end]),
                        ],
                        ..Batch::new(&e.keys[start..end], &e.times[start..end])
                    };
                    rows += engine.process(&batch, None).unwrap().len();
                }
                rows + engine.flush().len()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
