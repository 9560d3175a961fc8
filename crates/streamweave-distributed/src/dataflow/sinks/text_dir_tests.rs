//! Tests of the directory sink.

use super::*;
use crate::dataflow::sinks::is_final_output;

#[test]
fn epochs_become_final_only_when_committed_and_recovery_discards_later_ones() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out");
    let sink = TextDirSink::new(&dir);
    let mut writer = sink.open(&ctx(1, 1)).unwrap();
    writer.write("a".into()).unwrap();
    writer.pre_commit(3).unwrap();
    writer.pre_commit(4).unwrap(); // Nothing written in epoch 4: no file.
    writer.write("b".into()).unwrap();
    writer.pre_commit(5).unwrap();
    assert!(
        names(&dir).iter().all(|n| !is_final_output(n)),
        "nothing final before commit: {:?}",
        names(&dir)
    );
    sink.commit_epochs(1, 3).unwrap();
    sink.commit_epochs(1, 3).unwrap(); // Idempotent.
    assert_eq!(fs::read_to_string(dir.join(epoch_name(1, 3))).unwrap(), "a\n");
    assert!(!dir.join(epoch_name(1, 5)).exists());
    // Recovery from checkpoint 3: epoch 5 never becomes output.
    drop(writer);
    sink.discard_after(1, 3).unwrap();
    sink.commit_epochs(1, u64::MAX).unwrap();
    assert_eq!(names(&dir), vec![epoch_name(1, 3)]);
    // Recovering from the beginning removes even committed epochs: they are produced again.
    sink.discard_after(1, 0).unwrap();
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
}

#[test]
fn overlapping_commits_of_the_same_epochs_both_succeed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out");
    let sink = TextDirSink::new(&dir);
    let mut writer = sink.open(&ctx(2, 1)).unwrap();
    for epoch in 1..=200 {
        writer.write(format!("line {epoch}")).unwrap();
        writer.pre_commit(epoch).unwrap();
    }
    // Two committers race over the same pending files (two CommitEpochs in quick
    // succession, or the old and new owner of a moved partition).
    let (a, b) = (sink.clone(), sink.clone());
    let first = std::thread::spawn(move || a.commit_epochs(2, 200));
    let second = std::thread::spawn(move || b.commit_epochs(2, 200));
    first.join().unwrap().unwrap();
    second.join().unwrap().unwrap();
    let finals: Vec<String> = names(&dir).into_iter().filter(|n| is_final_output(n)).collect();
    assert_eq!(finals.len(), 200);
}

/// A partition moving inside an attempt: the old owner pre-commits at the move's barrier, the
/// new owner (same attempt, same temporary name) opens and writes, and only then is the old
/// owner's writer dropped. Found by `rebalance_live` once moves got fast: the old writer's drop
/// removed the new owner's temporary, whose next pre-commit then failed.
#[test]
fn dropping_the_old_owners_writer_after_a_move_leaves_the_new_owners_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out");
    let sink = TextDirSink::new(&dir);
    let mut old = sink.open(&ctx(3, 1)).unwrap();
    old.write("before the move".into()).unwrap();
    old.pre_commit(7).unwrap();
    let mut new = sink.open(&ctx(3, 1)).unwrap();
    new.write("after the move".into()).unwrap();
    drop(old);
    new.pre_commit(8).unwrap();
    sink.commit_epochs(3, 8).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join(epoch_name(3, 7))).unwrap(),
        "before the move\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join(epoch_name(3, 8))).unwrap(),
        "after the move\n"
    );
}

fn ctx(partition: usize, attempt: u64) -> SinkContext {
    SinkContext {
        partition,
        num_partitions: 4,
        attempt,
    }
}

/// The files under `dir`, as paths relative to it (working directories included).
fn names(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, names: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, names);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                names.push(relative.to_str().unwrap().to_string());
            }
        }
    }
    let mut names = Vec::new();
    walk(dir, dir, &mut names);
    names.sort();
    names
}

