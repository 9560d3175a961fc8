//! The leadership core: which coordinator leads, decided without I/O and without a clock.
//!
//! ```text
//!   results of etcd requests + Tick, each with `now`
//!        |
//!        v
//!   Leadership::on_event --> Vec<Action>: Grant / Renew / Campaign (one request at a time)
//!        |                                 + Lead / Follow / StepDown (what the shell publishes)
//!        v
//!   role(now): Leader { epoch } only while the lease's deadline is ahead
//! ```
//!
//! A coordinator holds an etcd lease and campaigns by creating the leader key with that lease if
//! the key is absent (one transaction); the key's value is its address, and the revision at which
//! the key was created is the leader's epoch, which only grows. A follower repeats the campaign
//! at every poll (the same transaction reads the current leader when it loses), so it learns a
//! new leader and takes over as soon as the old lease lapses.
//!
//! A follower need not wait for the lease when the leader's process is known to be gone: the
//! shell holds a connection to the leader and, when it breaks and a new one is refused (nothing
//! listens at the leader's address any more: the process died, its host is up), reports
//! [`Event::LeaderGone`]. The follower then revokes the leader's lease, which deletes the key,
//! and campaigns at once. A wrong verdict costs a needless failover, never safety: a leader
//! whose lease is revoked learns it at its next renewal or campaign and steps down, and every
//! commit it attempts is conditional on its key (fencing).
//!
//! The lease's deadline is measured from when the grant or renewal was *sent*: etcd starts its
//! TTL no earlier, so our deadline passes no later than etcd's expiry. Every event first checks
//! the deadline: a leader that was paused past its lease steps down before anything else, and
//! [`Leadership::role`] never says "leader" after the deadline, so the shell checks it with the
//! clock before every leader action.

use std::time::{Duration, Instant};

/// Timing of the lease and the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The lease's time to live (etcd rounds to whole seconds, at least 2 s by default).
    pub ttl: Duration,
    /// How often the lease is renewed (well within `ttl`: a third of it).
    pub renew_every: Duration,
    /// How often a follower campaigns again (which also reads the current leader).
    pub poll_every: Duration,
    /// How long to wait before repeating a request that failed.
    pub retry_after: Duration,
}

impl Timing {
    /// Renewal at a third of the TTL, polling and retries at a tenth.
    pub fn for_ttl(ttl: Duration) -> Self {
        Timing {
            ttl,
            renew_every: ttl / 3,
            poll_every: ttl / 10,
            retry_after: ttl / 10,
        }
    }
}

/// A request the shell made, named in [`Event::Failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Grant a lease.
    Grant,
    /// Renew the lease.
    Renew,
    /// Create the leader key if absent.
    Campaign,
    /// Revoke a gone leader's lease.
    Revoke,
}

/// What happened: the results of the requests the core asked for, and ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Time passed (the shell wakes up at [`Leadership::next_wakeup`]).
    Tick,
    /// A lease was granted; `sent_at` is when the grant was sent.
    Granted {
        /// The lease's id.
        lease: i64,
        /// The TTL etcd granted.
        ttl: Duration,
        /// When the request was sent.
        sent_at: Instant,
    },
    /// The lease was renewed (`ttl` zero: the lease no longer exists).
    Renewed {
        /// The TTL etcd reported.
        ttl: Duration,
        /// When the request was sent.
        sent_at: Instant,
    },
    /// The campaign transaction's result.
    Campaigned(Campaign),
    /// The leader at this address is gone (its port refuses connections).
    LeaderGone {
        /// The address, as the leader key holds it.
        leader: String,
    },
    /// A gone leader's lease was revoked.
    Revoked,
    /// A request failed (network, timeout, an error from etcd).
    Failed(Request),
}

