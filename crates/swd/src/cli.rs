//! The command-line grammar (clap derive). Flag names are part of our interface: tests and users
//! rely on them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use streamweave_distributed::storage::StorageUrl;
use streamweave_distributed::{PartitionId, RebalanceStrategy, RecoveryStrategy};

mod jobs;
pub use jobs::{JobIdArgs, JobsArgs, RunArgs};

/// streamweave-distributed: run stream-processing jobs across worker processes.
#[derive(Debug, Parser)]
#[command(name = "swd", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
// Parsed once at start and moved into its command: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a coordinator.
    Coordinator(CoordinatorArgs),
    /// Run a worker.
    Worker(WorkerArgs),
    /// Show the cluster's status.
    Status(StatusArgs),
    /// Move partitions to a worker.
    Assign(AssignArgs),
    /// Recompute a balanced assignment and move towards it.
    Rebalance(RebalanceArgs),
    /// Run a coordinator and N worker processes on loopback.
    Local(LocalArgs),
    /// Development certificates for mutual TLS (docs/security.md).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Generate a deterministic input corpus for tests and benchmarks.
    Gen(GenArgs),
    /// Submit a job to a running cluster (a coordinator started without --job); prints its id.
    Run(RunArgs),
    /// List the jobs submitted to a running cluster.
    Jobs(JobsArgs),
    /// Cancel a submitted job: it ends at once, without a checkpoint.
    Cancel(JobIdArgs),
    /// Stop a submitted job with a savepoint (a final checkpoint); prints the savepoint's id.
    Stop(JobIdArgs),
}

/// `swd coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub bind: SocketAddr,
    /// Number of partitions P.
    #[arg(long, default_value_t = 128)]
    pub partitions: usize,
    /// Directory for the coordinator's files (event log).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A worker not heard from for this long is failed.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub heartbeat_timeout: Duration,
    /// How often to check for failed workers.
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    pub health_check_interval: Duration,
    /// Refuse workers beyond this many.
    #[arg(long, default_value_t = 100)]
    pub max_workers: usize,
    /// With a job: take a checkpoint this often (needs --data-dir or --checkpoint-store);
    /// recovery then resumes from the last one instead of the beginning.
    #[arg(long, value_parser = parse_duration)]
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints are stored: a path or file:///path, s3://BUCKET/PREFIX (configured by
    /// AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP).
    /// Every worker must reach it. Default: DATA_DIR/checkpoints.
    #[arg(long, value_name = "URL", value_parser = parse_storage_url)]
    pub checkpoint_store: Option<StorageUrl>,
    /// With a job: where it resumes after a failure: `checkpoint` (the last completed one; the
    /// default) or `beginning`.
    #[arg(long, default_value = "checkpoint")]
    pub recovery: RecoveryStrategy,
    /// With a job: wait for this many workers before its first attempt.
    #[arg(long, default_value_t = 1)]
    pub min_workers: usize,
    #[command(flatten)]
    /// When a failing job gives up.
    pub failures: FailureArgs,
    /// How partitions move when workers join or leave: immediate, gradual or manual.
    #[arg(long, default_value = "gradual")]
    pub rebalance: RebalanceStrategy,
    /// Leave a failed worker's partitions unassigned instead of moving them.
    #[arg(long)]
    pub no_failover: bool,
    /// The cluster's name (workers and clients must name the same).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// High availability: elect one leader among the coordinators started with the same
    /// `--ha etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` and `--cluster`; the others stand by.
    /// Give them a shared --checkpoint-store: a new leader resumes the job from its latest
    /// checkpoint.
    #[arg(long, value_name = "URL")]
    pub ha: Option<String>,
    /// With --ha: the leader's etcd lease; a standby takes over this long after the leader
    /// is lost (whole seconds, at least 2 s).
    #[arg(long, value_parser = parse_duration, default_value = "2s", requires = "ha")]
    pub ha_lease_ttl: Duration,
    /// With --ha: the address published while leading, HOST:PORT, which workers and clients
    /// are sent to (default: the bound address; give it with --bind 0.0.0.0:PORT).
    #[arg(long, value_name = "HOST:PORT", requires = "ha")]
    pub advertise: Option<String>,
    /// Serve the web console, its JSON API (/api/...) and /metrics over HTTP on this address
    /// (port 0 picks one; `console on URL` is printed after `listening on`).
    #[arg(long, value_name = "ADDR")]
    pub http_bind: Option<SocketAddr>,
    /// Serve Prometheus /metrics alone on this address (`metrics on URL` is printed).
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<SocketAddr>,
    #[command(flatten)]
    /// The job to run, if any.
    pub job: JobArgs,
    #[command(flatten)]
    /// Shared secrets and TLS.
    pub security: SecurityArgs,
}

