//! A cap on live cards: which cards are live, and which one an unseen card evicts.
//!
//! Invariants:
//! - A card is live from a transaction until it is evicted, or until its latest transaction
//!   is `horizon` or more behind the stream (`latest <= now - horizon`, `now` the latest
//!   transaction's time): the caller's longest card state (feature windows, rule windows, a
//!   cool-down) has then expired by itself.
//! - Eviction order is the order of the cards' latest transactions in the stream's (time, id)
//!   order: the card seen least recently goes first, i.e. the one whose latest event time is
//!   the oldest, ties by the order the transactions came in. A transaction of a card that is
//!   not live while `max` are live first evicts that card (counted in `evicted`).
//! - The state is the live cards in that order with their latest times; it is written in that
//!   order, so a restored engine evicts exactly the cards the original would have, and the
//!   bytes depend only on the input.
//! - Work per transaction: a hash-map update and a queue push. A card's older queue entries go
//!   stale; they are skipped when they reach the front and compacted away once the queue is
//!   [`COMPACT_FACTOR`] times the live cards: amortised O(1), about 80 ns a transaction over
//!   100k cards (two or three look-ups in a map that mostly misses the cache).

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::snapshot::{Reader, Writer};
use crate::time::Millis;
use crate::{CoreError, CoreResult};

/// Stale queue entries are compacted away once the queue is this many times the live cards
/// (plus a constant): each compaction looks every entry up, so a larger factor costs fewer
/// look-ups per transaction (`factor / (factor - 1)`) and more memory (24 bytes an entry).
const COMPACT_FACTOR: usize = 4;

/// The cap's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardCap {
    /// Most live cards (at least 1).
    pub max_cards: usize,
    /// How long a card stays live after its latest transaction, ms (at least the longest
    /// card window).
    pub horizon: Millis,
}

/// The live cards in eviction order (see the module invariants).
#[derive(Debug, Clone)]
pub struct LiveCards {
    cap: CardCap,
    /// Card -> (time, position) of its latest transaction.
    latest: FxHashMap<i64, (Millis, u64)>,
    /// (time, position, card) in stream order: each live card's latest transaction, and stale
    /// entries (a later transaction of the card, or the card evicted or expired, came since).
    queue: VecDeque<(Millis, u64, i64)>,
    next: u64,
    evicted: u64,
}

impl LiveCards {
    /// No card live yet.
    #[must_use]
    pub fn new(cap: CardCap) -> Self {
        LiveCards { cap, latest: FxHashMap::default(), queue: VecDeque::new(), next: 0, evicted: 0 }
    }

    fn is_current(&self, pos: u64, card: i64) -> bool {
        self.latest.get(&card).is_some_and(|&(_, p)| p == pos)
    }

    /// Records a transaction of `card` at `t` (the stream's latest); calls `evict` with each
    /// card it evicts, in order: one when the cap is reached, more when a state written
    /// without a cap holds more cards than the cap (see [`LiveCards::of`]).
    pub fn touch(&mut self, card: i64, t: Millis, mut evict: impl FnMut(i64)) {
        let boundary = t.saturating_sub(self.cap.horizon);
        while let Some(&(time, pos, key)) = self.queue.front() {
            if self.is_current(pos, key) {
                if time > boundary {
                    break;
                }
                self.latest.remove(&key); // expired by itself: not an eviction
            }
            self.queue.pop_front();
        }
        let pos = self.next;
        self.next += 1;
        self.queue.push_back((t, pos, card));
        if let Some(latest) = self.latest.get_mut(&card) {
            *latest = (t, pos); // (one look-up for a live card, the common case)
            if self.queue.len() > COMPACT_FACTOR * self.latest.len() + 1024 {
                let latest = &self.latest;
                self.queue.retain(|&(_, pos, key)| latest.get(&key).is_some_and(|&(_, p)| p == pos));
            }
            return;
        }
        while self.latest.len() >= self.cap.max_cards {
            match self.pop_oldest() {
                Some(victim) => evict(victim),
                None => break,
            }
        }
        self.latest.insert(card, (t, pos));
    }

    /// Takes the live card seen least recently out (counted as evicted).
    fn pop_oldest(&mut self) -> Option<i64> {
        while let Some((_, pos, key)) = self.queue.pop_front() {
            if self.is_current(pos, key) {
                self.latest.remove(&key);
                self.evicted += 1;
                return Some(key);
            }
        }
        None
    }

