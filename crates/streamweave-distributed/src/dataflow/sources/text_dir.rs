//! [`TextDirSource`]: the lines of the files of one directory, split into `P` shares by a pure
//! plan ([`plan_splits`]) that every machine computes the same way from the same listing.
//!
//! ```text
//! listing (name order) --plan_splits--> Vec<Split> per partition --SplitReader--> lines
//!   >= P files: whole files, balanced by bytes
//!   <  P files: byte ranges of ~total/P; a line belongs to the range holding its first byte
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::dataflow::{DataflowError, Flow, Source, SourceContext, SourceEnd, SourceOffset};

/// Size of the read buffer of each open file.
const READ_BUFFER: usize = 256 * 1024;

/// One piece of a partition's share: the lines of `path` whose first byte lies in
/// `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The file.
    pub path: PathBuf,
    /// The first byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
}

/// Splits `files` (path and size) into the shares of `num_partitions` partitions, cutting
/// ranges down to a single byte if need be (see [`plan_splits_min`]).
pub fn plan_splits(files: &[(PathBuf, u64)], num_partitions: usize) -> Vec<Vec<Split>> {
    plan_splits_min(files, num_partitions, 1)
}

/// Splits `files` (path and size) into the shares of `num_partitions` partitions, with ranges of
/// at least `min_split` bytes where a file is cut.
///
/// Empty files are left out. With at least as many (non-empty) files as partitions, whole files
/// are dealt out largest first, each to the partition with the fewest bytes so far (ties go to
/// the lower partition). With fewer files, each file is cut into byte ranges, as many as is
/// proportional to its size (at least one, none smaller than `min_split` unless the file is),
/// and the `S` ranges, in file order, are spread evenly over the partitions: range `j` goes to
/// partition `j * P / S`, the others get nothing (so that the readers are spread over the
/// workers, whose partitions are spread over `0..P`). The result only depends on the set of
/// `(path, size)` pairs, not on their order, and a partition's splits are in path order.
///
/// ```
/// use std::path::PathBuf;
/// use streamweave_distributed::dataflow::sources::plan_splits_min;
/// let plan = plan_splits_min(&[(PathBuf::from("a"), 100)], 8, 40);
/// // Two ranges of 50 bytes (three would be below 40), on partitions 0 and 4.
/// assert_eq!((plan[0][0].start, plan[0][0].end, plan[4][0].start), (0, 50, 50));
/// assert_eq!(plan.iter().filter(|s| !s.is_empty()).count(), 2);
/// ```
pub fn plan_splits_min(files: &[(PathBuf, u64)], num_partitions: usize, min_split: u64) -> Vec<Vec<Split>> {
    let mut plan = vec![Vec::new(); num_partitions];
    let mut files: Vec<&(PathBuf, u64)> = files.iter().filter(|(_, len)| *len > 0).collect();
    files.sort_by(|a, b| path_bytes(&a.0).cmp(path_bytes(&b.0)).then(a.1.cmp(&b.1)));
    if num_partitions == 0 || files.is_empty() {
        return plan;
    }
    if files.len() >= num_partitions {
        deal_whole_files(&files, &mut plan);
    } else {
        cut_ranges(&files, &mut plan, min_split.max(1));
    }
    plan
}

/// Whole files, largest first, each to the partition with the fewest bytes (lowest on ties).
fn deal_whole_files(files: &[&(PathBuf, u64)], plan: &mut [Vec<Split>]) {
    let mut by_size = files.to_vec();
    // Stable: files of equal size stay in path order.
    by_size.sort_by_key(|(_, len)| Reverse(*len));
    let mut load: BinaryHeap<Reverse<(u64, usize)>> = (0..plan.len()).map(|p| Reverse((0, p))).collect();
    for (path, len) in by_size {
        let Reverse((bytes, p)) = load.pop().expect("at least one partition");
        plan[p].push(Split {
            path: path.clone(),
            start: 0,
            end: *len,
        });
        load.push(Reverse((bytes + len, p)));
    }
    for splits in plan.iter_mut() {
        splits.sort_by(|a, b| path_bytes(&a.path).cmp(path_bytes(&b.path)));
    }
}

