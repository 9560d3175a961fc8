//! Checkpoint files read back from a store: the framing, the manifest, and recovery's choice of
//! checkpoint, over a [`MemoryStore`] holding the fuzzer's bytes.

use streamweave_distributed::checkpoint::{
    scan_latest, CheckpointError, CheckpointId, CheckpointStore, MemoryStore, MANIFEST_NAME,
};
use streamweave_distributed::fuzzing::frame_checkpoint_file;

/// The data file names a restore input can store (a manifest lists files by name).
const NAMES: [&str; 3] = ["state-p00000", "offsets-p00000", "state-p00001"];

/// Decodes `data` (after a mode byte: even frames the rest, so that the JSON decoder is reached
/// behind a valid checksum; odd stores it as is, for the framing's checks) as the manifest of a
/// checkpoint. A manifest that decodes must name its checkpoint, and commit and read back equal
/// (recovery accepts only what a coordinator could have written).
pub fn manifest(data: &[u8]) {
    let Some((mode, body)) = crate::take_byte(data) else {
        return;
    };
    let id = CheckpointId(7);
    let store = MemoryStore::new();
    let bytes = if mode % 2 == 0 {
        frame_checkpoint_file(body)
    } else {
        body.to_vec()
    };
    store
        .write_object(id, MANIFEST_NAME, &bytes)
        .expect("a memory store writes");
    let Ok(manifest) = store.manifest(id) else {
        return;
    };
    assert_eq!(manifest.id, id);
    let _ = manifest.partition_entries();
    // What recovery accepts, a coordinator could have written: it commits and reads back equal.
    let fresh = MemoryStore::new();
    if let Err(e) = fresh.commit(&manifest) {
        panic!("a manifest that decodes does not commit: {e}");
    }
    assert_eq!(
        fresh.manifest(id).expect("a committed manifest reads back"),
        manifest
    );
}

/// Fills a store from `data`, a sequence of objects `[slot, len u16 LE, bytes...]` (the slot's bits
/// 4-5 pick checkpoint 0-3, its low nibble the object: 0 a framed manifest, 1 a raw one, 2-7 a
/// framed data file, 8-15 a raw one), then recovers from it. Recovery from a store that never
/// fails must succeed or stop at a manifest of a format version this build does not read (on
/// purpose: falling back past a newer checkpoint would lose progress), skip only damaged
/// checkpoints, pick one whose listed files are present
/// with their sizes, and reading a listed file back must give its bytes or a damage error.
pub fn restore(data: &[u8]) {
    let store = MemoryStore::new();
    let mut rest = data;
    while let [slot, len0, len1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*len0, *len1]));
        let (bytes, after) = tail.split_at(len.min(tail.len()));
        rest = after;
        let id = CheckpointId(u64::from((slot >> 4) & 3));
        let kind = slot & 0xf;
        let name = match kind {
            0 | 1 => MANIFEST_NAME,
            k => NAMES[usize::from(k) % NAMES.len()],
        };
        let framed = matches!(kind, 0 | 2..=7);
        let object = if framed {
            frame_checkpoint_file(bytes)
        } else {
            bytes.to_vec()
        };
        store
            .write_object(id, name, &object)
            .expect("a memory store writes");
    }
    let recovery = match scan_latest(&store) {
        Ok(recovery) => recovery,
        Err(CheckpointError::UnsupportedVersion { .. }) => return,
        Err(e) => panic!("a memory store never fails, yet recovery failed: {e:?}"),
    };
    for skipped in &recovery.skipped {
        assert!(skipped.error.is_damage(), "{:?}", skipped.error);
    }
    let Some(manifest) = recovery.manifest else {
        return;
    };
    assert!(recovery.skipped.iter().all(|s| s.id > manifest.id));
    for file in &manifest.files {
        match store.get_listed(manifest.id, file) {
            Ok(bytes) => assert_eq!(bytes.len() as u64, file.size),
            Err(e) => assert!(e.is_damage(), "reading listed file {:?}: {e:?}", file.name),
        }
    }
    let _ = manifest.partition_entries();
}
