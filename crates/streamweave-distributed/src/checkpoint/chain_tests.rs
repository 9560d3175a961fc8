//! The bookkeeping of incremental state: chains, compaction, the index format, manifests that
//! refer to older checkpoints, and retention by reference.

use super::*;
use crate::checkpoint::{
    frame, read_state, resolve_refs, CheckpointStore, LocalDirStore, Manifest, MemoryStore, PartitionEntry,
    StateRead, MANIFEST_NAME, MANIFEST_VERSION,
};

fn file(name: &str, size: usize) -> StoredFile {
    StoredFile::of(name, &vec![7u8; size])
}

#[test]
fn a_chain_starts_with_a_base_then_appends_deltas() {
    let mut chain = PartitionChain::new(ChainPolicy::default());
    assert_eq!(chain.next_kind(), SegmentKind::Base);
    let index = chain.record(CheckpointId(3), SegmentKind::Base, file("state-p00001", 1000));
    assert_eq!(index.segments.len(), 1);
    assert_eq!(chain.next_kind(), SegmentKind::Delta);
    let index = chain.record(CheckpointId(4), SegmentKind::Delta, file("seg-p00001", 10));
    let at: Vec<u64> = index.segments.iter().map(|s| s.checkpoint.0).collect();
    assert_eq!(at, vec![3, 4]);
    assert_eq!(index.written_at(CheckpointId(4)), 10);
    assert_eq!(index.referenced_bytes(), 1010);
}

#[test]
fn a_chain_compacts_after_max_deltas() {
    let policy = ChainPolicy {
        max_deltas: 3,
        max_delta_factor: 100,
    };
    let mut chain = PartitionChain::new(policy);
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 100));
    for id in 2..=4 {
        assert_eq!(chain.next_kind(), SegmentKind::Delta, "delta {id}");
        chain.record(CheckpointId(id), SegmentKind::Delta, file("seg-p00000", 1));
    }
    assert_eq!(
        chain.next_kind(),
        SegmentKind::Base,
        "three deltas: the next is a base"
    );
    let index = chain.record(CheckpointId(5), SegmentKind::Base, file("state-p00000", 100));
    assert_eq!(index.segments.len(), 1, "a base starts a new chain");
    assert_eq!(chain.next_kind(), SegmentKind::Delta);
}

#[test]
fn a_chain_compacts_once_its_deltas_outweigh_its_base() {
    let mut chain = PartitionChain::new(ChainPolicy {
        max_deltas: 100,
        max_delta_factor: 1,
    });
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 100));
    chain.record(CheckpointId(2), SegmentKind::Delta, file("seg-p00000", 60));
    assert_eq!(chain.next_kind(), SegmentKind::Delta, "60 of 100");
    chain.record(CheckpointId(3), SegmentKind::Delta, file("seg-p00000", 60));
    assert_eq!(chain.next_kind(), SegmentKind::Base, "120 of 100");
}

#[test]
fn a_failed_write_makes_the_next_segment_a_base_and_a_restored_chain_continues() {
    let base = Segment {
        checkpoint: CheckpointId(9),
        file: file("state-p00002", 50),
    };
    let mut chain = PartitionChain::restored(
        ChainPolicy::default(),
        StateIndex {
            segments: vec![base.clone()],
        },
    );
    assert_eq!(chain.next_kind(), SegmentKind::Delta);
    let index = chain.record(CheckpointId(10), SegmentKind::Delta, file("seg-p00002", 5));
    assert_eq!(index.segments[0], base, "the delta builds on the restored base");
    chain.reset();
    assert_eq!(chain.next_kind(), SegmentKind::Base);
}

#[test]
fn an_index_round_trips_and_a_whole_state_is_not_an_index() {
    let index = StateIndex {
        segments: vec![Segment {
            checkpoint: CheckpointId(1),
            file: file("state-p00000", 3),
        }],
    };
    let bytes = index.encode().unwrap();
    assert_eq!(
        StateIndex::decode(CheckpointId(1), "state-p00000", &bytes).unwrap(),
        Some(index)
    );
    let whole = 5u64.to_le_bytes();
    assert_eq!(StateIndex::decode(CheckpointId(1), "x", &whole).unwrap(), None);
}

