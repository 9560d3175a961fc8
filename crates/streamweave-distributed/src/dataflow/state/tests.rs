//! The disk backend against the memory one: the same results, the same snapshot bytes, each
//! restoring the other's checkpoints; and its own bookkeeping (cache flushes, dropped tables,
//! the database file removed with the store).

use std::sync::Arc;

use super::disk_keyed::DiskKeyed;
use super::*;
use crate::checkpoint::SegmentKind;
use crate::dataflow::plan::Batch;
use crate::dataflow::stage::{decode_state, merging, Stage};

type Counting = Box<dyn Stage<(String, u64)>>;

fn batch(pairs: &[(&str, u64)]) -> Batch {
    let pairs: Vec<(String, u64)> = pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    Batch::Local(Box::new(pairs))
}

fn store() -> (tempfile::TempDir, Arc<DiskStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::create(Some(dir.path()), "test").unwrap();
    (dir, Arc::new(store))
}

fn memory() -> Counting {
    let add = merging(Arc::new(|a, b| a + b));
    let factory = keyed_factory::<String, u64, u64>(Arc::clone(&add), Some(add));
    let state = StateBackend::Memory;
    factory(&StageContext {
        partition: 0,
        state: &state,
    })
    .unwrap()
}

/// A disk stage whose cache holds `capacity` entries.
fn disk(store: &Arc<DiskStore>, q: usize, capacity: usize) -> DiskKeyed<String, u64, u64> {
    let add = merging(Arc::new(|a, b| a + b));
    DiskKeyed::open(store, q, &Arc::clone(&add), Some(&add), capacity).unwrap()
}

fn finish(stage: Counting) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    stage.finish(&mut |x| out.push(x)).unwrap();
    out.sort();
    out
}

fn feed(stage: &mut dyn Stage<(String, u64)>, pairs: &[(&str, u64)]) {
    stage.on_batch(batch(pairs), &mut |_| {}).unwrap();
}

fn segment(stage: &mut dyn Stage<(String, u64)>, kind: SegmentKind) -> Vec<u8> {
    let (taken, bytes) = stage.snapshot_segment(kind).unwrap();
    assert_eq!(taken, kind);
    bytes
}

fn pairs(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    v.sort();
    v
}

#[test]
fn values_merge_through_cache_flushes_and_reads_back_from_the_store() {
    let (_dir, store) = store();
    // A cache of 2 entries: most updates find their key on disk, not in the cache.
    let mut stage: Counting = Box::new(disk(&store, 3, 2));
    feed(stage.as_mut(), &[("a", 1), ("b", 2), ("c", 3)]);
    feed(stage.as_mut(), &[("a", 10), ("d", 4)]);
    feed(stage.as_mut(), &[("b", 5), ("a", 100)]);
    assert_eq!(finish(stage), pairs(&[("a", 111), ("b", 7), ("c", 3), ("d", 4)]));
}

#[test]
fn a_delta_applied_over_flushed_entries_wins_over_their_cached_copies() {
    let (_dir, store) = store();
    // A cache of 1: "a" is flushed and kept clean in memory.
    let mut stage: Counting = Box::new(disk(&store, 0, 1));
    feed(stage.as_mut(), &[("a", 1)]);
    let mut source = memory();
    feed(source.as_mut(), &[("a", 10)]);
    segment(source.as_mut(), SegmentKind::Base);
    feed(source.as_mut(), &[("a", 5)]);
    stage
        .apply_delta(&segment(source.as_mut(), SegmentKind::Delta))
        .unwrap();
    feed(stage.as_mut(), &[("a", 100)]);
    assert_eq!(
        finish(stage),
        pairs(&[("a", 115)]),
        "the delta's 15, not the cached 1"
    );
}

#[test]
fn a_segment_whose_count_takes_several_bytes_decodes_whole() {
    let (_dir, store) = store();
    let mut stage: Counting = Box::new(disk(&store, 0, 64));
    let words: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    let fed: Vec<(&str, u64)> = words.iter().map(|w| (w.as_str(), 1)).collect();
    feed(stage.as_mut(), &fed);
    // 300 entries: a two-byte count before them.
    let base: std::collections::BTreeMap<String, u64> =
        decode_state(&segment(stage.as_mut(), SegmentKind::Base)).unwrap();
    assert_eq!(base.len(), 300);
    assert!(base.values().all(|&n| n == 1));
    feed(stage.as_mut(), &fed[..200]);
    let delta: Vec<(String, u64)> = decode_state(&segment(stage.as_mut(), SegmentKind::Delta)).unwrap();
    assert_eq!(delta.len(), 200);
    assert!(delta.iter().all(|(_, n)| *n == 2));
}

