//! The word-count workload, generated: a deterministic corpus of Zipf-distributed words for
//! tests and benchmarks, so the repository needs no outside tool to exercise its jobs.
//!
//! Workload ("wordcount-zipf"): a vocabulary of [`VOCABULARY`] words `w0` .. `w99999`; word
//! `w<r>` (rank `r`) is drawn with probability proportional to `1 / (r + 1)` (Zipf, s = 1),
//! independently, from a [`SplitMix64`] stream seeded with the seed. The words form lines of
//! [`WORDS_PER_LINE`] words separated by single spaces (the last line may be shorter), and the
//! `L` lines are dealt to `F` files in contiguous blocks: file `i` gets lines
//! `[i * L / F, (i + 1) * L / F)`. The same (words, files, seed) give the same bytes on any
//! machine: the sampling uses only integer arithmetic and `f64` operations that IEEE 754 fixes.
//!
//! Everything here is pure: [`Corpus::text`] returns lines' text and counts their words;
//! the `swd gen` command writes the files.

/// The number of distinct words.
pub const VOCABULARY: usize = 100_000;

/// Words per line.
pub const WORDS_PER_LINE: u64 = 10;

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64): good enough for a
/// workload and fully specified, so the corpus never changes with a dependency's version.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` with 53 random bits.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The cumulative Zipf weights of `n` ranks with exponent 1: entry `r` is
/// `1/1 + 1/2 + ... + 1/(r + 1)`.
pub fn zipf_cumulative(n: usize) -> Vec<f64> {
    let mut total = 0.0;
    (0..n)
        .map(|r| {
            total += 1.0 / (r as f64 + 1.0);
            total
        })
        .collect()
}

/// The rank that a uniform `u` in `[0, 1)` picks from cumulative weights: the first rank whose
/// cumulative weight exceeds `u * total` (inverse transform sampling).
///
/// ```
/// let cum = swd::corpus::zipf_cumulative(3); // 1, 1.5, 1.8333
/// assert_eq!(swd::corpus::zipf_rank(&cum, 0.0), 0);
/// assert_eq!(swd::corpus::zipf_rank(&cum, 0.5), 0); // 0.92 < 1
/// assert_eq!(swd::corpus::zipf_rank(&cum, 0.6), 1); // 1.1 in [1, 1.5)
/// assert_eq!(swd::corpus::zipf_rank(&cum, 0.99), 2);
/// ```
pub fn zipf_rank(cumulative: &[f64], u: f64) -> usize {
    let Some(&total) = cumulative.last() else {
        return 0;
    };
    let target = u * total;
    cumulative
        .partition_point(|&c| c <= target)
        .min(cumulative.len() - 1)
}

/// A corpus's shape: how many words, in how many files, from which seed.
#[derive(Clone, Debug)]
pub struct Corpus {
    words: u64,
    files: u32,
    cumulative: Vec<f64>,
    names: Vec<String>,
}

impl Corpus {
    /// A corpus of `words` words dealt to `files` files (at least one).
    pub fn new(words: u64, files: u32) -> Self {
        Corpus {
            words,
            files: files.max(1),
            cumulative: zipf_cumulative(VOCABULARY),
            names: (0..VOCABULARY).map(|r| format!("w{r}")).collect(),
        }
    }

    /// The number of lines.
    pub fn lines(&self) -> u64 {
        self.words.div_ceil(WORDS_PER_LINE)
    }

    /// The number of files.
    pub fn files(&self) -> u32 {
        self.files
    }

    /// The lines of file `i`: `[start, end)`.
    pub fn file_lines(&self, i: u32) -> (u64, u64) {
        let bound = |i: u32| {
            u64::try_from(u128::from(self.lines()) * u128::from(i) / u128::from(self.files)).unwrap_or(0)
        };
        (bound(i), bound(i + 1))
    }

    /// The name of the word of rank `r`.
    pub fn word(&self, r: usize) -> &str {
        &self.names[r]
    }

