//! The elector: the async shell that runs the [leadership core](super::leadership) against etcd
//! and publishes who leads.
//!
//! ```text
//!   Leadership --Grant/Renew/Campaign--> one etcd request at a time --result--> Leadership
//!        |  Lead / Follow / StepDown
//!        v
//!   watch::Sender<Role>  --> the coordinator (checks Role::leading_at(now) before acting)
//! ```
//!
//! The published [`Role`] carries the lease's deadline, so a reader that was paused notices it
//! lost leadership from the clock alone, before this task has run again.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::etcd::{Created, EtcdClient};
use super::leadership::{Action, Campaign, Event, Leadership, Request, Role, Timing};

/// Where and as whom to campaign.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The etcd client.
    pub client: EtcdClient,
    /// The leader key (e.g. `/swd/leader`).
    pub key: String,
    /// This coordinator's address, published as the key's value while it leads.
    pub address: String,
    /// Lease timing.
    pub timing: Timing,
    /// The cluster's name, for the connection a standby holds to the leader.
    pub cluster: String,
    /// TLS and secret for that connection (the coordinator's own).
    pub security: crate::security::Security,
}

type Pending = Pin<Box<dyn Future<Output = Event> + Send>>;

/// Campaigns until `shutdown` resolves, publishing the role on the returned channel; on
/// shutdown the lease is revoked so a standby takes over at once.
pub fn spawn_elector(
    candidate: Candidate,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (watch::Receiver<Role>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Role::Standby { leader: None });
    let (gone_tx, gone) = mpsc::channel(4);
    tokio::spawn(super::watch::watch_leader(
        candidate.cluster.clone(),
        candidate.security.clone(),
        tx.subscribe(),
        gone_tx,
    ));
    let task = tokio::spawn(run(candidate, tx, gone, shutdown));
    (rx, task)
}

