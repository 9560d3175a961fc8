//! Property tests: the framing round-trips and catches any damage, and random sequences of
//! checkpoint operations and damage agree with a simple model of which checkpoint
//! [`restore_latest`] must return (it checks sizes, not bytes) and of which of its files a
//! reader then finds altered. Every backend runs them; module `tier2` runs them on S3.

use std::collections::{BTreeMap, BTreeSet};

use proptest::collection::vec;
use proptest::prelude::*;

use super::frame::{frame, unframe};
use super::tests::{Damage, Damageable};
use super::*;

proptest! {
    #[test]
    fn frames_round_trip(payload in vec(any::<u8>(), 0..512)) {
        prop_assert_eq!(unframe(frame(&payload)).unwrap(), payload);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..64)) {
        let _ = unframe(bytes);
    }

    #[test]
    fn any_flip_or_cut_is_detected(payload in vec(any::<u8>(), 0..256), at in any::<usize>(), bit in 0..8u8) {
        let framed = frame(&payload);
        let mut flipped = framed.clone();
        flipped[at % framed.len()] ^= 1 << bit;
        prop_assert!(unframe(flipped).is_err());
        prop_assert!(unframe(framed[..at % framed.len()].to_vec()).is_err());
    }
}

/// One step of a random run.
#[derive(Clone, Debug)]
enum Op {
    /// Start the next checkpoint and store these data files.
    Write(Vec<Vec<u8>>),
    /// Commit the checkpoint started last, if it is not committed yet.
    Commit,
    /// Damage an object of a present checkpoint (both picked modulo the number there are).
    Damage(usize, usize, Damage),
    /// `retain(k)`.
    Retain(usize),
    /// `abort` a present checkpoint (committed ones must refuse).
    Abort(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Flip),
        any::<usize>().prop_map(Damage::Truncate),
        Just(Damage::Delete),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => vec(vec(any::<u8>(), 0..48), 0..3).prop_map(Op::Write),
        4 => Just(Op::Commit),
        2 => (any::<usize>(), any::<usize>(), damage()).prop_map(|(c, o, d)| Op::Damage(c, o, d)),
        1 => (0..4usize).prop_map(Op::Retain),
        1 => any::<usize>().prop_map(Op::Abort),
    ]
}

/// What the model knows of one checkpoint.
#[derive(Debug, Default)]
struct Cp {
    /// The data files written, as the manifest will list them.
    files: Vec<StoredFile>,
    /// The objects present in the store (data files and the manifest).
    objects: BTreeSet<String>,
    /// The manifest was damaged, or a data file truncated or deleted: recovery skips it.
    damaged: bool,
    /// Data files altered in place (same size): recovery uses the checkpoint, reading them fails.
    altered: BTreeSet<String>,
}

impl Cp {
    fn committed(&self) -> bool {
        self.objects.contains(MANIFEST_NAME)
    }
}

#[derive(Debug, Default)]
struct Model {
    next: u64,
    /// The checkpoint started last, while uncommitted.
    pending: Option<CheckpointId>,
    cps: BTreeMap<CheckpointId, Cp>,
}

impl Model {
    /// The checkpoints with at least one object, ascending.
    fn present(&self) -> Vec<CheckpointId> {
        self.cps
            .iter()
            .filter(|(_, c)| !c.objects.is_empty())
            .map(|(&id, _)| id)
            .collect()
    }

    fn completed(&self) -> Vec<CheckpointId> {
        self.cps
            .iter()
            .filter(|(_, c)| c.committed())
            .map(|(&id, _)| id)
            .collect()
    }

    fn expected_restore(&self) -> (Option<CheckpointId>, Vec<CheckpointId>) {
        let mut skipped = Vec::new();
        for id in self.completed().into_iter().rev() {
            if !self.cps[&id].damaged {
                return (Some(id), skipped);
            }
            skipped.push(id);
        }
        (None, skipped)
    }
}

