//! Tests of the object sink's protocol: nothing final before commit, epochs final on commit
//! (repeatably), recovery removing what a failed attempt left, large epochs through multipart
//! uploads. Tier 1 on `memory://`; module `tier2` runs the core cases against S3.

use futures::TryStreamExt;
use object_store::PutPayload;

use super::*;
use crate::dataflow::sinks::is_final_output;

fn ctx(partition: usize, attempt: u64) -> SinkContext {
    SinkContext {
        partition,
        num_partitions: 4,
        attempt,
    }
}

/// Every object under the sink's prefix, relative to it, sorted.
fn names(sink: &ObjectTextSink) -> Vec<String> {
    let location = sink.location.clone();
    let (store, prefix) = (location.store.clone(), location.prefix.clone());
    let metas: Vec<object_store::ObjectMeta> = block_on(async move {
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        store.list(prefix.as_ref()).try_collect().await
    })
    .unwrap();
    let mut names: Vec<String> = metas
        .iter()
        .map(|m| location.relative(&m.location).unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn finals(sink: &ObjectTextSink) -> Vec<String> {
    names(sink).into_iter().filter(|n| is_final_output(n)).collect()
}

fn get(sink: &ObjectTextSink, name: &str) -> String {
    let (store, key) = (sink.location.store.clone(), sink.location.key(name));
    let bytes = block_on(async move { store.get(&key).await?.bytes().await }).unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn put(sink: &ObjectTextSink, name: &str, text: &'static str) {
    let (store, key) = (sink.location.store.clone(), sink.location.key(name));
    block_on(async move { store.put(&key, PutPayload::from_static(text.as_bytes())).await }).unwrap();
}

fn sink_at(url: &str) -> ObjectTextSink {
    ObjectTextSink::new(&StorageUrl::parse(url).unwrap()).unwrap()
}

fn epochs_become_final_only_when_committed_and_recovery_discards_later_ones(sink: &ObjectTextSink) {
    sink.validate().unwrap();
    let mut writer = sink.open(&ctx(1, 1)).unwrap();
    writer.write("a".into()).unwrap();
    writer.pre_commit(3).unwrap();
    writer.pre_commit(4).unwrap(); // Nothing written in epoch 4: no object.
    writer.write("b".into()).unwrap();
    writer.pre_commit(5).unwrap();
    assert_eq!(
        names(sink),
        [
            ".swd/00001/epoch-00000000000000000003.pending",
            ".swd/00001/epoch-00000000000000000005.pending"
        ]
    );
    assert!(finals(sink).is_empty(), "nothing final before commit");
    sink.commit_epochs(1, 3).unwrap();
    sink.commit_epochs(1, 3).unwrap(); // Idempotent.
    assert_eq!(finals(sink), [epoch_name(1, 3)]);
    assert_eq!(get(sink, &epoch_name(1, 3)), "a\n");
    // Recovery from checkpoint 3: epoch 5 never becomes output.
    drop(writer);
    sink.discard_after(1, 3).unwrap();
    sink.commit_epochs(1, u64::MAX).unwrap();
    assert_eq!(names(sink), [epoch_name(1, 3)]);
    // Recovering from the beginning removes even committed epochs: they are produced again.
    sink.discard_after(1, 0).unwrap();
    assert!(names(sink).is_empty(), "{:?}", names(sink));
    assert!(sink.validate().is_ok());
}

#[test]
fn epochs_become_final_only_when_committed() {
    epochs_become_final_only_when_committed_and_recovery_discards_later_ones(&sink_at(
        "memory://object-sink-epochs/out",
    ));
}

/// More than a part: the epoch streams as a multipart upload that stays invisible until the
/// pre-commit completes it, then becomes the pending object and, on commit, the final one.
fn a_large_epoch_goes_through_a_multipart_upload(sink: &ObjectTextSink) {
    let line = "x".repeat(999);
    let lines = (writer::PART / 1000) * 2 + 17;
    let mut writer = sink.open(&ctx(2, 1)).unwrap();
    for _ in 0..lines {
        writer.write(line.clone()).unwrap();
    }
    assert!(
        names(sink).is_empty(),
        "an upload in progress is invisible: {:?}",
        names(sink)
    );
    writer.pre_commit(7).unwrap();
    assert_eq!(names(sink), [".swd/00002/epoch-00000000000000000007.pending"]);
    sink.commit_epochs(2, 7).unwrap();
    let text = get(sink, &epoch_name(2, 7));
    assert_eq!(text.len(), lines * 1000);
    assert!(text.lines().all(|l| l == line));
    assert_eq!(names(sink), [epoch_name(2, 7)]);
    // A writer dropped in the middle of a multipart upload leaves nothing behind.
    let mut abandoned = sink.open(&ctx(3, 2)).unwrap();
    for _ in 0..lines {
        abandoned.write(line.clone()).unwrap();
    }
    drop(abandoned);
    assert_eq!(names(sink), [epoch_name(2, 7)]);
}

#[test]
fn a_large_epoch_is_invisible_until_pre_committed_then_final_on_commit() {
    a_large_epoch_goes_through_a_multipart_upload(&sink_at("memory://object-sink-large/out"));
}

#[test]
fn an_interrupted_commit_is_finished_by_recovery() {
    let sink = sink_at("memory://object-sink-interrupted/out");
    let mut writer = sink.open(&ctx(0, 1)).unwrap();
    for epoch in 1..=3 {
        writer.write(format!("line {epoch}")).unwrap();
        writer.pre_commit(epoch).unwrap();
    }
    drop(writer);
    // Checkpoint 2 committed; the worker died after copying epoch 1 but before deleting its
    // pending object, and before touching epoch 2. A temporary of a crashed attempt is left too.
    let (store, from, to) = (
        sink.location.store.clone(),
        sink.pending_key(0, 1),
        sink.location.key(&epoch_name(0, 1)),
    );
    block_on(async move { store.copy(&from, &to).await }).unwrap();
    put(&sink, ".swd/00000/attempt-1.tmp", "half an epoch\n");
    // The partition's next owner recovers from checkpoint 2 (a fresh sink per attempt).
    let next = sink_at("memory://object-sink-interrupted/out");
    next.discard_after(0, 2).unwrap();
    next.commit_epochs(0, 2).unwrap();
    assert_eq!(names(&next), [epoch_name(0, 1), epoch_name(0, 2)]);
    assert_eq!(get(&next, &epoch_name(0, 1)), "line 1\n");
    assert_eq!(get(&next, &epoch_name(0, 2)), "line 2\n");
}

#[test]
fn overlapping_commits_of_the_same_epochs_both_succeed() {
    let sink = sink_at("memory://object-sink-overlap/out");
    let mut writer = sink.open(&ctx(2, 1)).unwrap();
    for epoch in 1..=50 {
        writer.write(format!("line {epoch}")).unwrap();
        writer.pre_commit(epoch).unwrap();
    }
    let (a, b) = (sink.clone(), sink.clone());
    let first = std::thread::spawn(move || a.commit_epochs(2, 50));
    let second = std::thread::spawn(move || b.commit_epochs(2, 50));
    first.join().unwrap().unwrap();
    second.join().unwrap().unwrap();
    assert_eq!(finals(&sink).len(), 50);
    assert_eq!(names(&sink).len(), 50, "no pending object left");
}

#[test]
fn without_checkpoints_the_part_appears_whole_on_commit_and_a_later_attempt_replaces_it() {
    let sink = sink_at("memory://object-sink-plain/out");
    let mut first = sink.open(&ctx(0, 1)).unwrap();
    first.write("old".into()).unwrap();
    assert!(names(&sink).is_empty());
    first.commit().unwrap();
    assert_eq!(names(&sink), ["part-00000"]);
    put(&sink, ".swd/00000/attempt-2.tmp", "crashed");
    put(&sink, ".swd/00000/attempt-9.tmp", "a newer, live attempt's");
    let sink = sink_at("memory://object-sink-plain/out");
    let mut third = sink.open(&ctx(0, 3)).unwrap();
    third.write("new".into()).unwrap();
    third.write(String::new()).unwrap();
    third.commit().unwrap();
    assert_eq!(get(&sink, "part-00000"), "new\n\n");
    assert_eq!(names(&sink), [".swd/00000/attempt-9.tmp", "part-00000"]);
}

#[test]
fn validate_wants_an_empty_prefix() {
    let sink = sink_at("memory://object-sink-validate/out");
    assert!(sink.validate().is_ok());
    put(&sink, "x/y", "");
    let err = sink.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid job: output memory://object-sink-validate/out is not empty"
    );
}

/// Needs the S3 server that `scripts/tier2.sh` starts.
mod tier2 {
    use super::*;
    use crate::storage::tests::tier2::s3_test_url;

    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn s3_epochs_become_final_only_when_committed() {
        let sink = ObjectTextSink::new(&s3_test_url("object-sink-epochs")).unwrap();
        epochs_become_final_only_when_committed_and_recovery_discards_later_ones(&sink);
    }

    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn s3_large_epochs_go_through_multipart_uploads() {
        let sink = ObjectTextSink::new(&s3_test_url("object-sink-large")).unwrap();
        a_large_epoch_goes_through_a_multipart_upload(&sink);
    }
}
