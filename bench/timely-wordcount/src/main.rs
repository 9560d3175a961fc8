//! Word count with timely dataflow, run as several processes connected over TCP.
//!
//! ```text
//! timely-wordcount --input DIR --output DIR --process I --processes N
//!                  [--hosts host:port,host:port,...] [--threads T] [--stock-connect]
//!                  [--flush file|end]
//! ```
//!
//! Start the same command once per process, with `--process 0` .. `--process N-1` and the same
//! `--hosts` list (one `host:port` per process, in process order; default `127.0.0.1:2101`,
//! `127.0.0.1:2102`, ...). Each process runs `--threads` worker threads (default 1).
//!
//! Input files (the regular files of DIR, or links to them, whose names do not start with `.` or
//! `_`, sorted by name) are dealt out by index: process `p` reads the files `i` with
//! `i % N == p`, and its `T` threads take every `T`-th of those. Each worker splits lines on
//! `char::is_whitespace` and counts the words in a local hash map. At the end of every file (with
//! `--flush end`: only after its last file) it sends the map's `(word, count)` pairs into the
//! dataflow, which routes each pair by a hash of the word to the worker owning that word. That
//! worker sums the counts and, once all input is done, writes `word\tcount` lines to
//! `OUTDIR/part-<w>`, where `w` is its global worker index (with one thread per process, the
//! process index). A summary line per worker goes to stderr.
//!
//! Connections: by default the processes connect to each other here, polling every 5 ms until
//! the peer listens, and hand the sockets to timely
//! (`timely_communication::allocator::zero_copy::initialize::initialize_networking_from_sockets`).
//! `--stock-connect` instead uses timely's own `CommunicationConfig::Cluster`, whose connect and
//! accept loops sleep one second whenever a peer is not there yet, which usually adds one to two
//! seconds to a run of processes started at the same time.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::InputHandle;
use timely::{CommunicationConfig, WorkerConfig};

use timely_wordcount::{
    count_words, for_each_text_block, list_input_files, word_hash, write_counts, FxHashMap,
};

/// How long to keep trying to reach the other processes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    input: PathBuf,
    output: PathBuf,
    process: usize,
    processes: usize,
    hosts: Vec<String>,
    threads: usize,
    stock_connect: bool,
    flush_per_file: bool,
}

const USAGE: &str = "usage: timely-wordcount --input DIR --output DIR --process I --processes N \
                     [--hosts host:port,...] [--threads T] [--stock-connect] [--flush file|end]";

