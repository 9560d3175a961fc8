//! The console's routes: the page's assets (compiled into the binary), the JSON API and
//! `/metrics`. Every handler copies what it needs under the lock and builds the answer after.

use std::sync::PoisonError;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use streamweave_distributed::observe::{
    render_cluster_metrics, to_text_format, wants_openmetrics, WorkerMetrics, OPENMETRICS_FORMAT, TEXT_FORMAT,
};
use streamweave_distributed::worker::WorkerSnapshot;
use tokio::sync::watch;

use super::Shared;
use crate::commands::admin::status_json;

/// Events the page gets (the newest); `/api/events` gives every event kept.
const PAGE_EVENTS: usize = 40;

/// The console, its API and `/metrics`.
pub fn console(shared: Shared) -> Router {
    Router::new()
        .route(
            "/",
            get(|| asset("text/html; charset=utf-8", include_str!("assets/index.html"))),
        )
        .route(
            "/console.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("assets/console.js"),
                )
            }),
        )
        .route(
            "/console.css",
            get(|| asset("text/css; charset=utf-8", include_str!("assets/console.css"))),
        )
        .route("/api/console", get(page))
        .route("/api/status", get(status))
        .route("/api/cluster", get(cluster))
        .route("/api/job", get(job))
        .route("/api/checkpoints", get(checkpoints))
        .route("/api/events", get(events))
        .route("/api/jobs", get(jobs))
        .route("/metrics", get(cluster_metrics))
        .with_state(shared)
}

/// `/metrics` alone, for the coordinator's `--metrics-bind`.
pub fn coordinator_metrics(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(cluster_metrics))
        .with_state(shared)
}

/// A worker's `/metrics`.
pub fn worker_metrics(metrics: WorkerMetrics, snapshot: watch::Receiver<WorkerSnapshot>) -> Router {
    Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let text = metrics.render(&snapshot.borrow().clone());
            async move { exposition(&headers, text) }
        }),
    )
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn cluster_metrics(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let text = {
        let observed = shared.lock().unwrap_or_else(PoisonError::into_inner);
        render_cluster_metrics(observed.history.latest(), observed.history.totals())
    };
    exposition(&headers, text)
}

/// OpenMetrics to a scraper that asks for it, else the Prometheus text format.
fn exposition(headers: &HeaderMap, openmetrics: String) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, OPENMETRICS_FORMAT)], openmetrics).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, TEXT_FORMAT)],
            to_text_format(&openmetrics),
        )
            .into_response()
    }
}

/// The status as `swd status --json` prints it, or why there is none (no status yet, the
/// coordinator unreachable, a standby).
fn status_value(shared: &Shared) -> Result<Value, String> {
    let observed = shared.lock().unwrap_or_else(PoisonError::into_inner);
    match (observed.history.latest(), &observed.error) {
        (Some(status), None) => status_json(status, &observed.leader).map_err(|e| e.to_string()),
        (_, Some(error)) => Err(error.clone()),
        (None, None) => Err("no status yet".to_string()),
    }
}

/// `part` of the status as JSON, or 503 with the reason there is none.
fn status_part(shared: &Shared, part: impl FnOnce(Value) -> Value) -> Response {
    match status_value(shared) {
        Ok(value) => Json(part(value)).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": why }))).into_response(),
    }
}

async fn status(State(shared): State<Shared>) -> Response {
    status_part(&shared, |value| value)
}

/// The status without the job and checkpoints.
async fn cluster(State(shared): State<Shared>) -> Response {
    status_part(&shared, |mut value| {
        if let Some(object) = value.as_object_mut() {
            object.remove("job");
            object.remove("checkpoints");
        }
        value
    })
}

async fn job(State(shared): State<Shared>) -> Response {
    status_part(&shared, |value| value.get("job").cloned().unwrap_or(Value::Null))
}

async fn checkpoints(State(shared): State<Shared>) -> Json<Value> {
    let observed = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let current = observed.history.latest().and_then(|s| s.checkpoints.clone());
    let history: Vec<_> = observed.history.checkpoints().cloned().collect();
    Json(json!({ "current": current, "history": history }))
}

async fn events(State(shared): State<Shared>) -> Json<Value> {
    let observed = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let events: Vec<_> = observed.history.events().cloned().collect();
    Json(json!({ "now_ms": observed.history.ms_since_start(Instant::now()), "events": events }))
}

/// The jobs submitted with `swd run`, as `swd jobs --json` lists them.
async fn jobs(State(shared): State<Shared>) -> Json<Value> {
    let observed = shared.lock().unwrap_or_else(PoisonError::into_inner);
    Json(json!(observed.jobs))
}

/// Everything the page shows, in one answer.
async fn page(State(shared): State<Shared>) -> Json<Value> {
    let status = status_value(&shared).ok();
    let observed = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let history = &observed.history;
    let events: Vec<_> = history.events().cloned().collect();
    let newest = &events[events.len().saturating_sub(PAGE_EVENTS)..];
    Json(json!({
        "now_ms": history.ms_since_start(Instant::now()),
        "error": observed.error,
        "status": status,
        "samples": history.samples().collect::<Vec<_>>(),
        "checkpoints": history.checkpoints().collect::<Vec<_>>(),
        "events": newest,
        "totals": history.totals(),
        "jobs": observed.jobs,
    }))
}
