//! [`JetStreamSource`]: the messages of a NATS JetStream stream, one record per message (its
//! payload as text; invalid UTF-8 is replaced, so one bad message cannot stop a job forever).
//!
//! The split: partition `p` of `P` takes the messages whose stream sequence `s` has
//! `s % P == p`. It depends on nothing but the sequence, so every worker computes it alike, and
//! it keeps every partition busy whatever the subjects (a stream with one subject included).
//! The price: each partition reads the whole stream through its own ordered consumer and skips
//! the others' messages, so the stream crosses the network `P` times (a hash of the subject
//! would cost the same, since a consumer cannot filter by hash on the server).
//!
//! ```text
//! read(p, offset) -> ordered pull consumer from sequence offset+1 (kept between calls while
//!                    the partition stays here: a barrier or a yield does not recreate it)
//!   message s, s % P == p -> emit(payload), offset = s
//!   message s, otherwise  -> offset = s (skipped: another partition's)
//!   nothing for IDLE_POLL -> if `interrupted()`: Stopped(offset) (barrier, yield or cancel)
//!   offset >= until       -> Exhausted(offset)
//! ```
//!
//! Lag: every message's JetStream info says how many messages the consumer has still to deliver
//! after it, so `seq + pending` is the stream's end as last seen; a partition's
//! [`Source::lag`] is the number of its own sequences between its position and that end,
//! refreshed at every wait for messages.
//!
//! The [`SourceOffset`] of a partition is the stream sequence of the last message it consumed
//! (0 before the first), so a restored attempt resumes exactly after it. The ordered consumer
//! recreates itself from the last sequence it delivered when the connection or the server
//! drops; creating it again is retried for [`RETRY_FOR`] before the attempt fails.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::dataflow::jetstream::{jetstream, run, NatsUrl};
use crate::dataflow::{DataflowError, Flow, Source, SourceContext, SourceEnd, SourceOffset};

/// How long one wait for the next messages lasts before `interrupted` is asked again: the
/// longest a checkpoint barrier waits on an idle partition.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// Messages taken from the consumer per wait, at most.
const FETCH_BATCH: usize = 1024;

/// How long a partition keeps trying to (re)create its consumer before the attempt fails.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Pause between two tries to create a consumer.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A consumer kept for a partition unused this long is dropped (the partition moved away).
const READER_IDLE: Duration = Duration::from_secs(30);

/// Where a source stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Never: the job runs until it is stopped.
    Forever,
    /// At the stream's last sequence when this source first reads (`--param until=end`).
    End,
    /// At this stream sequence (`--param until=SEQ`).
    Sequence(u64),
}

impl Until {
    /// Parses the `until` parameter: absent, `end`, or a sequence number.
    pub fn parse(value: Option<&str>) -> Result<Until, DataflowError> {
        match value {
            None => Ok(Until::Forever),
            Some("end") => Ok(Until::End),
            Some(n) => n.parse().map(Until::Sequence).map_err(|_| {
                DataflowError::InvalidJob(format!("parameter until={n:?} is neither `end` nor a sequence"))
            }),
        }
    }
}

/// The lines of a JetStream stream, read as described in the module docs.
///
/// ```
/// use std::path::Path;
/// use streamweave_distributed::dataflow::sources::{JetStreamSource, Until};
/// use streamweave_distributed::dataflow::Source;
///
/// let source = JetStreamSource::parse(Path::new("nats://127.0.0.1:4222/LOGS"), Until::Forever)?;
/// assert!(source.expect("a nats:// URL").is_bounded() == false);
/// # Ok::<(), streamweave_distributed::dataflow::DataflowError>(())
/// ```
#[derive(Debug)]
pub struct JetStreamSource {
    url: NatsUrl,
    until: Until,
    /// `Until::End` resolved, once per source.
    end: OnceLock<u64>,
    /// Open consumers by partition, kept between `read` calls.
    readers: Mutex<HashMap<usize, Reader>>,
    /// [`Source::lag`] by partition, refreshed by the reading thread.
    lags: Mutex<HashMap<usize, u64>>,
}

