//! Failures with real `swd` processes: a worker killed outright, a worker restarted under the
//! same id, a coordinator restarted under the same address, and failover switched off.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

#[test]
fn a_killed_workers_partitions_move_to_the_survivors() {
    let mut cluster = Cluster::with_workers(Opts::default(), 3);
    let before = cluster.status();
    let mut w2 = cluster.take_worker("w2");
    w2.signal(libc::SIGKILL);
    w2.wait_exit(DEADLINE);
    let after = cluster.wait_for("w2 to be failed and its partitions to move", |s| {
        !worker_ids(s).contains(&"w2".to_string()) && settled(s, 2)
    });
    assert_exclusive_and_complete(&after);
    assert_eq!(worker_ids(&after), ["w1", "w3"]);
    for id in ["w1", "w3"] {
        assert!(
            partitions_of(&before, id).is_subset(&partitions_of(&after, id)),
            "{id} lost partitions: before {before:#}, after {after:#}"
        );
    }
    let gained: BTreeSet<u64> = ["w1", "w3"]
        .iter()
        .flat_map(|id| &partitions_of(&after, id) - &partitions_of(&before, id))
        .collect();
    assert_eq!(
        gained,
        partitions_of(&before, "w2"),
        "exactly w2's partitions moved"
    );
    let events = cluster.events();
    assert!(
        events.iter().any(|e| is_event(e, "failed", "w2")),
        "no failed event for w2: {events:#?}"
    );
    assert_never_owned_twice(&events);
}

/// Without a job there are no data connections to notice a death: the coordinator dials the data
/// port of a worker whose connection closed, and the refusal fails it at once, long before the
/// 60 s heartbeat timeout.
#[test]
fn a_killed_worker_whose_data_port_refuses_is_failed_at_once() {
    let opts = Opts {
        heartbeat_timeout: "60s",
        ..Opts::default()
    };
    let mut cluster = Cluster::with_workers(opts, 3);
    let before = cluster.status();
    let mut w2 = cluster.take_worker("w2");
    w2.signal(libc::SIGKILL);
    w2.wait_exit(DEADLINE);
    let after = wait_status_at(
        cluster.addr,
        Duration::from_secs(20),
        "w2 failed and its partitions owned by the survivors",
        |s| !worker_ids(s).contains(&"w2".to_string()) && settled(s, 2),
    );
    assert_exclusive_and_complete(&after);
    let gained: BTreeSet<u64> = ["w1", "w3"]
        .iter()
        .flat_map(|id| &partitions_of(&after, id) - &partitions_of(&before, id))
        .collect();
    assert_eq!(gained, partitions_of(&before, "w2"));
    assert!(
        cluster.events().iter().any(|e| is_event(e, "failed", "w2")),
        "no failed event for w2"
    );
}

#[test]
fn a_worker_restarted_under_the_same_id_fences_its_old_session() {
    let mut cluster = Cluster::with_workers(Opts::default(), 3);
    let before = cluster.status();
    let mut old = cluster.take_worker("w2");
    old.signal(libc::SIGKILL);
    old.wait_exit(DEADLINE);
    cluster.add_worker("w2", &[]);
    let after = cluster.wait_for("the new w2 to register and the cluster to settle", |s| {
        let events = cluster.events();
        events.iter().filter(|e| is_event(e, "joined", "w2")).count() >= 2 && settled(s, 3)
    });
    assert_exclusive_and_complete(&after);
    assert_eq!(worker_ids(&after), ["w1", "w2", "w3"]);
    assert!(cluster.worker("w2").is_running(), "the new w2 is still running");
    let events = cluster.events();
    // The old session ends (fenced by the new run, or failed if its refused data port or the
    // timeout came first) before the new run joins.
    let first_join = events
        .iter()
        .position(|e| is_event(e, "joined", "w2"))
        .expect("first join");
    let rejoin = first_join
        + 1
        + events[first_join + 1..]
            .iter()
            .position(|e| is_event(e, "joined", "w2"))
            .expect("second join");
    let ended = events[first_join + 1..rejoin]
        .iter()
        .filter(|e| is_event(e, "fenced", "w2") || is_event(e, "failed", "w2"))
        .count();
    assert_eq!(
        ended, 1,
        "the old session of w2 ends exactly once before the new one joins: {events:#?}"
    );
    assert_never_owned_twice(&events);
    // Survivors kept what they had.
    for id in ["w1", "w3"] {
        assert!(
            partitions_of(&before, id).is_subset(&partitions_of(&after, id)),
            "{id} lost partitions: before {before:#}, after {after:#}"
        );
    }
}

