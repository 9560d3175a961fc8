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
//! [`PartitionChain`] is the worker's bookkeeping for one partition (plain code: which kind of
//! segment comes next, the index after it); compaction is a new base, written when the chain
//! has [`ChainPolicy::max_deltas`] deltas or its deltas outweigh its base, so a restore never
//! reads more than a bounded multiple of the state.

use serde::{Deserialize, Serialize};

use super::{CheckpointError, CheckpointId, StoredFile};

/// The first bytes of an index (a state file written before incremental checkpoints is the
/// partition's whole state and starts with its record count, never with these).
pub const INDEX_MAGIC: [u8; 8] = *b"SWDCHAIN";

/// The index format this build writes and reads.
pub const INDEX_VERSION: u8 = 1;

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
        out.push(INDEX_VERSION);
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
            Some((&INDEX_VERSION, body)) => {
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
                supported: u32::from(INDEX_VERSION),
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

    fn delta_bytes(&self) -> u64 {
        self.segments.iter().skip(1).map(|s| s.file.size).sum()
    }
}

/// The name of partition `partition`'s segment in the checkpoint that writes it.
pub fn segment_name(partition: usize) -> String {
    format!("seg-p{partition:05}")
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
}

impl PartitionChain {
    /// A partition without a chain: its first segment is a base.
    pub fn new(policy: ChainPolicy) -> Self {
        PartitionChain {
            policy,
            current: None,
        }
    }

    /// A partition restored from `index`: its next delta builds on it.
    pub fn restored(policy: ChainPolicy, index: StateIndex) -> Self {
        PartitionChain {
            policy,
            current: Some(index),
        }
    }

    /// The kind of the next segment: a base without a chain, or once the chain is past the
    /// policy's bounds (compaction); a delta otherwise.
    pub fn next_kind(&self) -> SegmentKind {
        match &self.current {
            None => SegmentKind::Base,
            Some(index) => {
                let deltas = index.segments.len().saturating_sub(1);
                let base = index.segments.first().map_or(0, |s| s.file.size);
                let heavy = index.delta_bytes() > base.saturating_mul(self.policy.max_delta_factor);
                if deltas >= self.policy.max_deltas || heavy {
                    SegmentKind::Base
                } else {
                    SegmentKind::Delta
                }
            }
        }
    }

    /// Checkpoint `id` took a segment of `kind`, stored as `file`: the partition's index in it.
    pub fn record(&mut self, id: CheckpointId, kind: SegmentKind, file: StoredFile) -> StateIndex {
        let segment = Segment { checkpoint: id, file };
        let index = match (kind, self.current.take()) {
            (SegmentKind::Delta, Some(mut index)) => {
                index.segments.push(segment);
                index
            }
            _ => StateIndex {
                segments: vec![segment],
            },
        };
        self.current = Some(index.clone());
        index
    }

    /// Whether a delta could build on the chain (there is one), whatever the policy prefers.
    pub fn has_chain(&self) -> bool {
        self.current.is_some()
    }

    /// A segment could not be stored: nothing may build on the chain, the next segment is a
    /// base.
    pub fn reset(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
