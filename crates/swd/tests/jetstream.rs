//! Jobs on NATS JetStream, end to end with real `swd` processes and a real `nats-server -js`:
//! `repartition` from a stream of numbered lines to a subject captured by another stream must
//! put every input line exactly once in the output stream, through SIGKILLs of workers (the
//! restored attempts resume from the checkpointed stream sequences) and through a restart of
//! the NATS server itself.

mod common;

/// Tier 2: needs `nats-server` (scripts/tier2.sh).
mod tier2 {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use async_nats::jetstream::{self, message::PublishMessage, stream::Config};

    use crate::common::{start_coordinator, Cluster, Opts, DEADLINE};

    /// The server scripts/tier2.sh started (`HOST:PORT`); fails the test without one.
    fn shared_server() -> String {
        match std::env::var("SWD_TEST_NATS_URL") {
            Ok(url) => url.trim_start_matches("nats://").to_string(),
            Err(_) => panic!("SWD_TEST_NATS_URL is not set: run the tier-2 tests through scripts/tier2.sh"),
        }
    }

    /// A `nats-server -js` of this test's own, which it can kill and start again (same port,
    /// same store).
    struct OwnServer {
        port: u16,
        store: tempfile::TempDir,
        child: Option<Child>,
    }

    impl OwnServer {
        fn start() -> OwnServer {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let mut server = OwnServer {
                port,
                store: tempfile::tempdir().expect("store"),
                child: None,
            };
            server.restart();
            server
        }