    /// Appends the text of `lines` to `out` and adds their words to `counts` (indexed by rank).
    /// Lines must be generated in order from one `rng`: the whole corpus draws from one stream.
    pub fn text(
        &self,
        lines: std::ops::Range<u64>,
        rng: &mut SplitMix64,
        out: &mut Vec<u8>,
        counts: &mut [u64],
    ) {
        for line in lines {
            let n = self
                .words
                .saturating_sub(line * WORDS_PER_LINE)
                .min(WORDS_PER_LINE);
            for k in 0..n {
                let r = zipf_rank(&self.cumulative, rng.next_unit());
                if k > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(self.names[r].as_bytes());
                counts[r] += 1;
            }
            out.push(b'\n');
        }
    }

    /// The expected word count: `word\tcount\n` for every word that occurs, sorted by word
    /// bytewise (so `w10 < w100 < w2`).
    pub fn expected_tsv(&self, counts: &[u64]) -> Vec<u8> {
        let mut present: Vec<(&str, u64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(r, &c)| (self.word(r), c))
            .collect();
        present.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut out = Vec::with_capacity(present.len() * 12);
        for (word, count) in present {
            out.extend_from_slice(format!("{word}\t{count}\n").as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn lines_are_dealt_in_contiguous_blocks_covering_every_line() {
        let corpus = Corpus::new(1_001, 3);
        assert_eq!(corpus.lines(), 101);
        let blocks: Vec<_> = (0..3).map(|i| corpus.file_lines(i)).collect();
        assert_eq!(blocks, vec![(0, 33), (33, 67), (67, 101)]);
    }

    #[test]
    fn files_hold_every_word_once_in_lines_of_ten() {
        let corpus = Corpus::new(1_005, 4);
        let mut rng = SplitMix64::new(7);
        let mut counts = vec![0; VOCABULARY];
        let mut text = Vec::new();
        for i in 0..corpus.files() {
            let (start, end) = corpus.file_lines(i);
            corpus.text(start..end, &mut rng, &mut text, &mut counts);
        }
        let text = String::from_utf8(text).expect("ascii");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 101);
        assert!(lines[..100].iter().all(|l| l.split(' ').count() == 10));
        assert_eq!(lines[100].split(' ').count(), 5);
        assert_eq!(text.split_whitespace().count(), 1_005);
        assert_eq!(counts.iter().sum::<u64>(), 1_005);
    }

    #[test]
    fn the_same_seed_gives_the_same_words_and_another_seed_other_words() {
        let corpus = Corpus::new(500, 1);
        let run = |seed| {
            let mut text = Vec::new();
            let mut counts = vec![0; VOCABULARY];
            corpus.text(0..50, &mut SplitMix64::new(seed), &mut text, &mut counts);
            text
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn ranks_follow_zipf() {
        // With s = 1 over 100,000 words, rank 0 has probability 1 / H(100000) ~ 0.0830 and rank
        // 1 half of that.
        let cum = zipf_cumulative(VOCABULARY);
        let mut rng = SplitMix64::new(1);
        let n = 200_000;
        let mut counts = [0u32; 2];
        for _ in 0..n {
            let r = zipf_rank(&cum, rng.next_unit());
            if r < 2 {
                counts[r] += 1;
            }
        }
        let p0 = f64::from(counts[0]) / f64::from(n);
        let p1 = f64::from(counts[1]) / f64::from(n);
        assert!((p0 - 0.0830).abs() < 0.003, "p0 = {p0}");
        assert!((p1 - 0.0415).abs() < 0.003, "p1 = {p1}");
    }

    #[test]
    fn ranks_stay_in_the_vocabulary_at_the_edges() {
        let cum = zipf_cumulative(VOCABULARY);
        assert_eq!(zipf_rank(&cum, 0.0), 0);
        assert_eq!(zipf_rank(&cum, 1.0 - f64::EPSILON), VOCABULARY - 1);
        assert_eq!(zipf_rank(&cum, 1.0), VOCABULARY - 1);
        assert_eq!(zipf_rank(&[], 0.5), 0);
    }

    #[test]
    fn expected_tsv_is_sorted_bytewise() {
        let corpus = Corpus::new(0, 1);
        let mut counts = vec![0; VOCABULARY];
        counts[2] = 1;
        counts[10] = 3;
        counts[100] = 2;
        assert_eq!(corpus.expected_tsv(&counts), b"w10\t3\nw100\t2\nw2\t1\n".to_vec());
    }
}