#[test]
fn only_a_chain_with_overlays_is_written_as_version_two() {
    let mut chain = PartitionChain::new(ChainPolicy::default());
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 10));
    let plain = chain.record(CheckpointId(2), SegmentKind::Delta, file(&segment_name(0), 1));
    assert_eq!(
        plain.encode().unwrap()[INDEX_MAGIC.len()],
        INDEX_VERSION,
        "older builds read it"
    );
    let overlaid = chain.record(CheckpointId(3), SegmentKind::Delta, file(&overlay_name(0, 2), 1));
    let bytes = overlaid.encode().unwrap();
    assert_eq!(
        bytes[INDEX_MAGIC.len()],
        INDEX_VERSION_OVERLAYS,
        "older builds refuse it"
    );
    assert_eq!(
        StateIndex::decode(CheckpointId(3), "index-p00000", &bytes).unwrap(),
        Some(overlaid.clone())
    );
    assert!(overlaid.continues_after(2) && overlaid.continues_after(3));
    // After a delta the chain is past the run: still version two, since the run is in it.
    let after = chain.record(CheckpointId(4), SegmentKind::Delta, file(&segment_name(0), 1));
    assert_eq!(after.encode().unwrap()[INDEX_MAGIC.len()], INDEX_VERSION_OVERLAYS);
    assert_eq!(after.overlay_run(2), Some(2..3));
}

#[test]
fn an_index_of_an_unknown_version_or_truncated_is_refused() {
    let mut bytes = INDEX_MAGIC.to_vec();
    bytes.push(INDEX_VERSION_OVERLAYS + 1);
    let err = StateIndex::decode(CheckpointId(4), "state-p00000", &bytes).unwrap_err();
    assert!(
        matches!(err, CheckpointError::UnsupportedVersion { version: 3, .. }),
        "{err}"
    );
    assert!(!err.is_damage(), "a newer format is not damage");
    let err = StateIndex::decode(CheckpointId(4), "state-p00000", &INDEX_MAGIC).unwrap_err();
    assert!(err.is_damage(), "{err}");
    let mut empty = INDEX_MAGIC.to_vec();
    empty.push(INDEX_VERSION);
    empty.extend(postcard::to_stdvec(&StateIndex::default()).unwrap());
    let err = StateIndex::decode(CheckpointId(4), "state-p00000", &empty).unwrap_err();
    assert!(err.to_string().contains("without a base"), "{err}");
}

#[test]
fn a_manifest_of_an_unknown_version_is_refused_with_a_clear_error() {
    let store = MemoryStore::new();
    let mut manifest = Manifest::new(CheckpointId(2), "job", 1, 0, 0);
    assert_eq!(manifest.version, MANIFEST_VERSION);
    manifest.version = MANIFEST_VERSION + 1;
    store.commit(&manifest).unwrap();
    let err = store.manifest(CheckpointId(2)).unwrap_err();
    assert!(
        err.to_string()
            .contains("manifest format version 3 is not supported"),
        "{err}"
    );
    // Recovery stops there instead of falling back past it.
    assert!(crate::checkpoint::scan_latest(&store).is_err());
}

#[test]
fn a_manifest_without_a_version_is_version_one() {
    let store = MemoryStore::new();
    let json = br#"{"id":3,"job":"j","attempt":1,"created_ms":0,"files":[],"partitions":0}"#;
    store
        .write_object(CheckpointId(3), MANIFEST_NAME, &frame::frame(json))
        .unwrap();
    let manifest = store.manifest(CheckpointId(3)).unwrap();
    assert_eq!((manifest.version, manifest.refs.len()), (1, 0));
}

/// Writes checkpoint `id` of one partition as a worker would: a base (`base`) or a delta over
/// `chain`, then commits it as the coordinator would (refs resolved).
fn checkpoint(store: &dyn CheckpointStore, chain: &mut PartitionChain, id: u64, payload: &[u8]) -> Manifest {
    let id = CheckpointId(id);
    let kind = chain.next_kind();
    let state = match kind {
        SegmentKind::Base => store.put(id, "state-p00000", payload).unwrap(),
        SegmentKind::Delta => {
            let seg = store.put(id, &segment_name(0), payload).unwrap();
            let index = chain.record(id, kind, seg);
            store.put(id, &index_name(0), &index.encode().unwrap()).unwrap()
        }
    };
    if kind == SegmentKind::Base {
        chain.record(id, kind, state.clone());
    }
    let mut manifest = Manifest::new(id, "job", 1, 0, 1);
    manifest.add_partition(PartitionEntry {
        partition: 0,
        state,
        source_offset: id.0,
        source_exhausted: false,
        source_records: id.0,
    });
    resolve_refs(store, &mut manifest).unwrap();
    store.commit(&manifest).unwrap();
    manifest
}