#[test]
fn a_full_cache_is_flushed_to_the_store_and_emptied() {
    let (_dir, store) = store();
    let mut stage = disk(&store, 0, 3);
    feed(&mut stage, &[("a", 1), ("b", 1)]);
    assert_eq!(
        store.len(&stage.tables_for_test()).unwrap(),
        0,
        "below capacity: cached"
    );
    feed(&mut stage, &[("c", 1)]);
    assert_eq!(
        store.len(&stage.tables_for_test()).unwrap(),
        3,
        "at capacity: flushed"
    );
    assert_eq!(stage.cached_for_test(), 0);
}

#[test]
fn disk_segments_have_the_memory_backends_bytes() {
    let (_dir, store) = store();
    let mut on_disk: Counting = Box::new(disk(&store, 0, 2));
    let mut in_memory = memory();
    let steps: [&[(&str, u64)]; 3] = [
        &[("a", 1), ("b", 2), ("c", 3)],
        &[("a", 10), ("d", 4)],
        &[("e", 1)],
    ];
    for (i, step) in steps.iter().enumerate() {
        feed(on_disk.as_mut(), step);
        feed(in_memory.as_mut(), step);
        let kind = if i == 0 {
            SegmentKind::Base
        } else {
            SegmentKind::Delta
        };
        let (d, m) = (segment(on_disk.as_mut(), kind), segment(in_memory.as_mut(), kind));
        // Maps and changed-key lists are unordered in memory: compare them decoded.
        let decode = |bytes: &[u8]| -> Vec<(String, u64)> {
            let mut v: Vec<(String, u64)> = match kind {
                SegmentKind::Base => decode_state::<std::collections::HashMap<String, u64>>(bytes)
                    .unwrap()
                    .into_iter()
                    .collect(),
                SegmentKind::Delta => decode_state(bytes).unwrap(),
            };
            v.sort();
            v
        };
        assert_eq!(decode(&d), decode(&m), "segment {i}");
        assert_eq!(d.len(), m.len(), "segment {i}: the same encoding");
    }
    let delta: Vec<(String, u64)> = decode_state(&segment(on_disk.as_mut(), SegmentKind::Delta)).unwrap();
    assert!(
        delta.is_empty(),
        "nothing changed since the last segment: {delta:?}"
    );
    // The whole state, some of it still cached: stored entries overlaid with cached ones.
    feed(on_disk.as_mut(), &[("a", 1)]);
    let whole = on_disk.snapshot().unwrap();
    let mut whole: Vec<(String, u64)> = (decode_state::<std::collections::HashMap<String, u64>>(&whole))
        .unwrap()
        .into_iter()
        .collect();
    whole.sort();
    assert_eq!(whole, pairs(&[("a", 12), ("b", 2), ("c", 3), ("d", 4), ("e", 1)]));
}

/// Base, delta, delta taken with `from`, restored into `to`, then more input: the same result.
fn restores_across(from: &mut dyn FnMut() -> Counting, to: &mut dyn FnMut() -> Counting) {
    let mut first = from();
    feed(first.as_mut(), &[("a", 1), ("b", 2), ("c", 3)]);
    let base = segment(first.as_mut(), SegmentKind::Base);
    feed(first.as_mut(), &[("a", 10), ("d", 4)]);
    let delta1 = segment(first.as_mut(), SegmentKind::Delta);
    feed(first.as_mut(), &[("b", 20)]);
    let delta2 = segment(first.as_mut(), SegmentKind::Delta);
    drop(first);

    let mut second = to();
    feed(second.as_mut(), &[("stale", 9)]);
    second.restore(&base).unwrap();
    second.apply_delta(&delta1).unwrap();
    second.apply_delta(&delta2).unwrap();
    feed(second.as_mut(), &[("a", 100), ("e", 5)]);
    assert_eq!(
        finish(second),
        pairs(&[("a", 111), ("b", 22), ("c", 3), ("d", 4), ("e", 5)])
    );
}