/// One partition's open consumer and what it fetched but did not emit yet.
struct Reader {
    /// The sequence of the last message consumed.
    position: u64,
    /// The stream's last sequence as the consumer last reported it (`None`: not known yet).
    end: Option<u64>,
    buffered: VecDeque<(u64, Bytes)>,
    /// `None` until created, and again after an error.
    messages: Option<Ordered>,
    last_used: Instant,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("position", &self.position)
            .field("buffered", &self.buffered.len())
            .finish()
    }
}

impl JetStreamSource {
    /// A source for `nats://HOST:PORT/STREAM`; `None` if `input` is not a `nats://` URL.
    pub fn parse(input: &Path, until: Until) -> Result<Option<JetStreamSource>, DataflowError> {
        Ok(NatsUrl::parse(input)?.map(|url| JetStreamSource {
            url,
            until,
            end: OnceLock::new(),
            readers: Mutex::default(),
            lags: Mutex::default(),
        }))
    }

    /// The stream's last sequence right now (0 when it is empty).
    fn last_sequence(&self) -> Result<u64, DataflowError> {
        let (js, name) = (self.url.client()?, self.url.name.clone());
        run(async move {
            let js = jetstream(js);
            let stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
            stream
                .get_info()
                .await
                .map(|info| info.state.last_sequence)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| self.url.error("reading the stream's info", e))
    }

    /// The last sequence to read, if any.
    fn limit(&self) -> Result<Option<u64>, DataflowError> {
        match self.until {
            Until::Forever => Ok(None),
            Until::Sequence(n) => Ok(Some(n)),
            Until::End => match self.end.get() {
                Some(end) => Ok(Some(*end)),
                None => {
                    let end = self.last_sequence()?;
                    Ok(Some(*self.end.get_or_init(|| end)))
                }
            },
        }
    }

    /// The partition's reader if it stopped exactly at `offset`, else a fresh one from there.
    fn take_reader(&self, partition: usize, offset: u64) -> Reader {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        // Readers of partitions that moved away are never asked for again: let them go.
        readers.retain(|_, r| r.last_used.elapsed() < READER_IDLE);
        match readers.remove(&partition) {
            Some(reader) if reader.position == offset => reader,
            _ => Reader {
                position: offset,
                end: None,
                buffered: VecDeque::new(),
                messages: None,
                last_used: Instant::now(),
            },
        }
    }

    fn put_back(&self, partition: usize, mut reader: Reader) {
        reader.last_used = Instant::now();
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.insert(partition, reader);
    }

    /// Waits up to [`IDLE_POLL`] for messages and buffers what is there (up to a batch).
    fn fetch(&self, reader: &mut Reader) -> Result<(), DataflowError> {
        let mut messages = match reader.messages.take() {
            Some(messages) => messages,
            None => {
                tracing::debug!(stream = %self.url.name, start = reader.position + 1, "creating a consumer");
                let (js, name, start) = (self.url.client()?, self.url.name.clone(), reader.position + 1);
                run(async move {
                    let js = jetstream(js);
                    let stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
                    let config = OrderedConfig {
                        deliver_policy: DeliverPolicy::ByStartSequence {
                            start_sequence: start,
                        },
                        ..Default::default()
                    };
                    let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
                    consumer.messages().await.map_err(|e| e.to_string())
                })
                .map_err(|e| self.url.error("creating a consumer", e))?
            }
        };
        let (messages, fetched) = run(async move {
            let mut fetched = Vec::new();
            let mut end = None;
            let first = tokio::time::timeout(IDLE_POLL, messages.next()).await;
            let mut next = match first {
                Err(_) => return (messages, Ok((fetched, end))),
                Ok(next) => next,
            };
            loop {
                match next {
                    Some(Ok(message)) => match message.info() {
                        Ok(info) => {
                            let seq = info.stream_sequence;
                            end = Some(seq.saturating_add(info.pending));
                            fetched.push((seq, message.message.payload.clone()));
                        }
                        Err(e) => return (messages, Err(e.to_string())),
                    },
                    Some(Err(e)) => return (messages, Err(e.to_string())),
                    None => return (messages, Err("the consumer ended".to_string())),
                }
                if fetched.len() >= FETCH_BATCH {
                    break;
                }
                // Take what is already there without waiting again.
                match messages.next().now_or_never() {
                    Some(more) => next = more,
                    None => break,
                }
            }
            (messages, Ok((fetched, end)))
        });
        let (fetched, end) = fetched.map_err(|e| self.url.error("reading", e))?;
        reader.messages = Some(messages);
        reader.buffered.extend(fetched);
        // The stream's end as last seen: the newest message's `seq + pending`, kept as it was
        // by a wait that brought nothing, and never before what is already fetched.
        let last = reader.buffered.back().map_or(reader.position, |(seq, _)| *seq);
        reader.end = Some(end.max(reader.end).map_or(last, |end| end.max(last)));
        Ok(())
    }
}

impl Source for JetStreamSource {
    type Item = String;

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        self.read_interruptible(ctx, offset, &|| false, emit)
    }

