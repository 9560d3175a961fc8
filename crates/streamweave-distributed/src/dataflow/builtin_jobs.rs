//! The built-in jobs of `swd`: `wordcount` and `repartition`, over text files in a directory
//! or under an object store prefix ([`TextInput`], [`TextOutput`]) or over a NATS JetStream
//! stream (chosen by the input's and output's URLs), written with the public builder like any
//! user job. Public as `dataflow::jobs`.

use super::sinks::JetStreamSink;
use super::sources::{JetStreamSource, Throttled, Until, DEFAULT_MIN_SPLIT};
use super::{
    DataflowError, HashPartitioner, Job, JobRegistry, JobSpec, Sink, SinkContext, SinkWriter, Stream,
    TextInput, TextOutput,
};

/// A numeric parameter of the job, or `default`.
fn number(spec: &JobSpec, name: &str, what: &str, default: u64) -> Result<u64, DataflowError> {
    match spec.params.get(name) {
        Some(value) => value
            .parse()
            .map_err(|_| DataflowError::InvalidJob(format!("parameter {name}={value:?} is not {what}"))),
        None => Ok(default),
    }
}

/// The job's input: a `nats://HOST:PORT/STREAM` JetStream stream (parameter `until`: `end` or
/// a sequence; unbounded without it), or text files in a directory or under an object store
/// prefix such as `s3://bucket/in` (parameter `min_split`: the smallest byte range a file is
/// cut into; default 8 MiB). Both take `rate` (records per second per source partition).
fn input(spec: &JobSpec) -> Result<Stream<String>, DataflowError> {
    let rate = number(spec, "rate", "a number of records per second", 0)?;
    let until = Until::parse(spec.params.get("until").map(String::as_str))?;
    if let Some(stream) = JetStreamSource::parse(spec.require_input()?, until)? {
        return Ok(Stream::from_source(Throttled::new(stream, rate)));
    }
    let min_split = number(spec, "min_split", "a number of bytes", DEFAULT_MIN_SPLIT)?;
    Ok(Stream::from_source(Throttled::new(
        TextInput::new(spec.require_input()?, min_split)?,
        rate,
    )))
}

/// The job's output: a `nats://HOST:PORT/SUBJECT` (message ids start with the parameter
/// `sink_id`, by default the job name and a hash of the spec), or part files in a directory or
/// under an object store prefix.
fn output(spec: &JobSpec) -> Result<LineSink, DataflowError> {
    let id = match spec.params.get("sink_id") {
        Some(id) => id.clone(),
        None => {
            let bytes = postcard::to_stdvec(spec).map_err(|e| DataflowError::Encoding(e.to_string()))?;
            format!("{}-{:016x}", spec.name, twox_hash::XxHash64::oneshot(0, &bytes))
        }
    };
    match JetStreamSink::parse(spec.require_output()?, &id)? {
        Some(sink) => Ok(LineSink::Nats(sink)),
        None => Ok(LineSink::Text(TextOutput::new(spec.require_output()?)?)),
    }
}

/// Where the built-in jobs write their lines, chosen by the output's URL.
#[derive(Clone, Debug)]
enum LineSink {
    Text(TextOutput),
    Nats(JetStreamSink),
}

impl Sink for LineSink {
    type Item = String;

    fn open(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<String>>, DataflowError> {
        match self {
            LineSink::Text(sink) => sink.open(ctx),
            LineSink::Nats(sink) => sink.open(ctx),
        }
    }

    fn validate(&self) -> Result<(), DataflowError> {
        match self {
            LineSink::Text(sink) => sink.validate(),
            LineSink::Nats(sink) => sink.validate(),
        }
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        match self {
            LineSink::Text(sink) => sink.commit_epochs(partition, upto),
            LineSink::Nats(sink) => sink.commit_epochs(partition, upto),
        }
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        match self {
            LineSink::Text(sink) => sink.discard_after(partition, after),
            LineSink::Nats(sink) => sink.discard_after(partition, after),
        }
    }
}

/// Word count: words are maximal runs of non-whitespace characters (`char::is_whitespace`);
/// output lines `word<TAB>count`, one per distinct word, when the input ends. Parameter
/// `rate`: lines per second per source partition (default unlimited).
///
/// On an unbounded input (a JetStream stream without `until`) it is a changelog: at each
/// checkpoint, `word<TAB>count` with the new count of every word that changed in the epoch.
pub fn wordcount(spec: &JobSpec) -> Result<Job, DataflowError> {
    let (input, output) = (input(spec)?, output(spec)?);
    let counts = match input.is_bounded() {
        true => input.count_str_keys(|line: &String, emit| for_each_word(line, emit)),
        false => input.count_str_keys_changelog(|line: &String, emit| for_each_word(line, emit)),
    };
    Ok(counts.map(|(word, n)| format!("{word}\t{n}")).sink(output))
}

/// Calls `f` with every word of `line`: the maximal runs of characters that are not
/// whitespace in the sense of `char::is_whitespace`, exactly as `str::split_whitespace`, with a
/// byte-level fast path for ASCII lines.
///
/// ```
/// let mut words = Vec::new();
/// streamweave_distributed::dataflow::jobs::for_each_word("a\tb\u{a0}c  d\r", |w| words.push(w.to_string()));
/// assert_eq!(words, ["a", "b", "c", "d"]);
/// ```
pub fn for_each_word(line: &str, mut f: impl FnMut(&str)) {
    if !line.is_ascii() {
        line.split_whitespace().for_each(f);
        return;
    }
    // ASCII whitespace per char::is_whitespace: tab, LF, VT, FF, CR and space.
    let bytes = line.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        let space = matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
        match (space, start) {
            (true, Some(s)) => {
                f(&line[s..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        f(&line[s..]);
    }
}

/// Repartition: every input line goes, by a stable hash of the line, to the partition that owns
/// it and is written there; the output is the input's lines, reordered.
pub fn repartition(spec: &JobSpec) -> Result<Job, DataflowError> {
    let output = output(spec)?;
    Ok(input(spec)?.exchange(HashPartitioner).sink(output))
}

/// A registry holding the built-in jobs.
///
/// ```
/// let registry = streamweave_distributed::dataflow::jobs::builtin();
/// assert_eq!(registry.names(), vec!["repartition", "wordcount"]);
/// ```
pub fn builtin() -> JobRegistry {
    let mut registry = JobRegistry::new();
    registry.register(
        "wordcount",
        "count words in a directory of text files (word<TAB>count)",
        wordcount,
    );
    registry.register(
        "repartition",
        "route every line by a hash of the line to its partition",
        repartition,
    );
    registry
}