/// The result of creating the leader key if absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// The key was created with our lease at this revision.
    Won {
        /// The revision of the creation: the leader epoch.
        revision: u64,
    },
    /// Another coordinator holds the key.
    Held {
        /// The leader's address (the key's value).
        leader: String,
        /// The leader's epoch (the key's create revision).
        epoch: u64,
        /// The leader's lease.
        lease: i64,
    },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Grant a lease of `ttl`.
    Grant {
        /// The TTL to ask for.
        ttl: Duration,
    },
    /// Renew this lease.
    Renew {
        /// The lease.
        lease: i64,
    },
    /// Create the leader key with this lease if it is absent, else read it.
    Campaign {
        /// The lease.
        lease: i64,
    },
    /// Revoke the lease of a leader that is gone, deleting its key.
    Revoke {
        /// The gone leader's lease.
        lease: i64,
    },
    /// We lead from now on, with this epoch, until the lease's deadline (renewals extend it).
    Lead {
        /// The leader epoch.
        epoch: u64,
    },
    /// Another coordinator leads (or none is known).
    Follow {
        /// Its address.
        leader: Option<String>,
    },
    /// We no longer lead: stop every leader action at once.
    StepDown,
}

/// Who leads, as seen at some instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This coordinator, until `deadline`.
    Leader {
        /// The leader epoch.
        epoch: u64,
        /// When the lease may lapse: no leader action after it.
        deadline: Instant,
    },
    /// Another coordinator (its address, if known).
    Standby {
        /// The leader's address.
        leader: Option<String>,
    },
}

impl Role {
    /// The epoch, if this is a leader whose deadline is still ahead of `now`.
    pub fn leading_at(&self, now: Instant) -> Option<u64> {
        match self {
            Role::Leader { epoch, deadline } if now < *deadline => Some(*epoch),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: i64,
    deadline: Instant,
    renew_at: Instant,
}

/// The leadership state machine of one coordinator. See the module docs.
#[derive(Debug)]
pub struct Leadership {
    timing: Timing,
    lease: Option<Lease>,
    /// Our epoch while we lead.
    epoch: Option<u64>,
    leader: Option<String>,
    /// The current leader's lease, while we follow it.
    leader_lease: Option<i64>,
    /// A gone leader's lease to revoke.
    revoke: Option<i64>,
    /// One request at a time: the shell reports its result before the next one.
    in_flight: Option<Request>,
    next_campaign: Option<Instant>,
    next_grant: Option<Instant>,
}

impl Leadership {
    /// A coordinator that has not campaigned yet.
    pub fn new(timing: Timing) -> Self {
        Leadership {
            timing,
            lease: None,
            epoch: None,
            leader: None,
            leader_lease: None,
            revoke: None,
            in_flight: None,
            next_campaign: None,
            next_grant: None,
        }
    }

    /// Who leads, as seen at `now`: never "leader" past the lease's deadline.
    pub fn role(&self, now: Instant) -> Role {
        match (self.epoch, self.lease) {
            (Some(epoch), Some(lease)) if now < lease.deadline => Role::Leader {
                epoch,
                deadline: lease.deadline,
            },
            _ => Role::Standby {
                leader: self.leader.clone(),
            },
        }
    }

    /// When the shell must deliver the next [`Event::Tick`] (`None`: only after a result).
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.in_flight.is_some() {
            // The deadline still matters while a request hangs.
            return self.lease.map(|l| l.deadline);
        }
        let lease = self.lease.map(|l| l.renew_at.min(l.deadline));
        [lease, self.next_campaign, self.next_grant]
            .into_iter()
            .flatten()
            .min()
    }

    /// Handles one event at `now` and says what to do.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.expire(now, &mut actions);
        match event {
            Event::Tick => {}
            Event::Granted { lease, ttl, sent_at } => {
                self.in_flight = None;
                let deadline = sent_at + ttl;
                if now < deadline {
                    self.lease = Some(Lease {
                        id: lease,
                        deadline,
                        renew_at: sent_at + self.timing.renew_every,
                    });
                    self.next_campaign = Some(now);
                }
            }
            Event::Renewed { ttl, sent_at } => {
                self.in_flight = None;
                if ttl.is_zero() {
                    self.lose_lease(now, &mut actions);
                } else if let Some(lease) = self.lease.as_mut() {
                    lease.deadline = lease.deadline.max(sent_at + ttl);
                    lease.renew_at = sent_at + self.timing.renew_every;
                }
            }
            Event::Campaigned(outcome) => {
                self.in_flight = None;
                self.on_campaign(outcome, now, &mut actions);
            }
            Event::LeaderGone { leader } => {
                if self.epoch.is_none() && self.leader.as_deref() == Some(leader.as_str()) {
                    self.revoke = self.leader_lease.take();
                }
            }
            Event::Revoked => {
                self.in_flight = None;
                // The key is gone with the lease: campaign now rather than at the next poll.
                if self.lease.is_some() {
                    self.next_campaign = Some(now);
                }
            }
            Event::Failed(request) => {
                self.in_flight = None;
                let retry = now + self.timing.retry_after;
                match request {
                    Request::Grant => self.next_grant = Some(retry),
                    Request::Campaign => self.next_campaign = Some(retry),
                    // The lease lapses by itself; the next poll finds the key gone then.
                    Request::Revoke => {}
                    Request::Renew => {
                        if let Some(lease) = self.lease.as_mut() {
                            lease.renew_at = retry;
                        }
                    }
                }
            }
        }
        self.next_request(now, &mut actions);
        actions
    }