fn retention_keeps_what_retained_checkpoints_refer_to(store: &dyn CheckpointStore) {
    let mut chain = PartitionChain::new(ChainPolicy {
        max_deltas: 2,
        max_delta_factor: 100,
    });
    let base = vec![1u8; 1000];
    let m1 = checkpoint(store, &mut chain, 1, &base);
    assert_eq!((m1.written_bytes(), m1.referenced_bytes()), (1000, 1000));
    let m2 = checkpoint(store, &mut chain, 2, b"delta2");
    let at: Vec<u64> = m2.refs.iter().map(|r| r.checkpoint.0).collect();
    assert_eq!(
        at,
        vec![1, 2],
        "checkpoint 2 refers to the base in 1 and its own delta"
    );
    assert!(
        m2.written_bytes() < 100,
        "a delta writes little: {}",
        m2.written_bytes()
    );
    assert!(m2.referenced_bytes() > 1000);
    // Keep one: checkpoint 1 loses its manifest but keeps the base that 2 refers to.
    assert!(store.retain(1).unwrap().is_empty(), "nothing deleted entirely");
    assert_eq!(store.completed().unwrap(), vec![CheckpointId(2)]);
    let restored = crate::checkpoint::restore_latest(store).unwrap().unwrap();
    assert_eq!(restored.id, CheckpointId(2));
    let StateRead::Chain(index) = read_state(store, CheckpointId(2), &index_name(0)).unwrap() else {
        panic!("an index");
    };
    assert_eq!(
        store
            .get_listed(index.segments[0].checkpoint, &index.segments[0].file)
            .unwrap(),
        base
    );

    checkpoint(store, &mut chain, 3, b"delta3");
    // Compaction: a new base at 4; once 2 and 3 are gone nothing refers to 1 any more.
    let m4 = checkpoint(store, &mut chain, 4, &[4u8; 1000]);
    assert!(
        m4.refs.is_empty(),
        "a base is the state file itself: {:?}",
        m4.refs
    );
    let deleted = store.retain(1).unwrap();
    assert_eq!(deleted, vec![CheckpointId(1), CheckpointId(2), CheckpointId(3)]);
    assert!(store.get(CheckpointId(1), "state-p00000").is_err());
    assert_eq!(store.completed().unwrap(), vec![CheckpointId(4)]);
}

#[test]
fn retention_keeps_referenced_segments_in_memory() {
    retention_keeps_what_retained_checkpoints_refer_to(&MemoryStore::new());
}

#[test]
fn retention_keeps_referenced_segments_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    retention_keeps_what_retained_checkpoints_refer_to(&LocalDirStore::new(dir.path()).unwrap());
}

/// Checks that every committed checkpoint of `store` still has all the files it lists and
/// refers to: what a reader (or a crash) in the middle of retention would find.
fn check_committed(store: &MemoryStore, checks: &std::sync::atomic::AtomicUsize) {
    checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for id in store.completed().unwrap() {
        if let Err(e) = store.verify(id) {
            panic!("mid-retention, committed checkpoint {id} is damaged: {e}");
        }
    }
}

#[test]
fn retention_never_leaves_a_committed_checkpoint_without_its_files() {
    // Checkpoints 1-3 form one chain (2 and 3 rest on 1's base), 4 starts the next: keeping
    // one drops 1-3, and 3 must lose its manifest before 1 loses its base.
    use crate::checkpoint::hooked::{Hooked, Op};
    let (inner, checks) = (
        MemoryStore::new(),
        std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    );
    // Before each deletion of a data file, every committed checkpoint must be whole.
    let (watched, counted) = (inner.clone(), std::sync::Arc::clone(&checks));
    let store = Hooked::new(&inner, move |op, _, name| {
        if op == Op::DeleteCheckpoint || (op == Op::Delete && name != MANIFEST_NAME) {
            check_committed(&watched, &counted);
        }
        Ok(())
    });
    let mut chain = PartitionChain::new(ChainPolicy {
        max_deltas: 2,
        max_delta_factor: 100,
    });
    checkpoint(&store, &mut chain, 1, &[1u8; 100]);
    checkpoint(&store, &mut chain, 2, b"d2");
    checkpoint(&store, &mut chain, 3, b"d3");
    checkpoint(&store, &mut chain, 4, &[4u8; 100]);
    let deleted = store.retain(1).unwrap();
    assert_eq!(deleted, vec![CheckpointId(1), CheckpointId(2), CheckpointId(3)]);
    assert!(checks.load(std::sync::atomic::Ordering::Relaxed) >= 3);
    assert_eq!(store.completed().unwrap(), vec![CheckpointId(4)]);
}

