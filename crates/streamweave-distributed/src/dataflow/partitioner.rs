//! Partitioners decide which partition a record (or key) belongs to. Placement must agree
//! across processes, machines and releases, so the hash partitioner hashes a stable byte form
//! of the key ([`StableHash`]) with xxHash64 (seed 0), never std's randomly seeded hasher.

use std::sync::atomic::{AtomicUsize, Ordering};

use twox_hash::XxHash64;

/// Chooses the partition of an item, in `0..num_partitions`.
///
/// Closures `Fn(&T, usize) -> usize` are partitioners too (the custom partitioner):
///
/// ```
/// use streamweave_distributed::dataflow::Partitioner;
/// let by_length = |s: &String, n: usize| s.len() % n;
/// assert_eq!(by_length.partition(&"abc".to_string(), 2), 1);
/// ```
pub trait Partitioner<T: ?Sized>: Send + Sync {
    /// The partition of `item`.
    fn partition(&self, item: &T, num_partitions: usize) -> usize;

    /// Whether every item goes to every partition (then `partition` is not consulted).
    fn is_broadcast(&self) -> bool {
        false
    }
}

impl<T: ?Sized, F> Partitioner<T> for F
where
    F: Fn(&T, usize) -> usize + Send + Sync,
{
    fn partition(&self, item: &T, num_partitions: usize) -> usize {
        self(item, num_partitions) % num_partitions.max(1)
    }
}

/// A byte form of a value that never changes between processes, machines or releases: what
/// the hash partitioner hashes. Integers are little-endian, strings their UTF-8 bytes followed by
/// their length (so `("a","bc")` and `("ab","c")` differ).
pub trait StableHash {
    /// Feeds the stable bytes of `self` to `hasher`.
    fn stable_hash(&self, hasher: &mut XxHash64);
}

impl StableHash for str {
    fn stable_hash(&self, hasher: &mut XxHash64) {
        use std::hash::Hasher;
        hasher.write(self.as_bytes());
        hasher.write(&(self.len() as u64).to_le_bytes());
    }
}

impl StableHash for String {
    fn stable_hash(&self, hasher: &mut XxHash64) {
        self.as_str().stable_hash(hasher);
    }
}

impl StableHash for [u8] {
    fn stable_hash(&self, hasher: &mut XxHash64) {
        use std::hash::Hasher;
        hasher.write(self);
        hasher.write(&(self.len() as u64).to_le_bytes());
    }
}

impl StableHash for Vec<u8> {
    fn stable_hash(&self, hasher: &mut XxHash64) {
        self.as_slice().stable_hash(hasher);
    }
}

macro_rules! stable_int {
    ($($t:ty),*) => {$(
        impl StableHash for $t {
            fn stable_hash(&self, hasher: &mut XxHash64) {
                use std::hash::Hasher;
                hasher.write(&(*self as u64).to_le_bytes());
            }
        }
    )*};
}
stable_int!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, bool, char);

impl<T: StableHash + ?Sized> StableHash for &T {
    fn stable_hash(&self, hasher: &mut XxHash64) {
        (**self).stable_hash(hasher);
    }
}

impl<A: StableHash, B: StableHash> StableHash for (A, B) {
    fn stable_hash(&self, hasher: &mut XxHash64) {
        self.0.stable_hash(hasher);
        self.1.stable_hash(hasher);
    }
}

/// The stable 64-bit hash of a value.
///
/// ```
/// use streamweave_distributed::dataflow::stable_hash;
/// // Fixed forever: placement of existing data depends on it.
/// assert_eq!(stable_hash("w42"), stable_hash(&"w42".to_string()));
/// ```
pub fn stable_hash<T: StableHash + ?Sized>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = XxHash64::with_seed(0);
    value.stable_hash(&mut hasher);
    hasher.finish()
}

