//! [`JetStreamSink`]: publishes each record (a line) to a NATS subject; the stream that captures
//! the subject is the user's. With checkpoints it is exactly-once:
//!
//! ```text
//! write(line)        -> the partition's buffer for the running epoch (memory: what one checkpoint
//!                       interval brings to the partition)
//! pre_commit(e)      -> the buffer, as chunks of at most CHUNK_BYTES, published to the spool stream
//!                       SWD_SPOOL, subject swd.spool.<id>.<q>.<e>, acks awaited: durable, shared
//!                       by every worker, and not output
//! commit_epochs(q,u) -> each spooled epoch e <= u of q, in order: its records published to SUBJECT
//!                       with Nats-Msg-Id <id>.<q>.<e>.<i>, every ack awaited, then the epoch's
//!                       spool purged
//! discard_after(q,c) -> spooled epochs > c of q purged (a restored attempt writes them again)
//! ```
//!
//! A commit repeated after a crash (or a publish retried after a lost ack) sends the same ids,
//! which the target stream's duplicate window (JetStream's default: 2 minutes) drops: the window
//! must outlast the time from a failed commit to its repetition. `<id>` names the job's output
//! (`sink_id`): two runs with the same id within the window would drop each other's records.
//! The spool lives in JetStream rather than in a worker's memory because whichever worker owns
//! the partition when the checkpoint completes, or restores it after a crash, does the commit.
//!
//! Without checkpoints, `commit` publishes the partition's records once at the end, without ids
//! (a failed job restarts from the beginning: at-least-once).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, StorageType, Stream};
use async_nats::jetstream::Context;
use bytes::Bytes;
use futures::StreamExt;

use crate::dataflow::jetstream::{jetstream, run, NatsUrl};
use crate::dataflow::{DataflowError, Sink, SinkContext, SinkWriter};

/// The stream holding pre-committed epochs.
const SPOOL_STREAM: &str = "SWD_SPOOL";

/// The subjects of the spool stream.
const SPOOL_SUBJECTS: &str = "swd.spool.>";

/// The largest spool message (JetStream's default maximum payload is 1 MiB).
const CHUNK_BYTES: usize = 512 * 1024;

/// Publishes in flight, at most, before waiting for the oldest acknowledgement.
const IN_FLIGHT: usize = 4096;

/// How long a commit keeps retrying (the server restarting) before it fails the attempt.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Pause between two tries.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Publishes a job's lines to `nats://HOST:PORT/SUBJECT`, as described in the module docs.
///
/// ```
/// use std::path::Path;
/// use streamweave_distributed::dataflow::sinks::JetStreamSink;
///
/// let sink = JetStreamSink::parse(Path::new("nats://127.0.0.1:4222/out.lines"), "wordcount-1")?;
/// assert!(sink.is_some());
/// # Ok::<(), streamweave_distributed::dataflow::DataflowError>(())
/// ```
#[derive(Clone, Debug)]
pub struct JetStreamSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: NatsUrl,
    /// The `sink_id`, as a subject token.
    id: String,
}