#[test]
fn a_missing_base_makes_the_checkpoint_that_refers_to_it_damaged() {
    let store = MemoryStore::new();
    let mut chain = PartitionChain::new(ChainPolicy::default());
    checkpoint(&store, &mut chain, 1, &[1u8; 100]);
    checkpoint(&store, &mut chain, 2, b"d");
    store.delete_object(CheckpointId(1), "state-p00000").unwrap();
    // 2 refers to 1's base, and 1 lists it: neither is intact.
    let recovery = crate::checkpoint::scan_latest(&store).unwrap();
    assert!(recovery.manifest.is_none());
    assert_eq!(recovery.skipped.len(), 2);
    assert!(
        recovery.skipped[0].error.to_string().contains("checkpoint 1"),
        "{}",
        recovery.skipped[0].error
    );
}

#[test]
fn an_uncommitted_checkpoint_a_committed_one_refers_to_survives_retention() {
    // Checkpoint 2 timed out (never committed), but partition 0's chain at 3 builds on its delta.
    let store = MemoryStore::new();
    let mut chain = PartitionChain::new(ChainPolicy::default());
    checkpoint(&store, &mut chain, 1, &[1u8; 100]);
    let seg = store.put(CheckpointId(2), &segment_name(0), b"d2").unwrap();
    chain.record(CheckpointId(2), SegmentKind::Delta, seg);
    store.put(CheckpointId(2), "offsets-p00001", b"other").unwrap();
    checkpoint(&store, &mut chain, 3, b"d3");
    store.retain(1).unwrap();
    assert_eq!(store.get(CheckpointId(2), &segment_name(0)).unwrap(), b"d2");
    assert!(crate::checkpoint::restore_latest(&store).unwrap().is_some());
    // Once a base supersedes it, it goes.
    chain.reset();
    checkpoint(&store, &mut chain, 4, &[4u8; 100]);
    let deleted = store.retain(1).unwrap();
    assert!(deleted.contains(&CheckpointId(2)), "{deleted:?}");
}

#[test]
fn the_coordinator_reads_indexes_before_a_commit_never_a_base() {
    let store = MemoryStore::new();
    let id = CheckpointId(1);
    // A base (the whole state) that the coordinator must not download: absent here, so a read
    // would fail.
    let base = StoredFile::of("state-p00000", &[9u8; 64]);
    let seg = store.put(id, &segment_name(1), b"delta").unwrap();
    let index = StateIndex {
        segments: vec![
            Segment {
                checkpoint: CheckpointId(0),
                file: file("state-p00001", 10),
            },
            Segment {
                checkpoint: id,
                file: seg,
            },
        ],
    };
    let indexed = store.put(id, &index_name(1), &index.encode().unwrap()).unwrap();
    let mut manifest = Manifest::new(id, "job", 1, 0, 2);
    for (partition, state) in [(0, base), (1, indexed)] {
        manifest.add_partition(PartitionEntry {
            partition,
            state,
            source_offset: 0,
            source_exhausted: false,
            source_records: 0,
        });
    }
    resolve_refs(&store, &mut manifest).unwrap();
    assert_eq!(manifest.refs, index.segments);
    assert!(is_index_name(&index_name(3)) && !is_index_name("state-p00003"));
}

#[test]
fn retention_keeps_referenced_segments_in_an_object_store() {
    let url = crate::storage::StorageUrl::parse("memory://chain-retention/ckpt").unwrap();
    let store = crate::checkpoint::ObjectCheckpointStore::open(&url).unwrap();
    retention_keeps_what_retained_checkpoints_refer_to(&store);
}

/// Needs the S3 server that `scripts/tier2.sh` starts.
mod tier2 {
    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn retention_keeps_referenced_segments_on_s3() {
        let url = crate::storage::tests::tier2::s3_test_url("chain-retention");
        let store = crate::checkpoint::ObjectCheckpointStore::open(&url).unwrap();
        super::retention_keeps_what_retained_checkpoints_refer_to(&store);
    }
}

