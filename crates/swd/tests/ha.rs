//! Coordinator high availability on a real etcd (tier 2: `scripts/tier2.sh` starts it and
//! exports `SWD_TEST_ETCD`): three coordinators with `--ha` and a shared checkpoint store run a
//! checkpointed word count on two workers that know all three.
//!
//! - The leader SIGKILLed: a standby leads within a few seconds, resumes the job from the
//!   latest checkpoint, and the output is exact. Then two leaders killed in a row: the third
//!   coordinator finishes the job, exactly.
//! - The leader SIGSTOPped past its lease: the workers, hearing nothing from it, follow the new
//!   leader, which runs the job while the old one is still paused; SIGCONTed, the old leader
//!   steps down, no checkpoint is committed twice (by anyone), and the output is exact.

mod common;

pub mod tier2 {
    use std::fs::File;
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use super::common::*;

    const PARTITIONS: usize = 8;
    const LONG: Duration = Duration::from_secs(120);

    fn etcd() -> String {
        std::env::var("SWD_TEST_ETCD")
            .expect("SWD_TEST_ETCD is not set: run tier-2 tests with scripts/tier2.sh")
    }

    struct HaCluster {
        dir: tempfile::TempDir,
        corpus: PathBuf,
        output: PathBuf,
        coordinators: Vec<(Proc, SocketAddr)>,
        workers: Vec<Proc>,
    }

    impl HaCluster {
        fn start(name: &str) -> HaCluster {
            let dir = tempfile::tempdir().unwrap();
            let corpus = corpus(dir.path(), 200_000, 4);
            let output = dir.path().join("out");
            let store = dir.path().join("checkpoints");
            let ha = format!("etcd://{}/tests/ha-{name}-{}", etcd(), std::process::id());
            let mut coordinators = Vec::new();
            for i in 0..3 {
                let data_dir = dir.path().join(format!("c{i}"));
                std::fs::create_dir_all(&data_dir).unwrap();
                let log = File::create(dir.path().join(format!("c{i}.log"))).unwrap();
                let mut child = swd()
                    .args([
                        "coordinator",
                        "--bind",
                        "127.0.0.1:0",
                        "--partitions",
                        &PARTITIONS.to_string(),
                    ])
                    .args(["--heartbeat-timeout", "1s", "--health-check-interval", "50ms"])
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .arg("--checkpoint-store")
                    .arg(&store)
                    .args(["--ha", &ha])
                    .args(["--job", "wordcount", "--input"])
                    .arg(corpus.join("input"))
                    .arg("--output")
                    .arg(&output)
                    .args([
                        "--rate",
                        "1500",
                        "--min-workers",
                        "2",
                        "--checkpoint-interval",
                        "200ms",
                    ])
                    .stdout(Stdio::piped())
                    .stderr(log)
                    .spawn()
                    .expect("spawn coordinator");
                let addr = read_listening(&mut child);
                coordinators.push((
                    Proc {
                        name: format!("c{i}"),
                        child,
                    },
                    addr,
                ));
            }
            let all: Vec<String> = coordinators.iter().map(|(_, a)| a.to_string()).collect();
            let mut workers = Vec::new();
            for i in 1..=2 {
                let id = format!("w{i}");
                let child = swd()
                    .args([
                        "worker",
                        "--coordinator",
                        &all.join(","),
                        "--id",
                        &id,
                        "--heartbeat-interval",
                        "100ms",
                    ])
                    .stdout(Stdio::null())
                    .stderr(File::create(dir.path().join(format!("{id}.log"))).unwrap())
                    .spawn()
                    .expect("spawn worker");
                workers.push(Proc { name: id, child });
            }
            HaCluster {
                dir,
                corpus,
                output,
                coordinators,
                workers,
            }
        }