/// Which job to run.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// A registered job (the swd binary has `wordcount` and `repartition`).
    #[arg(long)]
    pub job: Option<String>,
    /// The job's input (for the built-in jobs, text files: a directory, or an object store
    /// prefix `s3://bucket/prefix`, configured by the AWS_* environment).
    #[arg(long, requires = "job")]
    pub input: Option<PathBuf>,
    /// The job's output (a directory or an `s3://bucket/prefix`); it must not exist or be empty.
    #[arg(long, requires = "job")]
    pub output: Option<PathBuf>,
    /// Records per second per source partition (default unlimited): makes a job run long enough
    /// to watch it, or to crash a worker on purpose. The same as `--param rate=N`.
    #[arg(long, requires = "job")]
    pub rate: Option<u64>,
    /// A job parameter, `key=value` (repeatable).
    #[arg(long = "param", value_parser = parse_param, requires = "job")]
    pub params: Vec<(String, String)>,
    /// Where the job's keyed state lives on the workers: in memory, or on disk (an embedded
    /// database per worker, for state larger than memory). The same as `--param state.backend=`.
    #[arg(long, value_enum, requires = "job")]
    pub state_backend: Option<StateBackend>,
}

/// `--state-backend`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StateBackend {
    /// Hash maps in memory (the default).
    Memory,
    /// An embedded on-disk store per worker, with a bounded cache.
    Disk,
}

/// When a failing job gives up.
#[derive(Debug, Args)]
pub struct FailureArgs {
    /// With a job: restarts in a row with no checkpoint completed in between after which the
    /// job is failed (a record that fails every attempt ends the job; a job that keeps
    /// checkpointing between crashes goes on).
    #[arg(long, default_value_t = 10)]
    pub max_restarts: u64,
    /// With checkpoints: how many checkpoints in a row may time out; the next timeout fails
    /// the attempt, which restarts from the last completed checkpoint.
    #[arg(long, default_value_t = 3)]
    pub tolerable_checkpoint_failures: u32,
    /// With checkpoints: a checkpoint not complete after this long is aborted (Flink's
    /// `execution.checkpointing.timeout`). Gigabytes of state on a busy machine may need more.
    #[arg(long, value_parser = parse_positive_duration, default_value = "10s")]
    pub checkpoint_timeout: Duration,
}

/// `swd worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator's address, IP:PORT or HOST:PORT (a host name is resolved at start);
    /// with high availability, all of them: a:7000,b:7000,c:7000 (the leader is found).
    // `::std::vec::Vec` so clap takes the whole list from one value.
    #[arg(long, value_parser = parse_addresses)]
    pub coordinator: ::std::vec::Vec<SocketAddr>,
    /// The worker's id (default: worker-<pid>).
    #[arg(long)]
    pub id: Option<String>,
    /// Address for the worker's data plane.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// The data-plane address other workers dial, HOST:PORT (default: the bound address; with
    /// --bind 0.0.0.0:PORT, the IP this worker reaches the coordinator from).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// How often to heartbeat.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub heartbeat_interval: Duration,
    /// How many partitions this worker may run at once.
    #[arg(long, default_value_t = 128)]
    pub max_tasks: usize,
    /// On SIGTERM while a checkpointed job runs: how long to keep running the partitions for
    /// them to move away with their state before stopping anyway (each move first loads the
    /// partition's state on its new owner: allow minutes for gigabytes a partition).
    #[arg(long, value_parser = parse_positive_duration, default_value = "120s")]
    pub drain_timeout: Duration,
    /// Source partitions of a bounded job read at once (default: one per core).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub source_slots: usize,
    /// Partitions to ask for when registering, e.g. 0,1,2 or 0-3,8.
    #[arg(long, value_parser = parse_partitions)]
    pub partitions: Option<::std::vec::Vec<PartitionId>>,
    /// The cluster's name.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Serve Prometheus /metrics on this address (port 0 picks one; `metrics on URL` is
    /// printed after the registration line).
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<SocketAddr>,
    /// Where jobs on the disk state backend keep their keyed state (default: a directory under
    /// the system's temporary directory, removed when the job attempt ends).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    /// Shared secrets and TLS.
    pub security: SecurityArgs,
}

