//! Incremental partition state: a partition's state in checkpoint `n` is a small index naming
//! segments, a base (the whole state, as of the checkpoint that wrote it) followed by deltas
//! (the entries changed since the previous segment), each stored in the checkpoint that wrote
//! it. A checkpoint writes one new segment per partition, usually a delta, and the index.
//!
//! ```text
//!  chk-5/state-p00003 base  (all keys at 5)         chk-7/index-p00003 = [5 base, 6 delta, 7 delta]
//!  chk-6/seg-p00003   delta (keys changed in 6)     restore: base, then each delta in order
//!  chk-7/seg-p00003   delta (keys changed in 7)     the coordinator copies the index's segments into
//!                                                   the manifest's `refs`; retention keeps every
//!                                                   file a retained manifest refers to
//! ```
//!
//! A base too large to hold encoded in memory (a disk-backed state's) is written in parts as it
//! is encoded, `part-pQ-0000`, `part-pQ-0001`, ... in its checkpoint, each a map of some of its
//! entries; its checkpoint's state file is then an index, and the parts are the index's first
//! segments ([`StateIndex::base_parts`]). A restore reads them as a base and deltas: a part's
//! entries are new keys, so applying it as a delta adds them, and a build that knows nothing
//! of parts restores them all the same.
//!
//! A partition recovered while its state still loads (`worker/background_restore.rs`: a stage
//! whose accumulators merge, counts and reductions) applies records to an empty state beside
//! the load. Its barriers before the load ends write *overlays*, `over-pQ-T` (`T` the checkpoint
//! the partial state started from): the partial state's entries changed since the previous
//! overlay, appended to the restored chain. The overlays of one recovery form a run (the same
//! file name in consecutive segments): a restore applies the run among itself as a base and
//! deltas, then combines it with the state before it, key by key, as the recovery's merge did
//! ([`StateIndex::overlay_run`]). A chain with overlays is written as index version 2, so an
//! older build refuses it rather than mistake an overlay for a delta.
//!
//! ```text
//! restored chain [4 base, 5 delta] | loading... barrier 6: over-p00003-5 (partial at 6)
//!                                  | barrier 7: over-p00003-5 (partial changed since 6)
//!                                  | loaded, merged; barrier 8: delta (merged keys, full values)
//! restore of 8: base 4, delta 5 = T; run [6, 7] -> O; T combined with O; delta 8
//! ```
//!
//! [`PartitionChain`] is the worker's bookkeeping for one partition (plain code: which kind of
//! segment comes next, the index after it); compaction is a new base, written when the chain
//! has [`ChainPolicy::max_deltas`] deltas or its deltas outweigh its base, so a restore never
//! reads more than a bounded multiple of the state.

use serde::{Deserialize, Serialize};

use super::{CheckpointError, CheckpointId, StoredFile};

/// The first bytes of an index (a state file written before incremental checkpoints is the
/// partition's whole state and starts with its record count, never with these).
pub const INDEX_MAGIC: [u8; 8] = *b"SWDCHAIN";

/// The index format this build writes for a chain of bases and deltas (and reads).
pub const INDEX_VERSION: u8 = 1;

/// The index format of a chain with overlays (written only then, so that a chain without any
/// stays readable by builds that know nothing of them).
pub const INDEX_VERSION_OVERLAYS: u8 = 2;

/// What a partition's keyed state holds at a barrier, counted by its stage: the entries changed
/// since its last segment, of all its entries. It tells the barrier what a delta would cost
/// against a base ([`PartitionChain::next_kind_apart`]) before either is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingChanges {
    /// Entries changed since the last segment (a delta's entries).
    pub changed: u64,
    /// All entries (a base's).
    pub entries: u64,
}

/// One segment of a partition's state: a file of the checkpoint that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The checkpoint whose directory holds the file.
    pub checkpoint: CheckpointId,
    /// The file, as stored.
    pub file: StoredFile,
}

