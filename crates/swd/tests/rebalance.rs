//! Moving partitions on purpose with real `swd` processes: manual placement with `swd assign`
//! and `swd rebalance`, the errors `swd assign` reports, and how joins move partitions under the
//! immediate and gradual strategies.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

fn manual() -> Opts {
    Opts {
        rebalance: "manual",
        ..Opts::default()
    }
}

fn set(parts: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
    parts.into_iter().collect()
}

#[test]
fn manual_placement_moves_only_what_assign_and_rebalance_ask_for() {
    let mut cluster = Cluster::start(manual());
    cluster.add_worker("w1", &["--partitions", "0-5"]);
    cluster.add_worker("w2", &["--partitions", "6-11"]);
    let before = cluster.wait_settled(2);
    assert_eq!(partitions_of(&before, "w1"), set(0..6), "{before:#}");
    assert_eq!(partitions_of(&before, "w2"), set(6..12), "{before:#}");

    // A new worker gets nothing, and nothing moves, however long it stays.
    cluster.add_worker("w3", &[]);
    cluster.wait_for("w3 to join", |s| worker_ids(s).contains(&"w3".to_string()));
    let unchanged = |s: &Value| {
        assert_eq!(partitions_of(s, "w1"), set(0..6), "{s:#}");
        assert_eq!(partitions_of(s, "w2"), set(6..12), "{s:#}");
        assert_eq!(partitions_of(s, "w3"), set([]), "{s:#}");
        assert_eq!(s["generation"], before["generation"], "{s:#}");
    };
    cluster.watch_heartbeats("w3", 3, unchanged);
    let events = cluster.events();
    let moves: Vec<Value> = events_after(&events, |e| is_event(e, "joined", "w3"))
        .into_iter()
        .filter(|e| e["event"] == "granted" || e["event"] == "revoking")
        .collect();
    assert!(moves.is_empty(), "partitions moved after w3 joined: {moves:#?}");

    let addr = cluster.addr.to_string();
    let out = run_bounded(
        &[
            "assign",
            "--coordinator",
            &addr,
            "--worker",
            "w3",
            "--partitions",
            "0,1",
        ],
        DEADLINE,
    );
    assert!(
        out.status.success(),
        "swd assign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let assigned = cluster.wait_for("w3 to own 0 and 1", |s| {
        partitions_of(s, "w3") == set([0, 1]) && settled(s, 3)
    });
    assert_eq!(partitions_of(&assigned, "w1"), set(2..6), "{assigned:#}");
    assert_eq!(partitions_of(&assigned, "w2"), set(6..12), "{assigned:#}");
    assert_exclusive_and_complete(&assigned);
    assert_never_owned_twice(&cluster.events());

    let out = run_bounded(&["rebalance", "--coordinator", &addr], DEADLINE);
    assert!(
        out.status.success(),
        "swd rebalance failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let balanced = cluster.wait_for("4/4/4", |s| {
        settled(s, 3)
            && workers(s)
                .iter()
                .all(|w| w["partitions"].as_array().map(Vec::len) == Some(4))
    });
    assert_exclusive_and_complete(&balanced);
    // Sticky: w1 and w3 keep what they had and only w2's surplus moves.
    assert!(partitions_of(&assigned, "w1").is_subset(&partitions_of(&balanced, "w1")));
    assert!(partitions_of(&assigned, "w3").is_subset(&partitions_of(&balanced, "w3")));
    assert!(partitions_of(&balanced, "w2").is_subset(&partitions_of(&assigned, "w2")));
    assert_never_owned_twice(&cluster.events());
}

#[test]
fn assign_refuses_unknown_workers_bad_partitions_and_overload() {
    let mut cluster = Cluster::start(Opts::default());
    cluster.add_worker("w1", &[]);
    cluster.add_worker("w2", &[]);
    cluster.add_worker("w3", &["--max-tasks", "2"]);
    let before = cluster.wait_settled(3);
    assert_eq!(partitions_of(&before, "w3").len(), 2, "{before:#}");
    let addr = cluster.addr.to_string();
    let assign = |worker: &str, partitions: &str| {
        run_bounded(
            &[
                "assign",
                "--coordinator",
                &addr,
                "--worker",
                worker,
                "--partitions",
                partitions,
            ],
            DEADLINE,
        )
    };

    let out = assign("nobody", "0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "assign to an unknown worker succeeded");
    assert!(stderr.contains("worker not found"), "stderr: {stderr}");

    let out = assign("w1", "12");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "assign of partition 12 of 12 succeeded");
    assert!(stderr.contains("partition 12"), "stderr: {stderr}");

    let w1_first = *partitions_of(&before, "w1").first().expect("w1 owns partitions");
    let out = assign("w3", &w1_first.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "assign above --max-tasks succeeded");
    assert!(stderr.contains("w3"), "stderr names the worker: {stderr}");

    let after = cluster.status();
    assert_eq!(after["generation"], before["generation"], "{after:#}");
    assert_eq!(ownership(&after), ownership(&before));
}

#[test]
fn an_immediate_join_moves_everything_in_one_generation() {
    let opts = Opts {
        rebalance: "immediate",
        ..Opts::default()
    };
    let mut cluster = Cluster::with_workers(opts, 3);
    let before = cluster.status();
    cluster.add_worker("w4", &[]);
    let after = cluster.wait_settled(4);
    assert_exclusive_and_complete(&after);
    assert_eq!(partitions_of(&after, "w4").len(), 3, "{after:#}");
    for id in ["w1", "w2", "w3"] {
        assert!(
            partitions_of(&after, id).is_subset(&partitions_of(&before, id)),
            "{id} received a partition: {after:#}"
        );
    }
    let events = cluster.events();
    let join = events_after(&events, |e| is_event(e, "joined", "w4"));
    let granted: Vec<&Value> = join.iter().filter(|e| e["event"] == "granted").collect();
    let revoking: Vec<&Value> = join.iter().filter(|e| e["event"] == "revoking").collect();
    assert_eq!(granted.len(), 3, "{join:#?}");
    assert_eq!(revoking.len(), 3, "{join:#?}");
    assert!(granted.iter().all(|e| e["worker"] == "w4"), "{join:#?}");
    let generations: BTreeSet<u64> = granted
        .iter()
        .chain(&revoking)
        .map(|e| e["generation"].as_u64().expect("generation"))
        .collect();
    assert_eq!(
        generations.len(),
        1,
        "the join took several generations: {join:#?}"
    );
    let granted_parts: BTreeSet<u64> = granted.iter().filter_map(|e| e["partition"].as_u64()).collect();
    assert_eq!(granted_parts, partitions_of(&after, "w4"));
}

#[test]
fn a_gradual_join_never_shows_a_partition_owned_twice() {
    let mut cluster = Cluster::with_workers(Opts::default(), 3);
    cluster.add_worker("w4", &[]);
    let end = std::time::Instant::now() + DEADLINE;
    let mut snapshots = 0;
    let after = loop {
        let status = cluster.status();
        snapshots += 1;
        assert_disjoint(&status);
        if settled(&status, 4) {
            break status;
        }
        assert!(
            std::time::Instant::now() < end,
            "the join did not settle after {snapshots} snapshots: {status:#}"
        );
    };
    assert_exclusive_and_complete(&after);
    assert_eq!(partitions_of(&after, "w4").len(), 3, "{after:#}");
    assert_never_owned_twice(&cluster.events());
}