/// The coordinator an admin command talks to.
#[derive(Debug, Args)]
pub struct Target {
    /// The coordinator's address, IP:PORT or HOST:PORT (a host name is resolved at start);
    /// with high availability, all of them: a:7000,b:7000,c:7000 (the leader is found).
    // `::std::vec::Vec` so clap takes the whole list from one value.
    #[arg(long, value_parser = parse_addresses)]
    pub coordinator: ::std::vec::Vec<SocketAddr>,
    /// The cluster's name.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Give up when the coordinator has not answered within this long.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    #[command(flatten)]
    /// Shared secrets and TLS.
    pub security: SecurityArgs,
}

/// `swd status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The coordinator to talk to.
    #[command(flatten)]
    pub target: Target,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `swd assign`.
#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The coordinator to talk to.
    #[command(flatten)]
    pub target: Target,
    /// The worker to give the partitions to.
    #[arg(long)]
    pub worker: String,
    /// The partitions, e.g. 0,1,2 or 0-3,8.
    // `::std::vec::Vec` so clap takes the whole list from one value instead of repeating the flag.
    #[arg(long, required = true, value_parser = parse_partitions)]
    pub partitions: ::std::vec::Vec<PartitionId>,
}

/// `swd rebalance`.
#[derive(Debug, Args)]
pub struct RebalanceArgs {
    /// The coordinator to talk to.
    #[command(flatten)]
    pub target: Target,
}

/// `swd local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Number of worker processes.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Number of partitions P.
    #[arg(long, default_value_t = 8)]
    pub partitions: usize,
    /// Coordinator address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// How partitions move when workers join or leave.
    #[arg(long, default_value = "gradual")]
    pub rebalance: RebalanceStrategy,
    /// Workers' heartbeat interval.
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    pub heartbeat_interval: Duration,
    /// The coordinator's heartbeat timeout.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub heartbeat_timeout: Duration,
    /// Directory for the coordinator's files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// With a job: take a checkpoint this often; recovery then resumes from the last one.
    #[arg(long, value_parser = parse_duration)]
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints are stored (as for `swd coordinator`); default: DATA_DIR/checkpoints.
    #[arg(long, value_name = "URL", value_parser = parse_storage_url)]
    pub checkpoint_store: Option<StorageUrl>,
    /// Keep the cluster running until Ctrl-C instead of stopping once it has settled (or the
    /// job has ended).
    #[arg(long)]
    pub keep_running: bool,
    /// Serve the coordinator's web console and /metrics on this address (127.0.0.1:0 picks a
    /// port); its URL is printed on stderr.
    #[arg(long, value_name = "ADDR")]
    pub http_bind: Option<SocketAddr>,
    /// The cluster secret its processes share (default: a fresh random one, in a file only this
    /// user can read, removed when the run ends).
    #[arg(long, env = "SWD_SECRET_FILE", value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// The workers' directory for keyed state on the disk backend (as for `swd worker`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    /// When a failing job gives up.
    pub failures: FailureArgs,
    #[command(flatten)]
    /// The job to run, if any.
    pub job: JobArgs,
}

