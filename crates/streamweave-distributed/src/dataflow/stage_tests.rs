//! Incremental snapshots of keyed state: a delta holds the changed keys only, and a base plus
//! its deltas restores the same state.

use super::*;

fn batch(pairs: &[(&str, u64)]) -> Batch {
    let pairs: Vec<(String, u64)> = pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    Batch::Local(Box::new(pairs))
}

fn counting() -> Box<dyn Stage<(String, u64)>> {
    let update = merging(Arc::new(|a: u64, b: u64| a + b));
    Keyed::<String, u64, u64>::boxed(&update, Some(&update))
}

fn finish(stage: Box<dyn Stage<(String, u64)>>) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    stage.finish(&mut |x| out.push(x)).unwrap();
    out.sort();
    out
}

fn segment(stage: &mut dyn Stage<(String, u64)>, kind: SegmentKind) -> Vec<u8> {
    let (taken, bytes) = stage.snapshot_segment(kind).unwrap();
    assert_eq!(taken, kind);
    bytes
}

#[test]
fn a_keyed_delta_holds_only_the_keys_changed_since_the_previous_segment() {
    let mut stage = counting();
    let ignore = &mut |_: (String, u64)| {};
    stage
        .on_batch(batch(&[("a", 1), ("b", 2), ("c", 3)]), ignore)
        .unwrap();
    let base = segment(stage.as_mut(), SegmentKind::Base);
    stage.on_batch(batch(&[("a", 10), ("d", 4)]), ignore).unwrap();
    let delta1 = segment(stage.as_mut(), SegmentKind::Delta);
    let mut changed: Vec<(String, u64)> = decode_state(&delta1).unwrap();
    changed.sort();
    assert_eq!(changed, vec![("a".into(), 11), ("d".into(), 4)]);
    let delta2 = segment(stage.as_mut(), SegmentKind::Delta);
    assert!(
        decode_state::<Vec<(String, u64)>>(&delta2).unwrap().is_empty(),
        "nothing changed"
    );
    stage.on_batch(batch(&[("b", 1)]), ignore).unwrap();
    let delta3 = segment(stage.as_mut(), SegmentKind::Delta);

    let mut restored = counting();
    restored.restore(&base).unwrap();
    for delta in [&delta1, &delta2, &delta3] {
        restored.apply_delta(delta).unwrap();
    }
    // The restored entries are clean: its first delta is empty.
    let empty = segment(restored.as_mut(), SegmentKind::Delta);
    assert!(decode_state::<Vec<(String, u64)>>(&empty).unwrap().is_empty());
    assert_eq!(finish(restored), finish(stage));
}

#[test]
fn a_keyed_base_restores_like_a_snapshot_taken_before_deltas_existed() {
    let mut stage = counting();
    stage.on_batch(batch(&[("x", 5), ("y", 6)]), &mut |_| {}).unwrap();
    let base = segment(stage.as_mut(), SegmentKind::Base);
    let legacy: FoldHashMap<String, u64> = decode_state(&base).unwrap();
    assert_eq!(legacy.len(), 2);
    let mut restored = counting();
    restored.restore(&encode_state(&legacy).unwrap()).unwrap();
    assert_eq!(finish(restored), vec![("x".into(), 5), ("y".into(), 6)]);
}

#[test]
fn a_stage_without_state_takes_a_base_and_refuses_deltas() {
    let mut stage: Box<dyn Stage<String>> = Box::new(PassThrough::<String>::default());
    let (kind, bytes) = stage.snapshot_segment(SegmentKind::Delta).unwrap();
    assert_eq!((kind, bytes.len()), (SegmentKind::Base, 0));
    assert!(stage.apply_delta(b"x").is_err());
}

#[test]
fn records_applied_while_the_state_loads_merge_on_top_of_it_as_changed() {
    let ignore = &mut |_: (String, u64)| {};
    // The checkpoint: a base and a delta.
    let mut before = counting();
    before
        .on_batch(batch(&[("a", 1), ("b", 2), ("c", 3)]), ignore)
        .unwrap();
    let base = segment(before.as_mut(), SegmentKind::Base);
    before.on_batch(batch(&[("b", 5)]), ignore).unwrap();
    let delta = segment(before.as_mut(), SegmentKind::Delta);

    // Recovery: records applied to an empty stage while another loads the checkpoint.
    let mut running = counting();
    assert!(running.merges_restored());
    running.on_batch(batch(&[("a", 10), ("d", 4)]), ignore).unwrap();
    let mut loading = counting();
    loading.restore(&base).unwrap();
    loading.apply_delta(&delta).unwrap();
    running.merge_restored(loading.take_state().unwrap()).unwrap();
    running.on_batch(batch(&[("c", 100)]), ignore).unwrap();

    // The next delta holds every key changed since the checkpoint, with its whole count.
    let mut changed: Vec<(String, u64)> =
        decode_state(&segment(running.as_mut(), SegmentKind::Delta)).unwrap();
    changed.sort();
    assert_eq!(
        changed,
        vec![("a".into(), 11), ("c".into(), 103), ("d".into(), 4)]
    );
    assert_eq!(
        finish(running),
        vec![
            ("a".into(), 11),
            ("b".into(), 7),
            ("c".into(), 103),
            ("d".into(), 4)
        ]
    );
}

#[test]
fn a_fold_restores_before_it_applies_records() {
    let update: Update<u64, u64> = Arc::new(|acc: Option<u64>, x: u64| acc.unwrap_or(0) * 2 + x);
    let mut stage = Keyed::<String, u64, u64>::boxed(&update, None) as Box<dyn Stage<(String, u64)>>;
    assert!(!stage.merges_restored());
    assert!(stage.merge_restored(Box::new(())).is_err());
}