    fn on_campaign(&mut self, outcome: Campaign, now: Instant, actions: &mut Vec<Action>) {
        // A result that arrives after the lease lapsed (a pause) is stale: `expire` dropped the
        // lease, and a new one is granted before campaigning again.
        if self.lease.is_none() {
            return;
        }
        match outcome {
            Campaign::Won { revision } => {
                if self.epoch.is_none() {
                    self.epoch = Some(revision);
                    self.leader = None;
                    self.leader_lease = None;
                    self.next_campaign = None;
                    actions.push(Action::Lead { epoch: revision });
                }
            }
            Campaign::Held { leader, epoch, lease } => {
                if self.epoch == Some(epoch) {
                    // Our own key (a repeated campaign): still leading.
                    return;
                }
                if self.epoch.take().is_some() {
                    actions.push(Action::StepDown);
                }
                if self.leader.as_deref() != Some(leader.as_str()) {
                    actions.push(Action::Follow {
                        leader: Some(leader.clone()),
                    });
                }
                self.leader = Some(leader);
                self.leader_lease = Some(lease);
                self.next_campaign = Some(now + self.timing.poll_every);
            }
        }
    }

    /// Drops a lease whose deadline passed (stepping down if we led).
    fn expire(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.lease.is_some_and(|l| now >= l.deadline) {
            self.lose_lease(now, actions);
        }
    }

    fn lose_lease(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.lease = None;
        self.next_campaign = None;
        self.next_grant = Some(now);
        if self.epoch.take().is_some() {
            actions.push(Action::StepDown);
        }
    }

    fn next_request(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.in_flight.is_some() {
            return;
        }
        let due = |at: Option<Instant>| at.is_some_and(|at| now >= at);
        match self.lease {
            None => {
                if self.next_grant.is_none() || due(self.next_grant) {
                    self.next_grant = None;
                    self.in_flight = Some(Request::Grant);
                    actions.push(Action::Grant { ttl: self.timing.ttl });
                }
            }
            Some(lease) if now >= lease.renew_at => {
                self.in_flight = Some(Request::Renew);
                actions.push(Action::Renew { lease: lease.id });
            }
            Some(_) if self.revoke.is_some() => {
                if let Some(lease) = self.revoke.take() {
                    self.in_flight = Some(Request::Revoke);
                    actions.push(Action::Revoke { lease });
                }
            }
            Some(lease) if self.epoch.is_none() && due(self.next_campaign) => {
                self.next_campaign = None;
                self.in_flight = Some(Request::Campaign);
                actions.push(Action::Campaign { lease: lease.id });
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
#[path = "leadership_tests.rs"]
mod tests;
