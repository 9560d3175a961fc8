//! A coordinator with high availability: a standby until the elector makes it leader, then a
//! [`CoordinatorImpl`] fenced by that leadership, then a standby again when it ends.
//!
//! ```text
//!   elector --Role--> standby: serve_standby (NotLeader, naming the leader)
//!                        | Role::Leader { epoch }
//!                        v
//!                     leader: CoordinatorImpl::with_fence(epoch), config made afresh (so the job
//!                        |    resumes from the latest committed checkpoint in the shared store)
//!                        | the fence fails (renewal failed, lease deadline passed, pause)
//!                        v
//!                     stopped without telling the workers; standby again
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::elector::{spawn_elector, Candidate};
use super::etcd::EtcdClient;
use super::etcd::EtcdError;
use super::fence::Fence;
use super::leadership::{Role, Timing};
use super::standby::serve_standby;
use super::url::HaUrl;
use crate::coordinator::{CoordinatorConfig, CoordinatorError, CoordinatorImpl};
use crate::network::describe_io_error;

/// What can stop a coordinator with high availability.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// etcd cannot be used (a client that cannot be built).
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The coordinator could not start once leader.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// How a coordinator takes part in the election.
#[derive(Debug, Clone)]
pub struct HaOptions {
    /// Where to elect.
    pub url: HaUrl,
    /// The address published while leading (default: the bound address).
    pub advertise: Option<String>,
    /// Lease timing.
    pub timing: Timing,
    /// TLS and secrets the standby applies to connections (the leader takes them from its
    /// configuration).
    pub security: crate::security::Security,
}

/// Runs a coordinator with high availability until `shutdown` resolves. `make_config` gives the
/// configuration each time it becomes leader (read afresh then, so a job resumes from the
/// latest checkpoint); `on_listening` is told the bound address once.
pub async fn run_with_ha(
    options: HaOptions,
    bind: SocketAddr,
    cluster: &str,
    max_frame_size: usize,
    mut make_config: impl FnMut() -> Result<CoordinatorConfig, CoordinatorError>,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HaError> {
    let stop = CancellationToken::new();
    let listener = listen(bind).await?;
    // Port 0 becomes a fixed port: the leader and the standby serve the same address.
    let bind = listener.local_addr().map_err(|e| HaError::Listen {
        addr: bind,
        reason: e.to_string(),
    })?;
    on_listening(bind);
    let client = EtcdClient::new(options.url.endpoints.clone(), options.timing.ttl / 3)?;
    let candidate = Candidate {
        client,
        key: options.url.leader_key(),
        address: options.advertise.clone().unwrap_or_else(|| bind.to_string()),
        timing: options.timing,
        cluster: cluster.to_string(),
        security: options.security.clone(),
    };
    let (mut roles, elector) = spawn_elector(candidate, stop.clone().cancelled_owned());
    let cluster: Arc<str> = Arc::from(cluster);
    let mut listener = Some(listener);
    tokio::pin!(shutdown);
    let result = loop {
        let standby_stop = CancellationToken::new();
        let listener = match listener.take() {
            Some(listener) => listener,
            None => listen(bind).await?,
        };
        let standby = tokio::spawn(serve_standby(
            listener,
            cluster.clone(),
            max_frame_size,
            options.security.clone(),
            roles.clone(),
            standby_stop.clone(),
        ));
        let epoch = tokio::select! {
            () = &mut shutdown => None,
            epoch = wait_for_leadership(&mut roles) => epoch,
        };
        standby_stop.cancel();
        let _ = standby.await;
        let Some(epoch) = epoch else { break Ok(()) };
        // Its own client: commits are confirmed from the coordinator's disk thread.
        let fence = Fence::new(roles.clone(), epoch).with_etcd(
            EtcdClient::new(options.url.endpoints.clone(), options.timing.ttl / 3)?,
            options.url.leader_key(),
            options.url.checkpoint_key(),
        );
        tracing::info!(epoch, %bind, "leading: starting the coordinator (its job resumes from the latest checkpoint)");
        let mut config = match make_config() {
            Ok(config) => config,
            Err(e) => break Err(e.into()),
        };
        config.bind_address = bind;
        let mut coordinator = CoordinatorImpl::new(config).with_fence(fence.clone());
        if let Err(e) = coordinator.start().await {
            coordinator.stop().await;
            break Err(e.into());
        }
        let ended = tokio::select! {
            () = &mut shutdown => true,
            () = wait_until_lapsed(&mut roles, &fence) => false,
        };
        coordinator.stop().await;
        if ended {
            break Ok(());
        }
        tracing::warn!(epoch, "no longer leading: the coordinator stopped; standing by");
    };
    stop.cancel();
    let _ = elector.await;
    result
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, HaError> {
    TcpListener::bind(addr).await.map_err(|e| HaError::Listen {
        addr,
        reason: describe_io_error(&e),
    })
}

/// The epoch once this coordinator leads (None: the elector ended).
async fn wait_for_leadership(roles: &mut watch::Receiver<Role>) -> Option<u64> {
    loop {
        if let Some(epoch) = roles.borrow_and_update().leading_at(Instant::now()) {
            return Some(epoch);
        }
        roles.changed().await.ok()?;
    }
}

/// Returns once `fence` no longer holds: the role changed, or its deadline passed.
async fn wait_until_lapsed(roles: &mut watch::Receiver<Role>, fence: &Fence) {
    loop {
        let deadline = match &*roles.borrow_and_update() {
            Role::Leader { deadline, .. } => *deadline,
            Role::Standby { .. } => return,
        };
        if !fence.holds(Instant::now()) {
            return;
        }
        tokio::select! {
            changed = roles.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}