/// A partition's state in one checkpoint: its base segment, then its deltas, oldest first.
///
/// ```
/// use streamweave_distributed::checkpoint::{CheckpointId, Segment, StateIndex, StoredFile};
/// let index = StateIndex {
///     segments: vec![
///         Segment { checkpoint: CheckpointId(5), file: StoredFile::of("seg-p00000", b"base") },
///         Segment { checkpoint: CheckpointId(6), file: StoredFile::of("seg-p00000", b"d") },
///     ],
/// };
/// let bytes = index.encode()?;
/// assert_eq!(StateIndex::decode(CheckpointId(6), "state-p00000", &bytes)?, Some(index.clone()));
/// assert_eq!(index.referenced_bytes(), 5);
/// assert_eq!(index.written_at(CheckpointId(6)), 1);
/// # Ok::<(), streamweave_distributed::checkpoint::CheckpointError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateIndex {
    /// The base first, then the deltas in the order they apply.
    pub segments: Vec<Segment>,
}

impl StateIndex {
    /// The index as stored: magic, version, then the segments (postcard).
    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        let mut out = INDEX_MAGIC.to_vec();
        let overlays = self.segments.iter().any(|s| is_overlay_name(&s.file.name));
        out.push(if overlays {
            INDEX_VERSION_OVERLAYS
        } else {
            INDEX_VERSION
        });
        let body = postcard::to_stdvec(self).map_err(|e| CheckpointError::Encoding(e.to_string()))?;
        out.extend(body);
        Ok(out)
    }

    /// The index in `bytes` (state file `name` of checkpoint `id`), or `None` when `bytes` is
    /// not an index but a whole state (written before incremental checkpoints).
    pub fn decode(id: CheckpointId, name: &str, bytes: &[u8]) -> Result<Option<StateIndex>, CheckpointError> {
        let Some(rest) = bytes.strip_prefix(&INDEX_MAGIC) else {
            return Ok(None);
        };
        let corrupt = |reason: String| CheckpointError::corrupt(id, name, reason);
        match rest.split_first() {
            Some((&(INDEX_VERSION | INDEX_VERSION_OVERLAYS), body)) => {
                let index: StateIndex =
                    postcard::from_bytes(body).map_err(|e| corrupt(format!("state index: {e}")))?;
                if index.segments.is_empty() {
                    return Err(corrupt("state index without a base".to_string()));
                }
                Ok(Some(index))
            }
            Some((version, _)) => Err(CheckpointError::UnsupportedVersion {
                id,
                what: "state index",
                version: u32::from(*version),
                supported: u32::from(INDEX_VERSION_OVERLAYS),
            }),
            None => Err(corrupt("state index without a version".to_string())),
        }
    }

    /// Bytes of the segments written by checkpoint `id` (what that checkpoint added).
    pub fn written_at(&self, id: CheckpointId) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.checkpoint == id)
            .map(|s| s.file.size)
            .sum()
    }

    /// Bytes of every segment (what a restore reads).
    pub fn referenced_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.file.size).sum()
    }

    /// How many of the first segments make up the base: its parts when it was written in parts
    /// (files named by [`part_name`], all in the first segment's checkpoint), else 1.
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::*;
    /// let at = |c: u64, name: &str| Segment { checkpoint: CheckpointId(c), file: StoredFile::of(name, b"x") };
    /// let index = StateIndex {
    ///     segments: vec![at(4, &part_name(0, 0)), at(4, &part_name(0, 1)), at(5, &segment_name(0))],
    /// };
    /// assert_eq!(index.base_parts(), 2);
    /// ```
    pub fn base_parts(&self) -> usize {
        let Some(first) = self.segments.first() else {
            return 0;
        };
        if !is_part_name(&first.file.name) {
            return 1;
        }
        1 + self.segments[1..]
            .iter()
            .take_while(|s| s.checkpoint == first.checkpoint && is_part_name(&s.file.name))
            .count()
    }

    /// The segments of the overlay run that segment `i` belongs to, `i..end` from its start:
    /// `None` when segment `i` is not an overlay. A run is the overlays of one recovery, stored
    /// under one name in consecutive checkpoints; each holds the partial state's entries changed
    /// since the one before, so a run applies as a whole (among itself as a base and deltas,
    /// then combined with the state before it), never from its middle.
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::*;
    /// let at = |c: u64, name: &str| Segment { checkpoint: CheckpointId(c), file: StoredFile::of(name, b"x") };
    /// let index = StateIndex {
    ///     segments: vec![
    ///         at(4, "state-p00000"),
    ///         at(6, &overlay_name(0, 5)),
    ///         at(7, &overlay_name(0, 5)),
    ///         at(9, &overlay_name(0, 8)),
    ///         at(10, &segment_name(0)),
    ///     ],
    /// };
    /// assert_eq!(index.overlay_run(1), Some(1..3));
    /// assert_eq!(index.overlay_run(2), Some(1..3));
    /// assert_eq!(index.overlay_run(3), Some(3..4), "another recovery's");
    /// assert_eq!(index.overlay_run(4), None);
    /// ```
    pub fn overlay_run(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let name = &self.segments.get(i)?.file.name;
        if !is_overlay_name(name) {
            return None;
        }
        let same = |s: &Segment| s.file.name == *name;
        let start = i - self.segments[..i].iter().rev().take_while(|s| same(s)).count();
        let end = i + self.segments[i..].iter().take_while(|s| same(s)).count();
        Some(start..end)
    }

    /// Whether a state holding the first `n` segments can go on with the rest: false when `n`
    /// cuts an overlay run (its first part is merged in already, and the rest of the run holds
    /// the partial state, not what changed on top of that).
    pub fn continues_after(&self, n: usize) -> bool {
        n == 0 || self.overlay_run(n).is_none_or(|run| run.start == n)
    }

    /// The deltas after the base.
    pub fn deltas(&self) -> usize {
        self.segments.len() - self.base_parts()
    }

    fn base_bytes(&self) -> u64 {
        self.segments
            .iter()
            .take(self.base_parts())
            .map(|s| s.file.size)
            .sum()
    }

    fn delta_bytes(&self) -> u64 {
        self.segments
            .iter()
            .skip(self.base_parts())
            .map(|s| s.file.size)
            .sum()
    }
}

