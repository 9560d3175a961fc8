//! Membership: workers register (a new run fences the old one, an older run is fenced),
//! heartbeat, acknowledge assignments, disconnect, and depart (leave, time out, declared failed,
//! unreachable, fenced). A departure orphans the worker's partitions and retargets them; every
//! change ends in [`reconcile`](super::reconcile).
//!
//! ```text
//! Register --> on_register --> join --> balanced target --> reconcile
//! Ack      --> on_ack: release confirmed revocations, clear granted   --> reconcile
//! Tick     --> detect_failures (FailureDetector) --> depart(TimedOut)  --> reconcile
//! PeerUnreachable / JobFailed{unreachable_peer} --> on_peer_unreachable
//!          --> its connection closed too (before, or within a heartbeat timeout after)
//!          --> depart(Unreachable) --> reconcile
//! Disconnected --> ProbeWorker (the shell dials its data port) --refused--> PortRefused
//!          --> still disconnected, same run --> depart(Unreachable) --> reconcile
//! ```

use std::collections::BTreeSet;
use std::time::Instant;

use super::{duration_ms, sorted, Action, ClusterEvent, ConnId, Departure, Engine, Entry};
use crate::coordinator::assignment::{balanced, owned_by};
use crate::coordinator::RebalanceStrategy;
use crate::protocol::{CoordinatorMessage, RegisterRequest};
use crate::types::{Generation, PartitionId, WorkerId, WorkerInfo, WorkerState};

impl Engine {
    /// A heartbeat: the worker is alive and runs `running`.
    pub(super) fn on_heartbeat(&mut self, conn: ConnId, running: Vec<PartitionId>, now: Instant) {
        if let Some(entry) = self.entry_of(conn) {
            entry.info.last_heartbeat = now;
            entry.info.load = running.len();
            if entry.info.state != WorkerState::Leaving {
                entry.info.state = WorkerState::Active;
            }
            entry.running = sorted(running);
        }
    }

    /// A connection closed: its worker stays a member (with its partitions) until the timeout,
    /// unless it was leaving (then it is gone: `Departure::Abandoned`).
    pub(super) fn on_disconnected(&mut self, conn: ConnId, now: Instant) {
        let Some(id) = self.conns.remove(&conn) else {
            return;
        };
        let Some(entry) = self.workers.get_mut(&id) else {
            return;
        };
        entry.conn = None;
        if entry.info.state == WorkerState::Leaving {
            return self.depart(&id, Departure::Abandoned, now);
        }
        entry.info.state = WorkerState::Disconnected;
        let probe = Action::ProbeWorker {
            worker: id.clone(),
            incarnation: entry.incarnation,
            address: entry.info.address.clone(),
        };
        let timeout = self.config.heartbeat_timeout;
        match self
            .unreachable
            .remove(&id)
            .filter(|(at, _)| now.saturating_duration_since(*at) <= timeout)
        {
            Some((_, reporter)) => self.declare_unreachable(&id, reporter, now),
            // A worker process that died leaves nothing listening on its data port: a refused
            // dial says so at once (as a standby asks of a leader, `ha/watch.rs`).
            None => self.out.push(probe),
        }
    }

    /// The data port of run `incarnation` of `id` refused the probe sent when its connection
    /// closed. Still disconnected (not back meanwhile, not replaced by a newer run), it is gone.
    pub(super) fn on_port_refused(&mut self, id: &WorkerId, incarnation: u64, now: Instant) {
        let gone = self
            .workers
            .get(id)
            .is_some_and(|e| e.incarnation == incarnation && e.conn.is_none());
        if gone {
            self.out
                .push(Action::Log(super::Note::WorkerPortClosed { worker: id.clone() }));
            self.depart(id, Departure::Unreachable, now);
        }
    }

