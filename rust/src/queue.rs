//! A bounded FIFO queue with backpressure, between pipeline stages.
//!
//! Semantics:
//! - FIFO: items leave in the order they were put; a batch put keeps its order.
//! - Bounded: at most `capacity` items and, when set, `capacity_bytes` bytes (an item larger
//!   than the byte capacity is admitted alone into an empty queue, so it cannot deadlock).
//! - Backpressure: `put` waits while full, until a deadline; producers are woken by gets, never
//!   by polling. Waits register under the lock and re-check after every wake-up, so a wake-up
//!   between "check" and "wait" is never lost.
//! - Water marks: `pressure()` turns on when the length reaches the high mark and off when it
//!   falls to the low mark (hysteresis), so a source can pause and resume its input.
//! - Close: no more puts; gets drain what is left, then report end-of-stream.
//! - Metrics are counters under the same lock: length, bytes, peak length, items in/out, time
//!   producers spent blocked and consumers idle.
//!
//! Waiting callers pass a deadline and get their item back when it passes, so the Python
//! bindings can wait in short slices and check for Ctrl-C between them.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{CoreError, CoreResult};

/// Why a put did not complete; the items not queued are handed back.
#[derive(Debug, PartialEq, Eq)]
pub enum PutError<T> {
    /// The deadline passed while the queue was full.
    Full(Vec<T>),
    /// The queue is closed.
    Closed(Vec<T>),
}

/// What a get returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Got<T> {
    /// One or more items.
    Items(Vec<T>),
    /// The deadline passed with the queue empty.
    TimedOut,
    /// The queue is closed and drained.
    EndOfStream,
}

/// A point-in-time copy of the queue's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueMetrics {
    /// Items queued now.
    pub len: usize,
    /// Bytes queued now.
    pub bytes: usize,
    /// Largest length seen.
    pub peak_len: usize,
    /// Items ever put.
    pub items_in: u64,
    /// Items ever taken.
    pub items_out: u64,
    /// Total time producers spent waiting for space, summed over producers.
    pub blocked: Duration,
    /// Total time consumers spent waiting for items, summed over consumers.
    pub idle: Duration,
    /// Whether the length is above the high water mark (and not yet back to the low one).
    pub pressure: bool,
    /// Times pressure turned on.
    pub pressure_events: u64,
    /// Whether the queue is closed.
    pub closed: bool,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<(T, usize)>,
    metrics: QueueMetrics,
}

/// The queue.
#[derive(Debug)]
pub struct BoundedQueue<T> {
    state: Mutex<State<T>>,
    not_full: Condvar,
    not_empty: Condvar,
    capacity: usize,
    capacity_bytes: Option<usize>,
    high_water: usize,
    low_water: usize,
}