/// Fewer files than partitions: every file gets one range, then each spare partition goes to
/// the file with the most bytes per range (lowest index on ties) whose ranges would still hold
/// `min_split` bytes with one more.
fn cut_ranges(files: &[&(PathBuf, u64)], plan: &mut [Vec<Split>], min_split: u64) {
    let mut ranges = vec![1u64; files.len()];
    for _ in files.len()..plan.len() {
        let best = (0..files.len())
            .filter(|&i| files[i].1 / (ranges[i] + 1) >= min_split)
            .max_by(|&a, &b| {
                let (a_len, b_len) = (u128::from(files[a].1), u128::from(files[b].1));
                (a_len * u128::from(ranges[b]))
                    .cmp(&(b_len * u128::from(ranges[a])))
                    .then(b.cmp(&a))
            });
        match best {
            Some(i) => ranges[i] += 1,
            None => break,
        }
    }
    let total: u64 = ranges.iter().sum();
    let mut range = 0u64;
    for ((path, len), k) in files.iter().zip(ranges) {
        let at = |j: u64| (u128::from(*len) * u128::from(j) / u128::from(k)) as u64;
        for j in 0..k {
            let p = (u128::from(range) * plan.len() as u128 / u128::from(total)) as usize;
            plan[p].push(Split {
                path: path.clone(),
                start: at(j),
                end: at(j + 1),
            });
            range += 1;
        }
    }
}

fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

/// The lines of every regular file of a directory (not recursive; names starting with `.` or
/// `_` are skipped), one `String` per line without its `\n` (a `\r` before it stays).
///
/// Its [`SourceOffset`] counts the bytes of the partition's share consumed so far. Invalid
/// UTF-8 is replaced by U+FFFD and logged once per file.
///
/// ```
/// use streamweave_distributed::dataflow::sources::TextDirSource;
/// use streamweave_distributed::dataflow::{Flow, Source, SourceContext, SourceEnd, SourceOffset};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), "hello world\nsecond line\n")?;
/// let source = TextDirSource::new(dir.path());
/// source.validate()?;
/// let ctx = SourceContext { partition: 0, num_partitions: 1 };
/// let mut lines = Vec::new();
/// let end = source.read(&ctx, SourceOffset(0), &mut |line| {
///     lines.push(line);
///     Flow::Continue
/// })?;
/// assert_eq!(lines, ["hello world", "second line"]);
/// assert_eq!(end, SourceEnd::Exhausted(SourceOffset(24)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TextDirSource {
    dir: PathBuf,
    min_split: u64,
}

/// The smallest byte range a file is cut into by default: more, smaller ranges than this only
/// add per-range costs (each source partition pre-aggregates on its own and sends its partial
/// results to every partition), while reading is parallel only up to the workers' source slots.
pub const DEFAULT_MIN_SPLIT: u64 = 8 << 20;

impl TextDirSource {
    /// A source reading the files of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            min_split: DEFAULT_MIN_SPLIT,
        }
    }

    /// Cuts files into ranges of at least `bytes` (default [`DEFAULT_MIN_SPLIT`]; 1 cuts as
    /// finely as the partitions allow).
    pub fn with_min_split(mut self, bytes: u64) -> Self {
        self.min_split = bytes.max(1);
        self
    }

    /// The directory it reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The input files with their sizes, in name order.
    fn list_files(&self) -> Result<Vec<(PathBuf, u64)>, DataflowError> {
        let dir = &self.dir;
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| DataflowError::io(dir, e))? {
            let entry = entry.map_err(|e| DataflowError::io(dir, e))?;
            if matches!(entry.file_name().as_encoded_bytes().first(), Some(b'.' | b'_')) {
                continue;
            }
            let path = entry.path();
            // `fs::metadata` follows symlinks: a link to a regular file is read.
            let meta = fs::metadata(&path).map_err(|e| DataflowError::io(&path, e))?;
            if meta.is_file() {
                files.push((path, meta.len()));
            }
        }
        files.sort_by(|a, b| path_bytes(&a.0).cmp(path_bytes(&b.0)));
        Ok(files)
    }
}

