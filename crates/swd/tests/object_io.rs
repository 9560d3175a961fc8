//! Input and output on S3 across real `swd` processes: word count from an S3 prefix to an S3
//! prefix, exact through a SIGKILLed worker with checkpoints (coordinator and workers as
//! separate processes), and under `swd local` without checkpoints. Tier 2: needs the S3 server that `scripts/tier2.sh` starts.

mod common;

mod tier2 {
    use std::path::Path;
    use std::process::Stdio;
    use std::time::Duration;

    use object_store::{ObjectStore, PutPayload};
    use streamweave_distributed::storage::{block_on, Location, StorageUrl};

    use super::common::*;

    /// `s3://BUCKET/tests/NAME-PID` on the tier-2 server; fails (never skips) without it.
    fn s3_url(name: &str) -> String {
        let bucket = std::env::var("SWD_TEST_S3_BUCKET")
            .expect("SWD_TEST_S3_BUCKET is not set: run tier-2 tests with scripts/tier2.sh");
        format!("s3://{bucket}/tests/{name}-{}", std::process::id())
    }

    fn open(url: &str) -> Location {
        StorageUrl::parse(url).expect("url").open().expect("open")
    }

    /// Uploads every file of `dir` under `url`.
    fn upload(dir: &Path, url: &str) {
        let location = open(url);
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let (store, key) = (location.store.clone(), location.key(&name));
            let payload = PutPayload::from(std::fs::read(&path).expect("read"));
            block_on(async move { store.put(&key, payload).await }).expect("upload");
        }
    }

    /// The objects directly under `url` (name, bytes), and whether anything is left in its
    /// working prefix `.swd/`.
    fn download(url: &str) -> (Vec<(String, Vec<u8>)>, bool) {
        let location = open(url);
        let (store, prefix) = (location.store.clone(), location.prefix.clone());
        let listing = block_on(async move { store.list_with_delimiter(Some(&prefix)).await }).expect("list");
        let mut objects = Vec::new();
        for meta in listing.objects {
            let name = meta.location.filename().unwrap().to_string();
            let store = location.store.clone();
            let bytes = block_on(async move { store.get(&meta.location).await?.bytes().await }).expect("get");
            objects.push((name, bytes.to_vec()));
        }
        objects.sort();
        let work = location.key(".swd");
        let store = location.store.clone();
        let left = block_on(async move { store.list_with_delimiter(Some(&work)).await }).expect("list .swd");
        (objects, !listing_is_empty(&left))
    }

    fn listing_is_empty(listing: &object_store::ListResult) -> bool {
        listing.objects.is_empty() && listing.common_prefixes.is_empty()
    }

    /// The sorted lines of the final objects (names not starting with `.` or `_`).
    fn final_lines(objects: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
        let mut bytes = Vec::new();
        for (name, content) in objects {
            if !name.starts_with('.') && !name.starts_with('_') {
                bytes.extend_from_slice(content);
                bytes.push(b'\n');
            }
        }
        sorted_lines(&bytes)
    }

    /// Starts `swd local ARGS` with its stdout piped.
    fn start_local(args: &[&str]) -> Proc {
        let child = swd()
            .arg("local")
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn swd local");
        Proc {
            name: "swd local".to_string(),
            child,
        }
    }

    /// Waits for `swd local` to exit 0; returns what it printed.
    fn finish(mut local: Proc) -> String {
        let status = local.wait_exit(Duration::from_secs(300));
        let mut printed = String::new();
        if let Some(mut out) = local.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut printed).expect("stdout");
        }
        assert!(
            status.success(),
            "swd local failed ({status}); it printed:\n{printed}"
        );
        printed
    }

    /// A corpus uploaded to S3: (the local corpus directory, its input URL, an output URL).
    fn s3_corpus(dir: &Path, name: &str, words: u64) -> (std::path::PathBuf, String, String) {
        let corpus = corpus(dir, words, 4);
        let base = s3_url(name);
        let (input, output) = (format!("{base}/input"), format!("{base}/output"));
        upload(&corpus.join("input"), &input);
        (corpus, input, output)
    }

    /// `swd local` stops the whole cluster when one of its workers dies (by design: the
    /// embedded cluster lives and dies together), so the SIGKILL runs on a coordinator and
    /// three worker processes started separately, as on several hosts.
    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn wordcount_from_s3_to_s3_is_exact_through_a_sigkilled_worker() {
        let dir = tempfile::tempdir().unwrap();
        let (corpus, input, output) = s3_corpus(dir.path(), "object-io-kill", 200_000);
        // 20 000 lines in 4 objects (one source partition each) at 1 000 lines/s: about 5 s,
        // long enough to kill a worker once a checkpoint is in.
        let opts = Opts {
            partitions: 8,
            extra: [
                "--job",
                "wordcount",
                "--input",
                &input,
                "--output",
                &output,
                "--rate",
                "1000",
                "--min-workers",
                "3",
                "--checkpoint-interval",
                "200ms",
            ]
            .map(String::from)
            .to_vec(),
            // The machine may be loaded (moto and the processes share it): a slow heartbeat must
            // not fail a live worker; the SIGKILLed one is detected by its closed connection.
            heartbeat_timeout: "2s",
            ..Opts::default()
        };
        let mut cluster = Cluster::start(opts);
        for id in ["w1", "w2", "w3"] {
            cluster.add_worker(id, &[]);
        }
        cluster.wait_for("a checkpoint with records flowing", |s| {
            s["checkpoints"]["completed"].as_u64().is_some_and(|n| n >= 1)
                && s["job"]["records_in"].as_u64().is_some_and(|n| n > 0)
        });
        cluster.take_worker("w2").signal(libc::SIGKILL);
        let finished = cluster.wait_for_long("the job to finish", |s| {
            matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
        });
        assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
        assert_eq!(finished["job"]["records_in"], 20_000);
        assert!(
            finished["job"]["restarts"].as_u64().is_some_and(|r| r >= 1),
            "{finished:#}"
        );
        assert!(
            finished["job"]["last_restored_checkpoint"]
                .as_u64()
                .is_some_and(|c| c >= 1),
            "restored from a checkpoint: {finished:#}"
        );
        let (objects, left) = download(&output);
        let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
        assert_eq!(final_lines(&objects), sorted_lines(&expected));
        assert!(
            objects
                .iter()
                .all(|(name, _)| name.starts_with("part-") && name.len() == "part-00000-".len() + 20),
            "only committed epochs: {:?}",
            objects.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        assert!(!left, "nothing pending is left under .swd/");
    }

    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn wordcount_from_s3_to_s3_without_checkpoints_writes_one_part_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        let (corpus, input, output) = s3_corpus(dir.path(), "object-io-plain", 100_000);
        let local = start_local(&[
            "--workers",
            "3",
            "--partitions",
            "6",
            "--job",
            "wordcount",
            "--input",
            &input,
            "--output",
            &output,
        ]);
        let printed = finish(local);
        assert!(printed.contains("finished: 10000 records in"), "{printed}");
        let (objects, left) = download(&output);
        let names: Vec<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "part-00000",
                "part-00001",
                "part-00002",
                "part-00003",
                "part-00004",
                "part-00005"
            ]
        );
        let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
        assert_eq!(final_lines(&objects), sorted_lines(&expected));
        assert!(!left);
        // A second run refuses the output, which is not empty, before anything starts.
        let again = run_bounded(
            &[
                "local",
                "--workers",
                "1",
                "--job",
                "wordcount",
                "--input",
                &input,
                "--output",
                &output,
            ],
            Duration::from_secs(60),
        );
        assert!(!again.status.success());
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(
            stderr.contains(&format!("output {output} is not empty")),
            "{stderr}"
        );
    }
}