/// A worker killed, failed (its partitions taken over by the survivors), then started again
/// under its id, as a supervisor would: it takes back what it had, and the survivors keep what
/// they had before.
#[test]
fn a_failed_worker_started_again_takes_back_its_partitions() {
    let mut cluster = Cluster::with_workers(Opts::default(), 3);
    let before = cluster.status();
    let mut old = cluster.take_worker("w2");
    old.signal(libc::SIGKILL);
    old.wait_exit(DEADLINE);
    cluster.wait_for("w2 failed, its partitions on the survivors", |s| {
        !worker_ids(s).contains(&"w2".to_string()) && settled(s, 2)
    });
    cluster.add_worker("w2", &[]);
    let after = cluster.wait_for("w2 back with its partitions", |s| {
        settled(s, 3) && ownership(s) == ownership(&before)
    });
    assert_exclusive_and_complete(&after);
    assert_never_owned_twice(&cluster.events());
}

#[test]
fn workers_survive_a_coordinator_restart_and_register_with_the_new_one() {
    let mut cluster = Cluster::with_workers(Opts::default(), 3);
    let addr = cluster.addr;
    cluster.coordinator.signal(libc::SIGTERM);
    let code = cluster.coordinator.wait_exit(DEADLINE);
    assert!(
        code.success(),
        "a coordinator stopped by SIGTERM exits 0, got {code}"
    );
    for w in &mut cluster.workers {
        assert!(w.is_running(), "{} exited with the coordinator", w.name);
    }
    assert!(try_status_at(addr).is_none(), "something still answers at {addr}");
    let events_before_restart = cluster.events().len();
    let (coordinator, new_addr) =
        start_coordinator(&cluster.opts, &addr.to_string(), cluster.data_dir.path());
    assert_eq!(new_addr, addr, "the new coordinator listens on the old address");
    cluster.coordinator = coordinator;
    let after = cluster.wait_settled(3);
    assert_exclusive_and_complete(&after);
    assert_eq!(worker_ids(&after), ["w1", "w2", "w3"]);
    for w in &mut cluster.workers {
        assert!(w.is_running(), "{} exited", w.name);
    }
    // The same three processes registered again with the new coordinator.
    let events = cluster.events();
    let since_restart = &events[events_before_restart..];
    for id in ["w1", "w2", "w3"] {
        assert!(
            since_restart.iter().any(|e| is_event(e, "joined", id)),
            "{id} did not join the new coordinator: {since_restart:#?}"
        );
    }
}

#[test]
fn without_failover_a_killed_workers_partitions_stay_unassigned() {
    let opts = Opts {
        rebalance: "manual",
        extra: vec!["--no-failover".into()],
        ..Opts::default()
    };
    let mut cluster = Cluster::start(opts);
    for id in ["w1", "w2", "w3"] {
        cluster.add_worker(id, &[]);
    }
    // Manual: the workers own nothing until asked to.
    cluster.wait_for("3 workers", |s| workers(s).len() == 3);
    let out = run_bounded(
        &["rebalance", "--coordinator", &cluster.addr.to_string()],
        DEADLINE,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = cluster.wait_settled(3);
    assert_exclusive_and_complete(&before);
    assert_eq!(partitions_of(&before, "w2").len(), 4, "{before:#}");
    let mut w2 = cluster.take_worker("w2");
    w2.signal(libc::SIGKILL);
    w2.wait_exit(DEADLINE);
    let after = cluster.wait_for("w2 to be dropped from the workers", |s| {
        !worker_ids(s).contains(&"w2".to_string())
    });
    let unassigned: BTreeSet<u64> = after["unassigned"]
        .as_array()
        .expect("unassigned")
        .iter()
        .filter_map(|p| p.as_u64())
        .collect();
    assert_eq!(unassigned, partitions_of(&before, "w2"), "{after:#}");
    // And they stay unassigned while the survivors keep heartbeating.
    let check = |s: &serde_json::Value| {
        assert_eq!(s["unassigned"], after["unassigned"], "{s:#}");
        for id in ["w1", "w3"] {
            assert_eq!(partitions_of(s, id), partitions_of(&before, id), "{s:#}");
        }
    };
    cluster.watch_heartbeats("w1", 3, check);
    let events = cluster.events();
    assert!(events.iter().any(|e| is_event(e, "failed", "w2")), "{events:#?}");
    let granted_after_failure = events_after(&events, |e| is_event(e, "failed", "w2"))
        .into_iter()
        .filter(|e| e["event"] == "granted")
        .count();
    assert_eq!(granted_after_failure, 0, "{events:#?}");
}

#[test]
fn a_fenced_run_that_comes_back_does_not_take_over_from_the_new_run() {
    let mut cluster = Cluster::with_workers(Opts::default(), 3);
    // The old run of w2 freezes (a long pause, as under a stop-the-world stall) ...
    let old = cluster.take_worker("w2");
    let address_of_w2 = |s: &serde_json::Value| {
        workers(s)
            .iter()
            .find(|w| w["id"] == "w2")
            .map(|w| w["address"].clone())
    };
    let old_address = address_of_w2(&cluster.status()).expect("w2");
    old.signal(libc::SIGSTOP);
    // ... and a supervisor starts a new run under the same id.
    cluster.add_worker("w2", &[]);
    let replaced = cluster.wait_for("the new run of w2 to take over", |s| {
        settled(s, 3) && address_of_w2(s).is_some_and(|a| a != old_address)
    });
    let new_address = address_of_w2(&replaced);
    let ended = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| is_event(e, "fenced", "w2") || is_event(e, "failed", "w2"))
            .count()
    };
    assert_eq!(ended(&cluster.events()), 1);
    // The old run wakes up. Whatever it does, the new run stays the member.
    old.signal(libc::SIGCONT);
    cluster.watch_heartbeats("w1", 10, |s| {
        assert_eq!(
            address_of_w2(s),
            new_address,
            "the old run of w2 took over again: {s:#}"
        );
    });
    let events = cluster.events();
    assert_eq!(ended(&events), 1, "w2's sessions keep ending: {events:#?}");
    assert_exclusive_and_complete(&cluster.wait_settled(3));
}

