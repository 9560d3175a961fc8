//! Jobs on an in-process cluster over loopback TCP: a coordinator and workers in one process,
//! real data-plane connections between the workers. The process-level tests in
//! `crates/swd/tests` are the real proof; these are fast checks of the runtime.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use streamweave_distributed::dataflow::JobSpec;
use streamweave_distributed::protocol::{JobState, JobStatus};
use streamweave_distributed::Coordinator;
use streamweave_distributed::{
    CoordinatorConfig, CoordinatorImpl, Worker, WorkerConfig, WorkerId, WorkerImpl,
};

const DEADLINE: Duration = Duration::from_secs(60);

async fn run_job(spec: JobSpec, partitions: usize, workers: usize) -> JobStatus {
    let mut coordinator = CoordinatorImpl::new(CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        heartbeat_timeout: Duration::from_secs(2),
        health_check_interval: Duration::from_millis(50),
        num_partitions: partitions,
        job: Some(spec),
        ..Default::default()
    });
    coordinator.start().await.unwrap();
    let mut nodes = Vec::new();
    for i in 0..workers {
        let mut worker = WorkerImpl::new(WorkerConfig {
            worker_id: WorkerId::new(format!("w{i}")),
            coordinator_address: coordinator.local_addr().unwrap(),
            heartbeat_interval: Duration::from_millis(100),
            ..Default::default()
        });
        worker.register().await.unwrap();
        worker.start().await.unwrap();
        nodes.push(worker);
    }
    let end = tokio::time::Instant::now() + DEADLINE;
    let status = loop {
        let status = coordinator.status().await.unwrap();
        let job = status.job.clone().expect("job status");
        if matches!(job.state, JobState::Finished | JobState::Failed) {
            break job;
        }
        assert!(tokio::time::Instant::now() < end, "job did not end: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for mut node in nodes {
        node.stop().await;
    }
    coordinator.stop().await;
    status
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// The final output lines: files not starting with `.` or `_`, concatenated.
fn output_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

fn expected_counts(texts: &[&str]) -> Vec<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for text in texts {
        for word in text.split_whitespace() {
            *counts.entry(word).or_default() += 1;
        }
    }
    let mut lines: Vec<String> = counts.into_iter().map(|(w, c)| format!("{w}\t{c}")).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_over_two_workers_equals_the_single_process_answer() {
    let input = tempfile::tempdir().unwrap();
    let output = tempfile::tempdir().unwrap();
    let out = output.path().join("counts");
    let texts = [
        "the cat\r\nsat on\tthe mat\n\n",
        "the  end",
        "",
        "ünïcödé words\u{a0}split the cat\n",
    ];
    for (i, text) in texts.iter().enumerate() {
        write(input.path(), &format!("f{i}.txt"), text);
    }
    let spec = JobSpec::new("wordcount")
        .with_input(input.path())
        .with_output(&out);
    let status = run_job(spec, 6, 2).await;
    assert_eq!(status.state, JobState::Finished, "{status:?}");
    assert_eq!(output_lines(&out), expected_counts(&texts));
    assert_eq!(status.partitions_done, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repartition_outputs_the_input_lines_reordered() {
    let input = tempfile::tempdir().unwrap();
    let output = tempfile::tempdir().unwrap();
    let out = output.path().join("lines");
    let mut all = Vec::new();
    for f in 0..3 {
        let lines: Vec<String> = (0..2000).map(|i| format!("file {f} line {i}")).collect();
        write(input.path(), &format!("part-{f}"), &(lines.join("\n") + "\n"));
        all.extend(lines);
    }
    let spec = JobSpec::new("repartition")
        .with_input(input.path())
        .with_output(&out);
    let status = run_job(spec, 8, 3).await;
    assert_eq!(status.state, JobState::Finished, "{status:?}");
    all.sort();
    assert_eq!(output_lines(&out), all);
    assert_eq!(status.records_in, 6000);
    assert_eq!(status.records_out, 6000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_binary_lacks_the_job_is_refused_with_the_reason() {
    let mut coordinator = CoordinatorImpl::new(CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        num_partitions: 4,
        job: Some(JobSpec::new("sessionize")),
        ..Default::default()
    });
    coordinator.start().await.unwrap();
    let mut worker = WorkerImpl::new(WorkerConfig {
        worker_id: WorkerId::new("plain"),
        coordinator_address: coordinator.local_addr().unwrap(),
        ..Default::default()
    });
    match worker.register().await {
        Err(streamweave_distributed::WorkerError::RegistrationFailed(reason)) => {
            assert!(
                reason.contains("sessionize") && reason.contains("wordcount"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let status = coordinator.status().await.unwrap();
    assert!(status.workers.is_empty());
    assert_eq!(status.job.map(|j| j.state), Some(JobState::Waiting));
    coordinator.stop().await;
}
