//! The names of a text sink's output, shared by the directory sink and the object store sink:
//! final names (`part-PPPPP`, `part-PPPPP-EEEEEEEEEEEEEEEEEEEE` per committed epoch), pending
//! epochs in a partition's hidden working directory (`.swd/PPPPP/epoch-E.pending`), and parsing
//! them back when a sink lists what an earlier attempt left.

/// The hidden directory holding the partitions' working directories.
pub(crate) const WORK: &str = ".swd";

/// Whether a file name in an output directory is final output (temporary files, working
/// directories and markers start with `.` or `_`).
pub fn is_final_output(name: &str) -> bool {
    !name.starts_with('.') && !name.starts_with('_')
}

pub(crate) fn final_name(partition: usize) -> String {
    format!("part-{partition:05}")
}

pub(crate) const PENDING_PREFIX: &str = "epoch-";

pub(crate) fn pending_name(epoch: u64) -> String {
    format!("{PENDING_PREFIX}{epoch:020}.pending")
}

pub(crate) fn epoch_name(partition: usize, epoch: u64) -> String {
    format!("part-{partition:05}-{epoch:020}")
}

/// The partition and epoch of a committed epoch's name ([`epoch_name`]).
pub(crate) fn parse_epoch_name(name: &str) -> Option<(usize, u64)> {
    let (p, e) = name.strip_prefix("part-")?.split_once('-')?;
    Some((p.parse().ok()?, e.parse().ok()?))
}

/// The number in `name` between `prefix` and `suffix`, if it has that shape.
pub(crate) fn numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}