/// Shared secrets and mutual TLS, on every command that connects or listens
/// (docs/security.md).
#[derive(Clone, Debug, Default, Args)]
pub struct SecurityArgs {
    /// File holding the cluster's shared secret (16 bytes or more): every connection must prove
    /// it (HMAC challenge-response; the secret never crosses the wire).
    #[arg(long, env = "SWD_SECRET_FILE", value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// File holding the admin secret. On a coordinator: assign, rebalance, fail, checkpoint and
    /// stop need it. On a client: prove it instead of the cluster secret.
    #[arg(long, env = "SWD_ADMIN_SECRET_FILE", value_name = "PATH")]
    pub admin_secret_file: Option<PathBuf>,
    /// This node's certificate (PEM), signed by --tls-ca; turns on mutual TLS.
    #[arg(long, env = "SWD_TLS_CERT", value_name = "PATH", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "SWD_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): peers must present a certificate it signed.
    #[arg(long, env = "SWD_TLS_CA", value_name = "PATH", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

/// `swd cert ...`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Writes a development CA (DIR/ca.pem, DIR/ca-key.pem) and, for each name, DIR/NAME.pem
    /// and DIR/NAME-key.pem. Name workers by their --id; `admin` may issue admin requests.
    Init(CertInitArgs),
}

/// `swd cert init`.
#[derive(Debug, Args)]
pub struct CertInitArgs {
    /// Where to write the files (created if missing).
    pub dir: PathBuf,
    /// Comma-separated node names: coordinator, worker ids, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub names: Vec<String>,
    /// Comma-separated hosts (IP addresses or DNS names) the nodes are reached at.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
    pub hosts: Vec<String>,
}

/// `swd gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// The workload: `wordcount` (Zipf-distributed words over a 100,000-word vocabulary).
    #[arg(value_enum)]
    pub workload: Workload,
    /// The corpus directory (created; must be new or empty): `input/part-NNN.txt`,
    /// `expected.tsv` and `words.txt`.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of words.
    #[arg(long, default_value_t = 20_000_000)]
    pub words: u64,
    /// Number of input files.
    #[arg(long, default_value_t = 8)]
    pub files: u32,
    /// The random seed: the same words, files and seed give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The corpora `swd gen` makes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Workload {
    /// Lines of 10 Zipf-distributed words, with the expected word count.
    Wordcount,
}

/// `HOST:PORT[,HOST:PORT...]`, each as [`parse_address`].
pub fn parse_addresses(s: &str) -> Result<Vec<SocketAddr>, String> {
    s.split(',').map(parse_address).collect()
}

/// `IP:PORT`, or `HOST:PORT` resolved now (the first address the resolver gives).
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!("{s:?} is not HOST:PORT"));
    }
    use std::net::ToSocketAddrs;
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{s:?} resolves to no address")),
        Err(e) => Err(format!("cannot resolve {s:?}: {e}")),
    }
}

/// Parses a human duration such as `100ms` or `2s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected a duration such as 100ms or 2s)"))
}

/// Parses a duration that must be above zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be above zero".to_string()),
        d => Ok(d),
    }
}

/// Parses a storage URL: a path, `file:///path` or `s3://bucket/prefix`. `memory://` is refused:
/// it lives in one process, and `swd`'s coordinator and workers are separate processes.
pub fn parse_storage_url(s: &str) -> Result<StorageUrl, String> {
    match StorageUrl::parse(s).map_err(|e| e.to_string())? {
        StorageUrl::Memory { .. } => Err(MEMORY_REFUSED.to_string()),
        url => Ok(url),
    }
}

/// Why `memory://` cannot be used on the command line.
pub const MEMORY_REFUSED: &str =
    "memory:// is in-process only (library tests); swd's processes need a path or s3://";

/// Parses a `key=value` job parameter.
pub fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// Parses a partition list such as `0,1,2` or `0-3,8`.
///
/// ```
/// assert_eq!(swd::cli::parse_partitions("0-2,5").unwrap(), vec![0, 1, 2, 5]);
/// assert!(swd::cli::parse_partitions("1,x").is_err());
/// ```
pub fn parse_partitions(s: &str) -> Result<Vec<PartitionId>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let number = |n: &str| {
            n.trim()
                .parse::<PartitionId>()
                .map_err(|_| format!("{n:?} is not a partition number"))
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("range {item:?} is backwards"));
                }
                out.extend(a..=b);
            }
            None => out.push(number(item)?),
        }
    }
    Ok(out)
}
