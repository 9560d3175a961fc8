//! Unit tests of the checkpoint stores, and the harness shared with the other test modules:
//! every store-level scenario runs against [`MemoryStore`], [`LocalDirStore`] and
//! [`ObjectCheckpointStore`] on `memory://` (tier 1), and against [`ObjectCheckpointStore`] on
//! S3 (module `tier2`).

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::frame::{frame, unframe, HEADER_LEN};
use super::*;
use crate::storage::StorageUrl;

/// A way to damage one stored object.
#[derive(Clone, Copy, Debug)]
pub(super) enum Damage {
    /// Change stored byte `i % len` by adding 1 (nothing if the object is empty); unlike a bit
    /// flip, doing it twice does not restore the byte.
    Flip(usize),
    /// Cut to `n % len` stored bytes (always shorter).
    Truncate(usize),
    /// Remove it.
    Delete,
}

/// A store whose objects a test can damage behind its back.
pub(super) trait Damageable: CheckpointStore {
    /// Applies `damage` to object `name` of checkpoint `id`; false if there is no such object.
    fn damage(&self, id: CheckpointId, name: &str, damage: Damage) -> bool;
    /// The store as a plain [`CheckpointStore`].
    fn store(&self) -> &dyn CheckpointStore;
}

impl Damageable for MemoryStore {
    fn damage(&self, id: CheckpointId, name: &str, damage: Damage) -> bool {
        let Some(len) = self.object_len(id, name) else {
            return false;
        };
        match damage {
            // An empty object (cut to nothing before) has no byte left to flip.
            Damage::Flip(_) if len == 0 => true,
            Damage::Flip(i) => self.corrupt_at(id, name, i),
            Damage::Truncate(n) => self.truncate(id, name, n % len.max(1)),
            Damage::Delete => self.remove(id, name),
        }
    }

    fn store(&self) -> &dyn CheckpointStore {
        self
    }
}

/// Applies `damage` to `bytes`; false if the object is to be deleted instead.
fn damaged(bytes: &mut Vec<u8>, damage: Damage) -> bool {
    let len = bytes.len().max(1);
    match damage {
        Damage::Flip(i) if !bytes.is_empty() => bytes[i % len] = bytes[i % len].wrapping_add(1),
        Damage::Flip(_) => {}
        Damage::Truncate(n) => bytes.truncate(n % len),
        Damage::Delete => return false,
    }
    true
}

impl Damageable for LocalDirStore {
    fn damage(&self, id: CheckpointId, name: &str, damage: Damage) -> bool {
        let path = self.object_path(id, name);
        let Ok(mut bytes) = fs::read(&path) else {
            return false;
        };
        if damaged(&mut bytes, damage) {
            fs::write(&path, bytes).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
            // Like the memory store: a checkpoint without objects does not exist.
            let _ = fs::remove_dir(self.checkpoint_dir(id));
        }
        true
    }

    fn store(&self) -> &dyn CheckpointStore {
        self
    }
}

impl Damageable for ObjectCheckpointStore {
    fn damage(&self, id: CheckpointId, name: &str, damage: Damage) -> bool {
        let Ok(mut bytes) = self.read_object(id, name) else {
            return false;
        };
        if damaged(&mut bytes, damage) {
            self.write_object(id, name, &bytes).unwrap();
        } else {
            self.delete_object(id, name).unwrap();
        }
        true
    }

    fn store(&self) -> &dyn CheckpointStore {
        self
    }
}

/// A fresh, empty object store on `memory://`.
pub(super) fn memory_object_store() -> ObjectCheckpointStore {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    ObjectCheckpointStore::open(&StorageUrl::parse(&format!("memory://checkpoint-tests/run-{n}")).unwrap())
        .unwrap()
}

