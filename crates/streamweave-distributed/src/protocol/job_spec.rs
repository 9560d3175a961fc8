//! The job a `StartJob` message names, as it travels: plain data with no behaviour, so the wire
//! format depends on nothing above it. The dataflow layer converts to and from its user-facing
//! `JobSpec` at the edges (`dataflow/registry.rs`); the encoding is the same postcard bytes as that
//! type's, field for field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A job spec on the wire: which registered job to run, with what input, output and parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpecWire {
    /// The registered job name.
    pub name: String,
    /// The input (a directory for the built-in jobs).
    pub input: Option<PathBuf>,
    /// The output (a directory for the built-in jobs).
    pub output: Option<PathBuf>,
    /// Free-form parameters for the job function.
    pub params: BTreeMap<String, String>,
}
