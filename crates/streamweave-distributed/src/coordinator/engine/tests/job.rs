//! Golden tests of how the engine's job control reacts to failures: a task failure names its
//! partition and worker, restarts in a row fail the job unless checkpoints complete in between,
//! and checkpoints that time out too often fail the attempt. Simulated workers answer
//! assignments (and, when asked to, checkpoints); no sockets, no sleeps.

use std::collections::VecDeque;

use super::*;
use crate::dataflow::JobSpec;
use crate::protocol::{JobState, JobStatus};

const P: usize = 4;

/// A coordinator with workers w1 (conn 1) and w2 (conn 2) running a job.
struct World {
    e: Engine,
    now: u64,
    /// Whether checkpoints are acknowledged (off: they time out).
    acking: bool,
    /// StopJob messages seen (per worker connection).
    stops: usize,
    /// What the engine logged.
    notes: Vec<Note>,
}

impl World {
    fn new(config: CoordinatorConfig) -> World {
        let mut world = World {
            e: Engine::new(CoordinatorConfig {
                num_partitions: P,
                heartbeat_timeout: Duration::from_secs(600),
                job: Some(JobSpec::new("poison")),
                min_workers: 2,
                ..config
            }),
            now: 0,
            acking: true,
            stops: 0,
            notes: Vec::new(),
        };
        for (conn, id) in [(1, "w1"), (2, "w2")] {
            let request = RegisterRequest {
                worker_id: WorkerId::new(id),
                incarnation: 1,
                address: format!("{id}.local:9000"),
                capacity: 100,
                requested: Vec::new(),
                jobs: vec!["poison".to_string()],
            };
            world.input(Input::Register { conn, request });
        }
        world.run(100);
        let job = world.job();
        assert_eq!((job.state, job.attempt), (JobState::Running, 1), "{job:?}");
        world
    }

    fn input(&mut self, input: Input) {
        let mut queue: VecDeque<Action> = self.e.handle(input, at(self.now)).into();
        while let Some(action) = queue.pop_front() {
            if let Action::Log(note) = &action {
                self.notes.push(note.clone());
            }
            for input in self.answers(&action) {
                queue.extend(self.e.handle(input, at(self.now)));
            }
        }
    }

    fn answers(&mut self, action: &Action) -> Vec<Input> {
        // Every worker applies its assignment and acknowledges it.
        if let Some((conn, generation, running)) = as_assignment(action) {
            return vec![Input::Ack {
                conn,
                generation,
                running,
            }];
        }
        match action {
            Action::Send {
                message: CoordinatorMessage::StopJob { .. },
                ..
            } => {
                self.stops += 1;
                Vec::new()
            }
            // Broadcast: answered once, on connection 1, for every partition.
            Action::Send {
                conn: 1,
                message: CoordinatorMessage::TriggerCheckpoint { attempt, id, .. },
            } if self.acking => (0..P)
                .map(|p| Input::Job {
                    conn: 1,
                    report: JobReport::CheckpointAck {
                        attempt: *attempt,
                        id: *id,
                        partition: p,
                        snapshot: PartitionSnapshot {
                            state_file: format!("state-p{p:05}"),
                            state_bytes: 1,
                            state_crc32: 0,
                            source_offset: Some(*id),
                            source_exhausted: false,
                            source_records: *id,
                        },
                        ended_sources: Vec::new(),
                    },
                })
                .collect(),
            Action::WriteCheckpoint { id, .. } => vec![Input::CheckpointWritten {
                id: *id,
                result: Ok(()),
            }],
            _ => Vec::new(),
        }
    }

    /// Lets `ms` pass in ticks of 50 ms.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms / 50 {
            self.now += 50;
            self.input(Input::Tick);
        }
    }

    fn job(&self) -> JobStatus {
        self.e.status(at(self.now)).job.expect("a job")
    }

    /// The task of partition 3 on w2 (conn 2) fails in the running attempt.
    fn poison(&mut self) {
        let attempt = self.job().attempt;
        self.input(Input::Job {
            conn: 2,
            report: JobReport::Failed {
                attempt,
                partition: Some(3),
                error: "panicked: poison record".to_string(),
                damaged_checkpoint: None,
                unreachable_peer: None,
            },
        });
    }

    /// Runs until the job is running again (or has ended), up to 10 s.
    fn until_running(&mut self) -> JobState {
        for _ in 0..200 {
            if matches!(self.job().state, JobState::Running | JobState::Failed) {
                break;
            }
            self.run(50);
        }
        self.job().state
    }
}

