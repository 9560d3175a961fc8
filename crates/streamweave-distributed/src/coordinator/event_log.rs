//! An append-only JSON-lines record of membership and ownership changes in the data directory
//! (`events.jsonl`), so operators and tests can replay who owned what, when.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::engine::ClusterEvent;
use crate::types::Generation;

/// The event log's file name inside the data directory.
pub const EVENT_LOG_FILE: &str = "events.jsonl";

#[derive(Serialize)]
struct Line<'a> {
    ts_ms: u128,
    /// The cluster's generation when the event was recorded (events that carry their own,
    /// grants and revocations, name the generation they create).
    cluster_generation: Generation,
    #[serde(flatten)]
    event: &'a ClusterEvent,
}

/// Appends events, one JSON object per line, each written whole with one call so a reader never
/// sees half a line.
#[derive(Debug)]
pub(crate) struct EventLog {
    path: PathBuf,
    file: File,
}

impl EventLog {
    pub(crate) fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(EVENT_LOG_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(EventLog { path, file })
    }

    pub(crate) fn append(&mut self, generation: Generation, event: &ClusterEvent) {
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let line = Line {
            ts_ms,
            cluster_generation: generation,
            event,
        };
        let result = serde_json::to_vec(&line)
            .map_err(std::io::Error::from)
            .and_then(|mut bytes| {
                bytes.push(b'\n');
                self.file.write_all(&bytes)
            });
        if let Err(e) = result {
            // The log is an aid, not the source of truth: a full disk must not stop the cluster.
            tracing::warn!(path = %self.path.display(), error = %e, "cannot append to the event log");
        }
    }
}