/// Runs `scenario` against a fresh store of every backend (the object store on `memory://`).
pub(super) fn every_store(scenario: impl Fn(&dyn Damageable)) {
    scenario(&MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    scenario(&LocalDirStore::new(dir.path().join("checkpoints")).unwrap());
    scenario(&memory_object_store());
}

/// Deletes every checkpoint of `store`, for a scenario that tries several cases on one store.
pub(super) fn reset(store: &dyn CheckpointStore) {
    for listed in store.list().unwrap() {
        store.delete_checkpoint(listed.id).unwrap();
    }
    assert!(store.list().unwrap().is_empty());
}

/// Makes a `#[test]` of each scenario `fn(&dyn Damageable)` that runs it on every store, and
/// the same in a module `tier2` that runs it on S3.
macro_rules! store_scenarios {
    ($($name:ident),* $(,)?) => {
        mod every_store {
            $(#[test]
            fn $name() {
                super::super::tests::every_store(super::$name);
            })*
        }

        /// Needs the S3 server that `scripts/tier2.sh` starts.
        mod tier2 {
            $(#[test]
            #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
            fn $name() {
                super::$name(&super::super::tests::s3_store(stringify!($name)));
            })*
        }
    };
}
pub(super) use store_scenarios;

/// A fresh store on the tier-2 S3 server; fails (never skips) without it.
pub(super) fn s3_store(name: &str) -> ObjectCheckpointStore {
    let url = crate::storage::tests::tier2::s3_test_url(&format!("checkpoint-{name}"));
    let store = ObjectCheckpointStore::open(&url).unwrap();
    // A rerun in the same process id (unlikely) starts empty too.
    reset(&store);
    store
}

/// Stores a state and an offsets file for checkpoint `n` and commits it.
pub(super) fn checkpoint(store: &dyn CheckpointStore, n: u64) -> Manifest {
    let id = CheckpointId(n);
    let mut m = Manifest::new(id, "wordcount", 1, 1_000 * n, 1);
    m.files.push(
        store
            .put(id, "state-p0000", format!("state {n}").as_bytes())
            .unwrap(),
    );
    m.files
        .push(store.put(id, "offsets-p0000", &n.to_le_bytes()).unwrap());
    m.extra.insert("sink-epoch".into(), n.to_string());
    store.commit(&m).unwrap();
    m
}

pub(super) fn ids(ns: &[u64]) -> Vec<CheckpointId> {
    ns.iter().copied().map(CheckpointId).collect()
}

#[test]
fn checkpoint_id_orders_displays_and_serializes() {
    assert!(CheckpointId(9) < CheckpointId(10));
    assert_eq!(CheckpointId(9).next(), CheckpointId(10));
    assert_eq!(CheckpointId(42).to_string(), "42");
    assert_eq!(serde_json::to_string(&CheckpointId(42)).unwrap(), "42");
    assert_eq!(
        serde_json::from_str::<CheckpointId>("42").unwrap(),
        CheckpointId(42)
    );
}

#[test]
fn names_are_validated() {
    let store = MemoryStore::new();
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "",
        MANIFEST_NAME,
        ".hidden",
        "a/b",
        "../x",
        "a b",
        "é",
        long.as_str(),
    ] {
        let err = store.put(CheckpointId(1), bad, b"x").unwrap_err();
        assert!(
            matches!(err, CheckpointError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        assert!(matches!(
            store.get(CheckpointId(1), bad),
            Err(CheckpointError::InvalidName { .. })
        ));
    }
    for good in [
        "state-p0003",
        "offsets-p0003",
        "sink_epoch.7",
        &"a".repeat(MAX_NAME_LEN),
    ] {
        store.put(CheckpointId(1), good, b"x").unwrap();
    }
    let mut m = Manifest::new(CheckpointId(1), "job", 1, 0, 1);
    m.files = vec![
        StoredFile::of("state-p0000", b"x"),
        StoredFile::of("state-p0000", b"x"),
    ];
    assert!(matches!(
        store.commit(&m),
        Err(CheckpointError::InvalidName { .. })
    ));
    assert!(store.completed().unwrap().is_empty());
}

#[test]
fn frame_detects_every_flip_truncation_and_extension() {
    let framed = frame(b"hello");
    assert_eq!(framed.len(), HEADER_LEN + 5);
    assert_eq!(unframe(framed.clone()).unwrap(), b"hello");
    assert_eq!(unframe(frame(b"")).unwrap(), b"");
    for i in 0..framed.len() {
        let mut bad = framed.clone();
        bad[i] ^= 0x01;
        assert!(unframe(bad).is_err(), "flip at {i}");
        assert!(unframe(framed[..i].to_vec()).is_err(), "truncation to {i}");
    }
    let mut longer = framed.clone();
    longer.push(0);
    assert!(unframe(longer).is_err());
}

fn files_and_manifests_round_trip(s: &dyn Damageable) {
    let id = CheckpointId(3);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let f1 = s.put(id, "state-p0003", &big).unwrap();
    let f2 = s.put(id, "offsets-p0003", b"").unwrap();
    assert_eq!((f1.size, f1.crc32), (big.len() as u64, crc32fast::hash(&big)));
    assert_eq!(f2.size, 0);
    assert_eq!(s.get(id, "state-p0003").unwrap(), big);
    assert_eq!(s.get(id, "offsets-p0003").unwrap(), b"");
    // A second put replaces the file.
    s.put(id, "offsets-p0003", b"17").unwrap();
    assert_eq!(s.get(id, "offsets-p0003").unwrap(), b"17");

    let m = checkpoint(s.store(), 3);
    assert_eq!(s.manifest(id).unwrap(), m);
    assert_eq!(s.verify(id).unwrap(), m);
    assert_eq!(s.completed().unwrap(), ids(&[3]));
}

fn a_missing_file_is_not_found(s: &dyn Damageable) {
    let err = s.get(CheckpointId(1), "state-p0000").unwrap_err();
    assert!(
        matches!(err, CheckpointError::NotFound { id: CheckpointId(1), ref name } if name == "state-p0000")
    );
    assert!(matches!(
        s.manifest(CheckpointId(1)),
        Err(CheckpointError::NotFound { .. })
    ));
}

fn completed_ignores_checkpoints_without_a_manifest(s: &dyn Damageable) {
    checkpoint(s.store(), 2);
    s.put(CheckpointId(1), "state-p0000", b"left over").unwrap();
    checkpoint(s.store(), 10);
    s.put(CheckpointId(11), "state-p0000", b"in progress").unwrap();
    assert_eq!(s.completed().unwrap(), ids(&[2, 10]));
    assert_eq!(restore_latest(s.store()).unwrap().unwrap().id, CheckpointId(10));
}

fn retain_keeps_the_newest_and_removes_leftovers(s: &dyn Damageable) {
    for n in [1, 2, 4, 5] {
        checkpoint(s.store(), n);
    }
    s.put(CheckpointId(0), "state-p0000", b"aborted").unwrap();
    s.put(CheckpointId(3), "state-p0000", b"aborted").unwrap();
    s.put(CheckpointId(6), "state-p0000", b"in progress").unwrap();
    assert_eq!(s.retain(2).unwrap(), ids(&[0, 1, 2, 3]));
    assert_eq!(s.completed().unwrap(), ids(&[4, 5]));
    let mut present: Vec<_> = s.list().unwrap().into_iter().map(|l| l.id).collect();
    present.sort();
    assert_eq!(present, ids(&[4, 5, 6]));
    assert_eq!(s.get(CheckpointId(6), "state-p0000").unwrap(), b"in progress");
    assert_eq!(s.retain(2).unwrap(), vec![]);
    assert_eq!(s.retain(1).unwrap(), ids(&[4]));
    assert_eq!(restore_latest(s.store()).unwrap().unwrap().id, CheckpointId(5));
}

fn retain_without_a_committed_checkpoint_deletes_nothing(s: &dyn Damageable) {
    s.put(CheckpointId(1), "state-p0000", b"in progress").unwrap();
    assert_eq!(s.retain(0).unwrap(), vec![]);
    assert_eq!(s.list().unwrap().len(), 1);
}

fn abort_deletes_an_uncommitted_checkpoint_only(s: &dyn Damageable) {
    checkpoint(s.store(), 1);
    s.put(CheckpointId(2), "state-p0000", b"x").unwrap();
    s.put(CheckpointId(2), "offsets-p0000", b"y").unwrap();
    s.abort(CheckpointId(2)).unwrap();
    assert!(matches!(
        s.get(CheckpointId(2), "state-p0000"),
        Err(CheckpointError::NotFound { .. })
    ));
    assert_eq!(
        s.list().unwrap(),
        vec![Listed {
            id: CheckpointId(1),
            committed: true
        }]
    );
    s.abort(CheckpointId(7)).unwrap();
    assert!(matches!(
        s.abort(CheckpointId(1)),
        Err(CheckpointError::AlreadyCommitted(CheckpointId(1)))
    ));
    assert!(s.verify(CheckpointId(1)).is_ok());
}

fn a_second_commit_of_a_checkpoint_is_refused(s: &dyn Damageable) {
    let first = checkpoint(s.store(), 4);
    let mut second = first.clone();
    second.attempt = 2;
    second.extra.insert("coordinator".into(), "the other one".into());
    let err = s.commit(&second).unwrap_err();
    assert!(
        matches!(err, CheckpointError::AlreadyCommitted(CheckpointId(4))),
        "{err}"
    );
    assert_eq!(
        s.manifest(CheckpointId(4)).unwrap(),
        first,
        "the first commit stands"
    );
    assert!(!s.create_object(CheckpointId(4), MANIFEST_NAME, b"x").unwrap());
    assert!(s.create_object(CheckpointId(5), "state-p0000", b"x").unwrap());
}

fn racing_commits_commit_exactly_once(s: &dyn Damageable) {
    for n in 1..=10u64 {
        let id = CheckpointId(n);
        let file = s.put(id, "state-p0000", b"state").unwrap();
        let manifests: Vec<Manifest> = (1..=2)
            .map(|attempt| {
                let mut m = Manifest::new(id, "wordcount", attempt, 0, 1);
                m.files.push(file.clone());
                m
            })
            .collect();
        let start = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = manifests
                .iter()
                .map(|m| {
                    let start = &start;
                    scope.spawn(move || {
                        start.wait();
                        s.commit(m)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<usize> = (0..2).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(won.len(), 1, "checkpoint {n}: {results:?}");
        let lost = &results[1 - won[0]];
        assert!(
            matches!(lost, Err(CheckpointError::AlreadyCommitted(i)) if *i == id),
            "{lost:?}"
        );
        assert_eq!(s.manifest(id).unwrap(), manifests[won[0]]);
    }
}

fn verify_checks_presence_and_size_and_get_checks_the_bytes(s: &dyn Damageable) {
    let m = checkpoint(s.store(), 1);
    let state = m.file("state-p0000").unwrap().clone();
    assert_eq!(
        s.object_size(CheckpointId(1), "state-p0000").unwrap(),
        (HEADER_LEN as u64) + state.size
    );
    assert_eq!(s.get_listed(CheckpointId(1), &state).unwrap(), b"state 1");
    // Same size, other bytes: verify (sizes only) passes, reading reveals it.
    assert!(s.damage(CheckpointId(1), "state-p0000", Damage::Flip(HEADER_LEN)));
    assert_eq!(s.verify(CheckpointId(1)).unwrap(), m);
    let err = s.get_listed(CheckpointId(1), &state).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Corrupt { name, .. } if name == "state-p0000"),
        "{err}"
    );
    // A validly framed file the manifest does not describe.
    s.put(CheckpointId(1), "state-p0000", b"STATE 1").unwrap();
    assert_eq!(s.verify(CheckpointId(1)).unwrap(), m);
    let err = s.get_listed(CheckpointId(1), &state).unwrap_err();
    assert!(err.to_string().contains("the manifest says 7 bytes"), "{err}");
    // Another size: verify catches it without reading.
    s.put(CheckpointId(1), "state-p0000", b"longer state").unwrap();
    let err = s.verify(CheckpointId(1)).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::Corrupt { name, .. } if name == "state-p0000"),
        "{err}"
    );
    assert!(matches!(
        s.object_size(CheckpointId(9), "state-p0000"),
        Err(CheckpointError::NotFound { .. })
    ));
}

store_scenarios!(
    files_and_manifests_round_trip,
    a_missing_file_is_not_found,
    completed_ignores_checkpoints_without_a_manifest,
    retain_keeps_the_newest_and_removes_leftovers,
    retain_without_a_committed_checkpoint_deletes_nothing,
    abort_deletes_an_uncommitted_checkpoint_only,
    a_second_commit_of_a_checkpoint_is_refused,
    racing_commits_commit_exactly_once,
    verify_checks_presence_and_size_and_get_checks_the_bytes,
);

#[test]
fn object_store_layout_and_listing() {
    let url = StorageUrl::parse("memory://checkpoint-layout/jobs/ckpt").unwrap();
    let store = ObjectCheckpointStore::open(&url).unwrap();
    let m = checkpoint(&store, 42);
    let location = url.open().unwrap();
    let keys: Vec<String> = crate::storage::block_on(async move {
        use futures::TryStreamExt;
        let listed: Vec<_> = location.store.list(Some(&location.prefix)).try_collect().await?;
        Ok::<_, object_store::Error>(listed.into_iter().map(|m| m.location.to_string()).collect())
    })
    .unwrap();
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        [
            "jobs/ckpt/chk-0000000042/_MANIFEST",
            "jobs/ckpt/chk-0000000042/offsets-p0000",
            "jobs/ckpt/chk-0000000042/state-p0000"
        ]
    );
    // Keys that are not canonical checkpoint prefixes are ignored; so are other prefixes.
    let other = ObjectCheckpointStore::open(&url.join("x")).unwrap();
    let raw =
        ObjectCheckpointStore::open(&StorageUrl::parse("memory://checkpoint-layout/jobs").unwrap()).unwrap();
    other.put(CheckpointId(1), "state-p0000", b"elsewhere").unwrap();
    raw.put(CheckpointId(7), "state-p0000", b"parent").unwrap();
    assert_eq!(store.completed().unwrap(), ids(&[42]));
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(restore_latest(&store).unwrap(), Some(m));
    assert_eq!(
        format!("{store:?}"),
        "ObjectCheckpointStore(memory://checkpoint-layout/jobs/ckpt)"
    );
}

#[test]
fn open_store_picks_the_backend_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let local = open_store(&StorageUrl::parse(&format!("file://{}", dir.path().display())).unwrap()).unwrap();
    checkpoint(local.as_ref(), 1);
    assert!(dir.path().join("chk-0000000001/_MANIFEST").exists());
    let object = open_store(&StorageUrl::parse("memory://open-store-test/p").unwrap()).unwrap();
    checkpoint(object.as_ref(), 2);
    assert!(format!("{object:?}").contains("memory://open-store-test/p"));
}