#[test]
fn apart_a_barrier_takes_deltas_until_the_lag_then_a_base() {
    let policy = ChainPolicy {
        max_deltas: 3,
        max_delta_factor: 100,
    };
    let mut chain = PartitionChain::new(policy);
    assert_eq!(chain.next_kind_apart(None), SegmentKind::Base, "no chain yet");
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 1000));
    let (apart, lag) = (3 * APART_DELTAS, 3 * APART_DELTAS * COMPACTION_LAG);
    for id in 2..2 + lag {
        assert_eq!(chain.next_kind_apart(None), SegmentKind::Delta, "delta {id}");
        chain.record(CheckpointId(id), SegmentKind::Delta, file("seg-p00000", 1));
        let deltas = id - 1;
        assert_eq!(chain.wants_compaction(), deltas >= apart, "{deltas} deltas");
        assert_eq!(
            chain.next_kind(),
            if deltas >= 3 {
                SegmentKind::Base
            } else {
                SegmentKind::Delta
            },
            "at a barrier: compacted after 3 deltas"
        );
    }
    assert_eq!(
        chain.next_kind_apart(None),
        SegmentKind::Base,
        "a compaction that never came: the barrier takes the base"
    );
}

#[test]
fn apart_many_small_deltas_outweighing_the_base_want_a_compaction() {
    let policy = ChainPolicy {
        max_deltas: 4,
        max_delta_factor: 1,
    };
    let mut chain = PartitionChain::new(policy);
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 100));
    for id in 2..=4 {
        chain.record(CheckpointId(id), SegmentKind::Delta, file("seg-p00000", 20));
    }
    chain.record(CheckpointId(5), SegmentKind::Delta, file("seg-p00000", 41));
    assert!(
        !chain.wants_compaction(),
        "101 of 100, but the last delta was over a quarter of the base"
    );
    let mut chain = PartitionChain::new(policy);
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 100));
    for id in 2..=4 {
        chain.record(CheckpointId(id), SegmentKind::Delta, file("seg-p00000", 34));
    }
    assert!(
        !chain.wants_compaction(),
        "102 of 100 in three deltas: a state growing fast takes its base at a barrier"
    );
    assert_eq!(
        chain.next_kind_apart(None),
        SegmentKind::Base,
        "34 of 100: over a quarter"
    );
    let mut chain = PartitionChain::new(policy);
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 100));
    for id in 2..=5 {
        chain.record(CheckpointId(id), SegmentKind::Delta, file("seg-p00000", 24));
    }
    assert!(!chain.wants_compaction(), "96 of 100");
    chain.record(CheckpointId(6), SegmentKind::Delta, file("seg-p00000", 5));
    assert!(chain.wants_compaction(), "101 of 100 over five deltas");
    assert_eq!(
        chain.next_kind_apart(None),
        SegmentKind::Delta,
        "a compaction apart, not a base"
    );
}

#[test]
fn apart_a_delta_as_large_as_a_quarter_of_the_base_is_followed_by_a_base() {
    let mut chain = PartitionChain::new(ChainPolicy::default());
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 100));
    chain.record(CheckpointId(2), SegmentKind::Delta, file("seg-p00000", 20));
    assert_eq!(chain.next_kind_apart(None), SegmentKind::Delta, "20 of 100");
    chain.record(CheckpointId(3), SegmentKind::Delta, file("seg-p00000", 26));
    assert_eq!(
        chain.next_kind_apart(None),
        SegmentKind::Base,
        "26 of 100: a base costs the barrier little more than the delta"
    );
    chain.record(CheckpointId(4), SegmentKind::Delta, file("seg-p00000", 60));
    assert!(
        !chain.wants_compaction(),
        "106 of 100, but the next barrier takes a base: no compaction apart to throw away"
    );
}

#[test]
fn a_compacted_base_replaces_only_the_prefix_it_was_built_from() {
    let mut chain = PartitionChain::new(ChainPolicy::default());
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 100));
    let replaced = chain.record(CheckpointId(2), SegmentKind::Delta, file("seg-p00000", 3));
    let compacted = Segment {
        checkpoint: CheckpointId(2),
        file: file("base-p00000-0000000000000001", 101),
    };
    // The chain was reset (a failed write) and started again: the base belongs to no chain.
    chain.reset();
    assert!(!chain.rebase(&replaced, compacted.clone()));
    chain.record(CheckpointId(3), SegmentKind::Base, file("state-p00000", 100));
    assert!(!chain.rebase(&replaced, compacted.clone()));
    assert_eq!(chain.index().unwrap().segments[0].checkpoint, CheckpointId(3));
    // An empty replacement is never a prefix worth rebasing.
    assert!(!chain.rebase(&StateIndex::default(), compacted));
}

