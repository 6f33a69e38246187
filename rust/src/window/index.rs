//! The key index: an open-addressing map from key to slot whose bucket for a key can be
//! prefetched before it is looked up.
//!
//! Linear probing over a power-of-two array of 8-byte buckets (at most 3/4 full), with
//! backward-shift deletion (no tombstones, so probe sequences stay short however many keys come
//! and go). A bucket holds a slot and a 32-bit tag of its key's hash, not the key: the key lives
//! in the key table, and a lookup confirms a tag match there (`is_key`). That halves the index,
//! so that it stays within reach of the TLB (a random access per event into a few MB is a page
//! walk otherwise). A lookup usually reads one cache line, known from the key alone.

/// A bucket: `slot == EMPTY` marks a free one.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tag: u32,
    slot: u32,
}

const EMPTY: u32 = u32::MAX;
const FREE: Bucket = Bucket { tag: 0, slot: EMPTY };
const MIN_BUCKETS: usize = 16;

/// The tag of `key`: the top 32 bits of its Fibonacci hash. The home bucket is the tag's top
/// bits, so buckets can be moved (growth, deletion) without the keys.
#[inline]
fn tag_of(key: i64) -> u32 {
    let h = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as u32
}

/// Map from key to slot (`u32`, below `u32::MAX`), with the keys kept by the caller.
#[derive(Debug, Clone)]
pub struct KeyIndex {
    buckets: Vec<Bucket>,
    /// `32 - log2(buckets.len())`: the home bucket is the top bits of the tag.
    shift: u32,
    len: usize,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex::with_buckets(MIN_BUCKETS)
    }
}

impl KeyIndex {
    fn with_buckets(n: usize) -> Self {
        assert!(n.is_power_of_two() && n.trailing_zeros() <= 32, "at most 2^32 buckets");
        KeyIndex { buckets: vec![FREE; n], shift: 32 - n.trailing_zeros(), len: 0 }
    }

    /// Empty, with room for `keys` keys without growing.
    #[must_use]
    pub fn with_capacity(keys: usize) -> Self {
        KeyIndex::with_buckets(Self::buckets_for(keys))
    }

    /// Fewest buckets (a power of two, at least [`MIN_BUCKETS`]) that hold `keys` keys.
    fn buckets_for(keys: usize) -> usize {
        let mut n = MIN_BUCKETS;
        while keys * 4 > n * 3 {
            n *= 2;
        }
        n
    }

    /// Makes room for `keys` keys in all without growing (one rehash at most, now).
    pub fn reserve(&mut self, keys: usize) {
        let n = Self::buckets_for(keys);
        if n > self.buckets.len() {
            self.resize(n);
        }
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        // A shift by 32 (one bucket) is not possible: there are at least 16.
        (tag >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of buckets.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.buckets.len()
    }

    /// Bytes of the bucket array.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// Hints the CPU to fetch the home bucket of `key` (see [`crate::prefetch`]).
    #[inline]
    pub fn prefetch(&self, key: i64) {
        crate::prefetch::prefetch(&self.buckets[self.home(tag_of(key))]);
    }

    /// Position of the bucket of `key` (`is_key(slot)` tells whether a slot holds `key`).
    #[inline]
    fn position(&self, key: i64, is_key: impl Fn(u32) -> bool) -> Option<usize> {
        let tag = tag_of(key);
        let mask = self.mask();
        let mut i = self.home(tag);
        loop {
            let b = self.buckets[i];
            if b.slot == EMPTY {
                return None;
            }
            if b.tag == tag && is_key(b.slot) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Slot of `key`, if present (`is_key(slot)` tells whether a slot holds `key`).
    #[inline]
    pub fn find(&self, key: i64, is_key: impl Fn(u32) -> bool) -> Option<u32> {
        self.position(key, is_key).map(|i| self.buckets[i].slot)
    }

    /// The slot of the first key with the tag of `key`: `None` means `key` is absent; a slot is
    /// that of `key` unless another key shares its 32-bit tag (the caller confirms it).
    #[inline]
    #[must_use]
    pub fn candidate(&self, key: i64) -> Option<u32> {
        self.find(key, |_| true)
    }

    /// Maps `key` (which must be absent) to `slot`.
    ///
    /// # Panics
    /// When `slot` is `u32::MAX` (reserved), or beyond 2^31 keys.
    pub fn insert_new(&mut self, key: i64, slot: u32) {
        assert!(slot != EMPTY, "slot u32::MAX is reserved");
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.grow();
        }
        self.put(Bucket { tag: tag_of(key), slot });
        self.len += 1;
    }

    fn put(&mut self, b: Bucket) {
        let mask = self.mask();
        let mut i = self.home(b.tag);
        while self.buckets[i].slot != EMPTY {
            i = (i + 1) & mask;
        }
        self.buckets[i] = b;
    }

    fn grow(&mut self) {
        self.resize(self.buckets.len() * 2);
    }

    fn resize(&mut self, buckets: usize) {
        let old = std::mem::replace(self, KeyIndex::with_buckets(buckets));
        for b in old.buckets.into_iter().filter(|b| b.slot != EMPTY) {
            self.put(b);
        }
        self.len = old.len;
    }

    /// Removes `key`; returns its slot if it was present (`is_key` as for [`KeyIndex::find`]).
    pub fn remove(&mut self, key: i64, is_key: impl Fn(u32) -> bool) -> Option<u32> {
        let mut i = self.position(key, is_key)?;
        let slot = self.buckets[i].slot;
        // Backward shift: move later buckets of the cluster into the hole when their home does
        // not lie cyclically in (hole, position].
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let b = self.buckets[j];
            if b.slot == EMPTY {
                break;
            }
            let home = self.home(b.tag);
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                self.buckets[i] = b;
                i = j;
            }
        }
        self.buckets[i] = FREE;
        self.len -= 1;
        Some(slot)
    }

