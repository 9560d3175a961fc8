//! Jobs by name: a [`JobSpec`] says which job and with what input, output and parameters; a
//! [`JobRegistry`] turns it into a runnable [`Job`]. The coordinator only carries the spec; every
//! worker builds the job from its own registry, so jobs are Rust code compiled into the binary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{DataflowError, Job};
use crate::protocol::JobSpecWire;

/// Which job to run and with what.
///
/// ```
/// use streamweave_distributed::dataflow::JobSpec;
/// let spec = JobSpec::new("wordcount").with_input("data/in").with_output("data/out");
/// assert_eq!(spec.name, "wordcount");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The registered job name.
    pub name: String,
    /// The input (a directory for the built-in jobs).
    pub input: Option<PathBuf>,
    /// The output (a directory for the built-in jobs).
    pub output: Option<PathBuf>,
    /// Free-form parameters for the job function.
    pub params: BTreeMap<String, String>,
}

impl JobSpec {
    /// A spec for `name` without input, output or parameters.
    pub fn new(name: impl Into<String>) -> Self {
        JobSpec {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Sets the input.
    pub fn with_input(mut self, input: impl Into<PathBuf>) -> Self {
        self.input = Some(input.into());
        self
    }

    /// Sets the output.
    pub fn with_output(mut self, output: impl Into<PathBuf>) -> Self {
        self.output = Some(output.into());
        self
    }

    /// The input, or an error naming what is missing.
    pub fn require_input(&self) -> Result<&PathBuf, DataflowError> {
        self.input
            .as_ref()
            .ok_or_else(|| DataflowError::InvalidJob(format!("job {} needs an input", self.name)))
    }

    /// The output, or an error naming what is missing.
    pub fn require_output(&self) -> Result<&PathBuf, DataflowError> {
        self.output
            .as_ref()
            .ok_or_else(|| DataflowError::InvalidJob(format!("job {} needs an output", self.name)))
    }
}

/// A spec as the coordinator sends it in `StartJob`: the wire has its own plain type, so the
/// protocol depends on nothing above it.
impl From<JobSpec> for JobSpecWire {
    fn from(spec: JobSpec) -> Self {
        let JobSpec {
            name,
            input,
            output,
            params,
        } = spec;
        JobSpecWire {
            name,
            input,
            output,
            params,
        }
    }
}

/// A spec as a worker receives it in `StartJob`.
impl From<JobSpecWire> for JobSpec {
    fn from(wire: JobSpecWire) -> Self {
        let JobSpecWire {
            name,
            input,
            output,
            params,
        } = wire;
        JobSpec {
            name,
            input,
            output,
            params,
        }
    }
}

type BuildFn = Arc<dyn Fn(&JobSpec) -> Result<Job, DataflowError> + Send + Sync>;

/// Job functions by name.
///
/// ```
/// use streamweave_distributed::dataflow::sinks::CollectorSink;
/// use streamweave_distributed::dataflow::sources::CollectionSource;
/// use streamweave_distributed::dataflow::{JobRegistry, JobSpec, Stream};
///
/// let mut registry = JobRegistry::new();
/// registry.register("shout", "upper-cases a fixed list", |_spec: &JobSpec| {
///     let words = CollectionSource::new(vec!["a".to_string(), "b".to_string()]);
///     Ok(Stream::from_source(words).map(|w: String| w.to_uppercase()).sink(CollectorSink::new()))
/// });
/// assert!(registry.build(&JobSpec::new("shout")).is_ok());
/// assert!(registry.build(&JobSpec::new("whisper")).is_err());
/// ```
#[derive(Clone, Default)]
pub struct JobRegistry {
    jobs: BTreeMap<String, (String, BuildFn)>,
}

impl JobRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        JobRegistry::default()
    }

    /// Registers (or replaces) a job function under `name`.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        build: impl Fn(&JobSpec) -> Result<Job, DataflowError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.jobs
            .insert(name.into(), (description.into(), Arc::new(build)));
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }

    /// Names with their descriptions, sorted by name.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.jobs
            .iter()
            .map(|(n, (d, _))| (n.clone(), d.clone()))
            .collect()
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.jobs.contains_key(name)
    }

    /// Builds the job a spec names.
    pub fn build(&self, spec: &JobSpec) -> Result<Job, DataflowError> {
        match self.jobs.get(&spec.name) {
            Some((_, build)) => build(spec),
            None => Err(DataflowError::InvalidJob(format!(
                "unknown job {:?} (this binary has: {})",
                spec.name,
                if self.jobs.is_empty() {
                    "none".to_string()
                } else {
                    self.names().join(", ")
                }
            ))),
        }
    }
}

impl std::fmt::Debug for JobRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRegistry")
            .field("jobs", &self.names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire type and the user-facing type encode to the same bytes, and convert losslessly:
    /// splitting them changed no message on the wire.
    #[test]
    fn the_wire_spec_encodes_like_the_spec_and_round_trips() {
        let mut spec = JobSpec::new("wordcount")
            .with_input("data/in")
            .with_output("data/out");
        spec.params.insert("rate".to_string(), "10".to_string());
        let wire = JobSpecWire::from(spec.clone());
        let a = postcard::to_stdvec(&spec).expect("encode spec");
        let b = postcard::to_stdvec(&wire).expect("encode wire spec");
        assert_eq!(a, b);
        assert_eq!(JobSpec::from(wire), spec);
    }
}