fn parse_args() -> Result<Option<Args>, String> {
    let (mut input, mut output, mut process, mut processes, mut hosts) = (None, None, None, None, None);
    let mut threads = 1;
    let mut stock_connect = false;
    let mut flush_per_file = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |s: String| s.parse::<usize>().map_err(|e| format!("{arg} {s:?}: {e}"));
        match arg.as_str() {
            "--input" => input = Some(PathBuf::from(value()?)),
            "--output" => output = Some(PathBuf::from(value()?)),
            "--process" => process = Some(number(value()?)?),
            "--processes" => processes = Some(number(value()?)?),
            "--threads" => threads = number(value()?)?,
            "--hosts" => hosts = Some(value()?.split(',').map(str::to_owned).collect::<Vec<_>>()),
            "--stock-connect" => stock_connect = true,
            "--flush" => {
                flush_per_file = match value()?.as_str() {
                    "file" => true,
                    "end" => false,
                    other => return Err(format!("--flush {other:?}: expected file or end")),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let processes = processes.unwrap_or(1);
    let process = process.unwrap_or(0);
    let hosts = hosts.unwrap_or_else(|| {
        (0..processes)
            .map(|i| format!("127.0.0.1:{}", 2101 + i))
            .collect()
    });
    if processes == 0 || threads == 0 {
        return Err("--processes and --threads must be at least 1".into());
    }
    if process >= processes {
        return Err(format!(
            "--process {process} must be below --processes {processes}"
        ));
    }
    if hosts.len() != processes {
        return Err(format!(
            "--hosts names {} addresses for {processes} processes",
            hosts.len()
        ));
    }
    Ok(Some(Args {
        input: input.ok_or("--input DIR is required")?,
        output: output.ok_or("--output DIR is required")?,
        process,
        processes,
        hosts,
        threads,
        stock_connect,
        flush_per_file,
    }))
}

/// Connects this process to every other one: it accepts connections from the processes with a
/// higher index and connects to those with a lower one, sending its index first. Returns one
/// socket per process, `None` at our own index.
fn connect(hosts: &[String], me: usize) -> Result<Vec<Option<TcpStream>>, String> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut sockets: Vec<Option<TcpStream>> = (0..hosts.len()).map(|_| None).collect();
    let listener = if me + 1 < hosts.len() {
        Some(TcpListener::bind(&hosts[me]).map_err(|e| format!("bind {}: {e}", hosts[me]))?)
    } else {
        None
    };
    for (peer, host) in hosts.iter().enumerate().take(me) {
        let mut stream = loop {
            match TcpStream::connect(host) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() > deadline => return Err(format!("connect {host}: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        stream
            .write_all(&(me as u64).to_le_bytes())
            .map_err(|e| format!("handshake {host}: {e}"))?;
        sockets[peer] = Some(stream);
    }
    if let Some(listener) = listener {
        // A blocking accept with a deadline: poll in non-blocking mode.
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        while sockets.iter().enumerate().any(|(i, s)| i > me && s.is_none()) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                    let mut id = [0u8; 8];
                    stream
                        .read_exact(&mut id)
                        .map_err(|e| format!("handshake: {e}"))?;
                    let id = u64::from_le_bytes(id) as usize;
                    if id <= me || id >= hosts.len() || sockets[id].is_some() {
                        return Err(format!("unexpected connection from process {id}"));
                    }
                    sockets[id] = Some(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(format!("timed out waiting for peers on {}", hosts[me]));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept on {}: {e}", hosts[me])),
            }
        }
    }
    for stream in sockets.iter().flatten() {
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
    }
    Ok(sockets)
}

/// The files worker `index` (of `processes * threads`) reads: file `i` goes to process
/// `i % processes`, and that process's files are dealt round-robin to its threads.
fn files_of(files: &[PathBuf], index: usize, processes: usize, threads: usize) -> Vec<PathBuf> {
    let (process, thread) = (index / threads, index % threads);
    files
        .iter()
        .enumerate()
        .filter(|(i, _)| i % processes == process)
        .enumerate()
        .filter(|(k, _)| k % threads == thread)
        .map(|(_, (_, path))| path.clone())
        .collect()
}

type Pair = (String, u64);

/// What one worker did, for the summary line on stderr.
struct Stats {
    words: u64,
    pairs_sent: u64,
    distinct: usize,
    count_secs: f64,
    wait_secs: f64,
    write_secs: f64,
}

/// The per-worker program.
fn worker_main(
    worker: &mut timely::worker::Worker,
    files: &[PathBuf],
    output: &Path,
    processes: usize,
    threads: usize,
    flush_per_file: bool,
) -> Result<Stats, String> {
    let index = worker.index();
    let mine = files_of(files, index, processes, threads);

    let sums: Rc<RefCell<FxHashMap<String, u64>>> = Rc::default();
    let mut input = InputHandle::<(), CapacityContainerBuilder<Vec<Pair>>>::new();
    worker.dataflow::<(), _, _>(|scope| {
        let sums = Rc::clone(&sums);
        let by_word = Exchange::new(|(word, _): &Pair| word_hash(word));
        input
            .to_stream(scope)
            .sink(by_word, "Sum", move |(input, _frontier)| {
                let mut sums = sums.borrow_mut();
                input.for_each(|_cap, pairs| {
                    for (word, count) in pairs.drain(..) {
                        *sums.entry(word).or_insert(0) += count;
                    }
                });
            });
    });

    // Read and pre-aggregate one file at a time, then send that file's pairs.
    let mut local: FxHashMap<String, u64> = FxHashMap::default();
    let (mut words, mut pairs_sent) = (0u64, 0u64);
    let start = Instant::now();
    for (k, path) in mine.iter().enumerate() {
        for_each_text_block(path, |text| count_words(&mut local, text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !flush_per_file && k + 1 < mine.len() {
            continue;
        }
        pairs_sent += local.len() as u64;
        for (word, count) in local.drain() {
            words += count;
            input.send((word, count));
        }
        worker.step();
    }
    let counted = Instant::now();
    drop(input); // closes the input: the dataflow completes once every worker has done so.
    while worker.step_or_park(None) {}
    let done = Instant::now();

    let sums = sums.borrow();
    let part = output.join(format!("part-{index}"));
    write_counts(&part, sums.iter()).map_err(|e| format!("{}: {e}", part.display()))?;
    Ok(Stats {
        words,
        pairs_sent,
        distinct: sums.len(),
        count_secs: (counted - start).as_secs_f64(),
        wait_secs: (done - counted).as_secs_f64(),
        write_secs: done.elapsed().as_secs_f64(),
    })
}

fn run(args: Args) -> Result<(), String> {
    let files = list_input_files(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    std::fs::create_dir_all(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;

    let (builders, others): (Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>) = if args.processes == 1 {
        CommunicationConfig::Process(args.threads).try_build()?
    } else if args.stock_connect {
        CommunicationConfig::Cluster {
            threads: args.threads,
            process: args.process,
            addresses: args.hosts.clone(),
            report: false,
            zerocopy: false,
        }
        .try_build()?
    } else {
        let sockets = connect(&args.hosts, args.process)?;
        let hooks = Hooks::default();
        let local = ProcessBuilder::new_typed_vector(args.threads, hooks.refill.clone(), hooks.spill.clone());
        let (builders, guard) =
            initialize_networking_from_sockets(local, sockets, args.process, args.threads, hooks)
                .map_err(|e| format!("network setup: {e}"))?;
        (
            builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
            Box::new(guard),
        )
    };

    let files = Arc::new(files);
    let output = Arc::new(args.output);
    let (processes, threads, flush_per_file) = (args.processes, args.threads, args.flush_per_file);
    let guards = timely::execute::execute_from(builders, others, WorkerConfig::default(), move |worker| {
        worker_main(worker, &files, &output, processes, threads, flush_per_file)
    })?;
    for (index, result) in guards.join().into_iter().enumerate() {
        let s = result??;
        let worker = args.process * threads + index;
        eprintln!(
            "timely-wordcount: worker {worker}: read {} words, sent {} pairs, wrote {} words; \
             read+count {:.3} s, then exchange+sum {:.3} s, write {:.3} s",
            s.words, s.pairs_sent, s.distinct, s.count_secs, s.wait_secs, s.write_secs
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| args.map_or(Ok(()), run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timely-wordcount: {e}");
            ExitCode::FAILURE
        }
    }
}