#[test]
fn a_memory_checkpoint_restores_on_disk_and_a_disk_one_in_memory() {
    let (_dir, store) = store();
    let mut on_disk = || Box::new(disk(&store, 1, 2)) as Counting;
    restores_across(&mut memory, &mut on_disk);
    restores_across(&mut on_disk, &mut memory);
    let mut also_on_disk = on_disk;
    restores_across(&mut on_disk, &mut also_on_disk);
}

#[test]
fn a_restored_base_larger_than_a_load_batch_streams_into_the_store() {
    let (_dir, store) = store();
    let mut big = memory();
    let keys: Vec<String> = (0..150_000).map(|i| format!("k{i}")).collect();
    let records: Vec<(String, u64)> = keys.iter().map(|k| (k.clone(), 1)).collect();
    big.on_batch(Batch::Local(Box::new(records)), &mut |_| {})
        .unwrap();
    let base = segment(big.as_mut(), SegmentKind::Base);
    let mut stage = disk(&store, 2, 16);
    stage.restore(&base).unwrap();
    assert_eq!(store.len(&stage.tables_for_test()).unwrap(), 150_000);
    let delta: Vec<(String, u64)> = decode_state(&segment(&mut stage, SegmentKind::Delta)).unwrap();
    assert!(delta.is_empty(), "restored entries are not changes");
}

#[test]
fn a_dropped_stage_takes_its_keyspaces_and_the_store_its_directory() {
    let (dir, store) = store();
    let path = store.path().to_path_buf();
    let mut a = disk(&store, 0, 1);
    let b = disk(&store, 0, 1);
    feed(&mut a, &[("x", 1)]);
    assert_eq!(store.table_count(), 4, "two generations of partition 0");
    drop(a);
    assert_eq!(store.table_count(), 2, "the other stage keeps its own");
    drop(b);
    assert_eq!(store.table_count(), 0);
    assert!(path.exists());
    drop(store);
    assert!(!path.exists(), "the database is scratch space");
    drop(dir);

    let temporary = DiskStore::create(None, "scratch-test").unwrap();
    let path = temporary.path().to_path_buf();
    assert!(path.starts_with(std::env::temp_dir()) && path.exists());
    drop(temporary);
    assert!(!path.exists(), "the default directory goes with the store");
}

#[test]
fn the_backend_is_read_from_the_job_parameter() {
    let mut spec = JobSpec::new("wordcount");
    assert_eq!(BackendKind::of(&spec).unwrap(), BackendKind::Memory);
    spec.params.insert(STATE_BACKEND_PARAM.into(), "disk".into());
    assert_eq!(BackendKind::of(&spec).unwrap(), BackendKind::Disk);
    spec.params.insert(STATE_BACKEND_PARAM.into(), "rocks".into());
    let error = BackendKind::of(&spec).unwrap_err().to_string();
    assert!(
        error.contains("state.backend") && error.contains("rocks"),
        "{error}"
    );
}

fn changelog(state: &StateBackend) -> Counting {
    changelog_factory::<String>()(&StageContext { partition: 5, state }).unwrap()
}

/// An epoch's segment and the changes its barrier emitted (sorted).
type Epoch = (Vec<u8>, Vec<(String, u64)>);

/// Each epoch: a batch, a segment (base first), the barrier's emitted changes.
fn changelog_epochs(stage: &mut dyn Stage<(String, u64)>) -> Vec<Epoch> {
    let steps: [&[(&str, u64)]; 3] = [&[("a", 2), ("b", 1)], &[("a", 3), ("c", 1)], &[]];
    let mut epochs = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        feed(stage, step);
        let kind = if i == 0 {
            SegmentKind::Base
        } else {
            SegmentKind::Delta
        };
        let bytes = segment(stage, kind);
        let mut emitted = Vec::new();
        stage.on_barrier(&mut |x| emitted.push(x)).unwrap();
        emitted.sort();
        epochs.push((bytes, emitted));
    }
    epochs
}