fn run(store: &dyn Damageable, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Write(files) => {
                let id = CheckpointId(model.next);
                model.next += 1;
                let mut cp = Cp::default();
                for (p, bytes) in files.iter().enumerate() {
                    let name = format!("state-p{p:04}");
                    cp.files.push(store.put(id, &name, bytes).unwrap());
                    cp.objects.insert(name);
                }
                model.cps.insert(id, cp);
                model.pending = Some(id);
            }
            Op::Commit => {
                let Some(id) = model.pending.take() else { continue };
                let cp = model.cps.get_mut(&id).unwrap();
                let mut manifest = Manifest::new(id, "job", 1, id.0, 4);
                manifest.files = cp.files.clone();
                store.commit(&manifest).unwrap();
                cp.objects.insert(MANIFEST_NAME.to_string());
            }
            Op::Damage(c, o, damage) => {
                let present = model.present();
                if present.is_empty() {
                    continue;
                }
                let id = present[c % present.len()];
                let cp = model.cps.get_mut(&id).unwrap();
                let name = cp.objects.iter().nth(o % cp.objects.len()).unwrap().clone();
                prop_assert!(store.damage(id, &name, damage));
                match damage {
                    Damage::Delete => {
                        cp.objects.remove(&name);
                        cp.damaged |= name != MANIFEST_NAME;
                    }
                    Damage::Flip(_) if name != MANIFEST_NAME => {
                        cp.altered.insert(name);
                    }
                    _ => cp.damaged = true,
                }
            }
            Op::Retain(keep) => {
                let completed = model.completed();
                let expected: Vec<CheckpointId> = match completed.last() {
                    None => Vec::new(),
                    Some(&newest) => {
                        let old = &completed[..completed.len().saturating_sub(keep)];
                        let leftover = |id: &CheckpointId| *id < newest && !model.cps[id].committed();
                        model
                            .present()
                            .into_iter()
                            .filter(|id| old.contains(id) || leftover(id))
                            .collect()
                    }
                };
                prop_assert_eq!(store.retain(keep).unwrap(), expected.clone());
                for id in expected {
                    model.cps.remove(&id);
                }
            }
            Op::Abort(c) => {
                let present = model.present();
                if present.is_empty() {
                    continue;
                }
                let id = present[c % present.len()];
                let result = store.abort(id);
                if model.cps[&id].committed() {
                    prop_assert!(matches!(result, Err(CheckpointError::AlreadyCommitted(i)) if i == id));
                } else {
                    result.unwrap();
                    model.cps.remove(&id);
                    if model.pending == Some(id) {
                        model.pending = None;
                    }
                }
            }
        }
        prop_assert_eq!(store.completed().unwrap(), model.completed());
        let recovery = scan_latest(store.store()).unwrap();
        let skipped: Vec<_> = recovery.skipped.iter().map(|s| s.id).collect();
        let (expected, expected_skipped) = model.expected_restore();
        if let Some(manifest) = &recovery.manifest {
            let cp = &model.cps[&manifest.id];
            for file in &manifest.files {
                let read = store.get_listed(manifest.id, file);
                prop_assert_eq!(read.is_err(), cp.altered.contains(&file.name), "{:?}", read);
            }
        }
        prop_assert_eq!(recovery.manifest.map(|m| m.id), expected);
        prop_assert_eq!(skipped, expected_skipped);
    }
    Ok(())
}

proptest! {
    #[test]
    fn memory_store_agrees_with_the_model(ops in vec(op(), 0..40)) {
        run(&MemoryStore::new(), ops)?;
    }
}

proptest! {
    // Fewer cases: every write is fsynced.
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn local_store_agrees_with_the_model(ops in vec(op(), 0..30)) {
        let dir = tempfile::tempdir().unwrap();
        run(&LocalDirStore::new(dir.path()).unwrap(), ops)?;
    }

    #[test]
    fn object_store_on_memory_agrees_with_the_model(ops in vec(op(), 0..30)) {
        run(&super::tests::memory_object_store(), ops)?;
    }
}

/// Needs the S3 server that `scripts/tier2.sh` starts.
mod tier2 {
    use super::*;

    proptest! {
        // Few cases: every operation is a request or several.
        #![proptest_config(ProptestConfig::with_cases(6))]
        #[test]
        #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
        fn object_store_on_s3_agrees_with_the_model(ops in vec(op(), 0..20)) {
            run(&super::super::tests::s3_store("proptest"), ops)?;
        }
    }
}