/// How a restore applies a stretch of a chain's segments ([`StateIndex::layers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer<'a> {
    /// The chain's first segment: the state.
    Base(&'a [u8]),
    /// A delta (or a later part of a base): its entries replace the state's.
    Delta(&'a [u8]),
    /// An overlay run, oldest first: applied among itself as a base and deltas, then combined
    /// with the state before it key by key.
    Overlays(Vec<&'a [u8]>),
}

impl StateIndex {
    /// `bytes` (the segments from the `from`-th on, as read) as a restore applies them: the
    /// first segment as the base, overlay runs whole, everything else as deltas. `bytes` must
    /// not end inside an overlay run ([`StateIndex::overlay_run`]).
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::*;
    /// let at = |c: u64, name: &str| Segment { checkpoint: CheckpointId(c), file: StoredFile::of(name, b"x") };
    /// let index = StateIndex {
    ///     segments: vec![at(4, "state-p00000"), at(6, &overlay_name(0, 5)), at(7, &overlay_name(0, 5)), at(8, &segment_name(0))],
    /// };
    /// let bytes = vec![b"b".to_vec(), b"o6".to_vec(), b"o7".to_vec(), b"d".to_vec()];
    /// assert_eq!(
    ///     index.layers(0, &bytes),
    ///     vec![Layer::Base(b"b"), Layer::Overlays(vec![b"o6", b"o7"]), Layer::Delta(b"d")],
    /// );
    /// ```
    pub fn layers<'a>(&self, from: usize, bytes: &'a [Vec<u8>]) -> Vec<Layer<'a>> {
        let mut layers = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let at = from + i;
            match self.overlay_run(at) {
                Some(run) => {
                    let end = (run.end - from).min(bytes.len());
                    layers.push(Layer::Overlays(bytes[i..end].iter().map(Vec::as_slice).collect()));
                    i = end;
                }
                None => {
                    let b = bytes[i].as_slice();
                    layers.push(if at == 0 { Layer::Base(b) } else { Layer::Delta(b) });
                    i += 1;
                }
            }
        }
        layers
    }
}

/// The name of part `k` of a base of partition `partition` written in parts.
///
/// ```
/// assert_eq!(streamweave_distributed::checkpoint::part_name(3, 1), "part-p00003-0001");
/// ```
pub fn part_name(partition: usize, k: usize) -> String {
    format!("{PART_PREFIX}{partition:05}-{k:04}")
}

