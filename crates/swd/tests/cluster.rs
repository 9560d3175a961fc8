//! Membership and assignment with real `swd` processes: balance, joins, graceful leaves,
//! the `max_workers` limit.

mod common;

use common::*;

#[test]
fn three_workers_share_twelve_partitions_evenly() {
    let cluster = Cluster::with_workers(Opts::default(), 3);
    let status = cluster.status();
    assert_exclusive_and_complete(&status);
    for w in workers(&status) {
        assert_eq!(
            w["partitions"].as_array().map(Vec::len),
            Some(4),
            "unbalanced: {status:#}"
        );
        assert_eq!(w["state"], "active");
        assert!(w["address"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")));
    }
    assert!(status["generation"].as_u64().is_some_and(|g| g > 0));
}

#[test]
fn sigterm_moves_partitions_without_waiting_for_the_timeout() {
    // A timeout far longer than the deadline below: only a graceful leave can explain the move.
    let opts = Opts {
        heartbeat_timeout: "60s",
        health_check_interval: "1s",
        ..Opts::default()
    };
    let mut cluster = Cluster::with_workers(opts, 3);
    let before = cluster.status();
    let leaving = partitions_of(&before, "w2");
    let mut w2 = cluster.take_worker("w2");
    w2.signal(libc::SIGTERM);
    let after = cluster.wait_for("w2's partitions to move", |s| settled(s, 2));
    assert!(
        w2.wait_exit(DEADLINE).success(),
        "a worker stopped by SIGTERM exits 0"
    );
    assert!(!worker_ids(&after).contains(&"w2".to_string()));
    assert_exclusive_and_complete(&after);
    for id in ["w1", "w3"] {
        assert!(
            partitions_of(&before, id).is_subset(&partitions_of(&after, id)),
            "{id} lost partitions"
        );
    }
    let moved: usize = ["w1", "w3"]
        .iter()
        .map(|id| {
            partitions_of(&after, id)
                .difference(&partitions_of(&before, id))
                .count()
        })
        .sum();
    assert_eq!(moved, leaving.len(), "only w2's partitions moved");
}

#[test]
fn a_joining_worker_gets_its_share_one_partition_at_a_time() {
    let mut cluster = Cluster::with_workers(Opts::default(), 3);
    let before = cluster.status();
    cluster.add_worker("w4", &[]);
    let after = cluster.wait_settled(4);
    assert_exclusive_and_complete(&after);
    assert_eq!(partitions_of(&after, "w4").len(), 3);
    for id in ["w1", "w2", "w3"] {
        let kept = partitions_of(&after, id);
        assert_eq!(kept.len(), 3);
        assert!(
            kept.is_subset(&partitions_of(&before, id)),
            "{id} received a partition it did not need"
        );
    }
    let events = cluster.events();
    assert_never_owned_twice(&events);
    // Gradual: each revocation is confirmed before the next one starts.
    let mut open = 0;
    for e in &events {
        match e["event"].as_str() {
            Some("revoking") => {
                open += 1;
                assert_eq!(open, 1, "two revocations in flight at once: {events:#?}");
            }
            Some("released") if open > 0 => open -= 1,
            _ => {}
        }
    }
}

#[test]
fn a_worker_beyond_max_workers_is_refused_and_nothing_changes() {
    let opts = Opts {
        extra: vec!["--max-workers".into(), "2".into()],
        ..Opts::default()
    };
    let cluster = Cluster::with_workers(opts, 2);
    let before = cluster.status();
    let out = swd()
        .args(["worker", "--coordinator", &cluster.addr.to_string(), "--id", "w3"])
        .output()
        .expect("run worker");
    assert!(!out.status.success(), "the refused worker exits non-zero");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("max_workers is 2"),
        "stderr names the limit: {stderr}"
    );
    let after = cluster.status();
    assert_eq!(worker_ids(&after), worker_ids(&before));
    assert_eq!(after["generation"], before["generation"]);
}

#[test]
fn workers_bound_to_every_interface_advertise_a_reachable_address() {
    let mut cluster = Cluster::start(Opts::default());
    // Bound to 0.0.0.0 without --advertise: the IP it reaches the coordinator from.
    cluster.add_worker("any", &["--bind", "0.0.0.0:0"]);
    // --advertise wins, whatever the bind address.
    cluster.add_worker("named", &["--advertise", "worker-b.example:7123"]);
    let status = cluster.wait_settled(2);
    let address = |id: &str| {
        workers(&status)
            .iter()
            .find(|w| w["id"] == id)
            .and_then(|w| w["address"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no address for {id}: {status:#}"))
    };
    let any = address("any");
    assert!(any.starts_with("127.0.0.1:") && !any.ends_with(":0"), "{any}");
    assert_eq!(address("named"), "worker-b.example:7123");
}
