//! The text sources' line splitting: in-memory files planned into splits for some partitions,
//! read partition by partition, checked against the files' lines.

use std::io::Cursor;

use streamweave_distributed::dataflow::sources::{plan_splits_min, Split};
use streamweave_distributed::dataflow::{DataflowError, Flow, SourceEnd, SourceOffset};
use streamweave_distributed::fuzzing::read_text_share;

/// Reads `data` — `[partitions, min_split, stop_after, content...]`, the content cut into
/// files at each `\0` — as a text source of that many partitions. Over all partitions every
/// line of every file is read exactly once; within a partition, stopping after `stop_after`
/// lines and resuming from the offset returned gives the same lines as one read, and resuming
/// from the end gives none.
pub fn lines(data: &[u8]) {
    let [partitions, min_split, stop_after, content @ ..] = data else {
        return;
    };
    let partitions = usize::from(partitions % 8) + 1;
    let files: Vec<(String, &[u8])> = content
        .split(|b| *b == 0)
        .take(6)
        .enumerate()
        .map(|(i, bytes)| (format!("f{i}"), bytes))
        .collect();
    let listing: Vec<(String, u64)> = files.iter().map(|(n, b)| (n.clone(), b.len() as u64)).collect();
    let plan = plan_splits_min(&listing, partitions, u64::from(*min_split));
    assert_eq!(plan.len(), partitions);

    let mut expected: Vec<String> = files.iter().flat_map(|(_, b)| file_lines(b)).collect();
    let mut read = Vec::new();
    for share in &plan {
        let (all, end) = read_from(&files, share, SourceOffset(0), None);
        let SourceEnd::Exhausted(total) = end else {
            panic!("a read without a stop ended {end:?}");
        };
        let (head, stopped) = read_from(&files, share, SourceOffset(0), Some(usize::from(*stop_after)));
        if let SourceEnd::Stopped(at) = stopped {
            let (tail, tail_end) = read_from(&files, share, at, None);
            assert_eq!(tail_end, SourceEnd::Exhausted(total));
            assert_eq!(
                [head, tail].concat(),
                all,
                "resuming from {at:?} changed the lines"
            );
        }
        let (none, _) = read_from(&files, share, total, None);
        assert!(none.is_empty(), "resuming from the end {total:?} read {none:?}");
        read.extend(all);
    }
    expected.sort();
    read.sort();
    assert_eq!(
        read, expected,
        "the partitions did not read each line exactly once"
    );
}

/// The lines of a file: split at `\n`, a last line without one included, invalid UTF-8
/// replaced.
fn file_lines(bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// The lines of one partition's share from `offset`, stopping after `stop_after` lines.
fn read_from(
    files: &[(String, &[u8])],
    share: &[Split<String>],
    offset: SourceOffset,
    stop_after: Option<usize>,
) -> (Vec<String>, SourceEnd) {
    let open = |split: &Split<String>| {
        let (name, bytes) = files
            .iter()
            .find(|(n, _)| *n == split.path)
            .expect("the plan names a listed file");
        Ok::<_, DataflowError>((name.clone(), Cursor::new(*bytes)))
    };
    let mut lines = Vec::new();
    let mut emit = |line: String| {
        lines.push(line);
        match stop_after {
            Some(n) if lines.len() >= n => Flow::Stop,
            _ => Flow::Continue,
        }
    };
    let end = read_text_share(share, offset, open, &mut emit).expect("in-memory files read");
    (lines, end)
}