        /// The index of the coordinator that says it leads, once exactly one does and the rest
        /// name it (polled until `deadline`).
        fn leader(&self, deadline: Duration, except: &[usize]) -> usize {
            let end = Instant::now() + deadline;
            loop {
                let roles: Vec<Option<Value>> = self
                    .coordinators
                    .iter()
                    .enumerate()
                    .map(|(i, (_, addr))| {
                        if except.contains(&i) {
                            None
                        } else {
                            try_status_at(*addr)
                        }
                    })
                    .collect();
                let leaders: Vec<usize> = (0..roles.len())
                    .filter(|&i| roles[i].as_ref().is_some_and(|s| s["role"] == "leader"))
                    .collect();
                if let [one] = leaders[..] {
                    let addr = self.coordinators[one].1.to_string();
                    let named = roles
                        .iter()
                        .flatten()
                        .filter(|s| s["role"] == "standby")
                        .all(|s| s["leader"] == addr);
                    if named {
                        return one;
                    }
                }
                assert!(
                    Instant::now() < end,
                    "no single leader within {deadline:?}: {roles:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn addr(&self, i: usize) -> SocketAddr {
            self.coordinators[i].1
        }

        fn assert_exact_output(&self) {
            let expected = std::fs::read(self.corpus.join("expected.tsv")).unwrap();
            assert_eq!(
                output_lines(&self.output),
                sorted_lines(&expected),
                "exact counts across the failover"
            );
        }

        /// Every `checkpoint committed` line of every coordinator's log, by checkpoint.
        fn commits(&self) -> Vec<String> {
            let mut ids = Vec::new();
            for i in 0..self.coordinators.len() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("c{i}.log"))).unwrap();
                for line in log.lines().filter(|l| l.contains("checkpoint committed")) {
                    let id = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("checkpoint="));
                    ids.push(id.expect("checkpoint=ID in the line").to_string());
                }
            }
            ids
        }
    }

    fn read_listening(child: &mut std::process::Child) -> SocketAddr {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        line.trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("coordinator printed {line:?}"))
            .parse()
            .expect("address")
    }

    fn running_with_a_checkpoint(s: &Value) -> bool {
        s["job"]["state"] == "running" && s["checkpoints"]["last_completed"].as_u64().is_some()
    }

    fn finished(s: &Value) -> bool {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    }

    fn unique(mut ids: Vec<String>) -> bool {
        let n = ids.len();
        ids.sort();
        ids.dedup();
        ids.len() == n
    }

    #[test]
    #[ignore = "tier 2: needs etcd (scripts/tier2.sh)"]
    fn the_leader_killed_mid_job_a_standby_resumes_it_exactly() {
        let mut cluster = HaCluster::start("kill");
        let first = cluster.leader(LONG, &[]);
        wait_status_at(
            cluster.addr(first),
            LONG,
            "a checkpoint",
            running_with_a_checkpoint,
        );
        cluster.coordinators[first].0.signal(libc::SIGKILL);
        let killed = Instant::now();
        let second = cluster.leader(Duration::from_secs(10), &[first]);
        let led = killed.elapsed();
        assert_ne!(second, first);
        let owned = wait_status_at(cluster.addr(second), LONG, "every partition owned", |s| {
            s["unassigned"].as_array().is_some_and(|u| u.is_empty())
                && s["workers"].as_array().is_some_and(|w| w.len() == 2)
        });
        let processing = wait_status_at(cluster.addr(second), LONG, "the job running again", |s| {
            s["job"]["state"] == "running" || finished(s)
        });
        eprintln!(
            "failover: leader after {led:?}, running after {:?}",
            killed.elapsed()
        );
        assert!(led < Duration::from_secs(5), "a standby led after {led:?}");
        assert!(owned["job"].is_object(), "{owned:#}");
        let done = wait_status_at(cluster.addr(second), LONG, "the job to end", finished);
        assert_eq!(done["job"]["state"], "finished", "{done:#}");
        assert!(
            done["job"]["last_restored_checkpoint"].is_u64(),
            "resumed from a checkpoint: {done:#}"
        );
        assert!(
            processing["job"]["attempt"].as_u64() > Some(1_000_000_000),
            "{processing:#}"
        );
        cluster.assert_exact_output();
        assert!(unique(cluster.commits()), "{:?}", cluster.commits());
        drop(cluster.workers.drain(..));
    }

    #[test]
    #[ignore = "tier 2: needs etcd (scripts/tier2.sh)"]
    fn losing_two_leaders_in_a_row_the_third_coordinator_finishes_the_job_exactly() {
        let mut cluster = HaCluster::start("two");
        let first = cluster.leader(LONG, &[]);
        wait_status_at(
            cluster.addr(first),
            LONG,
            "a checkpoint",
            running_with_a_checkpoint,
        );
        cluster.coordinators[first].0.signal(libc::SIGKILL);
        let second = cluster.leader(Duration::from_secs(10), &[first]);
        // Killed as soon as it runs the job again: mid-job, from a checkpoint.
        wait_status_at(
            cluster.addr(second),
            LONG,
            "the job running under the second leader",
            |s| s["job"]["state"] == "running" && s["unassigned"].as_array().is_some_and(|u| u.is_empty()),
        );
        cluster.coordinators[second].0.signal(libc::SIGKILL);
        let third = cluster.leader(Duration::from_secs(10), &[first, second]);
        assert!(third != first && third != second);
        let done = wait_status_at(cluster.addr(third), LONG, "the job to end", finished);
        assert_eq!(done["job"]["state"], "finished", "{done:#}");
        cluster.assert_exact_output();
        assert!(unique(cluster.commits()), "{:?}", cluster.commits());
        drop(cluster.workers.drain(..));
    }

    #[test]
    #[ignore = "tier 2: needs etcd (scripts/tier2.sh)"]
    fn the_leader_paused_past_its_lease_steps_down_and_commits_nothing_twice() {
        let cluster = HaCluster::start("pause");
        let first = cluster.leader(LONG, &[]);
        let seen = wait_status_at(
            cluster.addr(first),
            LONG,
            "a checkpoint",
            running_with_a_checkpoint,
        );
        let first_attempt = seen["job"]["attempt"].as_u64().expect("attempt");
        cluster.coordinators[first].0.signal(libc::SIGSTOP);
        // The lease (2 s) lapses: another coordinator leads while the first is paused.
        let second = cluster.leader(Duration::from_secs(10), &[first]);
        assert_ne!(second, first);
        // The workers notice the paused leader's silence (no answer to their heartbeats) and
        // follow the new one, which runs the job while the old leader is still paused.
        let followed = wait_status_at(
            cluster.addr(second),
            LONG,
            "the workers with the new leader, the job running",
            |s| {
                s["workers"].as_array().is_some_and(|w| w.len() == 2)
                    && s["unassigned"].as_array().is_some_and(|u| u.is_empty())
                    && (s["job"]["state"] == "running" || finished(s))
            },
        );
        assert!(
            followed["job"]["attempt"].as_u64() > Some(first_attempt),
            "{followed:#}"
        );
        cluster.coordinators[first].0.signal(libc::SIGCONT);
        // Woken up, the old leader answers as a standby naming the new one.
        let addr = cluster.addr(second).to_string();
        wait_status_at(
            cluster.addr(first),
            Duration::from_secs(10),
            "the old leader to stand by",
            |s| s["role"] == "standby" && s["leader"] == addr,
        );
        let done = wait_status_at(cluster.addr(second), LONG, "the job to end", finished);
        assert_eq!(done["job"]["state"], "finished", "{done:#}");
        assert!(done["job"]["attempt"].as_u64() > Some(first_attempt), "{done:#}");
        cluster.assert_exact_output();
        let commits = cluster.commits();
        assert!(!commits.is_empty());
        assert!(
            unique(commits.clone()),
            "a checkpoint committed twice: {commits:?}"
        );
        let old_log = std::fs::read_to_string(cluster.dir.path().join(format!("c{first}.log"))).unwrap();
        assert!(
            old_log.contains("no longer leading"),
            "the old leader stepped down:\n{old_log}"
        );
    }
}