#[test]
fn local_store_layout_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(dir.path()).unwrap();
    let m = checkpoint(&store, 42);
    let chk = dir.path().join("chk-0000000042");
    let mut names: Vec<_> = fs::read_dir(&chk)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["_MANIFEST", "offsets-p0000", "state-p0000"],
        "no temporary files are left"
    );
    assert_eq!(
        store.object_path(CheckpointId(42), "state-p0000"),
        chk.join("state-p0000")
    );
    assert_eq!(&fs::read(chk.join("state-p0000")).unwrap()[..4], b"SWCK");

    // Entries that are not canonical checkpoint directories are ignored.
    fs::create_dir(dir.path().join("chk-42")).unwrap();
    fs::create_dir(dir.path().join("chk-x")).unwrap();
    fs::write(dir.path().join("chk-0000000043"), b"a file").unwrap();
    fs::write(dir.path().join("README"), b"").unwrap();

    let reopened = LocalDirStore::new(dir.path()).unwrap();
    assert_eq!(reopened.completed().unwrap(), ids(&[42]));
    assert_eq!(restore_latest(&reopened).unwrap(), Some(m));
    assert_eq!(reopened.retain(1).unwrap(), vec![]);
}

#[test]
fn local_store_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let err = LocalDirStore::new(file.join("checkpoints")).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }));
    assert!(err.to_string().contains("not-a-dir"), "{err}");

    let store = LocalDirStore::new(dir.path().join("store")).unwrap();
    fs::write(store.checkpoint_dir(CheckpointId(5)), b"in the way").unwrap();
    let err = store.put(CheckpointId(5), "state-p0000", b"x").unwrap_err();
    assert!(err.to_string().contains("chk-0000000005"), "{err}");
}

