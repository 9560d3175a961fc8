//! Coordinator high availability on etcd: several coordinators, one leader.
//!
//! ```text
//!   leadership.rs  pure: lease, campaign, renewals, deadline -> Lead / Follow / StepDown
//!   etcd.rs        etcd's v3 JSON gateway over HTTP: grant, keep alive, create-if-absent, get, delete
//!   elector.rs     the shell: runs the core's requests against etcd, publishes the Role
//! ```
//!
//! etcd is reached through its JSON gateway (plain HTTP, on the client port since etcd 3.4)
//! rather than its gRPC API, so the build needs no `protoc`.

pub mod elector;
pub mod etcd;
pub mod leadership;

pub use elector::{spawn_elector, Candidate};
pub use etcd::{EtcdClient, EtcdError};
pub use leadership::{Action, Campaign, Event, Leadership, Request, Role, Timing};
