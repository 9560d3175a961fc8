//! Shared pieces of the word-count peer benchmark: input listing, block-wise reading,
//! counting and output writing. Used by the `timely-wordcount` and `single-thread` binaries.

use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub use rustc_hash::FxHashMap;

/// Size of the read buffer: text is handed on in blocks of whole lines of about this size.
pub const BLOCK_BYTES: usize = 1 << 20;

/// The regular files (or links to them) in `dir` whose names do not start with `.` or `_`, sorted by file name.
pub fn list_input_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        // `Path::is_file` follows symbolic links, so a folder of links to the files works too.
        if name.starts_with('.') || name.starts_with('_') || !path.is_file() {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// Reads `path` and calls `f` with consecutive blocks of its text. Every block ends at a line
/// end (except possibly the last one), so no word is ever split between two blocks.
pub fn for_each_text_block(path: &Path, mut f: impl FnMut(&str)) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; BLOCK_BYTES];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // A line longer than the buffer: grow it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if filled > 0 {
                f(as_text(&buf[..filled], path)?);
            }
            return Ok(());
        }
        let end = filled + n;
        // The carried-over prefix buf[..filled] holds no line end, so only search the new bytes.
        match buf[filled..end].iter().rposition(|&b| b == b'\n') {
            Some(pos) => {
                let cut = filled + pos + 1;
                f(as_text(&buf[..cut], path)?);
                buf.copy_within(cut..end, 0);
                filled = end - cut;
            }
            None => filled = end,
        }
    }
}

fn as_text<'a>(bytes: &'a [u8], path: &Path) -> io::Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not UTF-8: {e}", path.display()),
        )
    })
}

/// Adds one to the count of every word of `text` (words are split on `char::is_whitespace`).
/// A word already present is found by `&str`, so only a word's first occurrence allocates.
pub fn count_words(counts: &mut FxHashMap<String, u64>, text: &str) {
    for word in text.split_whitespace() {
        match counts.get_mut(word) {
            Some(count) => *count += 1,
            None => {
                counts.insert(word.to_owned(), 1);
            }
        }
    }
}

/// A hash of `word` that is the same in every process running the same binary.
pub fn word_hash(word: &str) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(word)
}

/// Writes `word\tcount\n` lines (in map order) to `path`.
pub fn write_counts<'a>(
    path: &Path,
    counts: impl IntoIterator<Item = (&'a String, &'a u64)>,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, File::create(path)?);
    for (word, count) in counts {
        writeln!(out, "{word}\t{count}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_of(text: &str, block: bool) -> Vec<(String, u64)> {
        let mut counts = FxHashMap::default();
        if block {
            let dir = std::env::temp_dir().join(format!("twc-test-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("in.txt");
            std::fs::write(&path, text).unwrap();
            for_each_text_block(&path, |t| count_words(&mut counts, t)).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
        } else {
            count_words(&mut counts, text);
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn blocks_never_split_words() {
        // Lines of varying length spanning many buffer boundaries, no final line end,
        // plus a line longer than the buffer.
        let mut text = String::new();
        for i in 0..300_000u32 {
            text.push_str(&format!("w{} x\u{a0}y\tw{}\n", i % 997, i % 13));
        }
        text.push_str(&"z".repeat(BLOCK_BYTES * 2 + 7));
        text.push_str(" tail");
        assert_eq!(counts_of(&text, true), counts_of(&text, false));
        let total: u64 = counts_of(&text, true).iter().map(|(_, c)| c).sum();
        // U+00A0 (no-break space) is White_Space, so "x\u{a0}y" is two words.
        assert_eq!(total, 300_000 * 4 + 2);
    }
}
