//! Tests of split planning and reading: plans by example, reading by example, and properties
//! (every line read exactly once, whatever the partition count and offsets).

use std::fs;
use std::io;

use proptest::collection::vec;
use proptest::prelude::*;
use tempfile::tempdir;

use super::reader::ParkedShares;
use super::*;
use crate::dataflow::sources::read_lines;
use crate::dataflow::SourceContext;

fn split(path: &str, start: u64, end: u64) -> Split {
    Split {
        path: PathBuf::from(path),
        start,
        end,
    }
}

fn listing(files: &[(&str, u64)]) -> Vec<(PathBuf, u64)> {
    files
        .iter()
        .map(|(name, len)| (PathBuf::from(name), *len))
        .collect()
}

fn read_everything(source: &TextDirSource, num_partitions: usize) -> Vec<Vec<String>> {
    (0..num_partitions)
        .map(|p| read_lines(source, p, num_partitions, SourceOffset(0), None).0)
        .collect()
}

/// The lines of `content` by the source's rules, computed independently.
fn expected_lines(content: &[u8]) -> Vec<String> {
    if content.is_empty() {
        return Vec::new();
    }
    let mut parts: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    if content.ends_with(b"\n") {
        parts.pop();
    }
    parts
        .into_iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

#[test]
fn plan_three_files_eight_partitions_cuts_ranges_by_size() {
    let plan = plan_splits(&listing(&[("c", 10), ("a", 100), ("b", 50)]), 8);
    let expected: Vec<Vec<Split>> = vec![
        vec![split("a", 0, 20)],
        vec![split("a", 20, 40)],
        vec![split("a", 40, 60)],
        vec![split("a", 60, 80)],
        vec![split("a", 80, 100)],
        vec![split("b", 0, 25)],
        vec![split("b", 25, 50)],
        vec![split("c", 0, 10)],
    ];
    assert_eq!(plan, expected);
}

#[test]
fn plan_ten_files_four_partitions_balances_whole_files() {
    let sizes = [10, 90, 30, 30, 70, 5, 50, 20, 60, 40];
    let files: Vec<(PathBuf, u64)> = sizes
        .iter()
        .enumerate()
        .map(|(i, len)| (PathBuf::from(format!("f{i}")), *len))
        .collect();
    let whole = |i: usize| split(&format!("f{i}"), 0, sizes[i]);
    let expected = vec![
        vec![whole(1), whole(7)],           // 110 bytes
        vec![whole(3), whole(4)],           // 100
        vec![whole(0), whole(2), whole(8)], // 100
        vec![whole(5), whole(6), whole(9)], // 95
    ];
    assert_eq!(plan_splits(&files, 4), expected);
    let mut shuffled = files.clone();
    shuffled.reverse();
    shuffled.swap(2, 7);
    assert_eq!(
        plan_splits(&shuffled, 4),
        expected,
        "the plan ignores listing order"
    );
}

#[test]
fn plan_leaves_out_empty_files() {
    let files = listing(&[("e0", 0), ("a", 10), ("e1", 0)]);
    assert_eq!(
        plan_splits(&files, 2),
        vec![vec![split("a", 0, 5)], vec![split("a", 5, 10)]]
    );
    let files = listing(&[("e0", 0), ("a", 10), ("b", 20), ("e1", 0)]);
    assert_eq!(
        plan_splits(&files, 2),
        vec![vec![split("b", 0, 20)], vec![split("a", 0, 10)]]
    );
}

#[test]
fn plan_one_huge_file_and_one_tiny() {
    let plan = plan_splits(&listing(&[("tiny", 1), ("huge", 1_000_000_000_000)]), 4);
    let expected = vec![
        vec![split("huge", 0, 333_333_333_333)],
        vec![split("huge", 333_333_333_333, 666_666_666_666)],
        vec![split("huge", 666_666_666_666, 1_000_000_000_000)],
        vec![split("tiny", 0, 1)],
    ];
    assert_eq!(plan, expected);
}

#[test]
fn plan_with_little_or_no_data() {
    let none: Vec<Vec<Split>> = vec![vec![]; 3];
    assert_eq!(plan_splits(&listing(&[("a", 0), ("b", 0)]), 3), none);
    assert_eq!(plan_splits(&[], 3), none);
    assert!(plan_splits(&listing(&[("a", 5)]), 0).is_empty());
    let plan = plan_splits(&listing(&[("a", 2), ("b", 1)]), 6);
    let expected = vec![
        vec![split("a", 0, 1)],
        vec![],
        vec![split("a", 1, 2)],
        vec![],
        vec![split("b", 0, 1)],
        vec![],
    ];
    assert_eq!(plan, expected);
}

#[test]
fn lines_keep_cr_and_empty_lines_without_final_newline() {
    let dir = tempdir().unwrap();
    fs::write(dir.path().join("a"), "a\r\n\nb\n\nc").unwrap();
    let source = TextDirSource::new(dir.path()).with_min_split(1);
    let (lines, end) = read_lines(&source, 0, 1, SourceOffset(0), None);
    assert_eq!(lines, ["a\r", "", "b", "", "c"]);
    assert_eq!(end, SourceEnd::Exhausted(SourceOffset(8)));
}

#[test]
fn empty_files_and_empty_directories_yield_nothing() {
    let dir = tempdir().unwrap();
    let source = TextDirSource::new(dir.path()).with_min_split(1);
    assert_eq!(
        read_lines(&source, 1, 2, SourceOffset(0), None),
        (vec![], SourceEnd::Exhausted(SourceOffset(0)))
    );
    fs::write(dir.path().join("empty"), "").unwrap();
    assert_eq!(read_everything(&source, 3), vec![Vec::<String>::new(); 3]);
}

#[test]
fn reads_visible_regular_files_in_name_order() {
    let dir = tempdir().unwrap();
    fs::write(dir.path().join("b"), "b1\nb2\n").unwrap();
    fs::write(dir.path().join("a"), "a1\n").unwrap();
    fs::write(dir.path().join(".hidden"), "no\n").unwrap();
    fs::write(dir.path().join("_SUCCESS"), "no\n").unwrap();
    fs::create_dir(dir.path().join("c")).unwrap();
    fs::write(dir.path().join("c").join("nested"), "no\n").unwrap();
    let source = TextDirSource::new(dir.path()).with_min_split(1);
    assert_eq!(read_everything(&source, 1), vec![vec!["a1", "b1", "b2"]]);
}

#[test]
fn a_line_belongs_to_the_range_holding_its_first_byte() {
    let dir = tempdir().unwrap();
    let source = TextDirSource::new(dir.path()).with_min_split(1);
    fs::write(dir.path().join("a"), "aaaa\nbbbb\n").unwrap(); // Ranges [0, 5) and [5, 10).
    assert_eq!(read_everything(&source, 2), vec![vec!["aaaa"], vec!["bbbb"]]);
    fs::write(dir.path().join("a"), "aaa\nbbbbbb\n").unwrap(); // [0, 5) holds byte 4.
    assert_eq!(read_everything(&source, 2), vec![vec!["aaa", "bbbbbb"], vec![]]);
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let dir = tempdir().unwrap();
    fs::write(dir.path().join("bad"), b"ok\n\xff\xfeabc\nend").unwrap();
    let source = TextDirSource::new(dir.path()).with_min_split(1);
    assert_eq!(
        read_everything(&source, 1),
        vec![vec!["ok", "\u{FFFD}\u{FFFD}abc", "end"]]
    );
}

#[test]
fn multi_megabyte_lines_stay_whole() {
    let dir = tempdir().unwrap();
    let long = "x".repeat(8 << 20);
    fs::write(dir.path().join("big"), format!("short\n{long}\nend\n")).unwrap();
    let source = TextDirSource::new(dir.path()).with_min_split(1);
    let shares = read_everything(&source, 3);
    assert_eq!(
        shares.concat(),
        vec!["short".to_string(), long, "end".to_string()]
    );
}

#[test]
fn stop_reports_the_offset_after_the_last_record() {
    let dir = tempdir().unwrap();
    fs::write(dir.path().join("a"), "ab\ncd\n").unwrap();
    fs::write(dir.path().join("b"), "ef\n").unwrap();
    let source = TextDirSource::new(dir.path()).with_min_split(1);
    let (head, end) = read_lines(&source, 0, 1, SourceOffset(0), Some(2));
    assert_eq!(
        (head, end),
        (
            vec!["ab".to_string(), "cd".to_string()],
            SourceEnd::Stopped(SourceOffset(6))
        )
    );
    let (rest, end) = read_lines(&source, 0, 1, SourceOffset(6), None);
    assert_eq!(
        (rest, end),
        (vec!["ef".to_string()], SourceEnd::Exhausted(SourceOffset(9)))
    );
    let (rest, end) = read_lines(&source, 0, 1, SourceOffset(3), Some(1));
    assert_eq!(
        (rest, end),
        (vec!["cd".to_string()], SourceEnd::Stopped(SourceOffset(6)))
    );
}

/// Two in-memory "files" and a share of both, opened through `open`, which counts its calls.
struct TwoFiles {
    files: Vec<(PathBuf, Vec<u8>)>,
    opens: std::cell::Cell<usize>,
}

impl TwoFiles {
    fn new() -> Self {
        let lines = |name: &str| (1..=6).map(|i| format!("{name}{i}\n")).collect::<String>();
        TwoFiles {
            files: vec![
                (PathBuf::from("a"), lines("a").into_bytes()),
                (PathBuf::from("b"), lines("b").into_bytes()),
            ],
            opens: std::cell::Cell::new(0),
        }
    }

    fn share(&self) -> Vec<Split> {
        let sizes: Vec<(PathBuf, u64)> = self
            .files
            .iter()
            .map(|(p, c)| (p.clone(), c.len() as u64))
            .collect();
        plan_splits(&sizes, 1).swap_remove(0)
    }

    /// Reads partition `partition`'s share (the same share for any partition: the test's
    /// plan has one) from `offset` through `parked`, stopping after `stop_after` lines.
    fn read(
        &self,
        parked: &ParkedShares<PathBuf, io::Cursor<Vec<u8>>>,
        partition: usize,
        offset: u64,
        stop_after: Option<usize>,
    ) -> (Vec<String>, SourceEnd) {
        let ctx = SourceContext {
            partition,
            num_partitions: 16,
        };
        let mut open = |split: &Split| {
            self.opens.set(self.opens.get() + 1);
            let content = self
                .files
                .iter()
                .find(|(p, _)| *p == split.path)
                .map(|(_, c)| c.clone());
            Ok((
                split.path.display().to_string(),
                io::Cursor::new(content.unwrap_or_default()),
            ))
        };
        let mut lines = Vec::new();
        let end = parked
            .read(
                &ctx,
                SourceOffset(offset),
                || Ok(self.share()),
                &mut open,
                &mut crate::dataflow::sources::collect_until(&mut lines, stop_after),
            )
            .unwrap();
        (lines, end)
    }
}

#[test]
fn a_stopped_share_goes_on_without_opening_its_split_again() {
    let files = TwoFiles::new();
    let parked = ParkedShares::default();
    let (all, all_end) = files.read(&parked, 0, 0, None);
    assert_eq!((all.len(), files.opens.get(), parked.len()), (12, 2, 0));
    files.opens.set(0);

    // Stopped inside the first file, at its last line, and inside the second.
    let mut got = Vec::new();
    let mut offset = 0;
    for (stop_after, opens) in [(2, 1), (4, 1), (3, 2)] {
        let (lines, end) = files.read(&parked, 0, offset, Some(stop_after));
        let SourceEnd::Stopped(at) = end else {
            panic!("{end:?}")
        };
        assert_eq!(
            files.opens.get(),
            opens,
            "a parked reader went on without opening"
        );
        assert_eq!(parked.len(), 1);
        got.extend(lines);
        offset = at.0;
    }
    let (rest, end) = files.read(&parked, 0, offset, None);
    got.extend(rest);
    assert_eq!((got, end), (all, all_end));
    assert_eq!(
        (files.opens.get(), parked.len()),
        (2, 0),
        "an exhausted reader is not kept"
    );
}

#[test]
fn only_a_read_from_the_offset_a_reader_stopped_at_takes_it() {
    let files = TwoFiles::new();
    let parked = ParkedShares::default();
    let (_, end) = files.read(&parked, 3, 0, Some(2));
    assert_eq!(end, SourceEnd::Stopped(SourceOffset(6)));
    // Another offset, or another partition at the same offset, opens the split afresh.
    let (lines, _) = files.read(&parked, 3, 3, Some(1));
    assert_eq!((lines, files.opens.get()), (vec!["a2".to_string()], 2));
    let (lines, _) = files.read(&parked, 4, 6, Some(1));
    assert_eq!((lines, files.opens.get()), (vec!["a3".to_string()], 3));
    // Each partition keeps only its newest reader: partition 3's from offset 6 went when its
    // read from 3 stopped (at 6 again, and took its place).
    assert_eq!(parked.len(), 2);
    let (lines, _) = files.read(&parked, 3, 6, Some(1));
    assert_eq!((lines, files.opens.get()), (vec!["a3".to_string()], 3));
}

#[test]
fn parked_readers_are_bounded() {
    let files = TwoFiles::new();
    let parked = ParkedShares::default();
    for partition in 0..12 {
        files.read(&parked, partition, 0, Some(1));
    }
    assert_eq!(parked.len(), super::reader::PARKED);
    // The oldest went first: partition 0 opens again, partition 11 does not.
    files.read(&parked, 11, 3, Some(1));
    assert_eq!(files.opens.get(), 12);
    files.read(&parked, 0, 3, Some(1));
    assert_eq!(files.opens.get(), 13);
}

#[test]
fn validate_names_the_directory() {
    let dir = tempdir().unwrap();
    assert!(TextDirSource::new(dir.path())
        .with_min_split(1)
        .validate()
        .is_ok());
    let missing = dir.path().join("missing");
    let err = TextDirSource::new(&missing).validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid job: input directory {} does not exist",
            missing.display()
        )
    );
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = TextDirSource::new(&file).validate().unwrap_err();
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
}

