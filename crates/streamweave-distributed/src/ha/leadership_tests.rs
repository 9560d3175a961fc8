//! Golden tests of the leadership core: events and instants in, actions and roles out.

use std::time::{Duration, Instant};

use super::*;

const TTL: Duration = Duration::from_secs(3);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A core past its grant (lease 7, sent at `t0`).
fn granted(t0: Instant) -> Leadership {
    let mut core = Leadership::new(Timing::for_ttl(TTL));
    assert_eq!(core.on_event(Event::Tick, t0), vec![Action::Grant { ttl: TTL }]);
    let actions = core.on_event(
        Event::Granted {
            lease: 7,
            ttl: TTL,
            sent_at: t0,
        },
        t0 + ms(5),
    );
    assert_eq!(actions, vec![Action::Campaign { lease: 7 }]);
    core
}

fn leader(t0: Instant) -> Leadership {
    let mut core = granted(t0);
    let actions = core.on_event(Event::Campaigned(Campaign::Won { revision: 42 }), t0 + ms(10));
    assert_eq!(actions, vec![Action::Lead { epoch: 42 }]);
    core
}

#[test]
fn a_won_campaign_leads_with_the_creation_revision_as_epoch_until_the_deadline() {
    let t0 = Instant::now();
    let core = leader(t0);
    assert_eq!(
        core.role(t0 + ms(10)),
        Role::Leader {
            epoch: 42,
            deadline: t0 + TTL
        }
    );
    assert_eq!(core.role(t0 + ms(10)).leading_at(t0 + TTL - ms(1)), Some(42));
    // The deadline is measured from when the grant was sent, and is never exceeded.
    assert_eq!(core.role(t0 + TTL), Role::Standby { leader: None });
    assert_eq!(core.next_wakeup(), Some(t0 + TTL / 3));
}

#[test]
fn the_leader_renews_at_a_third_of_the_ttl_and_the_deadline_moves_from_the_send_time() {
    let t0 = Instant::now();
    let mut core = leader(t0);
    assert_eq!(core.on_event(Event::Tick, t0 + ms(500)), vec![]);
    assert_eq!(
        core.on_event(Event::Tick, t0 + TTL / 3),
        vec![Action::Renew { lease: 7 }]
    );
    let sent = t0 + TTL / 3;
    assert_eq!(
        core.on_event(
            Event::Renewed {
                ttl: TTL,
                sent_at: sent
            },
            sent + ms(20)
        ),
        vec![]
    );
    assert_eq!(
        core.role(sent + ms(20)),
        Role::Leader {
            epoch: 42,
            deadline: sent + TTL
        }
    );
    assert_eq!(core.next_wakeup(), Some(sent + TTL / 3));
}

#[test]
fn a_renewal_that_finds_the_lease_gone_steps_down_and_asks_for_a_new_lease() {
    let t0 = Instant::now();
    let mut core = leader(t0);
    core.on_event(Event::Tick, t0 + TTL / 3);
    let actions = core.on_event(
        Event::Renewed {
            ttl: Duration::ZERO,
            sent_at: t0 + TTL / 3,
        },
        t0 + ms(1100),
    );
    assert_eq!(actions, vec![Action::StepDown, Action::Grant { ttl: TTL }]);
    assert_eq!(core.role(t0 + ms(1100)), Role::Standby { leader: None });
}

#[test]
fn failed_renewals_are_retried_and_the_leader_steps_down_at_its_deadline() {
    let t0 = Instant::now();
    let mut core = leader(t0);
    let mut now = t0 + TTL / 3;
    assert_eq!(core.on_event(Event::Tick, now), vec![Action::Renew { lease: 7 }]);
    // etcd unreachable: every renewal fails, and is retried after a tenth of the TTL.
    while now + TTL / 10 < t0 + TTL {
        now += ms(10);
        assert_eq!(core.on_event(Event::Failed(Request::Renew), now), vec![]);
        assert_eq!(core.next_wakeup(), Some(now + TTL / 10));
        now += TTL / 10;
        assert_eq!(core.on_event(Event::Tick, now), vec![Action::Renew { lease: 7 }]);
        assert_eq!(core.role(now).leading_at(now), Some(42));
    }
    // The renewal hangs: the core still wakes up at the deadline, and steps down there.
    assert_eq!(core.next_wakeup(), Some(t0 + TTL));
    assert_eq!(core.on_event(Event::Tick, t0 + TTL), vec![Action::StepDown]);
    assert_eq!(core.role(t0 + TTL), Role::Standby { leader: None });
    // The hung renewal's late failure then lets it ask for a new lease.
    assert_eq!(
        core.on_event(Event::Failed(Request::Renew), t0 + TTL + ms(1)),
        vec![Action::Grant { ttl: TTL }]
    );
}

