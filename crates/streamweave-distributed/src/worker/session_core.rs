//! The worker's session decisions as a synchronous state machine: when to heartbeat, which
//! assignments to apply and acknowledge, when to retry an unreachable coordinator and when to
//! give up on our partitions, and how to leave. It owns no socket and reads no clock: the shell
//! (`session.rs`) feeds it [`SessionInput`]s with the current time, carries out the
//! [`SessionAction`]s it returns, and sleeps until [`SessionCore::deadline`].
//!
//! ```text
//!             Registered                   ConnectionLost / Shutdown
//!  (start) -------------> Connected ---------------------------------> Retrying
//!                          |  ^  Tick: Heartbeat{running}              |  wait = backoff (100 ms,
//!                          |  |  Assignment(g >= current): Apply, Ack   |  doubling to the cap),
//!                          |  |  job messages: ToJobs                   |  shorter while tasks run,
//!                          |  +---------------- Registered ---- Connecting <- Tick: Connect
//!                          |                               ConnectFailed: double, back to Retrying
//!      LeaveRequested      |   Retrying longer than heartbeat_timeout with tasks: StopAll
//!   carries state: Leave, Draining until LeaveAck or the drain timeout, then StopAll, Exit(Left)
//!   no state: StopAll, Leave, AwaitingLeaveAck until LeaveAck or communication_timeout, Exit(Left)
//!   Fenced (any connected state but the last): StopAll, Exit(Fenced)
//!   Connected and nothing heard (not even a HeartbeatAck) for twice the heartbeat timeout: the
//!   coordinator is paused or hung, not merely slow; Disconnect and retry as if the connection
//!   had dropped, the silence counting as time without a coordinator.
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::session_events::{
    SessionAction, SessionEnd, SessionInput, SessionNote, SessionTiming, WorkerSnapshot,
};
use crate::protocol::{CoordinatorMessage, WorkerMessage};
use crate::types::{Generation, PartitionId};

/// The first wait before retrying an unreachable coordinator; it doubles up to the configured cap.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Not registered yet.
    Idle,
    /// Registered; `draining` is the deadline of a leave with carried state.
    Connected {
        next_heartbeat: Instant,
        draining: Option<Instant>,
    },
    /// Tasks stopped, `Leave` sent, waiting for `LeaveAck` until the deadline.
    AwaitingLeaveAck { deadline: Instant },
    /// Without a coordinator since `lost_at`, next attempt at `retry_at`.
    Retrying {
        lost_at: Instant,
        backoff: Duration,
        attempt: u32,
        retry_at: Instant,
    },
    /// An attempt to register again is in flight.
    Connecting {
        lost_at: Instant,
        backoff: Duration,
        attempt: u32,
    },
    /// The session is over.
    Exited,
}

/// The worker's session state machine.
#[derive(Debug)]
pub(crate) struct SessionCore {
    timing: SessionTiming,
    state: State,
    generation: Generation,
    /// What the task set runs: exactly the partitions of the last applied assignment.
    running: BTreeSet<PartitionId>,
    /// When the coordinator last spoke on the current connection (registration or a message).
    heard_at: Option<Instant>,
}

impl SessionCore {
    pub(crate) fn new(timing: SessionTiming) -> Self {
        SessionCore {
            timing,
            state: State::Idle,
            generation: Generation::default(),
            running: BTreeSet::new(),
            heard_at: None,
        }
    }

    /// Partitions with a running task, ascending.
    pub(crate) fn running(&self) -> Vec<PartitionId> {
        self.running.iter().copied().collect()
    }