async fn run(
    candidate: Candidate,
    roles: watch::Sender<Role>,
    mut gone: mpsc::Receiver<String>,
    shutdown: impl Future<Output = ()>,
) {
    let mut core = Leadership::new(candidate.timing);
    let mut pending: Option<Pending> = None;
    let mut lease = None;
    let mut event = Event::Tick;
    tokio::pin!(shutdown);
    loop {
        let now = Instant::now();
        for action in core.on_event(event, now) {
            match action {
                Action::Grant { ttl } => {
                    let client = candidate.client.clone();
                    pending = Some(Box::pin(async move {
                        let sent_at = Instant::now();
                        match client.grant(ttl).await {
                            Ok((lease, ttl)) => Event::Granted { lease, ttl, sent_at },
                            Err(e) => {
                                tracing::warn!(error = %e, "could not get an etcd lease");
                                Event::Failed(Request::Grant)
                            }
                        }
                    }));
                }
                Action::Renew { lease } => {
                    let client = candidate.client.clone();
                    pending = Some(Box::pin(async move {
                        let sent_at = Instant::now();
                        match client.keep_alive(lease).await {
                            Ok(ttl) => Event::Renewed { ttl, sent_at },
                            Err(e) => {
                                tracing::warn!(error = %e, "could not renew the etcd lease");
                                Event::Failed(Request::Renew)
                            }
                        }
                    }));
                }
                Action::Campaign { lease: id } => {
                    lease = Some(id);
                    let client = candidate.client.clone();
                    let (key, address) = (candidate.key.clone(), candidate.address.clone());
                    pending = Some(Box::pin(async move {
                        match client
                            .create_if_absent(key.as_bytes(), address.as_bytes(), id)
                            .await
                        {
                            Ok(Created::Created(revision)) => Event::Campaigned(Campaign::Won { revision }),
                            Ok(Created::Exists(kv)) => Event::Campaigned(Campaign::Held {
                                leader: String::from_utf8_lossy(&kv.value).into_owned(),
                                epoch: kv.create_revision,
                                lease: kv.lease,
                            }),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not campaign in etcd");
                                Event::Failed(Request::Campaign)
                            }
                        }
                    }));
                }
                Action::Revoke { lease: gone_lease } => {
                    let client = candidate.client.clone();
                    pending = Some(Box::pin(async move {
                        match client.revoke(gone_lease).await {
                            Ok(()) => Event::Revoked,
                            Err(e) => {
                                tracing::warn!(error = %e, "could not revoke the gone leader's lease");
                                Event::Failed(Request::Revoke)
                            }
                        }
                    }));
                }
                Action::Lead { epoch } => tracing::info!(epoch, "leading"),
                Action::Follow { leader } => tracing::info!(?leader, "following"),
                Action::StepDown => tracing::warn!("stepping down: the etcd lease may have lapsed"),
            }
        }
        let role = core.role(Instant::now());
        roles.send_if_modified(|current| {
            let changed = *current != role;
            *current = role.clone();
            changed
        });
        let wakeup = core.next_wakeup();
        event = tokio::select! {
            biased;
            () = &mut shutdown => break,
            result = async { pending.as_mut().expect("guarded").await }, if pending.is_some() => {
                pending = None;
                result
            }
            Some(leader) = gone.recv() => Event::LeaderGone { leader },
            () = sleep_until(wakeup) => Event::Tick,
        };
    }
    roles.send_replace(Role::Standby { leader: None });
    if let Some(id) = lease {
        // Best effort: the lease lapses by itself otherwise.
        let _ = candidate.client.revoke(id).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    /// Needs the etcd that `scripts/tier2.sh` starts.
    pub(crate) mod tier2 {
        use std::time::{Duration, Instant};

        use crate::ha::elector::{spawn_elector, Candidate};
        use crate::ha::etcd::EtcdClient;
        use crate::ha::leadership::{Role, Timing};

        /// The etcd endpoint of the tier-2 run.
        pub(crate) fn etcd_endpoint() -> String {
            std::env::var("SWD_TEST_ETCD")
                .expect("SWD_TEST_ETCD is not set: run tier-2 tests with scripts/tier2.sh")
        }

        async fn wait_for(rx: &mut tokio::sync::watch::Receiver<Role>, what: impl Fn(&Role) -> bool) -> Role {
            let role = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|r| what(r)))
                .await
                .expect("role within 10 s")
                .expect("elector alive");
            role.clone()
        }

        #[tokio::test]
        #[ignore = "tier 2: needs etcd (scripts/tier2.sh)"]
        async fn one_of_two_leads_and_the_other_takes_over_when_its_lease_lapses() {
            let client = EtcdClient::new(vec![etcd_endpoint()], Duration::from_secs(1)).unwrap();
            let key = format!("/tests/elector-{}/leader", std::process::id());
            let candidate = |address: &str| Candidate {
                client: client.clone(),
                key: key.clone(),
                address: address.into(),
                timing: Timing::for_ttl(Duration::from_secs(2)),
                cluster: "test".into(),
                security: Default::default(),
            };
            let (mut a, a_task) = spawn_elector(candidate("a:1"), std::future::pending());
            let first = wait_for(&mut a, |r| matches!(r, Role::Leader { .. })).await;
            let Role::Leader {
                epoch: first_epoch, ..
            } = first
            else {
                unreachable!()
            };
            let (mut b, _b_task) = spawn_elector(candidate("b:1"), std::future::pending());
            wait_for(&mut b, |r| {
                *r == Role::Standby {
                    leader: Some("a:1".into()),
                }
            })
            .await;
            assert!(a.borrow().leading_at(Instant::now()).is_some());

            // a dies without revoking: b leads once a's lease lapses (2 s), with a higher epoch.
            a_task.abort();
            let died = Instant::now();
            let second = wait_for(&mut b, |r| matches!(r, Role::Leader { .. })).await;
            let took = died.elapsed();
            let Role::Leader {
                epoch: second_epoch, ..
            } = second
            else {
                unreachable!()
            };
            assert!(second_epoch > first_epoch, "{second_epoch} > {first_epoch}");
            assert!(took < Duration::from_secs(4), "took {took:?}");
            assert_eq!(client.get(key.as_bytes()).await.unwrap().unwrap().value, b"b:1");
        }

        #[tokio::test]
        #[ignore = "tier 2: needs etcd (scripts/tier2.sh)"]
        async fn the_client_creates_once_puts_only_under_the_right_leader_and_deletes() {
            use crate::ha::etcd::Created;
            let client = EtcdClient::new(vec![etcd_endpoint()], Duration::from_secs(1)).unwrap();
            let prefix = format!("/tests/etcd-client-{}", std::process::id());
            let (leader, pointer) = (format!("{prefix}/leader"), format!("{prefix}/pointer"));
            let (lease, ttl) = client.grant(Duration::from_millis(1500)).await.unwrap();
            assert_eq!(ttl, Duration::from_secs(2), "rounded up to whole seconds");
            let Created::Created(revision) = client
                .create_if_absent(leader.as_bytes(), b"a:1", lease)
                .await
                .unwrap()
            else {
                panic!("the key was absent")
            };
            let Created::Exists(kv) = client
                .create_if_absent(leader.as_bytes(), b"b:1", 0)
                .await
                .unwrap()
            else {
                panic!("the key exists")
            };
            assert_eq!(
                (kv.value.as_slice(), kv.create_revision, kv.lease),
                (&b"a:1"[..], revision, lease)
            );
            assert!(client
                .put_if_created_at(leader.as_bytes(), revision, pointer.as_bytes(), b"7")
                .await
                .unwrap());
            assert!(!client
                .put_if_created_at(leader.as_bytes(), revision + 1, pointer.as_bytes(), b"8")
                .await
                .unwrap());
            assert_eq!(client.get(pointer.as_bytes()).await.unwrap().unwrap().value, b"7");
            assert_eq!(client.keep_alive(lease).await.unwrap(), Duration::from_secs(2));
            client.revoke(lease).await.unwrap();
            assert_eq!(
                client.keep_alive(lease).await.unwrap(),
                Duration::ZERO,
                "a revoked lease is gone"
            );
            assert_eq!(
                client.get(leader.as_bytes()).await.unwrap(),
                None,
                "its key with it"
            );
            assert!(client.delete(pointer.as_bytes()).await.unwrap());
            assert!(!client.delete(pointer.as_bytes()).await.unwrap());
            let unreachable = EtcdClient::new(vec!["127.0.0.1:1".into()], Duration::from_secs(1)).unwrap();
            let error = unreachable.get(b"x").await.unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("etcd at 127.0.0.1:1 is unreachable"),
                "{error}"
            );
        }

        #[tokio::test]
        #[ignore = "tier 2: needs etcd (scripts/tier2.sh)"]
        async fn a_leader_shutting_down_hands_over_at_once() {
            let client = EtcdClient::new(vec![etcd_endpoint()], Duration::from_secs(1)).unwrap();
            let key = format!("/tests/elector-shutdown-{}/leader", std::process::id());
            let candidate = |address: &str| Candidate {
                client: client.clone(),
                key: key.clone(),
                address: address.into(),
                timing: Timing::for_ttl(Duration::from_secs(10)),
                cluster: "test".into(),
                security: Default::default(),
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (mut a, a_task) = spawn_elector(candidate("a:1"), async move {
                let _ = stopped.await;
            });
            wait_for(&mut a, |r| matches!(r, Role::Leader { .. })).await;
            let (mut b, _b_task) = spawn_elector(candidate("b:1"), std::future::pending());
            wait_for(&mut b, |r| matches!(r, Role::Standby { leader: Some(_) })).await;
            stop.send(()).unwrap();
            a_task.await.unwrap();
            let handed = Instant::now();
            wait_for(&mut b, |r| matches!(r, Role::Leader { .. })).await;
            // Far less than the 10 s TTL: the lease was revoked.
            assert!(
                handed.elapsed() < Duration::from_secs(2),
                "{:?}",
                handed.elapsed()
            );
        }
    }
}