#[test]
fn apart_a_stage_counting_its_changes_takes_a_base_only_when_the_delta_is_half_the_state() {
    let mut chain = PartitionChain::new(ChainPolicy::default());
    let pending = |changed, entries| Some(PendingChanges { changed, entries });
    assert_eq!(
        chain.next_kind_apart(pending(10, 10)),
        SegmentKind::Base,
        "no chain yet"
    );
    chain.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 100));
    chain.record(CheckpointId(2), SegmentKind::Delta, file("seg-p00000", 60));
    assert_eq!(
        chain.next_kind_apart(None),
        SegmentKind::Base,
        "uncounted: the last delta, 60 of 100, decides"
    );
    assert_eq!(
        chain.next_kind_apart(pending(16, 200)),
        SegmentKind::Delta,
        "a state that grew fast, then slower: the delta is what changed since"
    );
    assert_eq!(chain.next_kind_apart(pending(99, 200)), SegmentKind::Delta);
    assert_eq!(
        chain.next_kind_apart(pending(100, 200)),
        SegmentKind::Base,
        "half the state changed: the base costs at most twice the delta"
    );
    assert_eq!(
        chain.next_kind_apart(pending(0, 0)),
        SegmentKind::Delta,
        "an empty state: an empty delta"
    );
    for id in 3..3 + ChainPolicy::default().max_deltas as u64 * APART_DELTAS * COMPACTION_LAG {
        chain.record(CheckpointId(id), SegmentKind::Delta, file("seg-p00000", 0));
    }
    assert_eq!(
        chain.next_kind_apart(pending(1, 200)),
        SegmentKind::Base,
        "past the lag of a compaction apart, counted or not"
    );
}

/// Records a segment of `bytes` taken when the stage held `pending`.
fn record_counted(
    chain: &mut PartitionChain,
    id: u64,
    kind: SegmentKind,
    bytes: u64,
    pending: PendingChanges,
) {
    chain.counted(Some(pending));
    let name = match kind {
        SegmentKind::Base => "state-p00000",
        SegmentKind::Delta => "seg-p00000",
    };
    chain.record(CheckpointId(id), kind, file(name, bytes as usize));
}

#[test]
fn apart_counted_a_state_growing_by_new_keys_is_not_amplified_however_its_deltas_outweigh_the_base() {
    let mut chain = PartitionChain::new(ChainPolicy::default());
    let grown = |entries| PendingChanges {
        changed: 100,
        entries,
    };
    record_counted(&mut chain, 1, SegmentKind::Base, 1000, grown(1000));
    // Each checkpoint adds 100 new keys: deltas of new keys only, each as large as the base.
    for id in 2..=40u64 {
        let pending = grown(1000 + 100 * (id - 1));
        assert_eq!(
            chain.next_kind_apart(Some(pending)),
            SegmentKind::Delta,
            "checkpoint {id}: the deltas' bytes are {} times the base's, their entries new keys",
            id - 2
        );
        record_counted(&mut chain, id, SegmentKind::Delta, 1000, pending);
        assert!(!chain.wants_compaction(), "checkpoint {id}: no amplification");
    }
    // By bytes alone, the same chain is long past the lag.
    assert_eq!(chain.next_kind_apart(None), SegmentKind::Base);
    for id in 41..=65u64 {
        record_counted(
            &mut chain,
            id,
            SegmentKind::Delta,
            1000,
            grown(1000 + 100 * (id - 1)),
        );
    }
    assert!(chain.wants_compaction(), "64 deltas: compacted at the count");
}