impl<T> BoundedQueue<T> {
    /// A queue of at most `capacity` items (and `capacity_bytes`, if given), with pressure on
    /// at `high_water` items and off at `low_water` (defaults: capacity and capacity / 2).
    ///
    /// # Errors
    /// [`CoreError::Config`] for a zero capacity or inconsistent water marks.
    ///
    /// # Examples
    /// ```
    /// use std::time::{Duration, Instant};
    /// use fraudstream::queue::{BoundedQueue, Got};
    /// let q = BoundedQueue::new(2, None, None, None).unwrap();
    /// q.put_batch(vec![1, 2], &[0, 0], None).unwrap();
    /// assert!(q.put_batch(vec![3], &[0], Some(Instant::now())).is_err()); // full
    /// q.close();
    /// assert_eq!(q.get_batch(10, None), Got::Items(vec![1, 2]));
    /// assert_eq!(q.get_batch(10, None), Got::EndOfStream);
    /// ```
    pub fn new(
        capacity: usize,
        capacity_bytes: Option<usize>,
        high_water: Option<usize>,
        low_water: Option<usize>,
    ) -> CoreResult<Self> {
        if capacity == 0 || capacity_bytes == Some(0) {
            return Err(CoreError::Config("queue capacity must be at least 1".into()));
        }
        let high = high_water.unwrap_or(capacity);
        let low = low_water.unwrap_or(high / 2);
        if high == 0 || high > capacity || low >= high {
            return Err(CoreError::Config(format!(
                "queue water marks need 0 <= low < high <= capacity, got low={low} high={high} \
                 capacity={capacity}"
            )));
        }
        Ok(BoundedQueue {
            state: Mutex::new(State { items: VecDeque::new(), metrics: QueueMetrics::default() }),
            not_full: Condvar::new(),
            not_empty: Condvar::new(),
            capacity,
            capacity_bytes,
            high_water: high,
            low_water: low,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock cannot leave the queue inconsistent (every update is
        // a few field writes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fits(&self, st: &State<T>, bytes: usize) -> bool {
        st.items.len() < self.capacity
            && self.capacity_bytes.is_none_or(|cap| st.items.is_empty() || st.metrics.bytes + bytes <= cap)
    }

    /// Waits on `cv` until `deadline` (forever when None); returns false if it passed.
    fn wait<'a>(
        cv: &Condvar,
        guard: MutexGuard<'a, State<T>>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State<T>>, bool) {
        match deadline {
            None => (cv.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner), true),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (guard, false);
                }
                let (g, _) =
                    cv.wait_timeout(guard, d - now).unwrap_or_else(std::sync::PoisonError::into_inner);
                (g, true)
            }
        }
    }

    /// Puts `items` (with their sizes in bytes) in order, waiting for space until `deadline`.
    /// On timeout or close, the items not yet queued are returned; those before them stay.
    ///
    /// # Errors
    /// [`PutError::Full`] when the deadline passed, [`PutError::Closed`] when closed.
    pub fn put_batch(
        &self,
        items: Vec<T>,
        sizes: &[usize],
        deadline: Option<Instant>,
    ) -> Result<(), PutError<T>> {
        let mut pending = items.into_iter().zip(sizes.iter().copied().chain(std::iter::repeat(0))).peekable();
        let mut st = self.lock();
        loop {
            if st.metrics.closed {
                return Err(PutError::Closed(pending.map(|(t, _)| t).collect()));
            }
            let mut added = false;
            while let Some((_, bytes)) = pending.peek() {
                if !self.fits(&st, *bytes) {
                    break;
                }
                let (item, bytes) = pending.next().expect("peeked");
                st.items.push_back((item, bytes));
                let len = st.items.len();
                let m = &mut st.metrics;
                m.bytes += bytes;
                m.items_in += 1;
                m.len = len;
                m.peak_len = m.peak_len.max(m.len);
                if !m.pressure && m.len >= self.high_water {
                    m.pressure = true;
                    m.pressure_events += 1;
                }
                added = true;
            }
            if added {
                self.not_empty.notify_all();
            }
            if pending.peek().is_none() {
                return Ok(());
            }
            let started = Instant::now();
            let (guard, in_time) = Self::wait(&self.not_full, st, deadline);
            st = guard;
            st.metrics.blocked += started.elapsed();
            if !in_time {
                return Err(PutError::Full(pending.map(|(t, _)| t).collect()));
            }
        }
    }

    /// Puts one item if there is room now; never waits.
    ///
    /// # Errors
    /// [`PutError::Full`] or [`PutError::Closed`], with the item.
    pub fn try_put(&self, item: T, bytes: usize) -> Result<(), PutError<T>> {
        self.put_batch(vec![item], &[bytes], Some(Instant::now()))
    }

    /// Takes up to `max_items`, waiting until `deadline` for at least one.
    pub fn get_batch(&self, max_items: usize, deadline: Option<Instant>) -> Got<T> {
        let mut st = self.lock();
        loop {
            if !st.items.is_empty() {
                let n = max_items.max(1).min(st.items.len());
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let (item, bytes) = st.items.pop_front().expect("non-empty");
                    st.metrics.bytes -= bytes;
                    out.push(item);
                }
                let len = st.items.len();
                let m = &mut st.metrics;
                m.items_out += n as u64;
                m.len = len;
                if m.pressure && m.len <= self.low_water {
                    m.pressure = false;
                }
                self.not_full.notify_all();
                return Got::Items(out);
            }
            if st.metrics.closed {
                return Got::EndOfStream;
            }
            let started = Instant::now();
            let (guard, in_time) = Self::wait(&self.not_empty, st, deadline);
            st = guard;
            st.metrics.idle += started.elapsed();
            if !in_time {
                return Got::TimedOut;
            }
        }
    }

    /// Closes the queue: puts fail from now on, gets drain and then see end-of-stream.
    pub fn close(&self) {
        self.lock().metrics.closed = true;
        self.not_full.notify_all();
        self.not_empty.notify_all();
    }

    /// Whether the queue is above its high water mark (and not yet down to the low one).
    #[must_use]
    pub fn pressure(&self) -> bool {
        self.lock().metrics.pressure
    }

    /// A copy of the counters.
    #[must_use]
    pub fn metrics(&self) -> QueueMetrics {
        self.lock().metrics
    }

    /// Capacity in items.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Capacity in bytes, if bounded by bytes.
    #[must_use]
    pub fn capacity_bytes(&self) -> Option<usize> {
        self.capacity_bytes
    }

    /// Drops every queued item (for shutdown after a failure); returns how many.
    pub fn clear(&self) -> usize {
        let mut st = self.lock();
        let n = st.items.len();
        st.items.clear();
        st.metrics.bytes = 0;
        st.metrics.len = 0;
        st.metrics.pressure = false;
        drop(st);
        self.not_full.notify_all();
        n
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;

    fn soon(ms: u64) -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(ms))
    }

    #[test]
    fn fifo_and_end_of_stream() {
        let q = BoundedQueue::new(10, None, None, None).unwrap();
        q.put_batch(vec![1, 2, 3], &[], None).unwrap();
        q.try_put(4, 0).unwrap();
        assert_eq!(q.get_batch(2, None), Got::Items(vec![1, 2]));
        q.close();
        assert_eq!(q.try_put(5, 0), Err(PutError::Closed(vec![5])));
        assert_eq!(q.get_batch(10, None), Got::Items(vec![3, 4]));
        assert_eq!(q.get_batch(10, None), Got::EndOfStream);
    }

    #[test]
    fn timeouts_hand_back_what_was_not_queued() {
        let q = BoundedQueue::new(2, None, None, None).unwrap();
        assert_eq!(q.put_batch(vec![1, 2, 3, 4], &[], soon(20)), Err(PutError::Full(vec![3, 4])));
        assert_eq!(q.metrics().len, 2);
        assert!(q.metrics().blocked >= Duration::from_millis(15));
        assert_eq!(q.get_batch(5, None), Got::Items(vec![1, 2]));
        assert_eq!(q.get_batch(5, soon(20)), Got::TimedOut);
        assert!(q.metrics().idle >= Duration::from_millis(15));
    }

    #[test]
    fn byte_capacity_and_oversized_items() {
        let q = BoundedQueue::new(100, Some(10), None, None).unwrap();
        q.put_batch(vec!['a', 'b'], &[4, 4], None).unwrap();
        assert!(q.try_put('c', 4).is_err(), "12 bytes > 10");
        assert_eq!(q.get_batch(10, None), Got::Items(vec!['a', 'b']));
        q.try_put('x', 50).expect("an oversized item enters an empty queue alone");
        assert!(q.try_put('y', 1).is_err());
        assert_eq!(q.metrics().bytes, 50);
    }

    #[test]
    fn water_marks_have_hysteresis() {
        let q = BoundedQueue::new(10, None, Some(8), Some(3)).unwrap();
        q.put_batch((0..7).collect(), &[], None).unwrap();
        assert!(!q.pressure());
        q.try_put(7, 0).unwrap();
        assert!(q.pressure());
        let _ = q.get_batch(4, None); // 4 left: still above low
        assert!(q.pressure());
        let _ = q.get_batch(1, None); // 3 left: at low
        assert!(!q.pressure());
        assert_eq!(q.metrics().pressure_events, 1);
        assert!(BoundedQueue::<u8>::new(10, None, Some(5), Some(5)).is_err());
        assert!(BoundedQueue::<u8>::new(0, None, None, None).is_err());
    }

    #[test]
    fn many_producers_and_consumers_lose_nothing_and_keep_producer_order() {
        let q = Arc::new(BoundedQueue::new(16, None, None, None).unwrap());
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let q = Arc::clone(&q);
                thread::spawn(move || {
                    for chunk in (0..10_000u64).collect::<Vec<_>>().chunks(7) {
                        let items: Vec<_> = chunk.iter().map(|i| (p, *i)).collect();
                        q.put_batch(items, &[], None).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let q = Arc::clone(&q);
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    while let Got::Items(items) = q.get_batch(5, None) {
                        seen.extend(items);
                    }
                    seen
                })
            })
            .collect();
        producers.into_iter().for_each(|p| p.join().unwrap());
        q.close();
        let mut all: Vec<Vec<(u64, u64)>> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        for seen in &all {
            for p in 0..4 {
                let mine: Vec<u64> = seen.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "per-producer order within a consumer");
            }
        }
        let mut flat: Vec<(u64, u64)> = all.drain(..).flatten().collect();
        flat.sort_unstable();
        flat.dedup();
        assert_eq!(flat.len(), 40_000, "nothing lost or duplicated");
        let m = q.metrics();
        assert_eq!((m.items_in, m.items_out, m.len), (40_000, 40_000, 0));
        assert!(m.peak_len <= 16);
    }
}