#[test]
fn a_leader_paused_past_its_lease_steps_down_before_anything_else() {
    let t0 = Instant::now();
    let mut core = leader(t0);
    core.on_event(Event::Tick, t0 + TTL / 3);
    // SIGSTOP for ten seconds; the renewal it had sent answers after SIGCONT, successfully
    // (sent long ago): the lease is gone at etcd by now, whatever the answer says.
    let woke = t0 + Duration::from_secs(10);
    assert_eq!(
        core.role(woke).leading_at(woke),
        None,
        "no leader action after the deadline"
    );
    let actions = core.on_event(
        Event::Renewed {
            ttl: TTL,
            sent_at: t0 + TTL / 3,
        },
        woke,
    );
    assert_eq!(actions, vec![Action::StepDown, Action::Grant { ttl: TTL }]);
    assert_eq!(core.role(woke), Role::Standby { leader: None });
}

#[test]
fn a_lost_campaign_follows_the_holder_and_takes_over_when_its_key_is_gone() {
    let t0 = Instant::now();
    let mut core = granted(t0);
    let held = Campaign::Held {
        leader: "10.0.0.1:7000".into(),
        epoch: 40,
        lease: 99,
    };
    let actions = core.on_event(Event::Campaigned(held.clone()), t0 + ms(10));
    assert_eq!(
        actions,
        vec![Action::Follow {
            leader: Some("10.0.0.1:7000".into())
        }]
    );
    assert_eq!(
        core.role(t0 + ms(10)),
        Role::Standby {
            leader: Some("10.0.0.1:7000".into())
        }
    );
    // Polls at a tenth of the TTL; the same leader is not announced again.
    assert_eq!(core.next_wakeup(), Some(t0 + ms(10) + TTL / 10));
    let poll = t0 + ms(10) + TTL / 10;
    assert_eq!(
        core.on_event(Event::Tick, poll),
        vec![Action::Campaign { lease: 7 }]
    );
    assert_eq!(core.on_event(Event::Campaigned(held), poll + ms(5)), vec![]);
    // The follower renews its own lease too, so it can campaign at once.
    assert_eq!(
        core.on_event(Event::Tick, t0 + TTL / 3),
        vec![Action::Renew { lease: 7 }]
    );
    // The poll that fell due meanwhile goes out as soon as the renewal is answered.
    let poll = t0 + TTL / 3 + ms(5);
    let actions = core.on_event(
        Event::Renewed {
            ttl: TTL,
            sent_at: t0 + TTL / 3,
        },
        poll,
    );
    assert_eq!(actions, vec![Action::Campaign { lease: 7 }]);
    let actions = core.on_event(Event::Campaigned(Campaign::Won { revision: 57 }), poll + ms(5));
    assert_eq!(actions, vec![Action::Lead { epoch: 57 }]);
    assert_eq!(core.role(poll + ms(5)).leading_at(poll + ms(5)), Some(57));
}

#[test]
fn a_campaign_result_after_the_lease_lapsed_is_ignored() {
    let t0 = Instant::now();
    let mut core = granted(t0);
    let late = t0 + TTL + ms(1);
    let actions = core.on_event(Event::Campaigned(Campaign::Won { revision: 9 }), late);
    assert_eq!(actions, vec![Action::Grant { ttl: TTL }]);
    assert_eq!(core.role(late), Role::Standby { leader: None });
}

