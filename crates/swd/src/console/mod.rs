//! The coordinator's HTTP side: a live web console, a JSON API and Prometheus `/metrics`
//! (`swd coordinator --http-bind`, `--metrics-bind`), and a worker's `/metrics`
//! (`swd worker --metrics-bind`).
//!
//! ```text
//!  coordinator (TCP, admin protocol)
//!        ^ Client::status() every 500 ms (the same request as `swd status --json`)
//!        |
//!  poller task --> Observed { History (pure), last error }  <-- one std Mutex, held briefly
//!                          |
//!        axum routes: /  /console.js  /console.css   (assets compiled in: include_str!)
//!                     /api/console (all the page needs, polled every 500 ms by the page)
//!                     /api/status  /api/cluster  /api/job  /api/checkpoints  /api/events
//!                     /api/jobs (jobs submitted with `swd run`)
//!                     /metrics (OpenMetrics text)
//! ```
//!
//! The console talks to the coordinator through its public admin protocol, not its insides: it
//! shows exactly what `swd status` shows, and a standby (high availability) says so. Browsers
//! never reach the coordinator: however many poll, it answers one status request per 500 ms.

mod poller;
mod routes;
mod serve;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamweave_distributed::observe::{History, WorkerMetrics};
use streamweave_distributed::security::Security;
use streamweave_distributed::worker::WorkerSnapshot;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use poller::Observed;

/// How often the console asks the coordinator for its status (and the page asks the console).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the routes share with the poller. A std mutex: held only to copy or update the
/// history, never across an `.await`.
pub type Shared = Arc<Mutex<Observed>>;

/// The HTTP servers of a coordinator, running until dropped or stopped.
pub struct Console {
    stop: CancellationToken,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts the poller of the coordinator at `coordinator` (proving `security`'s secret, as an
/// admin client would) and serves the console (with
/// `/metrics`) on `http` and `/metrics` alone on `metrics`; prints `console on URL` and
/// `metrics on URL` on stdout. Nothing to serve: `None`.
pub async fn start_for_coordinator(
    coordinator: SocketAddr,
    cluster: &str,
    security: Security,
    http: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<Option<Console>> {
    if http.is_none() && metrics.is_none() {
        return Ok(None);
    }
    let stop = CancellationToken::new();
    let shared: Shared = Arc::new(Mutex::new(Observed::new(History::new(std::time::Instant::now()))));
    // Bind both first, so a taken port is an error before anything runs.
    let http = match http {
        Some(addr) => Some(serve::bind(addr, "--http-bind").await?),
        None => None,
    };
    let metrics = match metrics {
        Some(addr) => Some(serve::bind(addr, "--metrics-bind").await?),
        None => None,
    };
    tokio::spawn(poller::run(
        serve::reachable(coordinator),
        cluster.to_string(),
        security,
        Arc::clone(&shared),
        stop.clone(),
    ));
    if let Some(listener) = http {
        let addr = listener.local_addr()?;
        tokio::spawn(serve::serve(
            listener,
            routes::console(Arc::clone(&shared)),
            stop.clone(),
        ));
        serve::announce(&format!("console on http://{addr}/"));
    }
    if let Some(listener) = metrics {
        let addr = listener.local_addr()?;
        tokio::spawn(serve::serve(
            listener,
            routes::coordinator_metrics(shared),
            stop.clone(),
        ));
        serve::announce(&format!("metrics on http://{addr}/metrics"));
    }
    Ok(Some(Console { stop }))
}

/// Serves a worker's `/metrics` on `addr` (printing `metrics on URL`) until `stop`.
pub async fn start_for_worker(
    addr: SocketAddr,
    metrics: WorkerMetrics,
    snapshot: watch::Receiver<WorkerSnapshot>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = serve::bind(addr, "--metrics-bind").await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve::serve(
        listener,
        routes::worker_metrics(metrics, snapshot),
        stop,
    ));
    serve::announce(&format!("metrics on http://{bound}/metrics"));
    Ok(())
}