    /// When the shell must feed [`SessionInput::Tick`] if nothing else happens first.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Connected {
                next_heartbeat,
                draining,
            } => Some(draining.map_or(*next_heartbeat, |d| d.min(*next_heartbeat))),
            State::AwaitingLeaveAck { deadline } => Some(*deadline),
            State::Retrying { retry_at, .. } => Some(*retry_at),
            State::Idle | State::Connecting { .. } | State::Exited => None,
        }
    }

    /// Feeds one input; returns what to do, in order.
    pub(crate) fn on_event(&mut self, input: SessionInput, now: Instant) -> Vec<SessionAction> {
        let mut actions = Vec::new();
        match input {
            SessionInput::Registered {
                generation,
                heartbeat_timeout,
            } => self.registered(generation, heartbeat_timeout, now, &mut actions),
            SessionInput::ConnectFailed { reason } => self.connect_failed(reason, now, &mut actions),
            SessionInput::Message(message) => self.message(message, now, &mut actions),
            SessionInput::ConnectionLost => self.lost(now, &mut actions),
            SessionInput::Report(report) => {
                if matches!(self.state, State::Connected { .. }) {
                    actions.push(SessionAction::Send(report));
                }
            }
            SessionInput::Tick => self.tick(now, &mut actions),
            // Only the coordinator moves partitions: the partition stays in `running` (and in
            // heartbeats) until it is revoked, as the task set keeps it.
            SessionInput::TaskEnded { partition, error } => {
                actions.push(SessionAction::Log(SessionNote::TaskEnded { partition, error }));
            }
            SessionInput::LeaveRequested { carries_state } => self.leave(carries_state, now, &mut actions),
        }
        actions
    }

    fn registered(
        &mut self,
        generation: Generation,
        heartbeat_timeout: Duration,
        now: Instant,
        actions: &mut Vec<SessionAction>,
    ) {
        if self.state == State::Exited {
            return;
        }
        self.generation = generation;
        self.timing.presumed_dead_after = heartbeat_timeout;
        self.heard_at = Some(now);
        // The first heartbeat goes out at once, as the first tick of an interval does.
        self.state = State::Connected {
            next_heartbeat: now,
            draining: None,
        };
        actions.push(self.publish(true));
        actions.push(SessionAction::Log(SessionNote::Registered(generation)));
    }

    fn message(&mut self, message: CoordinatorMessage, now: Instant, actions: &mut Vec<SessionAction>) {
        if matches!(self.state, State::Connected { .. }) {
            self.heard_at = Some(now);
        }
        match self.state {
            State::Connected { draining, .. } => match message {
                CoordinatorMessage::Assignment {
                    generation,
                    partitions,
                } => {
                    if generation < self.generation {
                        actions.push(SessionAction::Log(SessionNote::StaleAssignment {
                            generation,
                            current: self.generation,
                        }));
                        return;
                    }
                    self.generation = generation;
                    self.running = partitions.iter().copied().collect();
                    actions.push(SessionAction::Apply {
                        partitions,
                        generation,
                    });
                    actions.push(self.publish(true));
                    actions.push(SessionAction::Send(WorkerMessage::Ack {
                        generation,
                        running: self.running(),
                    }));
                }
                CoordinatorMessage::Shutdown { reason } => {
                    actions.push(SessionAction::Log(SessionNote::Shutdown(reason)));
                    self.stop_all(actions);
                    self.lost(now, actions);
                }
                CoordinatorMessage::Fenced { reason } => self.fenced(reason, actions),
                // It only says the coordinator is alive: `heard_at` is updated above.
                CoordinatorMessage::HeartbeatAck => {}
                CoordinatorMessage::LeaveAck if draining.is_some() => {
                    self.stop_all(actions);
                    self.exit_left(true, actions);
                }
                message @ (CoordinatorMessage::StartJob { .. }
                | CoordinatorMessage::TriggerCheckpoint { .. }
                | CoordinatorMessage::AdoptPartitions { .. }
                | CoordinatorMessage::PreparePartitions { .. }
                | CoordinatorMessage::CommitEpochs { .. }
                | CoordinatorMessage::StopJob { .. }) => actions.push(SessionAction::ToJobs(message)),
                other => actions.push(SessionAction::Log(SessionNote::Ignored(other))),
            },
            // The tasks are stopped already: only the acknowledgement matters now.
            State::AwaitingLeaveAck { .. } => {
                if message == CoordinatorMessage::LeaveAck {
                    self.exit_left(true, actions);
                }
            }
            // A registration attempt's answer is the shell's; a fence is final in any state.
            State::Idle | State::Retrying { .. } | State::Connecting { .. } => {
                if let CoordinatorMessage::Fenced { reason } = message {
                    self.fenced(reason, actions);
                }
            }
            State::Exited => {}
        }
    }

    fn tick(&mut self, now: Instant, actions: &mut Vec<SessionAction>) {
        match self.state {
            State::Connected {
                next_heartbeat,
                draining,
            } => {
                if draining.is_some_and(|deadline| now >= deadline) {
                    actions.push(SessionAction::Log(SessionNote::DrainTimedOut));
                    self.stop_all(actions);
                    self.exit_left(false, actions);
                    return;
                }
                let silent_since = self.heard_at.unwrap_or(now);
                let silent_for = now.saturating_duration_since(silent_since);
                if silent_for >= self.silence_limit() {
                    actions.push(SessionAction::Log(SessionNote::Silent(silent_for)));
                    self.lost_since(silent_since, now, actions);
                    return;
                }
                if now >= next_heartbeat {
                    // A late tick delays the next one rather than bursting to catch up.
                    self.state = State::Connected {
                        next_heartbeat: now + self.timing.heartbeat_interval,
                        draining,
                    };
                    actions.push(SessionAction::Heartbeat {
                        running: self.running(),
                    });
                }
            }
            State::AwaitingLeaveAck { deadline } => {
                if now >= deadline {
                    self.exit_left(false, actions);
                }
            }
            State::Retrying {
                lost_at,
                backoff,
                attempt,
                retry_at,
            } => {
                if now < retry_at {
                    return;
                }
                self.stop_if_presumed_dead(lost_at, now, actions);
                self.state = State::Connecting {
                    lost_at,
                    backoff,
                    attempt: attempt + 1,
                };
                actions.push(SessionAction::Connect);
            }
            State::Idle | State::Connecting { .. } | State::Exited => {}
        }
    }

    fn leave(&mut self, carries_state: bool, now: Instant, actions: &mut Vec<SessionAction>) {
        match self.state {
            State::Connected {
                next_heartbeat,
                draining: None,
            } => {
                if carries_state {
                    // The partitions move away first, so the tasks run (and heartbeats go on)
                    // until the coordinator's LeaveAck or the drain deadline.
                    self.state = State::Connected {
                        next_heartbeat,
                        draining: Some(now + self.timing.drain_timeout),
                    };
                    actions.push(SessionAction::Log(SessionNote::Draining));
                    actions.push(SessionAction::Send(WorkerMessage::Leave));
                } else {
                    // Stop first, so the coordinator can hand the partitions on at once.
                    self.stop_all(actions);
                    actions.push(self.publish(false));
                    self.state = State::AwaitingLeaveAck {
                        deadline: now + self.timing.communication_timeout,
                    };
                    actions.push(SessionAction::Send(WorkerMessage::Leave));
                }
            }
            State::Idle | State::Retrying { .. } | State::Connecting { .. } => {
                self.stop_all(actions);
                self.state = State::Exited;
                actions.push(self.publish(false));
                actions.push(SessionAction::Exit(SessionEnd::Left));
            }
            State::Connected {
                draining: Some(_), ..
            }
            | State::AwaitingLeaveAck { .. }
            | State::Exited => {}
        }
    }

    /// How long a connected coordinator may say nothing before the connection is dropped:
    /// twice its heartbeat timeout, so that a coordinator slowed by a loaded machine (whose
    /// answers queue up) is not mistaken for a paused one.
    fn silence_limit(&self) -> Duration {
        self.timing.presumed_dead_after.saturating_mul(2)
    }

    fn lost(&mut self, now: Instant, actions: &mut Vec<SessionAction>) {
        self.lost_since(now, now, actions)
    }

    /// The coordinator is out of reach since `lost_at` (now, or when it fell silent).
    fn lost_since(&mut self, lost_at: Instant, now: Instant, actions: &mut Vec<SessionAction>) {
        self.heard_at = None;
        match self.state {
            // Leaving with state and the coordinator is gone: nobody will move the partitions.
            State::Connected {
                draining: Some(_), ..
            } => {
                actions.push(SessionAction::Disconnect);
                self.stop_all(actions);
                self.exit_left(false, actions);
            }
            State::AwaitingLeaveAck { .. } => {
                actions.push(SessionAction::Disconnect);
                self.exit_left(false, actions);
            }
            State::Connected { draining: None, .. } => {
                actions.push(SessionAction::Disconnect);
                actions.push(self.publish(false));
                actions.push(SessionAction::Log(SessionNote::Lost));
                self.retry_later(lost_at, FIRST_BACKOFF, 0, now, actions);
            }
            State::Idle | State::Retrying { .. } | State::Connecting { .. } | State::Exited => {}
        }
    }

    fn connect_failed(&mut self, reason: String, now: Instant, actions: &mut Vec<SessionAction>) {
        let State::Connecting {
            lost_at,
            backoff,
            attempt,
        } = self.state
        else {
            return;
        };
        actions.push(SessionAction::Log(SessionNote::RetryFailed {
            attempt,
            reason,
            retry_in: backoff,
        }));
        let backoff = (backoff * 2).min(self.timing.max_reconnect_backoff);
        self.retry_later(lost_at, backoff, attempt, now, actions);
    }

    /// Schedules the next registration attempt after `backoff`, but no later than the moment
    /// the coordinator gives up on us while tasks still run, so they stop in time.
    fn retry_later(
        &mut self,
        lost_at: Instant,
        backoff: Duration,
        attempt: u32,
        now: Instant,
        actions: &mut Vec<SessionAction>,
    ) {
        self.stop_if_presumed_dead(lost_at, now, actions);
        let mut wait = backoff;
        if !self.running.is_empty() {
            let unreachable_for = now.saturating_duration_since(lost_at);
            wait = wait.min(self.timing.presumed_dead_after.saturating_sub(unreachable_for));
        }
        self.state = State::Retrying {
            lost_at,
            backoff,
            attempt,
            retry_at: now + wait,
        };
    }

    /// After the coordinator's heartbeat timeout without it, it has declared us failed and
    /// moved our partitions: our tasks must not run on.
    fn stop_if_presumed_dead(&mut self, lost_at: Instant, now: Instant, actions: &mut Vec<SessionAction>) {
        let unreachable_for = now.saturating_duration_since(lost_at);
        if !self.running.is_empty() && unreachable_for >= self.timing.presumed_dead_after {
            actions.push(SessionAction::Log(SessionNote::PresumedDead(
                self.timing.presumed_dead_after,
            )));
            self.stop_all(actions);
            actions.push(self.publish(false));
        }
    }

    fn fenced(&mut self, reason: String, actions: &mut Vec<SessionAction>) {
        actions.push(SessionAction::Log(SessionNote::Fenced(reason.clone())));
        self.stop_all(actions);
        self.state = State::Exited;
        actions.push(SessionAction::Disconnect);
        actions.push(self.publish(false));
        actions.push(SessionAction::Exit(SessionEnd::Fenced(reason)));
    }

    fn exit_left(&mut self, acknowledged: bool, actions: &mut Vec<SessionAction>) {
        self.state = State::Exited;
        actions.push(self.publish(false));
        actions.push(SessionAction::Log(SessionNote::Left { acknowledged }));
        actions.push(SessionAction::Exit(SessionEnd::Left));
    }

    fn stop_all(&mut self, actions: &mut Vec<SessionAction>) {
        self.running.clear();
        actions.push(SessionAction::StopAll);
    }

    fn publish(&self, connected: bool) -> SessionAction {
        SessionAction::Publish(WorkerSnapshot {
            generation: self.generation,
            partitions: self.running(),
            connected,
        })
    }
}

#[cfg(test)]
#[path = "session_core_tests.rs"]
mod tests;