        fn addr(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        fn restart(&mut self) {
            self.kill();
            let child = Command::new("nats-server")
                .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
                .arg(self.store.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server runs (scripts/lib/nats.sh installs it)");
            self.child = Some(child);
            let deadline = Instant::now() + DEADLINE;
            while std::net::TcpStream::connect(self.addr()).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl Drop for OwnServer {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Creates streams `input` (subject `input.lines`, holding `lines`) and `output` (capturing
    /// `output.lines`), replacing older ones of those names.
    fn prepare(server: &str, input: &str, output: &str, lines: &[String]) {
        let (server, input, output, lines) = (
            server.to_string(),
            input.to_string(),
            output.to_string(),
            lines.to_vec(),
        );
        runtime().block_on(async move {
            let js = jetstream::new(async_nats::connect(server).await.expect("connect"));
            for name in [&input, &output] {
                let _ = js.delete_stream(name).await;
                js.create_stream(Config {
                    name: name.clone(),
                    subjects: vec![format!("{name}.lines")],
                    ..Default::default()
                })
                .await
                .expect("create stream");
            }
            let mut acks = Vec::new();
            for line in lines {
                let message = PublishMessage::build().message_id(&line).payload(line.into());
                acks.push(
                    js.send_publish(format!("{input}.lines"), message)
                        .await
                        .expect("publish"),
                );
            }
            for ack in acks {
                ack.await.expect("ack");
            }
        });
    }

    /// Every message of stream `name`, sorted.
    fn stream_lines(server: &str, name: &str) -> Vec<String> {
        let (server, name) = (server.to_string(), name.to_string());
        runtime().block_on(async move {
            let js = jetstream::new(async_nats::connect(server).await.expect("connect"));
            let stream = js.get_stream(&name).await.expect("stream");
            let last = stream.get_info().await.expect("info").state.last_sequence;
            let mut lines = Vec::new();
            for seq in 1..=last {
                if let Ok(message) = stream.get_raw_message(seq).await {
                    lines.push(String::from_utf8_lossy(&message.payload).into_owned());
                }
            }
            lines.sort();
            lines
        })
    }

    /// Polls stream `name` until its sorted lines satisfy `done`.
    fn wait_output(server: &str, name: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let got = stream_lines(server, name);
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the output stream has {} lines",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn numbered(n: usize) -> Vec<String> {
        let mut lines: Vec<String> = (1..=n).map(|i| format!("line {i:06}")).collect();
        lines.sort();
        lines
    }

    /// A coordinator running `repartition` from stream `input` to subject `output.lines`,
    /// checkpointing every 200 ms, reading `rate` lines/s per source partition until the
    /// stream's end.
    fn repartition(server: &str, input: &str, output: &str, rate: u64) -> Cluster {
        let opts = Opts {
            partitions: 4,
            extra: [
                "--job",
                "repartition",
                "--input",
                &format!("nats://{server}/{input}"),
                "--output",
                &format!("nats://{server}/{output}.lines"),
                "--param",
                "until=end",
                "--rate",
                &rate.to_string(),
                "--checkpoint-interval",
                "200ms",
                "--min-workers",
                "2",
            ]
            .map(String::from)
            .to_vec(),
            ..Opts::default()
        };
        Cluster::start(opts)
    }

    fn progress(s: &serde_json::Value) -> (u64, u64) {
        (
            s["job"]["attempt"].as_u64().unwrap_or(0),
            s["checkpoints"]["last_completed"].as_u64().unwrap_or(0),
        )
    }

    fn wait_finished(cluster: &Cluster) -> serde_json::Value {
        let finished = cluster.wait_for_long("the job to end", |s| {
            matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
        });
        assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
        finished
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn repartition_is_exactly_once_through_worker_kills() {
        let server = shared_server();
        let (input, output) = (
            format!("KILLIN{}", std::process::id()),
            format!("KILLOUT{}", std::process::id()),
        );
        let lines = numbered(4000);
        prepare(&server, &input, &output, &lines);
        // 4 partitions of 1,000 lines at 150 lines/s: about 7 s of reading, more with restarts.
        let mut cluster = repartition(&server, &input, &output, 150);
        for id in ["w1", "w2", "w3"] {
            cluster.add_worker(id, &[]);
        }
        let mut at_kill = (0, 0);
        for kill in 0..3 {
            let seen = cluster.wait_for("the job to run and complete a checkpoint", |s| {
                assert_ne!(
                    s["job"]["state"], "finished",
                    "the job finished after {kill} kills: make it longer"
                );
                assert_ne!(s["job"]["state"], "failed", "{s:#}");
                let (attempt, checkpoint) = progress(s);
                s["job"]["state"] == "running" && attempt > at_kill.0 && checkpoint > at_kill.1
            });
            at_kill = progress(&seen);
            let victim = cluster.workers[kill % cluster.workers.len()].name.clone();
            let mut killed = cluster.take_worker(&victim);
            killed.signal(libc::SIGKILL);
            killed.wait_exit(DEADLINE);
            cluster.add_worker(&format!("r{kill}"), &[]);
        }
        let finished = wait_finished(&cluster);
        assert!(
            finished["job"]["last_restored_checkpoint"]
                .as_u64()
                .is_some_and(|c| c >= 1),
            "the last attempt resumed from checkpointed sequences: {finished:#}"
        );
        let got = stream_lines(&server, &output);
        assert_eq!(got.len(), lines.len(), "as many messages out as in");
        assert!(got == lines, "every input line exactly once in the output stream");
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn repartition_is_exactly_once_through_a_nats_server_restart() {
        let mut nats = OwnServer::start();
        let server = nats.addr();
        let lines = numbered(3000);
        prepare(&server, "IN", "OUT", &lines);
        // About 5 s of reading; the server goes down once the job has checkpointed.
        let mut cluster = repartition(&server, "IN", "OUT", 150);
        cluster.add_worker("w1", &[]);
        cluster.add_worker("w2", &[]);
        cluster.wait_for("a completed checkpoint", |s| {
            s["job"]["state"] == "running" && progress(s).1 >= 2
        });
        nats.kill();
        // The outage's length (not a wait for anything): long enough for every client to notice.
        std::thread::sleep(Duration::from_millis(500));
        nats.restart();
        wait_finished(&cluster);
        let got = stream_lines(&server, "OUT");
        assert_eq!(got.len(), lines.len(), "as many messages out as in");
        assert!(got == lines, "every input line exactly once in the output stream");
    }

    /// Publishes `lines` to `subject` (ids: the lines themselves).
    fn publish(server: &str, subject: &str, lines: Vec<String>) {
        let (server, subject) = (server.to_string(), subject.to_string());
        runtime().block_on(async move {
            let js = jetstream::new(async_nats::connect(server).await.expect("connect"));
            let mut acks = Vec::new();
            for line in lines {
                let message = PublishMessage::build().message_id(&line).payload(line.into());
                acks.push(js.send_publish(subject.clone(), message).await.expect("publish"));
            }
            for ack in acks {
                ack.await.expect("ack");
            }
        });
    }

    /// The newest count of each word in a changelog stream (`word<TAB>count` messages, in
    /// order), checking that each word's counts only grow.
    fn latest_counts(server: &str, name: &str) -> std::collections::BTreeMap<String, u64> {
        let (server, name) = (server.to_string(), name.to_string());
        let messages = runtime().block_on(async move {
            let js = jetstream::new(async_nats::connect(server).await.expect("connect"));
            let stream = js.get_stream(&name).await.expect("stream");
            let last = stream.get_info().await.expect("info").state.last_sequence;
            let mut messages = Vec::new();
            for seq in 1..=last {
                if let Ok(message) = stream.get_raw_message(seq).await {
                    messages.push(String::from_utf8_lossy(&message.payload).into_owned());
                }
            }
            messages
        });
        let mut counts = std::collections::BTreeMap::new();
        for message in messages {
            let (word, n) = message.split_once('\t').expect("word<TAB>count");
            let n: u64 = n.parse().expect("a count");
            let old = counts.insert(word.to_string(), n).unwrap_or(0);
            assert!(n > old, "{word}: a changelog count went from {old} to {n}");
        }
        counts
    }

    /// Lines `from..to`: `common wK` with K = i mod 5.
    fn word_lines(from: u64, to: u64) -> Vec<String> {
        (from..to).map(|i| format!("common w{} #{i}", i % 5)).collect()
    }

    fn expected_counts(to: u64) -> std::collections::BTreeMap<String, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for line in word_lines(0, to) {
            for word in line.split_whitespace() {
                *counts.entry(word.to_string()).or_insert(0) += 1;
            }
        }
        counts
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn unbounded_wordcount_emits_a_changelog_and_stops_cleanly_on_sigint() {
        let server = shared_server();
        let (input, output) = (
            format!("WCIN{}", std::process::id()),
            format!("WCOUT{}", std::process::id()),
        );
        prepare(&server, &input, &output, &word_lines(0, 500));
        let mut local = std::process::Command::new(env!("CARGO_BIN_EXE_swd"))
            .args([
                "local",
                "--workers",
                "2",
                "--partitions",
                "4",
                "--checkpoint-interval",
                "200ms",
            ])
            .args([
                "--job",
                "wordcount",
                "--input",
                &format!("nats://{server}/{input}"),
            ])
            .args(["--output", &format!("nats://{server}/{output}.lines")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn swd local");
        let wait_counts = |upto: u64| {
            let deadline = Instant::now() + DEADLINE * 2;
            loop {
                if latest_counts(&server, &output) == expected_counts(upto) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the changelog never reached the counts of {upto} lines"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        wait_counts(500);
        // It runs until stopped: new lines update the counts.
        publish(&server, &format!("{input}.lines"), word_lines(500, 800));
        wait_counts(800);
        // SAFETY: kill(2) with the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(local.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + DEADLINE * 2;
        let status = loop {
            if let Some(status) = local.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "swd local did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut local.stdout.take().expect("stdout"), &mut stdout)
            .expect("stdout");
        assert!(
            status.success(),
            "a clean stop of an unbounded job exits 0: {status:?}, {stdout}"
        );
        assert!(
            stdout.contains("job wordcount stopped by SIGINT")
                && stdout.contains("output committed up to checkpoint"),
            "{stdout}"
        );
        assert_eq!(
            latest_counts(&server, &output),
            expected_counts(800),
            "nothing more after the stop"
        );
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn sigterm_to_the_coordinator_takes_a_final_checkpoint_that_a_restart_resumes() {
        let server = shared_server();
        let (input, output) = (
            format!("STOPIN{}", std::process::id()),
            format!("STOPOUT{}", std::process::id()),
        );
        let lines = numbered(2000);
        prepare(&server, &input, &output, &lines);
        // Unbounded, and a checkpoint interval too long to matter: the only checkpoint is the
        // one SIGTERM takes.
        let opts = Opts {
            partitions: 4,
            extra: [
                "--job",
                "repartition",
                "--input",
                &format!("nats://{server}/{input}"),
                "--output",
                &format!("nats://{server}/{output}.lines"),
                "--rate",
                "100",
                "--checkpoint-interval",
                "1h",
                "--min-workers",
                "2",
            ]
            .map(String::from)
            .to_vec(),
            ..Opts::default()
        };
        let mut cluster = Cluster::start(opts);
        cluster.add_worker("w1", &[]);
        cluster.add_worker("w2", &[]);
        // The lag: most of the stream is still ahead of the rate-limited sources.
        cluster.wait_for("the job reading, behind the stream's end", |s| {
            s["job"]["state"] == "running"
                && s["job"]["records_in"].as_u64().is_some_and(|n| n >= 200)
                && s["job"]["lag"].as_u64().is_some_and(|lag| lag > 0)
        });
        assert!(
            stream_lines(&server, &output).is_empty(),
            "nothing committed before the stop"
        );
        cluster.coordinator.signal(libc::SIGTERM);
        let status = cluster.coordinator.wait_exit(DEADLINE);
        assert!(status.success(), "the coordinator exits 0: {status:?}");
        // The checkpoint is durable when the coordinator exits; the workers, still running,
        // publish its epoch right after.
        let committed = wait_output(&server, &output, |got| !got.is_empty());
        assert!(committed.windows(2).all(|w| w[0] != w[1]), "no line twice");

        let (coordinator, addr) =
            start_coordinator(&cluster.opts, &cluster.addr.to_string(), cluster.data_dir.path());
        assert_eq!(addr, cluster.addr);
        cluster.coordinator = coordinator;
        let resumed = cluster.wait_for("the job resumed", |s| s["job"]["state"] == "running");
        assert_eq!(
            resumed["job"]["last_restored_checkpoint"], 1,
            "resumed from the final checkpoint: {resumed:#}"
        );
        // The job never ends by itself; its output is committed by the stop that ends this test.
        cluster.wait_for_long("everything read, no lag", |s| {
            s["job"]["records_in"]
                .as_u64()
                .is_some_and(|n| n >= lines.len() as u64)
                && s["job"]["lag"] == 0
        });
        cluster.coordinator.signal(libc::SIGTERM);
        assert!(cluster.coordinator.wait_exit(DEADLINE).success());
        let got = wait_output(&server, &output, |got| got.len() >= lines.len());
        assert_eq!(got.len(), lines.len(), "as many messages out as in");
        assert!(got == lines, "every input line exactly once in the output stream");
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn sigint_commits_the_final_epoch_before_swd_local_exits() {
        let server = shared_server();
        let (input, output) = (
            format!("FININ{}", std::process::id()),
            format!("FINOUT{}", std::process::id()),
        );
        prepare(&server, &input, &output, &word_lines(0, 600));
        // No periodic checkpoint: whatever the output holds, the final one committed.
        let mut local = std::process::Command::new(env!("CARGO_BIN_EXE_swd"))
            .args([
                "local",
                "--workers",
                "2",
                "--partitions",
                "4",
                "--checkpoint-interval",
                "1h",
            ])
            .args([
                "--job",
                "wordcount",
                "--input",
                &format!("nats://{server}/{input}"),
            ])
            .args(["--output", &format!("nats://{server}/{output}.lines")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn swd local");
        // Its progress line (every 3 s on a pipe) says when every line has been read.
        let stderr = std::io::BufReader::new(local.stderr.take().expect("stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("wordcount running: 600 records in") => break,
                Ok(_) => {}
                Err(e) => panic!("no progress line with 600 records in: {e}"),
            }
        }
        assert!(
            latest_counts(&server, &output).is_empty(),
            "nothing committed before the stop"
        );
        // SAFETY: kill(2) with the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(local.id() as i32, libc::SIGINT) };
        let status = loop {
            if let Some(status) = local.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline + DEADLINE, "swd local did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}");
        assert_eq!(
            latest_counts(&server, &output),
            expected_counts(600),
            "the final checkpoint's epoch was published before swd local exited"
        );
    }
}