    /// All slots, in no particular order.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets.iter().filter(|b| b.slot != EMPTY).map(|b| b.slot)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64),
        Remove(i64),
        Get(i64),
    }

    fn op(keys: impl Strategy<Value = i64> + Clone) -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => keys.clone().prop_map(Op::Insert),
            2 => keys.clone().prop_map(Op::Remove),
            1 => keys.prop_map(Op::Get),
        ]
    }

    /// The inverse of the hash multiplier modulo 2^64 (Newton's iteration).
    fn inverse() -> u64 {
        let c: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut x = c;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
        }
        assert_eq!(c.wrapping_mul(x), 1);
        x
    }

    /// Keys that share a tag with `base` (their hashes differ by less than 2^32).
    fn same_tag(base: i64, n: u64) -> Vec<i64> {
        let h = (base as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) & !0xFFFF_FFFF;
        (0..n).map(|d| (h + d).wrapping_mul(inverse()) as i64).collect()
    }

    /// Runs `ops` against a `HashMap`; slot `n` is given to the key inserted by op `n`, and
    /// `keys[slot]` plays the key table.
    fn check(ops: Vec<Op>) {
        let mut index = KeyIndex::default();
        let mut oracle: HashMap<i64, u32> = HashMap::new();
        let mut keys: Vec<i64> = Vec::new();
        for op in ops {
            let n = u32::try_from(keys.len()).unwrap();
            match op {
                Op::Insert(k) => {
                    keys.push(k);
                    if let std::collections::hash_map::Entry::Vacant(e) = oracle.entry(k) {
                        e.insert(n);
                        index.insert_new(k, n);
                    }
                }
                Op::Remove(k) => {
                    assert_eq!(index.remove(k, |s| keys[s as usize] == k), oracle.remove(&k));
                }
                Op::Get(k) => {
                    assert_eq!(index.find(k, |s| keys[s as usize] == k), oracle.get(&k).copied());
                    if index.candidate(k).is_none() {
                        assert!(!oracle.contains_key(&k), "no candidate means absent");
                    }
                }
            }
            assert_eq!(index.len(), oracle.len());
            assert!(index.len() * 4 <= index.capacity() * 3);
        }
        for (&k, &s) in &oracle {
            assert_eq!(index.find(k, |s| keys[s as usize] == k), Some(s));
        }
        let mut all: Vec<u32> = index.slots().collect();
        let mut want: Vec<u32> = oracle.into_values().collect();
        all.sort_unstable();
        want.sort_unstable();
        assert_eq!(all, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Few distinct keys: long clusters, wrap-around and many deletions inside clusters.
        #[test]
        fn behaves_like_a_hash_map_on_few_keys(ops in prop::collection::vec(op(0i64..40), 0..400)) {
            check(ops);
        }

        /// Keys spread over the whole range (growth, negative keys, extremes).
        #[test]
        fn behaves_like_a_hash_map_on_any_keys(
            ops in prop::collection::vec(op(prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0)]), 0..300)
        ) {
            check(ops);
        }

        /// Keys whose tags collide: lookups must confirm the key, not trust the tag.
        #[test]
        fn keys_with_equal_tags_are_told_apart(
            base in any::<i64>(),
            ops in prop::collection::vec((0usize..6, 0u8..3), 0..200),
        ) {
            let pool = same_tag(base, 6);
            let ops = ops
                .into_iter()
                .map(|(k, o)| match o {
                    0 => Op::Insert(pool[k]),
                    1 => Op::Remove(pool[k]),
                    _ => Op::Get(pool[k]),
                })
                .collect();
            check(ops);
        }
    }

    #[test]
    fn tags_collide_as_constructed() {
        let pool = same_tag(12345, 4);
        assert!(pool.iter().all(|&k| tag_of(k) == tag_of(pool[0])));
        let mut distinct = pool.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn clusters_that_wrap_around() {
        // Keys homed to the last bucket of a 16-bucket table: their cluster wraps to the front.
        let probe = KeyIndex::default();
        let keys: Vec<i64> = (0..).filter(|&k| probe.home(tag_of(k)) == MIN_BUCKETS - 1).take(10).collect();
        let table = &keys;
        let is = |k: i64| move |s: u32| table[s as usize] == k;
        let mut index = KeyIndex::default();
        for (s, &k) in keys.iter().enumerate() {
            index.insert_new(k, u32::try_from(s).unwrap());
        }
        assert_eq!(index.capacity(), MIN_BUCKETS);
        for (s, &k) in keys.iter().enumerate().step_by(2) {
            assert_eq!(index.remove(k, is(k)), Some(u32::try_from(s).unwrap()));
        }
        for (s, &k) in keys.iter().enumerate() {
            let want = (s % 2 == 1).then(|| u32::try_from(s).unwrap());
            assert_eq!(index.find(k, is(k)), want);
        }
    }
}