/// Whether state file `name` is a part of a base written in parts ([`part_name`]).
pub fn is_part_name(name: &str) -> bool {
    name.starts_with(PART_PREFIX)
}

const PART_PREFIX: &str = "part-p";

/// The name of partition `partition`'s overlays written while its state restored from
/// checkpoint `restored` loads (see the module documentation).
///
/// ```
/// use streamweave_distributed::checkpoint::{is_overlay_name, overlay_name};
/// assert_eq!(overlay_name(3, 0x1f), "over-p00003-1f");
/// assert!(is_overlay_name(&overlay_name(3, 0x1f)));
/// ```
pub fn overlay_name(partition: usize, restored: u64) -> String {
    format!("{OVERLAY_PREFIX}{partition:05}-{restored:x}")
}

/// Whether state file `name` is an overlay ([`overlay_name`]).
pub fn is_overlay_name(name: &str) -> bool {
    name.starts_with(OVERLAY_PREFIX)
}

const OVERLAY_PREFIX: &str = "over-p";

/// The name of partition `partition`'s segment in the checkpoint that writes it.
pub fn segment_name(partition: usize) -> String {
    format!("seg-p{partition:05}")
}

/// The name of a base of partition `partition` built apart from the barriers (compaction
/// from the stored segments), in the checkpoint of the last segment it replaces. `nonce` makes
/// it unique: a partition's old owner (or an attempt being cancelled) may still be compacting
/// the same segments, and two files of the same name with different bytes would make one
/// index's size and crc32 a lie.
///
/// ```
/// assert_eq!(streamweave_distributed::checkpoint::compacted_name(3, 0xab), "base-p00003-00000000000000ab");
/// ```
pub fn compacted_name(partition: usize, nonce: u64) -> String {
    format!("base-p{partition:05}-{nonce:016x}")
}

/// The name of partition `partition`'s state index in a checkpoint whose segment for it is a
/// delta (a base is stored under the state file's usual name, `state-pNNNNN`, instead).
pub fn index_name(partition: usize) -> String {
    format!("{INDEX_PREFIX}{partition:05}")
}

/// Whether state file `name` is an index: the coordinator reads those (small) before a commit,
/// and never a base (the whole state).
pub fn is_index_name(name: &str) -> bool {
    name.starts_with(INDEX_PREFIX)
}

const INDEX_PREFIX: &str = "index-p";

/// When a partition writes a new base instead of a delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainPolicy {
    /// The most deltas a chain holds: the next segment after that many is a base.
    pub max_deltas: usize,
    /// A base is also written once the deltas' bytes exceed the base's times this factor
    /// (a restore then reads at most about `1 + factor` times the state).
    pub max_delta_factor: u64,
}

impl Default for ChainPolicy {
    fn default() -> Self {
        ChainPolicy {
            max_deltas: 16,
            max_delta_factor: 1,
        }
    }
}

/// With compaction apart from the barriers, a chain is compacted once it holds this many times
/// the policy's deltas (or its deltas outweigh its base by the policy's factor, as at a
/// barrier). A compaction apart costs more than a base taken at a barrier (it reads and decodes
/// the segments before it encodes the state), so it waits for read amplification rather than
/// a count: small deltas make long chains that a restore still reads quickly.
pub const APART_DELTAS: u64 = 4;

/// How far past the bounds of a compaction apart a chain may grow while one runs
/// ([`PartitionChain::next_kind_apart`]) before a barrier takes a base itself: a compaction that
/// cannot keep up must not let a restore read without bound.
pub const COMPACTION_LAG: u64 = 2;

/// The kind of segment a checkpoint writes for a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// The whole state.
    Base,
    /// The entries changed since the previous segment.
    Delta,
}