#[test]
fn a_poisoned_record_fails_the_job_after_max_restarts_naming_partition_and_worker() {
    let mut world = World::new(CoordinatorConfig {
        max_job_restarts: 3,
        ..CoordinatorConfig::default()
    });
    for restart in 1..=3 {
        world.poison();
        assert_eq!(
            world.notes.last(),
            Some(&Note::TaskFailed {
                worker: WorkerId::new("w2"),
                attempt: restart,
                partition: Some(3),
                error: "panicked: poison record".to_string(),
            }),
            "the failure is logged"
        );
        assert_eq!(world.job().state, JobState::Restarting);
        assert_eq!(world.until_running(), JobState::Running, "restart {restart}");
        assert_eq!(world.job().attempt, restart + 1, "{:?}", world.job());
    }
    world.poison();
    let job = world.job();
    assert_eq!((job.state, job.restarts), (JobState::Failed, 3), "{job:?}");
    assert_eq!(
        job.error.as_deref(),
        Some("partition 3 on worker w2: panicked: poison record")
    );
    assert_eq!(world.stops, 2 * 4, "each failed attempt stopped on both workers");
    // Nothing starts again; the coordinator goes on answering.
    world.run(2_000);
    assert_eq!(world.job().attempt, 4);
}

#[test]
fn checkpoints_completed_between_crashes_keep_the_job_going() {
    let mut world = World::new(CoordinatorConfig {
        max_job_restarts: 2,
        checkpoint_interval: Some(Duration::from_millis(100)),
        data_dir: Some("/nonexistent/swd-test".into()),
        ..CoordinatorConfig::default()
    });
    for crash in 1..=5 {
        let completed = world.e.checkpoint_status().map_or(0, |c| c.completed);
        world.run(200);
        assert!(
            world.e.checkpoint_status().map_or(0, |c| c.completed) > completed,
            "crash {crash}: a checkpoint completed"
        );
        world.poison();
        assert_eq!(world.until_running(), JobState::Running, "crash {crash}");
    }
    assert_eq!(world.job().restarts, 5);
    // Without a checkpoint in between: the restart after the fifth crash, one more, then the
    // third crash in a row fails it.
    world.acking = false;
    world.poison();
    assert_eq!(world.until_running(), JobState::Running);
    world.poison();
    assert_eq!(world.job().state, JobState::Failed);
}

#[test]
fn checkpoints_timing_out_beyond_the_tolerable_fail_the_attempt() {
    let mut world = World::new(CoordinatorConfig {
        checkpoint_interval: Some(Duration::from_millis(100)),
        checkpoint_timeout: Duration::from_millis(200),
        tolerable_checkpoint_failures: 2,
        data_dir: Some("/nonexistent/swd-test".into()),
        ..CoordinatorConfig::default()
    });
    world.run(300);
    let restored = world.e.checkpoint_status().and_then(|c| c.last_completed);
    assert!(restored.is_some(), "a checkpoint completed");
    world.acking = false;
    // Each checkpoint: 100 ms interval, then > 200 ms pending (ticks of 50 ms): 350 ms.
    world.run(2 * 350);
    assert_eq!(
        (world.job().state, world.job().attempt, world.stops),
        (JobState::Running, 1, 0),
        "two timeouts are tolerated"
    );
    world.run(350);
    assert_eq!(world.stops, 2, "the third fails the attempt: {:?}", world.job());
    let job = world.job();
    assert_eq!(
        job.error.as_deref(),
        Some("3 checkpoints in a row timed out (tolerable: 2)")
    );
    assert_eq!(world.until_running(), JobState::Running);
    let job = world.job();
    assert_eq!(job.attempt, 2);
    assert_eq!(job.last_restored_checkpoint, restored, "from the last checkpoint");
}
