//! Checkpoints on object storage across real `swd` processes: `--checkpoint-store s3://...`
//! on a coordinator whose workers write their state to S3 and restore from it after a SIGKILL,
//! and on `swd local`; the output is exact and the checkpoints are objects in the bucket.
//! Tier 2 (module `tier2`) needs the S3 server `scripts/tier2.sh` starts; a bad URL is refused
//! in tier 1.

mod common;

use common::*;

#[test]
fn a_bad_checkpoint_store_url_names_the_flag() {
    for command in ["local", "coordinator"] {
        let out = run_bounded(
            &[command, "--checkpoint-store", "gs://bucket/x"],
            std::time::Duration::from_secs(30),
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--checkpoint-store") && stderr.contains("unsupported scheme"),
            "swd {command}: {stderr}"
        );
    }
}

/// Needs the S3 server that `scripts/tier2.sh` starts.
mod tier2 {
    use super::*;
    use std::path::Path;
    use streamweave_distributed::checkpoint::{open_store, CheckpointId};
    use streamweave_distributed::storage::StorageUrl;

    /// `s3://BUCKET/tests/NAME-PID`; fails (never skips) without the tier-2 environment.
    fn s3_url(name: &str) -> String {
        let bucket = std::env::var("SWD_TEST_S3_BUCKET")
            .expect("SWD_TEST_S3_BUCKET is not set: run tier-2 tests with scripts/tier2.sh");
        format!("s3://{bucket}/tests/{name}-{}", std::process::id())
    }

    /// The committed checkpoints in the store at `url` once the job has ended, each checked:
    /// its manifest lists a state file per partition, present with its size (HEAD), readable
    /// with its crc32. A checkpoint completed just before the end may still be committed after
    /// it, and its retention then deletes the oldest: a checkpoint whose manifest is gone when
    /// one of its files is found missing was deleted as a whole, and the check starts over.
    fn committed_checkpoints(url: &str, partitions: usize) -> Vec<CheckpointId> {
        let store = open_store(&StorageUrl::parse(url).unwrap()).unwrap();
        'listing: for _ in 0..10 {
            let ids = store.completed().unwrap();
            for &id in &ids {
                let checked = store.verify(id).and_then(|manifest| {
                    assert_eq!(manifest.partitions, partitions);
                    assert_eq!(manifest.partition_entries().unwrap().len(), partitions);
                    manifest
                        .files
                        .iter()
                        .try_for_each(|f| store.get_listed(id, f).map(drop))
                });
                match checked {
                    Ok(()) => {}
                    Err(e) if !store.completed().unwrap().contains(&id) => {
                        eprintln!("checkpoint {id} deleted by retention while checked ({e}): again");
                        continue 'listing;
                    }
                    Err(e) => panic!("committed checkpoint {id} is damaged: {e}"),
                }
            }
            return ids;
        }
        panic!("the committed checkpoints kept changing after the job ended");
    }

    fn wordcount_opts(corpus: &Path, output: &Path, store: &str) -> Opts {
        Opts {
            partitions: 8,
            extra: [
                "--job",
                "wordcount",
                "--input",
                &corpus.join("input").to_string_lossy(),
                "--output",
                &output.to_string_lossy(),
                "--rate",
                "800",
                "--min-workers",
                "3",
                "--checkpoint-interval",
                "200ms",
                "--checkpoint-store",
                store,
            ]
            .map(String::from)
            .to_vec(),
            ..Opts::default()
        }
    }

    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn wordcount_checkpointed_to_s3_is_exact_through_a_worker_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus(dir.path(), 200_000, 4);
        let output = dir.path().join("out");
        let store = s3_url("sigkill");
        let mut cluster = Cluster::start(wordcount_opts(&corpus, &output, &store));
        for id in ["w1", "w2", "w3"] {
            cluster.add_worker(id, &[]);
        }
        cluster.wait_for("three checkpoints in S3", |s| {
            s["job"]["state"] == "running" && s["checkpoints"]["completed"].as_u64().unwrap_or(0) >= 3
        });
        let listed = open_store(&StorageUrl::parse(&store).unwrap())
            .unwrap()
            .completed()
            .unwrap();
        assert!(
            !listed.is_empty(),
            "the committed checkpoints are objects in the bucket"
        );
        assert!(
            !cluster.data_dir.path().join("checkpoints").exists(),
            "nothing is checkpointed to the data directory"
        );
        cluster.take_worker("w3").signal(libc::SIGKILL);
        let finished = cluster.wait_for_long("the job to end", |s| {
            matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
        });
        assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
        let restored = finished["job"]["last_restored_checkpoint"].as_u64();
        assert!(restored.is_some_and(|c| c >= 1), "{finished:#}");
        let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
        assert_eq!(output_lines(&output), sorted_lines(&expected));
        let ids = committed_checkpoints(&store, 8);
        assert!(
            ids.last().is_some_and(|id| id.0 >= restored.unwrap_or(0)),
            "{ids:?}"
        );
    }

    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn swd_local_checkpoints_to_s3() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus(dir.path(), 50_000, 4);
        let output = dir.path().join("out");
        let store = s3_url("local");
        let out = run_bounded(
            &[
                "local",
                "--workers",
                "3",
                "--partitions",
                "6",
                "--job",
                "wordcount",
                "--input",
                &corpus.join("input").to_string_lossy(),
                "--output",
                &output.to_string_lossy(),
                "--rate",
                "2000",
                "--checkpoint-interval",
                "200ms",
                "--checkpoint-store",
                &store,
            ],
            std::time::Duration::from_secs(300),
        );
        assert!(
            out.status.success(),
            "swd local failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
        assert_eq!(output_lines(&output), sorted_lines(&expected));
        assert!(
            !committed_checkpoints(&store, 6).is_empty(),
            "the checkpoints are objects in the bucket"
        );
    }
}