#[test]
fn a_partition_outside_the_range_is_an_error() {
    let dir = tempdir().unwrap();
    let ctx = SourceContext {
        partition: 2,
        num_partitions: 2,
    };
    let result = TextDirSource::new(dir.path())
        .with_min_split(1)
        .read(&ctx, SourceOffset(0), &mut |_| Flow::Continue);
    assert!(matches!(result, Err(DataflowError::InvalidJob(_))));
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just(String::new()), 6 => "[a-zé€ ]{1,12}", 1 => "[a-z]{2000,20000}"]
}

/// Lines ended by `\n` or `\r\n`, the last one with or without its ending.
fn file_content() -> impl Strategy<Value = Vec<u8>> {
    (vec((line(), any::<bool>()), 0..25), any::<bool>()).prop_map(|(lines, final_newline)| {
        let mut out = String::new();
        for (i, (line, crlf)) in lines.iter().enumerate() {
            out.push_str(line);
            if i + 1 < lines.len() || final_newline {
                out.push_str(if *crlf { "\r\n" } else { "\n" });
            }
        }
        out.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn shares_hold_every_line_once_and_resume_exactly(
        files in vec(file_content(), 0..6),
        num_partitions in 1usize..12,
        stop_fraction in 0.0f64..1.0,
    ) {
        let dir = tempdir().unwrap();
        let mut expected = Vec::new();
        for (i, content) in files.iter().enumerate() {
            fs::write(dir.path().join(format!("f{i}")), content).unwrap();
            expected.extend(expected_lines(content));
        }
        let source = TextDirSource::new(dir.path()).with_min_split(1);
        let mut all = Vec::new();
        for p in 0..num_partitions {
            let (lines, end) = read_lines(&source, p, num_partitions, SourceOffset(0), None);
            let SourceEnd::Exhausted(total) = end else { panic!("{end:?}") };
            let stop_after = (lines.len() as f64 * stop_fraction) as usize + 1;
            if stop_after <= lines.len() {
                let (head, end) = read_lines(&source, p, num_partitions, SourceOffset(0), Some(stop_after));
                prop_assert_eq!(&head[..], &lines[..stop_after]);
                let SourceEnd::Stopped(at) = end else { panic!("{end:?}") };
                let (rest, end) = read_lines(&source, p, num_partitions, at, None);
                prop_assert_eq!(&rest[..], &lines[stop_after..]);
                prop_assert_eq!(end, SourceEnd::Exhausted(total));
            }
            let at_end = read_lines(&source, p, num_partitions, total, None);
            prop_assert_eq!(at_end, (vec![], SourceEnd::Exhausted(total)));
            all.extend(lines);
        }
        if files.iter().filter(|content| !content.is_empty()).count() < num_partitions {
            // Byte ranges are dealt out in file order: the shares concatenate to the input.
            prop_assert_eq!(&all, &expected);
        }
        all.sort();
        expected.sort();
        prop_assert_eq!(all, expected);
    }
}