#[test]
fn apart_counted_deltas_rewriting_the_same_keys_are_compacted_once_they_outnumber_the_state() {
    let mut chain = PartitionChain::new(ChainPolicy::default());
    let hot = PendingChanges {
        changed: 100,
        entries: 1000,
    };
    record_counted(&mut chain, 1, SegmentKind::Base, 10_000, hot);
    for id in 2..=11u64 {
        record_counted(&mut chain, id, SegmentKind::Delta, 1000, hot);
    }
    assert!(
        !chain.wants_compaction(),
        "1000 delta entries over 1000: not more, and fewer than 16 deltas"
    );
    for id in 12..=17u64 {
        record_counted(&mut chain, id, SegmentKind::Delta, 1000, hot);
    }
    assert!(chain.wants_compaction(), "16 deltas, 1600 entries over 1000");
    for id in 18..=22u64 {
        assert_eq!(chain.next_kind_apart(Some(hot)), SegmentKind::Delta);
        record_counted(&mut chain, id, SegmentKind::Delta, 1000, hot);
    }
    assert_eq!(
        chain.next_kind_apart(Some(hot)),
        SegmentKind::Base,
        "2100 entries over 1000: the compaction fell behind, the barrier takes the base"
    );
    // A compacted base stands for the state's entries at most.
    let replaced = chain.index().unwrap().clone();
    let base = Segment {
        checkpoint: CheckpointId(22),
        file: file("base-p00000-1", 10_000),
    };
    assert!(chain.rebase(&replaced, base));
    assert!(!chain.wants_compaction());
    assert_eq!(chain.next_kind_apart(Some(hot)), SegmentKind::Delta);
}

#[test]
fn apart_a_restored_chain_is_counted_again_from_its_first_compaction() {
    let mut restored_index = PartitionChain::new(ChainPolicy::default());
    restored_index.record(CheckpointId(1), SegmentKind::Base, file("state-p00000", 1000));
    restored_index.record(CheckpointId(2), SegmentKind::Delta, file("seg-p00000", 5000));
    let index = restored_index.index().unwrap().clone();
    let mut chain = PartitionChain::restored(ChainPolicy::default(), index.clone());
    let growing = PendingChanges {
        changed: 10,
        entries: 1000,
    };
    record_counted(&mut chain, 3, SegmentKind::Delta, 50, growing);
    assert_eq!(
        chain.next_kind_apart(None),
        SegmentKind::Base,
        "uncounted segments: bytes decide, 5050 of 1000 is past the lag"
    );
    let base = Segment {
        checkpoint: CheckpointId(2),
        file: file("base-p00000-1", 1000),
    };
    assert!(chain.rebase(&index, base));
    // Deltas of new keys as large in bytes as the base: past the lag by bytes, not by entries.
    for id in 4..=6 {
        record_counted(&mut chain, id, SegmentKind::Delta, 1000, growing);
    }
    assert_eq!(
        chain.next_kind_apart(Some(growing)),
        SegmentKind::Delta,
        "counted again: 1040 entries read for 1000, though 3050 bytes of deltas over a 1000-byte base"
    );
    assert!(!chain.wants_compaction());
}

#[test]
fn a_base_in_parts_counts_as_one_base_in_the_policy() {
    let policy = ChainPolicy {
        max_deltas: 3,
        max_delta_factor: 1,
    };
    let mut chain = PartitionChain::new(policy);
    let parts: Vec<StoredFile> = (0..10).map(|k| file(&part_name(0, k), 100)).collect();
    let index = chain.record_parts(CheckpointId(4), parts);
    assert_eq!((index.base_parts(), index.deltas()), (10, 0));
    for id in 5..=7 {
        assert_eq!(chain.next_kind(), SegmentKind::Delta, "ten parts are no deltas");
        let index = chain.record(CheckpointId(id), SegmentKind::Delta, file(&segment_name(0), 300));
        assert_eq!(index.base_parts(), 10);
    }
    assert_eq!(
        chain.next_kind(),
        SegmentKind::Base,
        "three deltas of 300 bytes over a 1000-byte base: not yet past the factor, past the count"
    );
    // Parts of another checkpoint, or not leading the chain, are not the base's.
    let stray = StateIndex {
        segments: vec![
            Segment {
                checkpoint: CheckpointId(4),
                file: file(&part_name(0, 0), 1),
            },
            Segment {
                checkpoint: CheckpointId(5),
                file: file(&part_name(0, 1), 1),
            },
        ],
    };
    assert_eq!(stray.base_parts(), 1);
    let after_compaction = StateIndex {
        segments: vec![Segment {
            checkpoint: CheckpointId(4),
            file: file("base-p00000-0000000000000001", 1),
        }],
    };
    assert_eq!(after_compaction.base_parts(), 1);
}