    fn read_interruptible(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        interrupted: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        super::check_context(ctx)?;
        tracing::debug!(
            partition = ctx.partition,
            offset = offset.0,
            "JetStream source reading"
        );
        let limit = self.limit()?;
        let (p, n) = (ctx.partition as u64, ctx.num_partitions as u64);
        let mut reader = self.take_reader(ctx.partition, offset.0);
        let mut failing_since: Option<Instant> = None;
        let mut past_limit = false;
        loop {
            while let Some((seq, payload)) = reader.buffered.pop_front() {
                if limit.is_some_and(|last| seq > last) {
                    past_limit = true;
                    break;
                }
                reader.position = seq;
                if seq % n != p {
                    continue;
                }
                let line = String::from_utf8_lossy(&payload).into_owned();
                if emit(line) == Flow::Stop {
                    self.put_back(ctx.partition, reader);
                    return Ok(SourceEnd::Stopped(SourceOffset(seq)));
                }
            }
            if let Some(last) = limit {
                // At the limit, or past it (the messages up to it were deleted).
                if past_limit || reader.position >= last {
                    return Ok(SourceEnd::Exhausted(SourceOffset(reader.position.max(last))));
                }
            }
            if interrupted() {
                let at = reader.position;
                self.put_back(ctx.partition, reader);
                return Ok(SourceEnd::Stopped(SourceOffset(at)));
            }
            match self.fetch(&mut reader) {
                Ok(()) => {
                    if let Some(end) = reader.end {
                        let end = limit.map_or(end, |last| end.min(last));
                        let lag = share_between(reader.position, end, p, n);
                        self.lags
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(ctx.partition, lag);
                    }
                    tracing::trace!(
                        partition = ctx.partition,
                        buffered = reader.buffered.len(),
                        "fetched"
                    );
                    failing_since = None
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= RETRY_FOR {
                        return Err(e);
                    }
                    tracing::warn!(partition = ctx.partition, error = %e, "JetStream source retrying");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    fn validate(&self) -> Result<(), DataflowError> {
        self.last_sequence().map(|_| ())
    }

    fn lag(&self, partition: usize) -> Option<u64> {
        self.lags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .copied()
    }

    fn is_bounded(&self) -> bool {
        self.until != Until::Forever
    }
}

/// How many sequences `s` in `after < s <= upto` partition `p` of `n` takes (`s % n == p`).
fn share_between(after: u64, upto: u64, p: u64, n: u64) -> u64 {
    // Sequences `1..=x` that are `p` modulo `n` (sequences start at 1).
    let upto_x = |x: u64| match p {
        0 => x / n,
        _ if x >= p => (x - p) / n + 1,
        _ => 0,
    };
    upto_x(upto).saturating_sub(upto_x(after))
}

#[cfg(test)]
#[path = "jetstream_tests.rs"]
mod tests;