#[test]
fn a_disk_changelog_emits_and_snapshots_each_epochs_changes_as_the_memory_one_does() {
    let (_dir, store) = store();
    let disk_state = StateBackend::Disk(Arc::clone(&store));
    let on_disk = changelog_epochs(changelog(&disk_state).as_mut());
    let in_memory = changelog_epochs(changelog(&StateBackend::Memory).as_mut());
    let emitted =
        |epochs: &[Epoch]| -> Vec<Vec<(String, u64)>> { epochs.iter().map(|(_, e)| e.clone()).collect() };
    assert_eq!(emitted(&on_disk), emitted(&in_memory));
    assert_eq!(
        emitted(&on_disk),
        vec![pairs(&[("a", 2), ("b", 1)]), pairs(&[("a", 5), ("c", 1)]), vec![]]
    );
    // The delta of the second epoch holds its changed keys; the empty epoch's holds none.
    let delta: Vec<(String, u64)> = decode_state(&on_disk[1].0).unwrap();
    assert_eq!(
        pairs(&delta.iter().map(|(k, n)| (k.as_str(), *n)).collect::<Vec<_>>()),
        pairs(&[("a", 5), ("c", 1)])
    );
    assert!(decode_state::<Vec<(String, u64)>>(&on_disk[2].0)
        .unwrap()
        .is_empty());

    // Restored from the memory stage's segments, a disk changelog has nothing pending and
    // counts on from the restored counts.
    let mut restored = changelog(&disk_state);
    restored.restore(&in_memory[0].0).unwrap();
    restored.apply_delta(&in_memory[1].0).unwrap();
    restored.apply_delta(&in_memory[2].0).unwrap();
    feed(restored.as_mut(), &[("b", 1)]);
    assert_eq!(finish(restored), pairs(&[("b", 2)]));
}

#[test]
fn a_disk_attempt_removes_its_workers_databases_of_killed_processes_only() {
    use crate::dataflow::sinks::CollectorSink;
    use crate::dataflow::sources::CollectionSource;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    for stale in ["w1.1-0.wordcount.a3.fjall", "w10.1-0.wordcount.a3.fjall"] {
        std::fs::create_dir(file(stale)).unwrap();
        std::fs::write(file(stale).join("journal"), b"x").unwrap();
    }
    std::fs::write(file("w1.notes"), b"x").unwrap();
    let job = crate::dataflow::Stream::from_source(CollectionSource::new(vec!["a".to_string()]))
        .count()
        .sink(CollectorSink::new());
    let mut spec = JobSpec::new("wordcount");
    spec.params.insert(STATE_BACKEND_PARAM.into(), "disk".into());
    let plan = attempt_plan(Arc::clone(&job.plan), &spec, Some(dir.path()), "w1", 4).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let pid = std::process::id();
    let ours = |n: &String| n.starts_with(&format!("w1.{pid}-")) && n.ends_with(".wordcount.a4.fjall");
    assert_eq!(names.len(), 3, "w1's database of process 1 removed: {names:?}");
    assert!(names.iter().any(ours), "this attempt's database: {names:?}");
    assert!(names.contains(&"w1.notes".to_string()), "not a database: kept");
    assert!(
        names.contains(&"w10.1-0.wordcount.a3.fjall".to_string()),
        "another worker's: kept"
    );
    drop(plan);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "the attempt's database goes with it"
    );
}

/// The parts a stage hands over, joined as stored.
#[derive(Default)]
struct Collected(Vec<Vec<u8>>);

impl crate::dataflow::PartSink for Collected {
    fn put(&mut self, pieces: &[&[u8]]) -> Result<(), DataflowError> {
        self.0.push(pieces.concat());
        Ok(())
    }
}