/// One partition's chain on the worker that owns it: the index of the last segment it took,
/// and whether the next is a base.
///
/// ```
/// use streamweave_distributed::checkpoint::{ChainPolicy, CheckpointId, PartitionChain, SegmentKind, StoredFile};
/// let mut chain = PartitionChain::new(ChainPolicy::default());
/// assert_eq!(chain.next_kind(), SegmentKind::Base);
/// chain.record(CheckpointId(1), SegmentKind::Base, StoredFile::of("seg-p00000", b"all keys"));
/// assert_eq!(chain.next_kind(), SegmentKind::Delta);
/// let index = chain.record(CheckpointId(2), SegmentKind::Delta, StoredFile::of("seg-p00000", b"k"));
/// assert_eq!(index.segments.len(), 2);
/// chain.reset(); // a write failed: the next segment must not build on it
/// assert_eq!(chain.next_kind(), SegmentKind::Base);
/// ```
#[derive(Clone, Debug)]
pub struct PartitionChain {
    policy: ChainPolicy,
    current: Option<StateIndex>,
    /// The entries of each segment of `current`, where its stage counted them
    /// ([`PartitionChain::counted`]): the read amplification of a restore is then known in
    /// entries, which the bytes only approximate (a state growing by new keys has deltas
    /// outweighing its base and no amplification at all).
    entries: Vec<Option<u64>>,
    /// The entries the stage held at the last barrier that counted them.
    live: Option<u64>,
    /// What the stage holds at the barrier being taken, for [`PartitionChain::record`].
    pending: Option<PendingChanges>,
}

impl PartitionChain {
    /// A partition without a chain: its first segment is a base.
    pub fn new(policy: ChainPolicy) -> Self {
        PartitionChain {
            policy,
            current: None,
            entries: Vec::new(),
            live: None,
            pending: None,
        }
    }

    /// A partition restored from `index`: its next delta builds on it.
    pub fn restored(policy: ChainPolicy, index: StateIndex) -> Self {
        PartitionChain {
            policy,
            entries: vec![None; index.segments.len()],
            current: Some(index),
            live: None,
            pending: None,
        }
    }

    /// What the stage holds at the barrier about to be recorded (`None`: it does not count):
    /// the segment [`PartitionChain::record`] records next holds `pending.changed` entries if a
    /// delta, `pending.entries` if a base.
    pub fn counted(&mut self, pending: Option<PendingChanges>) {
        self.pending = pending;
    }

    /// The kind of the next segment: a base without a chain, or once the chain is past the
    /// policy's bounds (compaction); a delta otherwise.
    pub fn next_kind(&self) -> SegmentKind {
        match &self.current {
            None => SegmentKind::Base,
            Some(index) => {
                if self.past_bounds(index, 1, 1) {
                    SegmentKind::Base
                } else {
                    SegmentKind::Delta
                }
            }
        }
    }

    /// Checkpoint `id` took a segment of `kind`, stored as `file`: the partition's index in it.
    pub fn record(&mut self, id: CheckpointId, kind: SegmentKind, file: StoredFile) -> StateIndex {
        let counted = self.pending.take();
        let entries = counted.map(|p| match kind {
            SegmentKind::Base => p.entries,
            SegmentKind::Delta => p.changed,
        });
        self.live = counted.map(|p| p.entries);
        let segment = Segment { checkpoint: id, file };
        let index = match (kind, self.current.take()) {
            (SegmentKind::Delta, Some(mut index)) => {
                index.segments.push(segment);
                self.entries.push(entries);
                index
            }
            _ => {
                self.entries = vec![entries];
                StateIndex {
                    segments: vec![segment],
                }
            }
        };
        self.current = Some(index.clone());
        index
    }

    /// Checkpoint `id` took a base in parts, stored as `parts` (named by [`part_name`], in
    /// order): the partition's index in it, a new chain.
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::*;
    /// let mut chain = PartitionChain::new(ChainPolicy::default());
    /// let parts = vec![StoredFile::of(&part_name(0, 0), b"ab"), StoredFile::of(&part_name(0, 1), b"c")];
    /// let index = chain.record_parts(CheckpointId(3), parts);
    /// assert_eq!((index.base_parts(), index.deltas()), (2, 0));
    /// assert_eq!(chain.next_kind(), SegmentKind::Delta);
    /// ```
    pub fn record_parts(&mut self, id: CheckpointId, parts: Vec<StoredFile>) -> StateIndex {
        let counted = self.pending.take();
        self.live = counted.map(|p| p.entries);
        // The whole base's entries on its first part: the chain's sum is what matters.
        self.entries = (0..parts.len())
            .map(|k| match k {
                0 => counted.map(|p| p.entries),
                _ => Some(0).filter(|_| counted.is_some()),
            })
            .collect();
        let index = StateIndex {
            segments: parts
                .into_iter()
                .map(|file| Segment { checkpoint: id, file })
                .collect(),
        };
        self.current = Some(index.clone());
        index
    }

