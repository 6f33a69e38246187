//! Watermarks: bounded out-of-orderness per partition, combined by minimum, with idleness.
//!
//! Invariants:
//! - A partition's watermark is `max event time seen - delay` (Flink's
//!   `WATERMARK FOR t AS t - INTERVAL 'delay'`); one that has seen nothing holds the combined
//!   watermark back, unless it is idle.
//! - The combined watermark is the minimum over non-idle partitions, and it never moves
//!   backwards: re-activated partitions and `advance_to` can only raise it.
//! - A partition is idle once the processing time passed to [`WatermarkTracker::tick`] is more
//!   than the idle timeout past its last event; its next event makes it active again. The core
//!   never reads a clock itself, so replays are deterministic.

use crate::snapshot::{Reader, Writer};
use crate::time::{Millis, WATERMARK_START};
use crate::{CoreError, CoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionClock {
    max_time: Millis,
    last_active: Option<Millis>,
    idle: bool,
}

impl PartitionClock {
    fn new() -> Self {
        PartitionClock { max_time: WATERMARK_START, last_active: None, idle: false }
    }
}

/// Most input partitions one tracker (one engine) combines: far above any Kafka topic's
/// partition count, and it keeps a bad setting (`partitions=10**9` asked for 32 GB) a
/// configuration error instead of an aborted process.
pub const MAX_PARTITIONS: usize = 1 << 16;

/// Tracks the combined event-time watermark of several partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkTracker {
    delay: Millis,
    idle_timeout: Option<Millis>,
    parts: Vec<PartitionClock>,
    current: Millis,
}