    /// Live cards.
    #[must_use]
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether no card is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Cards evicted so far.
    #[must_use]
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Approximate bytes held.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.latest.capacity() * 25 + self.queue.capacity() * 24
    }

    /// Writes the eviction count and the live cards in eviction order with their latest times.
    pub fn write(&self, w: &mut Writer) {
        w.u64(self.evicted);
        w.count(self.latest.len());
        for &(time, pos, card) in &self.queue {
            if self.is_current(pos, card) {
                w.i64(card);
                w.i64(time);
            }
        }
    }

    /// Live cards `(latest time, card)` in eviction order (the first goes first), no eviction
    /// counted yet (for a state written without a cap; above the cap, the next unseen card
    /// evicts down to it).
    #[must_use]
    pub fn of(cap: CardCap, held: &[(Millis, i64)]) -> Self {
        let mut cards = LiveCards::new(cap);
        for &(time, card) in held {
            let pos = cards.next;
            cards.next += 1;
            cards.latest.insert(card, (time, pos));
            cards.queue.push_back((time, pos, card));
        }
        cards
    }

    /// Reads what [`LiveCards::write`] wrote.
    ///
    /// # Errors
    /// [`CoreError::Snapshot`] on malformed bytes (a card twice, times out of order).
    pub fn read(cap: CardCap, r: &mut Reader<'_>) -> CoreResult<Self> {
        let mut cards = LiveCards::new(cap);
        cards.evicted = r.u64()?;
        let mut previous = Millis::MIN;
        for pos in 0..r.count()? as u64 {
            let (card, time) = (r.i64()?, r.i64()?);
            if time < previous || cards.latest.insert(card, (time, pos)).is_some() {
                return Err(CoreError::Snapshot(format!("live card {card} out of order or twice")));
            }
            previous = time;
            cards.queue.push_back((time, pos, card));
        }
        cards.next = cards.queue.len() as u64;
        Ok(cards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(max_cards: usize, horizon: Millis) -> LiveCards {
        LiveCards::new(CardCap { max_cards, horizon })
    }

    /// The cards `card` evicts.
    fn touch(live: &mut LiveCards, card: i64, t: Millis) -> Vec<i64> {
        let mut out = Vec::new();
        live.touch(card, t, |v| out.push(v));
        out
    }

    #[test]
    fn the_card_seen_least_recently_is_evicted_first() {
        let mut live = cards(2, 1_000);
        assert_eq!(touch(&mut live, 1, 10), Vec::<i64>::new());
        assert_eq!(touch(&mut live, 2, 10), Vec::<i64>::new());
        assert_eq!(touch(&mut live, 1, 20), Vec::<i64>::new(), "a live card evicts nothing");
        assert_eq!(touch(&mut live, 3, 30), vec![2], "card 2's latest transaction is the oldest");
        assert_eq!(touch(&mut live, 2, 40), vec![1], "an evicted card comes back as a new one");
        assert_eq!((live.len(), live.evicted()), (2, 2));
    }

    #[test]
    fn equal_times_go_in_the_order_the_transactions_came() {
        let mut live = cards(2, 1_000);
        touch(&mut live, 9, 10);
        touch(&mut live, 1, 10);
        assert_eq!(touch(&mut live, 5, 10), vec![9]);
    }

    #[test]
    fn a_card_idle_for_the_horizon_expires_without_an_eviction() {
        let mut live = cards(2, 100);
        touch(&mut live, 1, 0);
        touch(&mut live, 2, 50);
        assert_eq!(touch(&mut live, 3, 100), Vec::<i64>::new(), "card 1 expired at 100: nothing to evict");
        assert_eq!((live.len(), live.evicted()), (2, 0));
        assert_eq!(touch(&mut live, 4, 120), vec![2]);
    }

    #[test]
    fn above_the_cap_the_next_unseen_card_evicts_down_to_it() {
        let mut live =
            LiveCards::of(CardCap { max_cards: 2, horizon: 1_000 }, &[(1, 7), (2, 3), (3, 5), (4, 1)]);
        assert_eq!(touch(&mut live, 3, 10), Vec::<i64>::new(), "a live card evicts nothing");
        assert_eq!(touch(&mut live, 9, 11), vec![7, 5, 1], "down to one below the cap, oldest first");
        assert_eq!((live.len(), live.evicted()), (2, 3));
    }

    #[test]
    fn stale_entries_stay_bounded_and_the_order_survives_a_restore() {
        let mut live = cards(3, 1_000_000);
        for t in 0..10_000 {
            touch(&mut live, t % 3, t);
        }
        assert!(live.queue.len() <= COMPACT_FACTOR * 3 + 1025, "{}", live.queue.len());
        let mut w = Writer::default();
        live.write(&mut w);
        let bytes = w.into_bytes();
        let mut restored = LiveCards::read(live.cap, &mut Reader::new(&bytes)).unwrap();
        for (card, t) in [(7, 10_000), (8, 10_001), (1, 10_002), (9, 10_003)] {
            assert_eq!(touch(&mut restored, card, t), touch(&mut live, card, t));
        }
    }
}