    /// Peer `reporter` could not reach member `id` on the data plane (a connection refused or
    /// closed). That alone may be the network between the two; with `id`'s own connection to
    /// the coordinator closed as well, its process is gone, so it departs now instead of at
    /// the heartbeat timeout (Flink's `heartbeat.rpc-failure-threshold` reasons alike). A
    /// report while `id` is still connected is remembered for a heartbeat timeout, in case
    /// its connection closes just after.
    pub(super) fn on_peer_unreachable(&mut self, reporter: &WorkerId, id: WorkerId, now: Instant) {
        let Some(entry) = self.workers.get(&id) else {
            return;
        };
        if id == *reporter {
            return;
        }
        if entry.conn.is_none() {
            self.declare_unreachable(&id, reporter.clone(), now);
        } else {
            self.unreachable.insert(id, (now, reporter.clone()));
        }
    }

    fn declare_unreachable(&mut self, id: &WorkerId, reporter: WorkerId, now: Instant) {
        self.out.push(Action::Log(super::Note::WorkerUnreachable {
            worker: id.clone(),
            reporter,
        }));
        self.depart(id, Departure::Unreachable, now);
    }

    /// Every member not heard from within the heartbeat timeout at `now` departs as failed.
    pub(super) fn detect_failures(&mut self, now: Instant) {
        let failed: Vec<WorkerId> = self
            .detector
            .failed(
                self.workers.iter().map(|(id, e)| (id, e.info.last_heartbeat)),
                now,
            )
            .into_iter()
            .cloned()
            .collect();
        for id in failed {
            self.depart(&id, Departure::TimedOut, now);
        }
    }