impl Source for TextDirSource {
    type Item = String;

    fn empty_partitions(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        let plan = plan_splits_min(&self.list_files()?, num_partitions, self.min_split);
        Ok(Some(plan.iter().map(Vec::is_empty).collect()))
    }

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        super::check_context(ctx)?;
        let plan = plan_splits_min(&self.list_files()?, ctx.num_partitions, self.min_split);
        let mut to_skip = offset.0;
        let mut consumed = 0u64;
        let mut buf = Vec::new();
        for split in &plan[ctx.partition] {
            let mut reader = SplitReader::open(split)?;
            if to_skip > 0 {
                let len = reader.len()?;
                let skip = to_skip.min(len);
                to_skip -= skip;
                consumed += skip;
                if skip == len {
                    continue;
                }
                reader.skip(skip)?;
            }
            if reader.emit_lines(&mut buf, &mut consumed, emit)? == Flow::Stop {
                return Ok(SourceEnd::Stopped(SourceOffset(consumed)));
            }
        }
        // An offset past the end of the share (the input shrank) stays where it was.
        Ok(SourceEnd::Exhausted(SourceOffset(consumed.max(offset.0))))
    }

    fn validate(&self) -> Result<(), DataflowError> {
        let shown = self.dir.display();
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => self.list_files().map(|_| ()),
            Ok(_) => Err(DataflowError::InvalidJob(format!(
                "input path {shown} is not a directory"
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DataflowError::InvalidJob(format!(
                "input directory {shown} does not exist"
            ))),
            Err(e) => Err(DataflowError::io(&self.dir, e)),
        }
    }
}

/// Reads the lines of one [`Split`].
struct SplitReader<'a> {
    split: &'a Split,
    reader: BufReader<File>,
    /// Where the split's first line starts.
    first: u64,
    /// The reader's position in the file.
    pos: u64,
}

impl<'a> SplitReader<'a> {
    fn open(split: &'a Split) -> Result<Self, DataflowError> {
        let file = File::open(&split.path).map_err(|e| DataflowError::io(&split.path, e))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let first =
            line_start_from(&mut reader, split.start).map_err(|e| DataflowError::io(&split.path, e))?;
        Ok(Self {
            split,
            reader,
            first,
            pos: first,
        })
    }

    /// The number of bytes of the lines that belong to the split.
    fn len(&mut self) -> Result<u64, DataflowError> {
        let path = &self.split.path;
        let past =
            line_start_from(&mut self.reader, self.split.end).map_err(|e| DataflowError::io(path, e))?;
        self.reader
            .seek(SeekFrom::Start(self.pos))
            .map_err(|e| DataflowError::io(path, e))?;
        Ok(past.saturating_sub(self.first))
    }

    /// Moves to `bytes` (a line boundary) past the split's first line.
    fn skip(&mut self, bytes: u64) -> Result<(), DataflowError> {
        self.pos = self.first + bytes;
        let at = SeekFrom::Start(self.pos);
        self.reader
            .seek(at)
            .map(|_| ())
            .map_err(|e| DataflowError::io(&self.split.path, e))
    }