impl JetStreamSink {
    /// A sink for `nats://HOST:PORT/SUBJECT` whose message ids start with `id` (characters
    /// other than ASCII letters, digits, `-` and `_` become `_`); `None` if `output` is not a
    /// `nats://` URL.
    pub fn parse(output: &Path, id: &str) -> Result<Option<JetStreamSink>, DataflowError> {
        let id: String = id
            .chars()
            .map(|c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '_',
            })
            .collect();
        Ok(NatsUrl::parse(output)?.map(|url| JetStreamSink {
            inner: Arc::new(Inner { url, id }),
        }))
    }

    fn spool_subject(&self, partition: usize, epoch: u64) -> String {
        format!("swd.spool.{}.{partition}.{epoch}", self.inner.id)
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> DataflowError {
        self.inner.url.error(what, e)
    }

    /// Runs `f` with a JetStream context and the spool stream (created if missing).
    fn with_spool<T, F, Fut>(&self, what: &str, f: F) -> Result<T, DataflowError>
    where
        F: FnOnce(Context, Stream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, String>> + Send,
        T: Send + 'static,
    {
        let client = self.inner.url.client()?;
        run(async move {
            let js = jetstream(client);
            let spool = js
                .get_or_create_stream(Config {
                    name: SPOOL_STREAM.to_string(),
                    subjects: vec![SPOOL_SUBJECTS.to_string()],
                    storage: StorageType::File,
                    allow_direct: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("opening the spool stream {SPOOL_STREAM}: {e}"))?;
            f(js, spool).await
        })
        .map_err(|e| self.error(what, e))
    }

    /// Partition `partition`'s spooled epochs, sorted, with their chunk counts.
    fn spooled(&self, partition: usize) -> Result<Vec<(u64, usize)>, DataflowError> {
        let filter = format!("swd.spool.{}.{partition}.*", self.inner.id);
        self.with_spool("listing spooled epochs", move |_, spool| async move {
            let mut subjects = spool
                .info_with_subjects(&filter)
                .await
                .map_err(|e| e.to_string())?;
            let mut epochs = Vec::new();
            while let Some(entry) = subjects.next().await {
                let (subject, count) = entry.map_err(|e| e.to_string())?;
                if let Some(epoch) = subject.rsplit('.').next().and_then(|e| e.parse().ok()) {
                    epochs.push((epoch, count));
                }
            }
            epochs.sort_unstable();
            Ok(epochs)
        })
    }

    /// Phase one: the epoch's records into the spool, durably. Each chunk has an id, so a
    /// chunk published again after a lost ack (the server restarting) is stored once.
    fn spool(&self, ctx: &SinkContext, epoch: u64, records: Vec<String>) -> Result<(), DataflowError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut chunks = Vec::new();
        let mut chunk: Vec<String> = Vec::new();
        let mut size = 0;
        for record in records {
            if size + record.len() > CHUNK_BYTES && !chunk.is_empty() {
                chunks.push(encode(&std::mem::take(&mut chunk))?);
                size = 0;
            }
            size += record.len() + 4;
            chunk.push(record);
        }
        chunks.push(encode(&chunk)?);
        let subject = self.spool_subject(ctx.partition, epoch);
        // An older attempt's leftovers of this epoch were purged by discard_after when this
        // attempt opened the partition; the attempt in the ids keeps them apart meanwhile.
        let ids = format!("{subject}.{}", ctx.attempt);
        retrying(ctx.partition, "spooling an epoch", || {
            let (subject, ids, chunks) = (subject.clone(), ids.clone(), chunks.clone());
            self.with_spool("spooling an epoch", move |js, _| async move {
                let mut acks = Vec::new();
                for (i, chunk) in chunks.into_iter().enumerate() {
                    let message = PublishMessage::build()
                        .message_id(format!("{ids}.{i}"))
                        .payload(chunk);
                    acks.push(
                        js.send_publish(subject.clone(), message)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                for ack in acks {
                    ack.await.map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
    }

    /// Publishes one spooled epoch to the target subject, acks awaited, then purges it.
    fn publish_epoch(&self, partition: usize, epoch: u64, chunks: usize) -> Result<(), DataflowError> {
        let (spool_subject, target) = (self.spool_subject(partition, epoch), self.inner.url.name.clone());
        let ids = format!("{}.{partition}.{epoch}", self.inner.id);
        self.with_spool("committing an epoch", move |js, spool| async move {
            let mut in_flight = VecDeque::new();
            let (mut seq, mut index) = (0u64, 0u64);
            for _ in 0..chunks {
                let message = spool
                    .direct_get_next_for_subject(&spool_subject, Some(seq + 1))
                    .await
                    .map_err(|e| format!("reading the spool: {e}"))?;
                seq = message.sequence;
                let records: Vec<String> =
                    postcard::from_bytes(&message.payload).map_err(|e| format!("a spool chunk: {e}"))?;
                for record in records {
                    let publish = PublishMessage::build()
                        .message_id(format!("{ids}.{index}"))
                        .payload(Bytes::from(record));
                    index += 1;
                    let ack = js
                        .send_publish(target.clone(), publish)
                        .await
                        .map_err(|e| e.to_string())?;
                    in_flight.push_back(ack);
                    if in_flight.len() >= IN_FLIGHT {
                        if let Some(ack) = in_flight.pop_front() {
                            ack.await.map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            for ack in in_flight {
                ack.await.map_err(|e| e.to_string())?;
            }
            spool
                .purge()
                .filter(&spool_subject)
                .await
                .map_err(|e| format!("purging the spool: {e}"))?;
            Ok(())
        })
    }

    /// Publishes records without ids (no checkpoints).
    fn publish_plain(&self, records: Vec<String>) -> Result<(), DataflowError> {
        let (client, target) = (self.inner.url.client()?, self.inner.url.name.clone());
        run(async move {
            let js = jetstream(client);
            let mut in_flight = VecDeque::new();
            for record in records {
                in_flight.push_back(
                    js.publish(target.clone(), record.into())
                        .await
                        .map_err(|e| e.to_string())?,
                );
                if in_flight.len() >= IN_FLIGHT {
                    if let Some(ack) = in_flight.pop_front() {
                        ack.await.map_err(|e| e.to_string())?;
                    }
                }
            }
            for ack in in_flight {
                ack.await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })
        .map_err(|e| self.error("publishing", e))
    }
}

/// Runs `f` until it succeeds or has failed for [`RETRY_FOR`] (a server restarting); `f` must
/// be safe to repeat.
fn retrying(
    partition: usize,
    what: &str,
    mut f: impl FnMut() -> Result<(), DataflowError>,
) -> Result<(), DataflowError> {
    let started = Instant::now();
    loop {
        match f() {
            Err(e) if started.elapsed() < RETRY_FOR => {
                tracing::warn!(partition, error = %e, "JetStream sink retrying: {what}");
                std::thread::sleep(RETRY_PAUSE);
            }
            result => return result,
        }
    }
}

fn encode(records: &[String]) -> Result<Bytes, DataflowError> {
    postcard::to_stdvec(records)
        .map(Bytes::from)
        .map_err(|e| DataflowError::Encoding(e.to_string()))
}

impl Sink for JetStreamSink {
    type Item = String;

    fn open(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<String>>, DataflowError> {
        Ok(Box::new(JetStreamWriter {
            sink: self.clone(),
            ctx: *ctx,
            buffer: Vec::new(),
        }))
    }

    fn validate(&self) -> Result<(), DataflowError> {
        self.with_spool("checking the server", |_, _| async { Ok(()) })
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        // Repeating is safe: the ids make the target drop what it already has.
        retrying(partition, "committing", || {
            self.spooled(partition)?
                .into_iter()
                .take_while(|&(epoch, _)| epoch <= upto)
                .try_for_each(|(epoch, chunks)| self.publish_epoch(partition, epoch, chunks))
        })
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        for (epoch, _) in self.spooled(partition)? {
            if epoch > after {
                let subject = self.spool_subject(partition, epoch);
                self.with_spool("discarding an epoch", move |_, spool| async move {
                    spool.purge().filter(&subject).await.map_err(|e| e.to_string())?;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }
}

/// One partition's writer: buffers the running epoch.
struct JetStreamWriter {
    sink: JetStreamSink,
    ctx: SinkContext,
    buffer: Vec<String>,
}

impl SinkWriter<String> for JetStreamWriter {
    fn write(&mut self, item: String) -> Result<(), DataflowError> {
        self.buffer.push(item);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), DataflowError> {
        self.sink.publish_plain(self.buffer)
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<(), DataflowError> {
        let records = std::mem::take(&mut self.buffer);
        self.sink.spool(&self.ctx, epoch, records)
    }
}

#[cfg(test)]
#[path = "jetstream_tests.rs"]
mod tests;