    pub(super) fn on_register(&mut self, conn: ConnId, request: RegisterRequest, now: Instant) {
        if self.conns.contains_key(&conn) {
            return;
        }
        let id = request.worker_id.clone();
        let older_run = self
            .workers
            .get(&id)
            .is_some_and(|e| request.incarnation < e.incarnation);
        if older_run {
            // Runs are ordered by start time: a paused old run that wakes up after a newer run
            // took its id over must not take it back.
            let reason = format!("a newer run of worker {id} is registered");
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::Fenced { reason },
            });
            self.out.push(Action::Close { conn });
            return;
        }
        if let Some(reason) = self.job_refusal(&request) {
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::RegistrationRefused { reason },
            });
            self.out.push(Action::Close { conn });
            return;
        }
        let mut requested = request.requested.clone();
        if let Some(existing) = self.workers.get_mut(&id) {
            if existing.incarnation == request.incarnation {
                // The same run reconnecting: it keeps its session and partitions, and whatever
                // a peer reported about it before is stale.
                self.unreachable.remove(&id);
                if let Some(old) = existing.conn.replace(conn) {
                    self.conns.remove(&old);
                    self.out.push(Action::Close { conn: old });
                }
                existing.info.last_heartbeat = now;
                existing.info.state = WorkerState::Active;
                existing.info.address = request.address;
                self.conns.insert(conn, id.clone());
                self.send_registered(conn);
                let partitions = owned_by(&self.owner, &id);
                self.out.push(Action::Send {
                    conn,
                    message: CoordinatorMessage::Assignment {
                        generation: self.generation,
                        partitions,
                    },
                });
                // It may have missed the start of the running attempt while it was away.
                self.resend_job(conn);
                self.reconcile(now);
                return;
            }
            // A new run of the same worker: fence the old session, offer it the old partitions.
            requested.extend(owned_by(&self.owner, &id));
            self.depart(&id, Departure::Fenced, now);
        } else if let Err(e) = self.check_room() {
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::RegistrationRefused {
                    reason: e.to_string(),
                },
            });
            self.out.push(Action::Close { conn });
            return;
        }
        let mut info = WorkerInfo::new(id.clone(), request.address, request.capacity, now);
        info.state = WorkerState::Active;
        self.workers.insert(
            id.clone(),
            Entry {
                info,
                conn: Some(conn),
                incarnation: request.incarnation,
                running: Vec::new(),
            },
        );
        self.conns.insert(conn, id.clone());
        self.send_registered(conn);
        // A running attempt goes on while partitions move here: the new member must know it
        // before the first move's checkpoint is triggered.
        if self.moves_carry_state() {
            self.resend_job(conn);
        }
        self.join(&id, &requested, now);
    }

    pub(super) fn send_registered(&mut self, conn: ConnId) {
        self.out.push(Action::Send {
            conn,
            message: CoordinatorMessage::Registered {
                generation: self.generation,
                num_partitions: self.config.num_partitions,
                heartbeat_timeout_ms: duration_ms(self.config.heartbeat_timeout),
            },
        });
    }

    /// A new member: honour the partitions it asks for when they are free, then retarget.
    pub(super) fn join(&mut self, id: &WorkerId, requested: &[PartitionId], now: Instant) {
        self.out
            .push(Action::Event(ClusterEvent::Joined { worker: id.clone() }));
        let capacity = self.workers.get(id).map_or(0, |e| e.info.capacity);
        let mut given = 0;
        for &p in requested.iter().collect::<BTreeSet<_>>() {
            if p < self.config.num_partitions
                && self.owner[p].is_none()
                && !self.revoking.contains_key(&p)
                && given < capacity
            {
                self.target[p] = Some(id.clone());
                given += 1;
            }
        }
        // A worker failed a moment ago and back (restarted by its supervisor): what it owned
        // then, taken over by the survivors, is what it takes back, rather than partitions the
        // survivors had before (Kafka's sticky assignors keep owners alike).
        let former = self.former.remove(id).unwrap_or_default();
        if self.config.rebalance_strategy != RebalanceStrategy::Manual {
            // Honoured requests count as owned so the balanced target keeps them where it can.
            let mut view = self.view();
            for (p, t) in self.target.iter().enumerate() {
                if t.as_ref() == Some(id) && view[p].is_none() {
                    view[p] = Some(id.clone());
                }
            }
            for p in former {
                if p < view.len() && !self.revoking.contains_key(&p) && !self.granting.contains_key(&p) {
                    view[p] = Some(id.clone());
                }
            }
            self.target = balanced(self.config.num_partitions, &self.members(), &view);
        }
        self.reconcile(now);
    }

    pub(super) fn on_ack(
        &mut self,
        conn: ConnId,
        generation: Generation,
        running: Vec<PartitionId>,
        now: Instant,
    ) {
        let Some(id) = self.conns.get(&conn).cloned() else {
            return;
        };
        if let Some(entry) = self.workers.get_mut(&id) {
            entry.info.last_heartbeat = now;
            entry.info.load = running.len();
            entry.running = sorted(running.clone());
        }
        let running: BTreeSet<PartitionId> = running.into_iter().collect();
        let released: Vec<PartitionId> = self
            .revoking
            .iter()
            .filter(|(p, (w, g))| *w == id && generation >= *g && !running.contains(p))
            .map(|(p, _)| *p)
            .collect();
        for p in released {
            self.revoking.remove(&p);
            self.out.push(Action::Event(ClusterEvent::Released {
                worker: id.clone(),
                partition: p,
            }));
        }
        self.granting.retain(|_, (w, g)| !(*w == id && generation >= *g));
        self.reconcile(now);
    }

    /// Removes a member; its partitions lose their owner and are placed again.
    pub(super) fn depart(&mut self, id: &WorkerId, how: Departure, now: Instant) {
        let Some(entry) = self.workers.remove(id) else {
            return;
        };
        self.unreachable.remove(id);
        if let Some(conn) = entry.conn {
            self.conns.remove(&conn);
            let message = match how {
                Departure::Left => CoordinatorMessage::LeaveAck,
                Departure::TimedOut => CoordinatorMessage::Shutdown {
                    reason: format!(
                        "declared failed: no heartbeat for {}",
                        humantime::format_duration(self.config.heartbeat_timeout)
                    ),
                },
                Departure::Declared => CoordinatorMessage::Shutdown {
                    reason: "declared failed by an administrator".to_string(),
                },
                Departure::Abandoned => CoordinatorMessage::Shutdown {
                    reason: "left before its partitions moved away".to_string(),
                },
                Departure::Unreachable => CoordinatorMessage::Shutdown {
                    reason: "declared failed: its connection closed and a peer cannot reach it".to_string(),
                },
                Departure::Fenced => CoordinatorMessage::Fenced {
                    reason: format!("a newer run of worker {id} registered"),
                },
            };
            self.out.push(Action::Send { conn, message });
            self.out.push(Action::Close { conn });
        }
        self.out.push(Action::Event(match how {
            Departure::Left => ClusterEvent::Left { worker: id.clone() },
            Departure::TimedOut | Departure::Declared | Departure::Abandoned | Departure::Unreachable => {
                ClusterEvent::Failed { worker: id.clone() }
            }
            Departure::Fenced => ClusterEvent::Fenced { worker: id.clone() },
        }));
        let mut orphans = owned_by(&self.owner, id);
        if how.is_failure() {
            self.remember_former(id, &orphans);
        }
        for &p in &orphans {
            self.owner[p] = None;
        }
        let revoked: Vec<PartitionId> = self
            .revoking
            .iter()
            .filter(|(_, (w, _))| w == id)
            .map(|(p, _)| *p)
            .collect();
        for p in revoked {
            self.revoking.remove(&p);
            orphans.push(p);
        }
        orphans.sort_unstable();
        for &p in &orphans {
            self.out.push(Action::Event(ClusterEvent::Released {
                worker: id.clone(),
                partition: p,
            }));
        }
        self.granting.retain(|_, (w, _)| w != id);
        if how == Departure::Fenced {
            // The same id registers again right after; placement happens then.
            for t in self.target.iter_mut().filter(|t| t.as_ref() == Some(id)) {
                *t = None;
            }
            return;
        }
        self.retarget_after_departure(id, &orphans, how);
        self.reconcile(now);
    }

    /// Keeps what a failed worker owned, for its return (`join`); a bounded memory: the
    /// oldest-named entries go first beyond `max_workers`.
    fn remember_former(&mut self, id: &WorkerId, owned: &[PartitionId]) {
        if owned.is_empty() {
            return;
        }
        self.former.insert(id.clone(), owned.to_vec());
        while self.former.len() > self.config.max_workers.max(1) {
            self.former.pop_first();
        }
    }

    pub(super) fn retarget_after_departure(
        &mut self,
        id: &WorkerId,
        orphans: &[PartitionId],
        how: Departure,
    ) {
        let failover = how.is_failure() && self.config.enable_failover;
        match self.config.rebalance_strategy {
            RebalanceStrategy::Manual => {
                for t in self.target.iter_mut().filter(|t| t.as_ref() == Some(id)) {
                    *t = None;
                }
                if failover {
                    self.place_on_least_loaded(orphans);
                }
            }
            RebalanceStrategy::Immediate | RebalanceStrategy::Gradual => {
                self.target = balanced(self.config.num_partitions, &self.members(), &self.view());
                if how.is_failure() && !self.config.enable_failover {
                    for &p in orphans {
                        self.target[p] = None;
                    }
                }
            }
        }
    }

    /// Manual failover: each orphan goes to the member with the fewest partitions that has room.
    pub(super) fn place_on_least_loaded(&mut self, orphans: &[PartitionId]) {
        for &p in orphans {
            let best = self
                .workers
                .values()
                .filter(|e| e.info.state != WorkerState::Leaving)
                .map(|e| (owned_by(&self.target, &e.info.id).len(), e))
                .filter(|(n, e)| *n < e.info.capacity)
                .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.info.id.cmp(&b.1.info.id)))
                .map(|(_, e)| e.info.id.clone());
            self.target[p] = best;
        }
    }

    /// The member on connection `conn`, if any.
    pub(super) fn entry_of(&mut self, conn: ConnId) -> Option<&mut Entry> {
        let id = self.conns.get(&conn)?;
        self.workers.get_mut(id)
    }
}