    /// Emits the lines starting before `split.end`, adding their bytes to `consumed`.
    fn emit_lines(
        &mut self,
        buf: &mut Vec<u8>,
        consumed: &mut u64,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<Flow, DataflowError> {
        let mut invalid = 0u64;
        let mut flow = Flow::Continue;
        while self.pos < self.split.end {
            buf.clear();
            let n = self
                .reader
                .read_until(b'\n', buf)
                .map_err(|e| DataflowError::io(&self.split.path, e))?;
            if n == 0 {
                break; // End of file (the file may be shorter than when it was listed).
            }
            self.pos += n as u64;
            *consumed += n as u64;
            let line = buf.strip_suffix(b"\n").unwrap_or(buf);
            let record = match std::str::from_utf8(line) {
                Ok(text) => text.to_owned(), // One allocation of exactly the line's length.
                Err(_) => {
                    invalid += 1;
                    String::from_utf8_lossy(line).into_owned()
                }
            };
            if emit(record) == Flow::Stop {
                flow = Flow::Stop;
                break;
            }
        }
        if invalid > 0 {
            let file = self.split.path.display();
            tracing::warn!(%file, lines = invalid, "invalid UTF-8 replaced by U+FFFD");
        }
        Ok(flow)
    }
}

/// The first line start at or after `at`: `at` itself if it is 0 or follows a `\n`, otherwise
/// just past the next `\n` (or the end of the file).
fn line_start_from(reader: &mut BufReader<File>, at: u64) -> io::Result<u64> {
    if at == 0 {
        return Ok(0);
    }
    reader.seek(SeekFrom::Start(at - 1))?;
    Ok(at - 1 + reader.skip_until(b'\n')? as u64)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use tempfile::tempdir;

    use super::*;

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

    /// Reads one share from `offset`, stopping after `stop_after` records if given.
    fn read_share(
        source: &TextDirSource,
        partition: usize,
        num_partitions: usize,
        offset: SourceOffset,
        stop_after: Option<usize>,
    ) -> (Vec<String>, SourceEnd) {
        let ctx = SourceContext {
            partition,
            num_partitions,
        };
        let mut lines = Vec::new();
        let end = source
            .read(&ctx, offset, &mut |line| {
                lines.push(line);
                if Some(lines.len()) == stop_after {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            })
            .unwrap();
        (lines, end)
    }

    fn read_everything(source: &TextDirSource, num_partitions: usize) -> Vec<Vec<String>> {
        (0..num_partitions)
            .map(|p| read_share(source, p, num_partitions, SourceOffset(0), None).0)
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
        let (lines, end) = read_share(&source, 0, 1, SourceOffset(0), None);
        assert_eq!(lines, ["a\r", "", "b", "", "c"]);
        assert_eq!(end, SourceEnd::Exhausted(SourceOffset(8)));
    }

    #[test]
    fn empty_files_and_empty_directories_yield_nothing() {
        let dir = tempdir().unwrap();
        let source = TextDirSource::new(dir.path()).with_min_split(1);
        assert_eq!(
            read_share(&source, 1, 2, SourceOffset(0), None),
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
        let (head, end) = read_share(&source, 0, 1, SourceOffset(0), Some(2));
        assert_eq!(
            (head, end),
            (
                vec!["ab".to_string(), "cd".to_string()],
                SourceEnd::Stopped(SourceOffset(6))
            )
        );
        let (rest, end) = read_share(&source, 0, 1, SourceOffset(6), None);
        assert_eq!(
            (rest, end),
            (vec!["ef".to_string()], SourceEnd::Exhausted(SourceOffset(9)))
        );
        let (rest, end) = read_share(&source, 0, 1, SourceOffset(3), Some(1));
        assert_eq!(
            (rest, end),
            (vec!["cd".to_string()], SourceEnd::Stopped(SourceOffset(6)))
        );
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
        let result =
            TextDirSource::new(dir.path())
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
                let (lines, end) = read_share(&source, p, num_partitions, SourceOffset(0), None);
                let SourceEnd::Exhausted(total) = end else { panic!("{end:?}") };
                let stop_after = (lines.len() as f64 * stop_fraction) as usize + 1;
                if stop_after <= lines.len() {
                    let (head, end) = read_share(&source, p, num_partitions, SourceOffset(0), Some(stop_after));
                    prop_assert_eq!(&head[..], &lines[..stop_after]);
                    let SourceEnd::Stopped(at) = end else { panic!("{end:?}") };
                    let (rest, end) = read_share(&source, p, num_partitions, at, None);
                    prop_assert_eq!(&rest[..], &lines[stop_after..]);
                    prop_assert_eq!(end, SourceEnd::Exhausted(total));
                }
                let at_end = read_share(&source, p, num_partitions, total, None);
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
}
