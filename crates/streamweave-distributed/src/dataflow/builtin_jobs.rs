//! The built-in jobs of `swd`: `wordcount` and `repartition`, both over text files in a
//! directory or under an object store prefix ([`TextInput`], [`TextOutput`]), written with the
//! public builder like any user job. Public as `dataflow::jobs`.

use super::sources::{Throttled, DEFAULT_MIN_SPLIT};
use super::{DataflowError, HashPartitioner, Job, JobRegistry, JobSpec, Stream, TextInput, TextOutput};

/// A numeric parameter of the job, or `default`.
fn number(spec: &JobSpec, name: &str, what: &str, default: u64) -> Result<u64, DataflowError> {
    match spec.params.get(name) {
        Some(value) => value
            .parse()
            .map_err(|_| DataflowError::InvalidJob(format!("parameter {name}={value:?} is not {what}"))),
        None => Ok(default),
    }
}

/// The job's input (a directory, or an object store prefix such as `s3://bucket/in`) with the
/// optional parameters `rate` (lines per second per source partition) and `min_split` (the
/// smallest byte range a file is cut into; default 8 MiB).
fn input(spec: &JobSpec) -> Result<Throttled<TextInput>, DataflowError> {
    let rate = number(spec, "rate", "a number of records per second", 0)?;
    let min_split = number(spec, "min_split", "a number of bytes", DEFAULT_MIN_SPLIT)?;
    Ok(Throttled::new(
        TextInput::new(spec.require_input()?, min_split)?,
        rate,
    ))
}

/// Word count: words are maximal runs of non-whitespace characters (`char::is_whitespace`);
/// output lines `word<TAB>count`, one per distinct word, when the input ends. Parameter
/// `rate`: lines per second per source partition (default unlimited).
pub fn wordcount(spec: &JobSpec) -> Result<Job, DataflowError> {
    let output = TextOutput::new(spec.require_output()?)?;
    Ok(Stream::from_source(input(spec)?)
        .count_str_keys(|line: &String, emit| for_each_word(line, emit))
        .map(|(word, n)| format!("{word}\t{n}"))
        .sink(output))
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
    let output = TextOutput::new(spec.require_output()?)?;
    Ok(Stream::from_source(input(spec)?)
        .exchange(HashPartitioner)
        .sink(output))
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
