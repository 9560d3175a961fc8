//! The fence a leading coordinator checks before every leader action: leadership holds only
//! while the lease's deadline, as the elector last published it, is ahead of the clock. A
//! coordinator paused past its lease finds the fence down the moment it runs again, before the
//! elector has had a chance to tell it.
//!
//! A checkpoint commit asks etcd as well ([`Fence::confirm_commit`]): one transaction writes
//! the checkpoint's id under `PREFIX/checkpoint` only if the leader key of this epoch still
//! exists, so a leader whose clock misled it (or whose key was revoked) cannot commit.

use std::time::Instant;

use tokio::sync::watch;

use super::etcd::EtcdClient;
use super::leadership::Role;

/// A view of the elector's published [`Role`] for one leadership epoch.
#[derive(Debug, Clone)]
pub struct Fence {
    roles: watch::Receiver<Role>,
    epoch: u64,
    etcd: Option<CommitGuard>,
}

/// Where a commit is confirmed: the leader key guards the write of the checkpoint key.
#[derive(Debug, Clone)]
struct CommitGuard {
    client: EtcdClient,
    leader_key: String,
    checkpoint_key: String,
}

impl Fence {
    /// The fence of leadership `epoch`, as published on `roles`.
    pub fn new(roles: watch::Receiver<Role>, epoch: u64) -> Self {
        Fence {
            roles,
            epoch,
            etcd: None,
        }
    }

    /// Confirms every checkpoint commit in etcd too (see [`Fence::confirm_commit`]).
    pub fn with_etcd(mut self, client: EtcdClient, leader_key: String, checkpoint_key: String) -> Self {
        self.etcd = Some(CommitGuard {
            client,
            leader_key,
            checkpoint_key,
        });
        self
    }

    /// Just before checkpoint `id`'s manifest is written: whether this leadership may commit
    /// it. The clock first ([`Fence::holds`]); then, with etcd, one transaction that records
    /// `id` as the latest checkpoint if and only if this epoch's leader key still exists.
    /// Blocking: called on the coordinator's disk thread.
    pub fn confirm_commit(&self, id: u64) -> Result<(), String> {
        if !self.holds(Instant::now()) {
            return Err("not committed: this coordinator's leadership may have lapsed".to_string());
        }
        let Some(guard) = &self.etcd else {
            return Ok(());
        };
        let (guard, epoch) = (guard.clone(), self.epoch);
        let put = async move {
            let value = id.to_string();
            guard
                .client
                .put_if_created_at(
                    guard.leader_key.as_bytes(),
                    epoch,
                    guard.checkpoint_key.as_bytes(),
                    value.as_bytes(),
                )
                .await
        };
        match crate::storage::block_on(put) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "not committed: the leader key of epoch {} is gone (another coordinator leads)",
                self.epoch
            )),
            Err(e) => Err(format!("not committed: etcd did not confirm the leadership: {e}")),
        }
    }

    /// The epoch it fences.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether this leadership still holds at `now` (the same epoch, before its deadline).
    pub fn holds(&self, now: Instant) -> bool {
        self.roles.borrow().leading_at(now) == Some(self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_fence_holds_only_for_its_epoch_and_before_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(2);
        let (tx, rx) = watch::channel(Role::Leader { epoch: 5, deadline });
        let fence = Fence::new(rx, 5);
        assert!(fence.holds(now));
        assert!(!fence.holds(deadline), "not at the deadline");
        tx.send_replace(Role::Leader { epoch: 9, deadline });
        assert!(!fence.holds(now), "a later leadership is not this one");
        tx.send_replace(Role::Standby {
            leader: Some("b:1".into()),
        });
        assert!(!fence.holds(now));
    }

    /// Against the etcd that `scripts/tier2.sh` starts (`SWD_TEST_ETCD`).
    mod tier2 {
        use super::*;

        #[test]
        #[ignore = "tier 2: needs etcd (scripts/tier2.sh)"]
        fn a_commit_is_confirmed_only_while_this_epochs_leader_key_exists() {
            let endpoint = std::env::var("SWD_TEST_ETCD")
                .expect("SWD_TEST_ETCD is not set: run tier-2 tests with scripts/tier2.sh");
            let client = EtcdClient::new(vec![endpoint], Duration::from_secs(2)).expect("client");
            let prefix = format!("/swd-test/fence-{}", std::process::id());
            let (leader_key, checkpoint_key) = (format!("{prefix}/leader"), format!("{prefix}/checkpoint"));
            let created = {
                let (client, key) = (client.clone(), leader_key.clone());
                crate::storage::block_on(
                    async move { client.create_if_absent(key.as_bytes(), b"me:1", 0).await },
                )
                .expect("create the leader key")
            };
            let crate::ha::etcd::Created::Created(epoch) = created else {
                panic!("a fresh key: {created:?}")
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            let (_tx, rx) = watch::channel(Role::Leader { epoch, deadline });
            let fence =
                Fence::new(rx, epoch).with_etcd(client.clone(), leader_key.clone(), checkpoint_key.clone());
            let read = |key: &str| {
                let (client, key) = (client.clone(), key.to_string());
                crate::storage::block_on(async move { client.get(key.as_bytes()).await })
                    .expect("get")
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            };
            fence.confirm_commit(3).expect("confirmed while the key exists");
            assert_eq!(
                read(&checkpoint_key).as_deref(),
                Some("3"),
                "the pointer names it"
            );
            // Another coordinator's key (the old one deleted, a new one created: a new epoch).
            {
                let (client, key) = (client.clone(), leader_key.clone());
                crate::storage::block_on(async move {
                    client.delete(key.as_bytes()).await?;
                    client.create_if_absent(key.as_bytes(), b"other:1", 0).await
                })
                .expect("replace the leader key");
            }
            let refused = fence.confirm_commit(4).expect_err("not this epoch's key");
            assert!(refused.contains("gone"), "{refused}");
            assert_eq!(
                read(&checkpoint_key).as_deref(),
                Some("3"),
                "the pointer is unchanged"
            );
        }
    }
}