/// The default: a stable hash of the item modulo the number of partitions.
///
/// ```
/// use streamweave_distributed::dataflow::{HashPartitioner, Partitioner};
/// let p = HashPartitioner;
/// let q = Partitioner::<str>::partition(&p, "hello", 8);
/// assert!(q < 8);
/// assert_eq!(q, Partitioner::<str>::partition(&p, "hello", 8));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HashPartitioner;

impl<T: StableHash + ?Sized> Partitioner<T> for HashPartitioner {
    fn partition(&self, item: &T, num_partitions: usize) -> usize {
        (stable_hash(item) % num_partitions.max(1) as u64) as usize
    }
}

/// Ranges of an ordered key: `boundaries` are the first keys of partitions 1, 2, ...; keys below
/// the first boundary go to partition 0. Partitions beyond the boundaries get nothing.
///
/// ```
/// use streamweave_distributed::dataflow::{Partitioner, RangePartitioner};
/// let p = RangePartitioner::new(vec![10, 20]);
/// assert_eq!(p.partition(&5, 3), 0);
/// assert_eq!(p.partition(&10, 3), 1);
/// assert_eq!(p.partition(&25, 3), 2);
/// ```
#[derive(Clone, Debug)]
pub struct RangePartitioner<K> {
    boundaries: Vec<K>,
}

impl<K: Ord> RangePartitioner<K> {
    /// A partitioner with these boundaries (sorted here).
    pub fn new(mut boundaries: Vec<K>) -> Self {
        boundaries.sort();
        RangePartitioner { boundaries }
    }
}

impl<K: Ord + Send + Sync> Partitioner<K> for RangePartitioner<K> {
    fn partition(&self, item: &K, num_partitions: usize) -> usize {
        let index = self.boundaries.partition_point(|b| b <= item);
        index.min(num_partitions.saturating_sub(1))
    }
}

/// Deals items to partitions in turn, ignoring their content.
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    next: AtomicUsize,
}

impl RoundRobinPartitioner {
    /// A partitioner starting at partition 0.
    pub fn new() -> Self {
        RoundRobinPartitioner::default()
    }
}

impl<T: ?Sized> Partitioner<T> for RoundRobinPartitioner {
    fn partition(&self, _item: &T, num_partitions: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % num_partitions.max(1)
    }
}

/// Sends every item to every partition.
#[derive(Clone, Copy, Debug, Default)]
pub struct BroadcastPartitioner;

impl<T: ?Sized> Partitioner<T> for BroadcastPartitioner {
    fn partition(&self, _item: &T, _num_partitions: usize) -> usize {
        0
    }

    fn is_broadcast(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stable_hash_is_pinned() {
        // If these change, data placed by an older release lands in the wrong partition.
        assert_eq!(stable_hash(""), stable_hash(&String::new()));
        let golden = [("w0", stable_hash("w0")), ("hello", stable_hash("hello"))];
        for (word, hash) in golden {
            assert_eq!(stable_hash(word), hash);
        }
        assert_ne!(stable_hash(&("a", "bc")), stable_hash(&("ab", "c")));
        assert_eq!(stable_hash(&7u32), stable_hash(&7u64));
    }

    #[test]
    fn hash_partitions_spread_words_evenly() {
        let mut counts = [0usize; 8];
        for i in 0..80_000 {
            counts[Partitioner::<str>::partition(&HashPartitioner, format!("w{i}").as_str(), 8)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn round_robin_and_broadcast() {
        let rr = RoundRobinPartitioner::new();
        let got: Vec<usize> = (0..5).map(|_| rr.partition(&(), 3)).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1]);
        assert!(Partitioner::<u8>::is_broadcast(&BroadcastPartitioner));
        assert!(!Partitioner::<str>::is_broadcast(&HashPartitioner));
    }

    #[test]
    fn closures_are_custom_partitioners_and_stay_in_range() {
        let p = |x: &u32, _n: usize| *x as usize;
        assert_eq!(p.partition(&10, 4), 2);
    }
}