#[test]
fn a_grant_answered_after_its_ttl_is_useless_and_failed_requests_are_retried() {
    let t0 = Instant::now();
    let mut core = Leadership::new(Timing::for_ttl(TTL));
    assert_eq!(core.on_event(Event::Tick, t0), vec![Action::Grant { ttl: TTL }]);
    assert_eq!(core.on_event(Event::Failed(Request::Grant), t0 + ms(50)), vec![]);
    assert_eq!(core.next_wakeup(), Some(t0 + ms(50) + TTL / 10));
    let retry = t0 + ms(50) + TTL / 10;
    assert_eq!(
        core.on_event(Event::Tick, retry),
        vec![Action::Grant { ttl: TTL }]
    );
    let actions = core.on_event(
        Event::Granted {
            lease: 8,
            ttl: TTL,
            sent_at: retry,
        },
        retry + TTL,
    );
    assert_eq!(actions, vec![Action::Grant { ttl: TTL }]);
    // A failed campaign is retried too.
    let later = retry + TTL + ms(10);
    core.on_event(
        Event::Granted {
            lease: 9,
            ttl: TTL,
            sent_at: later,
        },
        later,
    );
    assert_eq!(
        core.on_event(Event::Failed(Request::Campaign), later + ms(1)),
        vec![]
    );
    let retry = later + ms(1) + TTL / 10;
    assert_eq!(
        core.on_event(Event::Tick, retry),
        vec![Action::Campaign { lease: 9 }]
    );
}

#[test]
fn the_leader_seeing_its_own_key_keeps_leading_and_a_foreign_key_deposes_it() {
    let t0 = Instant::now();
    let mut core = leader(t0);
    let ours = Campaign::Held {
        leader: "me:7000".into(),
        epoch: 42,
        lease: 7,
    };
    assert_eq!(core.on_event(Event::Campaigned(ours), t0 + ms(20)), vec![]);
    assert_eq!(core.role(t0 + ms(20)).leading_at(t0 + ms(20)), Some(42));
    let theirs = Campaign::Held {
        leader: "other:7000".into(),
        epoch: 50,
        lease: 8,
    };
    let actions = core.on_event(Event::Campaigned(theirs), t0 + ms(30));
    assert_eq!(
        actions,
        vec![
            Action::StepDown,
            Action::Follow {
                leader: Some("other:7000".into())
            }
        ]
    );
}

/// A follower of the leader at `10.0.0.1:7000` (epoch 40, lease 99).
fn follower(t0: Instant) -> Leadership {
    let mut core = granted(t0);
    let held = Campaign::Held {
        leader: "10.0.0.1:7000".into(),
        epoch: 40,
        lease: 99,
    };
    core.on_event(Event::Campaigned(held), t0 + ms(10));
    core
}

#[test]
fn a_gone_leader_has_its_lease_revoked_and_the_follower_campaigns_at_once() {
    let t0 = Instant::now();
    let mut core = follower(t0);
    let gone = t0 + ms(50);
    let actions = core.on_event(
        Event::LeaderGone {
            leader: "10.0.0.1:7000".into(),
        },
        gone,
    );
    assert_eq!(actions, vec![Action::Revoke { lease: 99 }]);
    // Not at the next poll: now.
    let actions = core.on_event(Event::Revoked, gone + ms(3));
    assert_eq!(actions, vec![Action::Campaign { lease: 7 }]);
    let actions = core.on_event(Event::Campaigned(Campaign::Won { revision: 61 }), gone + ms(6));
    assert_eq!(actions, vec![Action::Lead { epoch: 61 }]);
    // Gone reports are about followers' leaders only: ours changes nothing.
    let actions = core.on_event(
        Event::LeaderGone {
            leader: "me:7000".into(),
        },
        gone + ms(7),
    );
    assert_eq!(actions, vec![]);
}

#[test]
fn a_gone_report_about_another_address_or_one_that_fails_changes_nothing() {
    let t0 = Instant::now();
    let mut core = follower(t0);
    let actions = core.on_event(
        Event::LeaderGone {
            leader: "10.0.0.2:7000".into(),
        },
        t0 + ms(20),
    );
    assert_eq!(actions, vec![], "not the leader we follow");
    let actions = core.on_event(
        Event::LeaderGone {
            leader: "10.0.0.1:7000".into(),
        },
        t0 + ms(30),
    );
    assert_eq!(actions, vec![Action::Revoke { lease: 99 }]);
    // The revocation failed: the lease lapses by itself; polling goes on as before.
    assert_eq!(core.on_event(Event::Failed(Request::Revoke), t0 + ms(40)), vec![]);
    assert_eq!(
        core.on_event(Event::Tick, t0 + ms(10) + TTL / 10),
        vec![Action::Campaign { lease: 7 }]
    );
    // A second report is not acted on twice: the lease was handed over already.
    let actions = core.on_event(
        Event::LeaderGone {
            leader: "10.0.0.1:7000".into(),
        },
        t0 + ms(10) + TTL / 10 + ms(1),
    );
    assert_eq!(actions, vec![]);
}