    /// With compaction apart from the barriers (a base built from the stored segments beside
    /// the processing, [`PartitionChain::rebase`]): the kind of the next segment, given what the
    /// stage holds at the barrier (`pending`, when it counts its changes). A delta while the
    /// chain stays within [`COMPACTION_LAG`] times the bounds of a compaction apart (one is on
    /// its way); a base without a chain, past those bounds, or when the delta would be at least
    /// half the state: then the whole state costs the barrier at most twice the delta and starts
    /// the chain afresh. A stage that does not count its changes is judged by its last delta,
    /// over a quarter of the base.
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::*;
    /// let mut chain = PartitionChain::new(ChainPolicy::default());
    /// chain.record(CheckpointId(1), SegmentKind::Base, StoredFile::of("state-p00000", &[0; 100]));
    /// chain.record(CheckpointId(2), SegmentKind::Delta, StoredFile::of("seg-p00000", &[0; 60]));
    /// // The state doubled since its base, but only a tenth of it changed since the last delta.
    /// let growing = PendingChanges { changed: 20, entries: 200 };
    /// assert_eq!(chain.next_kind_apart(Some(growing)), SegmentKind::Delta);
    /// let rewritten = PendingChanges { changed: 100, entries: 200 };
    /// assert_eq!(chain.next_kind_apart(Some(rewritten)), SegmentKind::Base);
    /// assert_eq!(chain.next_kind_apart(None), SegmentKind::Base, "60 of 100: the last delta");
    /// ```
    pub fn next_kind_apart(&self, pending: Option<PendingChanges>) -> SegmentKind {
        let Some(index) = &self.current else {
            return SegmentKind::Base;
        };
        let live = pending.map(|p| p.entries);
        let past_lag = self.past_bounds_apart(index, live, APART_DELTAS * COMPACTION_LAG, COMPACTION_LAG);
        let large = match pending {
            Some(p) => p.changed.saturating_mul(2) >= p.entries && p.changed > 0,
            None => Self::last_delta_large(index),
        };
        if past_lag || large {
            SegmentKind::Base
        } else {
            SegmentKind::Delta
        }
    }

    /// Whether the chain is past the bounds of a compaction apart: [`APART_DELTAS`] times the
    /// policy's deltas, or its deltas outweighing its base by the policy's factor over at least
    /// the policy's count of deltas. Fewer, larger deltas mean a state still growing fast: the
    /// barriers go on with deltas until the lag and then take a base, as a compaction apart
    /// would be overtaken and thrown away; so also when the last delta was large.
    ///
    /// Where the stage counts its entries, the chain is weighed in entries against the state
    /// instead ([`PartitionChain::counted`]): a state growing by new keys is compacted only at
    /// the count, and a state whose deltas rewrite the same keys once a restore would read
    /// twice its entries.
    pub fn wants_compaction(&self) -> bool {
        self.current.as_ref().is_some_and(|index| {
            let deltas = index.deltas();
            let counted = self.chain_entries().is_some() && self.live.is_some();
            self.past_bounds_apart(index, self.live, APART_DELTAS, 1)
                && deltas >= self.policy.max_deltas
                && (counted || !Self::last_delta_large(index))
        })
    }

    /// The entries of the chain's segments, if every one was counted.
    fn chain_entries(&self) -> Option<u64> {
        self.entries
            .iter()
            .try_fold(0u64, |sum, n| n.map(|n| sum.saturating_add(n)))
    }

    /// [`PartitionChain::past_bounds`], with the chain weighed in entries against `live`, the
    /// state's entries, where both are known: past the bounds when a restore would read more
    /// than `1 + factor` times the state's entries (the bytes' rule, deltas over `factor` times
    /// the base, reads as much when the base is the state).
    fn past_bounds_apart(
        &self,
        index: &StateIndex,
        live: Option<u64>,
        deltas_times: u64,
        factor_times: u64,
    ) -> bool {
        let (Some(read), Some(live)) = (self.chain_entries(), live.or(self.live)) else {
            return self.past_bounds(index, deltas_times, factor_times);
        };
        let deltas = index.deltas() as u64;
        let factor = self.policy.max_delta_factor.saturating_mul(factor_times);
        deltas >= (self.policy.max_deltas as u64).saturating_mul(deltas_times)
            || read > live.saturating_mul(factor.saturating_add(1))
    }

