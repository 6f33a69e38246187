//! # fraudstream core
//!
//! A keyed event-time window engine for real-time fraud detection, in plain Rust. Python
//! bindings (PyO3) live in `python/`, behind the `python` feature, and nowhere else.
//!
//! - [`time`]: event time as `i64` epoch milliseconds; the accepted ranges.
//! - [`batch`]: columnar batches, validated whole before any state changes.
//! - [`aggregate`]: count, sum, min, max, mean, exact count_distinct, first, last.
//! - [`predicate`]: alert conditions over aggregates, declared as data.
//! - [`window`]: tumbling/hopping windows over panes, session windows, timers, output.
//! - [`watermark`]: bounded out-of-orderness, per-partition minimum, idleness.
//! - [`engine`]: `process` / `advance_to` / `flush` / `snapshot` over the pieces above.
//! - [`decode`]: JSON message batches to columns, bad records to the dead-letter output.
//! - [`dedup`]: which events repeat a transaction id within a horizon of event time.
//! - [`queue`]: the bounded queue with backpressure between pipeline stages.
//! - [`records`]: the Kafka pipeline's output records, built for a whole batch at once.
//! - [`snapshot`]: versioned state bytes.
//! - [`join`]: the event-time temporal join over a versioned table; the lookup join.
//! - [`features`]: per-card and per-terminal rolling fraud features with delayed labels; model scoring.
//!
//! Semantics follow Apache Flink's event-time windows; see `docs/semantics.md`.

pub mod aggregate;
pub mod batch;
pub mod cooldown;
pub mod decode;
pub mod dedup;
pub mod engine;
pub mod error;
pub mod features;
pub mod join;
pub mod predicate;
pub mod prefetch;
pub mod queue;
pub mod records;
pub mod snapshot;
pub mod time;
pub mod watermark;
pub mod window;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, CoreResult};
