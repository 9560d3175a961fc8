//! Incremental snapshots of keyed state: a delta holds the changed keys only, and a base plus
//! its deltas restores the same state.

use super::*;

fn batch(pairs: &[(&str, u64)]) -> Batch {
    let pairs: Vec<(String, u64)> = pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    Batch::Local(Box::new(pairs))
}

fn counting() -> Box<dyn Stage<(String, u64)>> {
    let update = merging(Arc::new(|a: u64, b: u64| a + b));
    Keyed::<String, u64, u64>::boxed(&update)
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
