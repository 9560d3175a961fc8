//! Garbage collection by reference, for [`CheckpointStore::retain`]: which files of older
//! checkpoints the retained ones still refer to (incremental state segments), and which files a
//! checkpoint wrote itself.

use std::collections::{BTreeMap, BTreeSet};

use super::{CheckpointError, CheckpointId, CheckpointStore};

/// By checkpoint: the names of its files that one of the `kept` checkpoints refers to. A kept
/// checkpoint whose manifest is damaged refers to nothing (it cannot be restored); any other
/// failure to read one stops the collection, so that nothing still needed is deleted.
pub(super) fn live_files<S: CheckpointStore + ?Sized + Sync>(
    store: &S,
    kept: &[CheckpointId],
) -> Result<BTreeMap<CheckpointId, BTreeSet<String>>, CheckpointError> {
    let mut live: BTreeMap<CheckpointId, BTreeSet<String>> = BTreeMap::new();
    let manifests = super::parallel::map(kept, |&id| store.manifest(id));
    for (&id, manifest) in kept.iter().zip(manifests) {
        let manifest = match manifest {
            Ok(manifest) => manifest,
            Err(e) if e.is_damage() => continue,
            Err(e) => return Err(e),
        };
        for r in manifest.refs.into_iter().filter(|r| r.checkpoint != id) {
            live.entry(r.checkpoint).or_default().insert(r.file.name);
        }
    }
    Ok(live)
}

/// The files committed checkpoint `id` wrote, as its manifest lists them (its data files and
/// its own segments); `None` if the manifest cannot be read.
pub(super) fn own_names<S: CheckpointStore + ?Sized>(store: &S, id: CheckpointId) -> Option<Vec<String>> {
    let manifest = store.manifest(id).ok()?;
    let files = manifest.files.into_iter().map(|f| f.name);
    let own = manifest
        .refs
        .into_iter()
        .filter(|r| r.checkpoint == id)
        .map(|r| r.file.name);
    Some(files.chain(own).collect())
}
