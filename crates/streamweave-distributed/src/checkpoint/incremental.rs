//! Incremental state against a store: reading a partition's state (a whole state written before
//! incremental checkpoints, or an index and its segments), and the coordinator's step before a
//! commit that copies every partition's segments into the manifest's `refs`.
//!
//! ```text
//! worker restore:     read_state(store, n, "index-p00003") -> Chain(index) -> get each segment
//! coordinator commit: resolve_refs(store, &mut manifest)   -> manifest.refs = every index's segments
//! ```

use super::{CheckpointError, CheckpointId, CheckpointStore, Manifest, StateIndex, StoredFile};

/// A partition's state file, read.
#[derive(Debug, PartialEq, Eq)]
pub enum StateRead {
    /// The whole state (written before incremental checkpoints).
    Whole(Vec<u8>),
    /// An index: read its segments with [`CheckpointStore::get_listed`], base first.
    Chain(StateIndex),
}

/// Reads state file `name` of checkpoint `id`.
///
/// ```
/// use streamweave_distributed::checkpoint::*;
/// let store = MemoryStore::new();
/// let base = store.put(CheckpointId(1), &segment_name(0), b"base")?;
/// let index = StateIndex { segments: vec![Segment { checkpoint: CheckpointId(1), file: base }] };
/// store.put(CheckpointId(1), &index_name(0), &index.encode()?)?;
/// assert_eq!(read_state(&store, CheckpointId(1), &index_name(0))?, StateRead::Chain(index));
/// store.put(CheckpointId(1), "state-p00001", b"whole")?;
/// assert_eq!(read_state(&store, CheckpointId(1), "state-p00001")?, StateRead::Whole(b"whole".to_vec()));
/// # Ok::<(), CheckpointError>(())
/// ```
pub fn read_state(
    store: &dyn CheckpointStore,
    id: CheckpointId,
    name: &str,
) -> Result<StateRead, CheckpointError> {
    let bytes = store.get(id, name)?;
    Ok(match StateIndex::decode(id, name, &bytes)? {
        Some(index) => StateRead::Chain(index),
        None => StateRead::Whole(bytes),
    })
}

/// Fills `manifest.refs` with the segments of every partition's state index (reading each
/// index, a few dozen bytes, checked against the size and crc32 its worker reported), before
/// the manifest is committed. State files not named as indexes ([`is_index_name`](super::is_index_name))
/// are whole states (bases): they refer to nothing and are not read.
pub fn resolve_refs(store: &dyn CheckpointStore, manifest: &mut Manifest) -> Result<(), CheckpointError> {
    let id = manifest.id;
    let indexes: Vec<&StoredFile> = (manifest.entries.iter())
        .map(|e| &e.state)
        .filter(|s| super::is_index_name(&s.name))
        .collect();
    let read = |state: &&StoredFile| -> Result<Option<StateIndex>, CheckpointError> {
        let bytes = store.get_listed(id, state)?;
        StateIndex::decode(id, &state.name, &bytes)
    };
    let mut refs = Vec::new();
    for index in super::parallel::map(&indexes, read) {
        refs.extend(index?.into_iter().flat_map(|i| i.segments));
    }
    manifest.refs = refs;
    Ok(())
}
