//! The writer of one partition and attempt: lines gather in a buffer; an epoch (or, without
//! checkpoints, the whole output) that stays under [`PART`] is uploaded with one PUT straight to
//! its name, a larger one streams as a multipart upload of a temporary (one part in flight
//! while the next fills) that is completed and then copied to its name.

use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, PutPayload};
use tokio::task::JoinHandle;

use super::ObjectTextSink;
use crate::dataflow::{DataflowError, SinkContext, SinkWriter};
use crate::storage::{block_on, spawn};

/// The size of a multipart upload's parts (S3 wants at least 5 MiB, the last part excepted).
pub(super) const PART: usize = 8 << 20;

/// A multipart upload of the temporary, once the buffer overflowed.
struct Staged {
    upload: Box<dyn MultipartUpload>,
    /// The part being uploaded.
    in_flight: Option<JoinHandle<Result<(), object_store::Error>>>,
}

pub(super) struct ObjectTextWriter {
    sink: ObjectTextSink,
    partition: usize,
    attempt: u64,
    buf: Vec<u8>,
    staged: Option<Staged>,
    /// Whether anything was written since the last pre-commit.
    dirty: bool,
    /// Set once committed: nothing more may be written.
    committed: bool,
}

impl ObjectTextWriter {
    pub(super) fn new(sink: ObjectTextSink, ctx: &SinkContext) -> Self {
        ObjectTextWriter {
            sink,
            partition: ctx.partition,
            attempt: ctx.attempt,
            buf: Vec::new(),
            staged: None,
            dirty: false,
            committed: false,
        }
    }

    fn temp_key(&self) -> ObjectPath {
        self.sink.temp_key(self.partition, self.attempt)
    }

    fn error(&self, operation: &'static str, e: object_store::Error) -> DataflowError {
        self.sink.location.error(operation, &self.temp_key(), e).into()
    }

    /// Waits for the part in flight, if any.
    fn wait_part(&mut self) -> Result<(), DataflowError> {
        let Some(fetch) = self.staged.as_mut().and_then(|s| s.in_flight.take()) else {
            return Ok(());
        };
        match block_on(fetch) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.error("upload part of", e)),
            Err(e) => Err(DataflowError::Exchange(format!("part upload cancelled: {e}"))),
        }
    }

    /// Sends the buffer as the next part of the temporary's multipart upload (starting it).
    fn send_part(&mut self) -> Result<(), DataflowError> {
        if self.staged.is_none() {
            let (store, key) = (self.sink.location.store.clone(), self.temp_key());
            let upload = block_on(async move { store.put_multipart(&key).await })
                .map_err(|e| self.error("start multipart upload of", e))?;
            self.staged = Some(Staged {
                upload,
                in_flight: None,
            });
        }
        self.wait_part()?;
        let payload = PutPayload::from(std::mem::take(&mut self.buf));
        if let Some(staged) = self.staged.as_mut() {
            let part = staged.upload.put_part(payload);
            staged.in_flight = Some(spawn(part));
        }
        Ok(())
    }

    /// Uploads what was written under `target`: one PUT, or the multipart upload completed and
    /// its temporary copied to `target` and deleted.
    fn finish(&mut self, target: &ObjectPath) -> Result<(), DataflowError> {
        let location = &self.sink.location;
        if self.staged.is_none() {
            let (store, key) = (location.store.clone(), target.clone());
            let payload = PutPayload::from(std::mem::take(&mut self.buf));
            return block_on(async move { store.put(&key, payload).await })
                .map(|_| ())
                .map_err(|e| location.error("put", target, e).into());
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        self.wait_part()?;
        if let Some(mut staged) = self.staged.take() {
            block_on(async move { staged.upload.complete().await })
                .map_err(|e| self.error("complete multipart upload of", e))?;
        }
        let temp = self.temp_key();
        self.sink.copy(&temp, target)?;
        self.sink.delete(&temp)
    }
}

impl SinkWriter<String> for ObjectTextWriter {
    fn write(&mut self, item: String) -> Result<(), DataflowError> {
        assert!(!self.committed, "written after commit");
        self.dirty = true;
        self.buf.extend_from_slice(item.as_bytes());
        self.buf.push(b'\n');
        if self.buf.len() >= PART {
            self.send_part()?;
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), DataflowError> {
        let target = self
            .sink
            .location
            .key(&super::super::names::final_name(self.partition));
        self.finish(&target)?;
        self.committed = true;
        // Earlier attempts of this partition may have left a temporary (a crash between
        // completing and copying one); a newer attempt's belongs to a live writer.
        let (_, temporaries) = self.sink.work_listing(self.partition)?;
        for attempt in temporaries.into_iter().filter(|a| *a < self.attempt) {
            self.sink.delete(&self.sink.temp_key(self.partition, attempt))?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<(), DataflowError> {
        if !self.dirty {
            return Ok(());
        }
        let target = self.sink.pending_key(self.partition, epoch);
        self.finish(&target)?;
        self.dirty = false;
        Ok(())
    }
}

impl Drop for ObjectTextWriter {
    fn drop(&mut self) {
        if let Some(mut staged) = self.staged.take() {
            // Abandoned before its upload completed: it never becomes an object. Aborting frees
            // the parts; best-effort and without waiting (the store may be unreachable).
            if let Some(part) = staged.in_flight.take() {
                part.abort();
            }
            drop(spawn(async move {
                let _ = staged.upload.abort().await;
            }));
        }
    }
}