impl WatermarkTracker {
    /// A tracker for `partitions` inputs with out-of-orderness `delay`.
    ///
    /// # Errors
    /// [`CoreError::Config`] when `partitions` is zero or above [`MAX_PARTITIONS`].
    ///
    /// # Examples
    /// ```
    /// use fraudstream::watermark::WatermarkTracker;
    /// let mut wm = WatermarkTracker::new(5_000, 1, None).unwrap();
    /// assert_eq!(wm.observe(0, 60_000, None), Some(55_000));
    /// assert_eq!(wm.observe(0, 58_000, None), None); // out of order: no change
    /// ```
    pub fn new(delay: Millis, partitions: usize, idle_timeout: Option<Millis>) -> CoreResult<Self> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(CoreError::Config(format!(
                "partitions must be in [1, {MAX_PARTITIONS}], got {partitions}"
            )));
        }
        Ok(WatermarkTracker {
            delay,
            idle_timeout,
            parts: vec![PartitionClock::new(); partitions],
            current: WATERMARK_START,
        })
    }

    /// The combined watermark.
    #[inline]
    #[must_use]
    pub fn current(&self) -> Millis {
        self.current
    }

    /// Number of partitions.
    #[must_use]
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Indices of the partitions currently idle.
    #[must_use]
    pub fn idle_partitions(&self) -> Vec<usize> {
        self.parts.iter().enumerate().filter(|(_, p)| p.idle).map(|(i, _)| i).collect()
    }

    /// Records an event at `t` on partition `p` (at processing time `now`, if known). Returns
    /// the new combined watermark when it advanced.
    #[inline]
    pub fn observe(&mut self, p: usize, t: Millis, now: Option<Millis>) -> Option<Millis> {
        let part = &mut self.parts[p];
        if now.is_some() {
            part.last_active = now;
        }
        let was_idle = std::mem::replace(&mut part.idle, false);
        if t <= part.max_time && !was_idle {
            return None;
        }
        let old = part.max_time.saturating_sub(self.delay);
        part.max_time = part.max_time.max(t);
        if self.parts.len() > 1 && old > self.current && !was_idle {
            return None; // this partition was not the one holding the watermark back
        }
        self.recompute()
    }

    /// Marks partitions idle whose last event is more than the idle timeout before `now`.
    /// Returns the new combined watermark when it advanced.
    pub fn tick(&mut self, now: Millis) -> Option<Millis> {
        let timeout = self.idle_timeout?;
        let mut changed = false;
        for part in &mut self.parts {
            match part.last_active {
                None => part.last_active = Some(now),
                Some(at) if !part.idle && now.saturating_sub(at) > timeout => {
                    part.idle = true;
                    changed = true;
                }
                Some(_) => {}
            }
        }
        if changed {
            self.recompute()
        } else {
            None
        }
    }

    /// Raises the watermark to at least `t` (wall-clock advancement when traffic stops).
    pub fn advance_to(&mut self, t: Millis) -> Option<Millis> {
        (t > self.current).then(|| {
            self.current = t;
            t
        })
    }

    fn recompute(&mut self) -> Option<Millis> {
        let combined =
            self.parts.iter().filter(|p| !p.idle).map(|p| p.max_time.saturating_sub(self.delay)).min()?;
        self.advance_to(combined)
    }

    /// Writes the tracker (processing times are not kept: idleness restarts counting).
    pub fn write(&self, w: &mut Writer) {
        w.i64(self.delay);
        w.i64(self.idle_timeout.unwrap_or(-1));
        w.i64(self.current);
        w.count(self.parts.len());
        for p in &self.parts {
            w.i64(p.max_time);
            w.u8(u8::from(p.idle));
        }
    }

    /// Reads what [`WatermarkTracker::write`] wrote.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] on malformed bytes.
    pub fn read(r: &mut Reader<'_>) -> CoreResult<Self> {
        let delay = r.i64()?;
        let idle = r.i64()?;
        let current = r.i64()?;
        let n = r.count()?;
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            parts.push(PartitionClock { max_time: r.i64()?, last_active: None, idle: r.u8()? != 0 });
        }
        if parts.is_empty() {
            return Err(CoreError::Snapshot("watermark with no partitions".into()));
        }
        Ok(WatermarkTracker { delay, idle_timeout: (idle >= 0).then_some(idle), parts, current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_counts_are_bounded() {
        assert!(WatermarkTracker::new(0, 0, None).is_err());
        assert!(WatermarkTracker::new(0, MAX_PARTITIONS, None).is_ok());
        let e = WatermarkTracker::new(0, 1_000_000_000, None).unwrap_err();
        assert!(e.to_string().contains("partitions must be in [1, 65536]"), "{e}");
    }

    #[test]
    fn bounded_out_of_orderness() {
        let mut w = WatermarkTracker::new(10, 1, None).unwrap();
        assert_eq!(w.current(), WATERMARK_START);
        assert_eq!(w.observe(0, 100, None), Some(90));
        assert_eq!(w.observe(0, 95, None), None);
        assert_eq!(w.observe(0, 130, None), Some(120));
    }

    #[test]
    fn minimum_over_partitions() {
        let mut w = WatermarkTracker::new(0, 2, None).unwrap();
        assert_eq!(w.observe(0, 100, None), None, "partition 1 has seen nothing");
        assert_eq!(w.observe(1, 50, None), Some(50));
        assert_eq!(w.observe(0, 200, None), None);
        assert_eq!(w.observe(1, 300, None), Some(200));
    }

    #[test]
    fn idle_partition_stops_holding_back_and_never_moves_it_backwards() {
        let mut w = WatermarkTracker::new(0, 2, Some(1_000)).unwrap();
        w.observe(0, 500, Some(0));
        w.observe(1, 100, Some(0));
        assert_eq!(w.current(), 100);
        w.observe(0, 900, Some(800));
        assert_eq!(w.tick(1_000), None, "partition 1 idle for exactly the timeout: not yet");
        assert_eq!(w.tick(1_001), Some(900));
        assert_eq!(w.idle_partitions(), vec![1]);
        assert_eq!(w.observe(1, 150, Some(1_100)), None, "re-activation cannot lower it");
        assert_eq!(w.current(), 900);
        assert!(w.idle_partitions().is_empty());
    }

    #[test]
    fn advance_to_only_raises() {
        let mut w = WatermarkTracker::new(0, 1, None).unwrap();
        assert_eq!(w.advance_to(50), Some(50));
        assert_eq!(w.advance_to(40), None);
        assert_eq!(w.observe(0, 45, None), None);
        assert_eq!(w.current(), 50);
    }

    #[test]
    fn snapshot_round_trip() {
        let mut w = WatermarkTracker::new(7, 3, Some(100)).unwrap();
        w.observe(2, 1_000, Some(1));
        let mut out = Writer::default();
        w.write(&mut out);
        let bytes = out.into_bytes();
        let back = WatermarkTracker::read(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(back.current(), w.current());
        assert_eq!(back.partitions(), 3);
    }
}
