//! Split planning: which byte ranges of which files each source partition reads. A pure
//! function of the listing, so every machine computes the same plan. Files are named by any
//! [`SplitName`]: a path for a directory, an object key for object storage, so both sources
//! share one planner and give the same plan for the same names and sizes.
//!
//! ```text
//! listing (name, size) --sort by name bytes, drop empty files--> plan_splits_min
//!   >= P files: deal_whole_files (largest first, to the lightest partition)
//!   <  P files: cut_ranges (ranges proportional to size, >= min_split, spread over 0..P)
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

/// What a file is named by in a listing: plans sort files by the name's bytes, the same order
/// on every machine.
pub trait SplitName: Clone {
    /// The bytes the listing and the plan are sorted by.
    fn name_bytes(&self) -> &[u8];
}

impl SplitName for PathBuf {
    fn name_bytes(&self) -> &[u8] {
        path_bytes(self)
    }
}

/// An object key (object storage lists keys, not paths).
impl SplitName for String {
    fn name_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// One piece of a partition's share: the lines of `path` (a file, or an object key) whose
/// first byte lies in `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split<N = PathBuf> {
    /// The file.
    pub path: N,
    /// The first byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
}

/// Splits `files` (path and size) into the shares of `num_partitions` partitions, cutting
/// ranges down to a single byte if need be (see [`plan_splits_min`]).
pub fn plan_splits<N: SplitName>(files: &[(N, u64)], num_partitions: usize) -> Vec<Vec<Split<N>>> {
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
pub fn plan_splits_min<N: SplitName>(
    files: &[(N, u64)],
    num_partitions: usize,
    min_split: u64,
) -> Vec<Vec<Split<N>>> {
    let mut plan = vec![Vec::new(); num_partitions];
    let mut files: Vec<&(N, u64)> = files.iter().filter(|(_, len)| *len > 0).collect();
    files.sort_by(|a, b| a.0.name_bytes().cmp(b.0.name_bytes()).then(a.1.cmp(&b.1)));
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
fn deal_whole_files<N: SplitName>(files: &[&(N, u64)], plan: &mut [Vec<Split<N>>]) {
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
        splits.sort_by(|a, b| a.path.name_bytes().cmp(b.path.name_bytes()));
    }
}

/// Fewer files than partitions: every file gets one range, then each spare partition goes to
/// the file with the most bytes per range (lowest index on ties) whose ranges would still hold
/// `min_split` bytes with one more.
fn cut_ranges<N: SplitName>(files: &[&(N, u64)], plan: &mut [Vec<Split<N>>], min_split: u64) {
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

/// A path as bytes, the order every listing and plan is sorted in (the same on every machine).
pub(super) fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}