/// A worker SIGKILLed while a checkpointed job runs, with a heartbeat timeout far longer than
/// the test waits: its connection closes and its peers cannot reach it, so the coordinator
/// declares it failed at once, and the job restarts once on the survivors (not over and over on
/// the dead worker until the timeout) and finishes exactly. The survivors take the state of the
/// partitions they keep from memory (local recovery), rolled back to the checkpoint restored.
#[test]
fn a_killed_worker_of_a_running_job_fails_at_once_and_costs_one_restart() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path(), 100_000, 8);
    let output = dir.path().join("out");
    // 8 sources of 1,250 lines at 100 lines/s: about 13 s of reading.
    let flags = [
        "--rate",
        "100",
        "--min-workers",
        "3",
        "--checkpoint-interval",
        "300ms",
    ];
    let opts = Opts {
        partitions: 8,
        heartbeat_timeout: "60s",
        extra: job_flags("wordcount", &corpus.join("input"), &output, &flags),
        ..Opts::default()
    };
    let mut cluster = Cluster::start(opts);
    let metrics: Vec<String> = ["w1", "w2"]
        .iter()
        .map(|id| cluster.add_worker_with_metrics(id))
        .collect();
    cluster.add_worker("w3", &[]);
    let before = cluster.wait_for_long("a committed checkpoint of the running job", |s| {
        s["checkpoints"]["last_completed"].as_u64().is_some_and(|c| c > 0)
            || matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(
        before["job"]["state"], "running",
        "not killed mid-run: {before:#}"
    );
    assert_eq!(before["job"]["restarts"], 0, "{before:#}");

    let mut w3 = cluster.take_worker("w3");
    w3.signal(libc::SIGKILL);
    w3.wait_exit(DEADLINE);
    // Well inside the 60 s heartbeat timeout.
    let restarted = wait_status_at(
        cluster.addr,
        Duration::from_secs(20),
        "w3 declared failed and the job running again on the survivors",
        |s| {
            !worker_ids(s).contains(&"w3".to_string())
                && s["job"]["state"] == "running"
                && s["job"]["last_restored_checkpoint"].as_u64().is_some()
        },
    );
    assert_eq!(restarted["job"]["restarts"], 1, "{restarted:#}");
    assert!(
        cluster.events().iter().any(|e| is_event(e, "failed", "w3")),
        "no failed event for w3"
    );

    let finished = cluster.wait_for_long("the job to end", |s| {
        matches!(s["job"]["state"].as_str(), Some("finished" | "failed"))
    });
    assert_eq!(finished["job"]["state"], "finished", "{finished:#}");
    assert_eq!(finished["job"]["restarts"], 1, "{finished:#}");
    let expected = std::fs::read(corpus.join("expected.tsv")).unwrap();
    assert_eq!(output_lines(&output), sorted_lines(&expected));
    // w1 and w2 kept their 5 or 6 partitions of the 8 across the restart.
    let local: f64 = (metrics.iter())
        .map(|url| metric_sum(&http_get(url), "swd_worker_local_restores_total"))
        .sum();
    assert!(local >= 1.0, "no partition state taken from memory ({local})");
}
