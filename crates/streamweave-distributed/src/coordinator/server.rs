//! The coordinator's async shell: accepts connections, runs the handshake, and feeds one actor
//! task that owns the [`Engine`] and executes its [`Action`]s.
//!
//! ```text
//! accept loop --spawn--> serve_connection --handshake--> serve_worker | serve_client
//!                                                              |               |
//!                  Command::Connected / Command::Input  <------+               |
//!                  Command::Admin(AdminRequest, reply)  <----------------------+
//!                                  |
//!                           actor (run) --Send--> outbox of that connection --> socket
//! ```
//!
//! A connection that misbehaves (wrong protocol, oversized or undecodable frame) is logged and
//! closed; nothing else is affected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admin_conn::serve_client;
use super::commands::Command;
use super::disk::{manifest_of, DiskJob, DiskWriter};
use super::engine::{Action, ConnId, Engine, Input};
use super::notes::log;
use super::worker_inputs::inputs_of;
use crate::ha::Fence;
use crate::network::Connection;
use crate::protocol::{CoordinatorMessage, Role, WorkerMessage};
use crate::security::{PeerCredentials, Security};

/// How long a new connection may take to introduce itself.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections beyond one per worker taken at once (admin clients, workers reconnecting).
const SPARE_CONNECTIONS: usize = 64;
/// Messages queued for one connection before it is considered stuck and closed.
const OUTBOX_CAPACITY: usize = 256;

/// What connection tasks need to reach the actor.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) cluster: Arc<str>,
    pub(crate) max_frame_size: usize,
    pub(crate) shutdown: CancellationToken,
    /// TLS and secrets for accepted connections.
    pub(crate) security: Security,
    next_conn: Arc<AtomicU64>,
    /// Submitted jobs, on a coordinator started without one.
    pub(crate) jobs: Option<super::jobs::JobsService>,
}

impl Shared {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        cluster: &str,
        max_frame_size: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Shared {
            commands,
            cluster: Arc::from(cluster),
            max_frame_size,
            shutdown,
            security: Security::none(),
            next_conn: Arc::new(AtomicU64::new(1)),
            jobs: None,
        }
    }

    /// Accepts connections under `security`.
    pub(crate) fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }
}

/// The actor: the only owner of the engine. It does no file I/O: the event log and checkpoint
/// commits go to the disk writer (`disk.rs`), whose results come back as inputs.
pub(crate) struct Actor {
    pub(crate) engine: Engine,
    /// The disk writer, with a data directory.
    disk: Option<DiskWriter>,
    pub(crate) health_check_interval: Duration,
    outboxes: HashMap<ConnId, mpsc::Sender<CoordinatorMessage>>,
    /// With high availability: the leadership this coordinator acts under.
    fence: Option<Fence>,
    /// Where probes of workers' data ports report back (`probe.rs`); without it, none is made.
    probes: Option<mpsc::Sender<Command>>,
}

impl Actor {
    pub(crate) fn new(engine: Engine, disk: Option<DiskWriter>, health_check_interval: Duration) -> Self {
        Actor {
            engine,
            disk,
            health_check_interval,
            outboxes: HashMap::new(),
            fence: None,
            probes: None,
        }
    }

    /// Probes the data port of a worker whose connection closes, reporting on `commands` (the
    /// actor's own channel).
    pub(crate) fn with_probes(mut self, commands: mpsc::Sender<Command>) -> Self {
        self.probes = Some(commands);
        self
    }

    /// Acts only while `fence` holds (high availability).
    pub(crate) fn with_fence(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    /// False once the leadership this coordinator acts under may have lapsed: it then stops at
    /// once, telling no one anything (the workers find the new leader themselves).
    fn leading(&self) -> bool {
        self.fence
            .as_ref()
            .is_none_or(|fence| fence.holds(Instant::now()))
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.health_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    if self.fence.is_some() {
                        // A standby takes over: the workers must not be told to stop.
                        break;
                    }
                    let actions = self.engine.shutdown("the coordinator is shutting down");
                    self.execute(actions);
                    break;
                }
                _ = tick.tick(), if self.leading() => {
                    // What is queued happened before this tick: a heartbeat waiting behind a
                    // burst of messages must count before the failure check. Only what is queued
                    // now, so a steady stream of messages cannot starve the check.
                    for _ in 0..commands.len() {
                        let Ok(command) = commands.try_recv() else { break };
                        self.handle(command);
                    }
                    let actions = self.engine.handle(Input::Tick, Instant::now());
                    self.execute(actions);
                }
                command = commands.recv(), if self.leading() => {
                    let Some(command) = command else { break };
                    self.handle(command);
                }
            }
        }
        // Nothing more is taken: the disk writer's last results have nowhere to go, and it
        // ends once the queued events are appended.
        drop(commands);
        if let Some(disk) = self.disk.take() {
            let thread = disk.close();
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    fn handle(&mut self, command: Command) {
        if !self.leading() {
            // Not even an admin answer: a lapsed leader answers nothing as leader.
            return;
        }
        let now = Instant::now();
        let actions = match command {
            Command::Connected {
                conn,
                request,
                outbox,
            } => {
                self.outboxes.insert(conn, outbox);
                self.engine.handle(Input::Register { conn, request }, now)
            }
            Command::Input(input) => {
                if let Input::Disconnected { conn } = input {
                    self.outboxes.remove(&conn);
                }
                self.engine.handle(input, now)
            }
            Command::Admin { request, reply } => {
                let (answer, actions) = self.engine.admin(request, now);
                // A requester that gave up does not undo what it asked for.
                let _ = reply.send(answer);
                actions
            }
        };
        self.execute(actions);
    }

    fn execute(&mut self, actions: Vec<Action>) {
        if !self.leading() {
            tracing::warn!("leadership lapsed: dropping {} actions", actions.len());
            return;
        }
        for action in actions {
            match action {
                Action::Send { conn, message } => {
                    let Some(outbox) = self.outboxes.get(&conn) else {
                        continue;
                    };
                    if let Err(e) = outbox.try_send(message) {
                        // A connection that cannot keep up with control messages is stuck;
                        // dropping its outbox closes it and the worker reconnects.
                        tracing::warn!(conn, error = %e, "closing a connection whose outbox is full");
                        self.outboxes.remove(&conn);
                    }
                }
                Action::Close { conn } => {
                    self.outboxes.remove(&conn);
                }
                Action::WriteCheckpoint {
                    id,
                    attempt,
                    snapshots,
                    retain,
                } => {
                    let job = self.engine.job_name().unwrap_or_default();
                    let created_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    let partitions = self.engine.num_partitions();
                    let manifest = manifest_of(id, job, attempt, created_ms, partitions, &snapshots);
                    let job = DiskJob::Commit {
                        manifest: Box::new(manifest),
                        retain,
                    };
                    if !self.disk.as_ref().is_some_and(|d| d.submit(job)) {
                        let result = Err("no data directory to commit checkpoints to".to_string());
                        let actions = self
                            .engine
                            .handle(Input::CheckpointWritten { id, result }, Instant::now());
                        self.execute(actions);
                    }
                }
                Action::ProbeWorker {
                    worker,
                    incarnation,
                    address,
                } => {
                    if let Some(commands) = &self.probes {
                        super::probe::spawn(commands.clone(), worker, incarnation, address);
                    }
                }
                Action::Log(note) => log(&note),
                Action::Event(event) => {
                    let text = serde_json::to_string(&event).unwrap_or_else(|_| format!("{event:?}"));
                    let generation = self.engine.generation();
                    tracing::info!(%generation, event = %text, "cluster event");
                    if let Some(disk) = &self.disk {
                        disk.submit(DiskJob::Event { generation, event });
                    }
                }
            }
        }
    }
}

