//! Coordinator high availability on etcd: several coordinators, one leader.
//!
//! ```text
//!   leadership.rs  pure: lease, campaign, renewals, deadline -> Lead / Follow / StepDown
//!   etcd.rs        etcd's v3 JSON gateway over HTTP: grant, keep alive, create-if-absent, get, delete
//!   url.rs         the --ha URL (etcd://HOST:PORT[,...][/PREFIX])
//!   standby.rs     what a standby serves: NotLeader naming the leader
//!   fence.rs       checked before every leader action and checkpoint commit
//!   elector.rs     the shell: runs the core's requests against etcd, publishes the Role
//!   watch.rs       a standby's connection to the leader: a refused reconnect -> LeaderGone
//!   run.rs         standby (standby.rs) until leader, then a fenced CoordinatorImpl, and back
//! ```
//!
//! etcd is reached through its JSON gateway (plain HTTP, on the client port since etcd 3.4)
//! rather than its gRPC API, so the build needs no `protoc`.

pub mod elector;
pub mod etcd;
mod fence;
pub mod leadership;
mod run;
mod standby;
mod url;
mod watch;

pub use elector::{spawn_elector, Candidate};
pub use etcd::{EtcdClient, EtcdError};
pub use fence::Fence;
pub use leadership::{Action, Campaign, Event, Leadership, Request, Role, Timing};
pub use run::{run_with_ha, HaError, HaOptions};
pub use standby::serve_standby;
pub use url::{HaUrl, HaUrlError};