    /// Whether `index`'s last delta was over a quarter of its base: a barrier then pays little
    /// more for the whole state than for the delta.
    fn last_delta_large(index: &StateIndex) -> bool {
        let base = index.base_bytes();
        let last_delta = index
            .segments
            .iter()
            .skip(index.base_parts())
            .last()
            .map_or(0, |s| s.file.size);
        last_delta.saturating_mul(4) > base
    }

    /// The chain as it is now (none before the first segment, or after [`PartitionChain::reset`]).
    pub fn index(&self) -> Option<&StateIndex> {
        self.current.as_ref()
    }

    /// A compaction apart turned the segments `replaced` (a prefix of the chain when it started)
    /// into `base`, the same state as one file: the chain becomes `base` followed by the
    /// segments after `replaced`. False, and nothing changes, when the chain no longer begins
    /// with `replaced` (it was reset, or compacted otherwise meanwhile).
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::*;
    /// let mut chain = PartitionChain::new(ChainPolicy::default());
    /// chain.record(CheckpointId(1), SegmentKind::Base, StoredFile::of("state-p00000", b"base"));
    /// let replaced = chain.record(CheckpointId(2), SegmentKind::Delta, StoredFile::of("seg-p00000", b"d2"));
    /// chain.record(CheckpointId(3), SegmentKind::Delta, StoredFile::of("seg-p00000", b"d3"));
    /// let base = Segment { checkpoint: CheckpointId(2), file: StoredFile::of("base-p00000-1", b"b2") };
    /// assert!(chain.rebase(&replaced, base.clone()));
    /// let index = chain.index().expect("a chain");
    /// assert_eq!(index.segments[0], base);
    /// assert_eq!(index.segments[1].checkpoint, CheckpointId(3));
    /// assert!(!chain.rebase(&replaced, base), "already rebased");
    /// ```
    pub fn rebase(&mut self, replaced: &StateIndex, base: Segment) -> bool {
        let Some(index) = &mut self.current else {
            return false;
        };
        if replaced.segments.is_empty() || !index.segments.starts_with(&replaced.segments) {
            return false;
        }
        let n = replaced.segments.len();
        index.segments.splice(..n, [base]);
        // The compacted base holds at most the state's entries (or the replaced segments'): an
        // upper bound keeps the amplification estimated on the safe side.
        let replaced_entries = self
            .entries
            .iter()
            .take(n)
            .try_fold(0u64, |sum, e| e.map(|e| sum.saturating_add(e)));
        // Keyed state never loses a key, so the state now holds at least the base's entries:
        // a chain restored without counts (or begun before its stage counted) is counted again
        // from its first compaction on.
        let base_entries = match (replaced_entries, self.live) {
            (Some(r), Some(live)) => Some(r.min(live)),
            (None, Some(live)) => Some(live),
            (_, None) => None,
        };
        self.entries.splice(..n.min(self.entries.len()), [base_entries]);
        true
    }

    /// Whether `index` holds `deltas_times` the policy's deltas, or deltas over `factor_times`
    /// its factor times the base.
    fn past_bounds(&self, index: &StateIndex, deltas_times: u64, factor_times: u64) -> bool {
        let deltas = index.deltas() as u64;
        let base = index.base_bytes();
        let factor = self.policy.max_delta_factor.saturating_mul(factor_times);
        deltas >= (self.policy.max_deltas as u64).saturating_mul(deltas_times)
            || index.delta_bytes() > base.saturating_mul(factor)
    }

    /// Whether a delta could build on the chain (there is one), whatever the policy prefers.
    pub fn has_chain(&self) -> bool {
        self.current.is_some()
    }

    /// A segment could not be stored: nothing may build on the chain, the next segment is a
    /// base.
    pub fn reset(&mut self) {
        self.current = None;
        self.entries.clear();
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