/// Accepts connections until shutdown: at most `max_workers` plus [`SPARE_CONNECTIONS`] at
/// once (the others wait in the listen backlog), each with a slot held until it closes.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Shared,
    tracker: TaskTracker,
    max_workers: usize,
) {
    let slots = Arc::new(Semaphore::new(max_workers.saturating_add(SPARE_CONNECTIONS)));
    loop {
        let slot = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    tracker.spawn(async move {
                        serve_connection(stream, peer, conn, shared).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, conn: ConnId, shared: Shared) {
    let accepting = crate::network::accept(stream, &shared.security, &shared.cluster);
    let accepted = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "closing connection: handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "closing connection: no handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let (stream, credentials) = (accepted.stream, accepted.credentials);
    tracing::debug!(%peer, conn, role = ?accepted.hello.role, "connection accepted");
    match accepted.hello.role {
        Role::Worker => {
            let connection = Connection::from_stream(stream, shared.max_frame_size);
            serve_worker(connection, peer, conn, credentials, shared).await
        }
        Role::Client => {
            let connection = Connection::from_stream(stream, shared.max_frame_size);
            serve_client(connection, peer, credentials, shared).await
        }
        Role::Peer => {
            tracing::warn!(%peer, "closing connection: a worker's data connection reached the coordinator")
        }
    }
}

async fn serve_worker(
    connection: Connection<CoordinatorMessage, WorkerMessage>,
    peer: SocketAddr,
    conn: ConnId,
    credentials: PeerCredentials,
    shared: Shared,
) {
    let (mut reader, mut writer) = connection.split();
    let request = match tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.recv()).await {
        Ok(Ok(Some(WorkerMessage::Register(request)))) => request,
        Ok(Ok(Some(other))) => {
            tracing::warn!(%peer, message = ?other, "closing connection: expected Register first");
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "closing connection");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "closing connection: no registration within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    if let Err(reason) = credentials.may_be_worker(&shared.security, request.worker_id.as_str()) {
        // A peer that cannot prove it is this worker must not take over its partitions.
        tracing::warn!(%peer, worker = %request.worker_id, %reason, "refusing registration");
        let _ = writer
            .send(CoordinatorMessage::RegistrationRefused { reason })
            .await;
        return;
    }
    let (outbox, mut outgoing) = mpsc::channel(OUTBOX_CAPACITY);
    if shared
        .commands
        .send(Command::Connected {
            conn,
            request,
            outbox,
        })
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            message = outgoing.recv() => match message {
                Some(message) => {
                    if let Err(e) = writer.send(message).await {
                        tracing::warn!(%peer, error = %e, "closing worker connection: write failed");
                        break;
                    }
                }
                // The actor closed this connection; everything it queued has been written.
                None => break,
            },
            frame = reader.recv() => {
                let message = match frame {
                    Ok(Some(WorkerMessage::Register(_))) => {
                        tracing::warn!(%peer, "closing worker connection: registered twice");
                        break;
                    }
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing worker connection");
                        break;
                    }
                };
                let heartbeat = matches!(message, WorkerMessage::Heartbeat { .. });
                let mut gone = false;
                for input in inputs_of(conn, message) {
                    gone |= shared.commands.send(Command::Input(input)).await.is_err();
                }
                if gone {
                    break;
                }
                if heartbeat {
                    if let Err(e) = writer.send(CoordinatorMessage::HeartbeatAck).await {
                        tracing::warn!(%peer, error = %e, "closing worker connection: write failed");
                        break;
                    }
                }
            }
        }
    }
    let _ = shared
        .commands
        .send(Command::Input(Input::Disconnected { conn }))
        .await;
}