#[test]
fn a_large_disk_base_goes_out_in_parts_that_restore_on_either_backend() {
    let dir = tempfile::tempdir().unwrap();
    // Entries of 6-7 bytes ("w1234" and a count): about 100 of them a part.
    let store = Arc::new(
        DiskStore::create(Some(dir.path()), "parts")
            .unwrap()
            .with_part_bytes(600),
    );
    let mut stage: Counting = Box::new(disk(&store, 0, 64));
    let words: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
    let fed: Vec<(&str, u64)> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i as u64 % 7 + 1))
        .collect();
    feed(stage.as_mut(), &fed);
    let mut parts = Collected::default();
    let (kind, encoded) = stage
        .snapshot_segment_in_parts(SegmentKind::Base, &mut parts)
        .unwrap();
    assert_eq!(
        (kind, encoded),
        (SegmentKind::Base, crate::dataflow::Encoded::Parts)
    );
    assert!((9..=12).contains(&parts.0.len()), "{} parts", parts.0.len());
    assert!(parts.0.iter().all(|p| p.len() <= 620), "each part near the limit");
    // Each part is a map of its own entries; together, every entry once.
    let mut seen = 0;
    for part in &parts.0 {
        let entries: std::collections::BTreeMap<String, u64> = decode_state(part).unwrap();
        seen += entries.len();
    }
    assert_eq!(seen, 1000);
    let mut expected = fed.iter().map(|(w, n)| (w.to_string(), *n)).collect::<Vec<_>>();
    expected.sort();
    // Restored as a base then deltas, on disk and in memory alike.
    let (_other_dir, other) = self::store();
    for mut restored in [Box::new(disk(&other, 1, 64)) as Counting, memory()] {
        restored.restore(&parts.0[0]).unwrap();
        for part in &parts.0[1..] {
            restored.apply_delta(part).unwrap();
        }
        assert_eq!(finish(restored), expected);
    }
    // After a base in parts the stage takes deltas as before.
    feed(stage.as_mut(), &[("w1", 1)]);
    let delta: Vec<(String, u64)> = decode_state(&segment(stage.as_mut(), SegmentKind::Delta)).unwrap();
    assert_eq!(delta, vec![("w1".to_string(), 3)]);
}

#[test]
fn a_small_disk_base_and_a_delta_stay_whole() {
    let (_dir, store) = store();
    let mut stage: Counting = Box::new(disk(&store, 0, 64));
    feed(stage.as_mut(), &[("a", 1), ("b", 2)]);
    let mut parts = Collected::default();
    let (kind, encoded) = stage
        .snapshot_segment_in_parts(SegmentKind::Base, &mut parts)
        .unwrap();
    let crate::dataflow::Encoded::Whole(base) = encoded else {
        panic!("a base under the part size is whole");
    };
    assert_eq!(kind, SegmentKind::Base);
    assert!(parts.0.is_empty());
    let base: Vec<(String, u64)> = decode_state(&base).unwrap();
    assert_eq!(base, pairs(&[("a", 1), ("b", 2)]));
    feed(stage.as_mut(), &[("a", 1)]);
    let (kind, encoded) = stage
        .snapshot_segment_in_parts(SegmentKind::Delta, &mut parts)
        .unwrap();
    assert_eq!(kind, SegmentKind::Delta);
    assert!(matches!(encoded, crate::dataflow::Encoded::Whole(_)) && parts.0.is_empty());
}

#[test]
fn a_chain_with_an_overlay_run_restores_on_disk_as_in_memory() {
    // A checkpoint's base, then the overlays a recovery on the memory backend wrote while that
    // base loaded: the partial state's changes at two barriers.
    let mut before = memory();
    feed(before.as_mut(), &[("a", 2), ("b", 1)]);
    let base = segment(before.as_mut(), SegmentKind::Base);
    let mut partial = memory();
    feed(partial.as_mut(), &[("a", 5), ("c", 1)]);
    let first = segment(partial.as_mut(), SegmentKind::Delta);
    feed(partial.as_mut(), &[("a", 1), ("d", 1)]);
    let second = segment(partial.as_mut(), SegmentKind::Delta);
    let run: [&[u8]; 2] = [&first, &second];
    let want = pairs(&[("a", 8), ("b", 1), ("c", 1), ("d", 1)]);

    let mut in_memory = memory();
    in_memory.restore(&base).unwrap();
    in_memory.apply_overlays(&run).unwrap();
    assert_eq!(finish(in_memory), want);

    let (_dir, store) = store();
    // A cache of 1: the combination reads what it combines with from the store.
    let mut on_disk: Counting = Box::new(disk(&store, 0, 1));
    on_disk.restore(&base).unwrap();
    on_disk.apply_overlays(&run).unwrap();
    // As restored: nothing counts as changed since.
    let delta = segment(on_disk.as_mut(), SegmentKind::Delta);
    assert!(decode_state::<Vec<(String, u64)>>(&delta).unwrap().is_empty());
    feed(on_disk.as_mut(), &[("a", 1)]);
    assert_eq!(finish(on_disk), pairs(&[("a", 9), ("b", 1), ("c", 1), ("d", 1)]));
}