#[test]
fn memory_store_clones_share_state() {
    let a = MemoryStore::new();
    let b = a.clone();
    checkpoint(&a, 1);
    assert_eq!(b.completed().unwrap(), ids(&[1]));
    assert!(b.remove(CheckpointId(1), MANIFEST_NAME));
    assert!(a.completed().unwrap().is_empty());
    assert!(!a.corrupt(CheckpointId(9), "state-p0000"));
}

#[test]
fn stores_are_usable_as_trait_objects() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Arc<dyn CheckpointStore>> = vec![
        Arc::new(MemoryStore::new()),
        Arc::new(LocalDirStore::new(dir.path()).unwrap()),
    ];
    for store in stores {
        let m = checkpoint(store.as_ref(), 1);
        assert_eq!(restore_latest(store.as_ref()).unwrap(), Some(m));
    }
}

#[test]
fn partition_entries_are_checked_against_the_partitions_and_the_listed_files() {
    use super::{PartitionEntry, StoredFile};
    let entry = |p: usize| PartitionEntry {
        partition: p,
        state: StoredFile::of(&format!("state-p{p:05}"), b"s"),
        source_offset: p as u64,
        source_exhausted: false,
        source_records: 1,
    };
    let mut m = Manifest::new(CheckpointId(2), "wordcount", 1, 0, 2);
    m.add_partition(entry(1));
    m.add_partition(entry(0));
    let entries = m.partition_entries().unwrap();
    assert_eq!(entries.iter().map(|e| e.partition).collect::<Vec<_>>(), [0, 1]);

    let reason = |m: &Manifest| match m.partition_entries() {
        Err(CheckpointError::Inconsistent { id, reason }) => {
            assert_eq!(id, CheckpointId(2));
            reason
        }
        other => panic!("not inconsistent: {other:?}"),
    };
    let mut twice = m.clone();
    twice.entries.push(entry(0));
    assert!(reason(&twice).contains("two entries"));
    let mut beyond = m.clone();
    beyond.add_partition(entry(2));
    assert!(reason(&beyond).contains("partition 2 of a job of 2"));
    let mut unlisted = m.clone();
    unlisted.files[0].crc32 ^= 1;
    assert!(reason(&unlisted).contains("not listed"));
    let mut missing = m.clone();
    missing.entries.pop();
    assert!(reason(&missing).contains("no entry for partition 0"));
    // Written and read back, the entries survive.
    let decoded = Manifest::decode(CheckpointId(2), m.encode().unwrap()).unwrap();
    assert_eq!(decoded.entries, m.entries);
}
