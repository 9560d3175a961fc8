//! The fence a leading coordinator checks before every leader action: leadership holds only
//! while the lease's deadline, as the elector last published it, is ahead of the clock. A
//! coordinator paused past its lease finds the fence down the moment it runs again, before the
//! elector has had a chance to tell it.

use std::time::Instant;

use tokio::sync::watch;

use super::leadership::Role;

/// A view of the elector's published [`Role`] for one leadership epoch.
#[derive(Debug, Clone)]
pub struct Fence {
    roles: watch::Receiver<Role>,
    epoch: u64,
}

impl Fence {
    /// The fence of leadership `epoch`, as published on `roles`.
    pub fn new(roles: watch::Receiver<Role>, epoch: u64) -> Self {
        Fence { roles, epoch }
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
}