#[test]
fn nothing_is_final_before_commit() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out");
    let sink = TextDirSink::new(&dir);
    let mut writer = sink.open(&ctx(2, 7)).unwrap();
    writer.write("a b".into()).unwrap();
    writer.write(String::new()).unwrap();
    assert_eq!(names(&dir), [".part-00002.attempt-7.tmp"]);
    assert!(names(&dir).iter().all(|name| !is_final_output(name)));
    writer.commit().unwrap();
    assert_eq!(names(&dir), ["part-00002"]);
    assert_eq!(fs::read_to_string(dir.join("part-00002")).unwrap(), "a b\n\n");
}

#[test]
fn a_later_attempt_replaces_the_final_file_and_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = TextDirSink::new(dir.path());
    let mut first = sink.open(&ctx(0, 1)).unwrap();
    first.write("old".into()).unwrap();
    first.commit().unwrap();
    fs::write(dir.path().join(".part-00000.attempt-2.tmp"), "crashed").unwrap();
    fs::write(dir.path().join(".part-00001.attempt-2.tmp"), "other partition").unwrap();
    // Every attempt builds its own sink.
    let sink = TextDirSink::new(dir.path());
    let mut third = sink.open(&ctx(0, 3)).unwrap();
    let mut fourth = sink.open(&ctx(0, 4)).unwrap(); // A newer, live attempt.
    fourth.write("live".into()).unwrap();
    third.write("new".into()).unwrap();
    third.commit().unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("part-00000")).unwrap(),
        "new\n"
    );
    assert_eq!(
        names(dir.path()),
        [
            ".part-00000.attempt-4.tmp",
            ".part-00001.attempt-2.tmp",
            "part-00000"
        ]
    );
    drop(fourth);
    assert_eq!(
        names(dir.path()),
        [".part-00001.attempt-2.tmp", "part-00000"],
        "dropped writers clean up"
    );
}

#[test]
fn validate_wants_a_missing_or_empty_directory() {
    let root = tempfile::tempdir().unwrap();
    assert!(TextDirSink::new(root.path().join("missing")).validate().is_ok());
    assert!(TextDirSink::new(root.path()).validate().is_ok());
    fs::write(root.path().join(".hidden"), "").unwrap();
    let err = TextDirSink::new(root.path()).validate().unwrap_err();
    let expected = format!(
        "invalid job: output directory {} exists and is not empty",
        root.path().display()
    );
    assert_eq!(err.to_string(), expected);
    let file = root.path().join(".hidden");
    assert!(matches!(
        TextDirSink::new(file).validate(),
        Err(DataflowError::InvalidJob(_))
    ));
}

#[test]
fn final_output_names() {
    assert!(is_final_output("part-00000"));
    assert!(!is_final_output(".swd"));
    assert!(!is_final_output("_SUCCESS"));
}

#[test]
fn an_old_owner_that_wrote_nothing_leaves_the_new_owners_file_when_dropped_after_a_move() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out");
    let sink = TextDirSink::new(&dir);
    // The old owner ran partition 3 in attempt 1 and wrote nothing this epoch (a keyed count
    // emits at the end): its hand-over barrier pre-commits nothing.
    let mut old = sink.open(&ctx(3, 1)).unwrap();
    old.pre_commit(5).unwrap();
    // The move commits; the new owner opens the same partition and attempt and writes, before
    // the old owner's writer is dropped.
    let mut new = sink.open(&ctx(3, 1)).unwrap();
    new.write("word\t7".into()).unwrap();
    drop(old);
    new.pre_commit(u64::MAX).unwrap();
    sink.commit_epochs(3, u64::MAX).unwrap();
    let finals: Vec<String> = names(&dir).into_iter().filter(|n| is_final_output(n)).collect();
    assert_eq!(finals.len(), 1, "{:?}", names(&dir));
    assert_eq!(fs::read_to_string(dir.join(&finals[0])).unwrap(), "word\t7\n");
}
