//! `swd gen`: writes a deterministic corpus for tests and benchmarks (see [`crate::corpus`]
//! for the workload):
//!
//! ```text
//! OUT/input/part-000.txt .. part-(F-1).txt   lines of 10 words
//! OUT/expected.tsv                           word<TAB>count, sorted bytewise
//! OUT/words.txt                              the number of words
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cli::{GenArgs, Workload};
use crate::corpus::{Corpus, SplitMix64, VOCABULARY};

/// Lines generated per write: bounds the buffer (about 700 KiB) whatever the corpus size.
const CHUNK_LINES: u64 = 10_000;

pub async fn run(args: GenArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // Generating 20 M words is a few seconds of CPU and file writes: off the async threads.
    let summary = tokio::task::spawn_blocking(move || generate(&args))
        .await
        .context("the generator panicked")??;
    outln!("{summary} in {:.1} s", started.elapsed().as_secs_f64())?;
    Ok(ExitCode::SUCCESS)
}

fn generate(args: &GenArgs) -> anyhow::Result<String> {
    match args.workload {
        Workload::Wordcount => wordcount(&args.out, args.words, args.files, args.seed),
    }
}

fn wordcount(out: &Path, words: u64, files: u32, seed: u64) -> anyhow::Result<String> {
    if files == 0 {
        bail!("invalid --files: must be at least 1");
    }
    if fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("invalid --out: {} is not empty", out.display());
    }
    let input = out.join("input");
    fs::create_dir_all(&input).with_context(|| format!("cannot create {}", input.display()))?;
    let corpus = Corpus::new(words, files);
    let mut rng = SplitMix64::new(seed);
    let mut counts = vec![0u64; VOCABULARY];
    let mut buffer = Vec::new();
    for i in 0..files {
        let path = input.join(format!("part-{i:03}.txt"));
        let mut file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let (start, end) = corpus.file_lines(i);
        let mut line = start;
        while line < end {
            let chunk_end = (line + CHUNK_LINES).min(end);
            buffer.clear();
            corpus.text(line..chunk_end, &mut rng, &mut buffer, &mut counts);
            file.write_all(&buffer)
                .with_context(|| format!("cannot write {}", path.display()))?;
            line = chunk_end;
        }
    }
    let expected = out.join("expected.tsv");
    fs::write(&expected, corpus.expected_tsv(&counts))
        .with_context(|| format!("cannot write {}", expected.display()))?;
    let total: u64 = counts.iter().sum();
    let words_file = out.join("words.txt");
    fs::write(&words_file, format!("{total}\n"))
        .with_context(|| format!("cannot write {}", words_file.display()))?;
    let distinct = counts.iter().filter(|&&c| c > 0).count();
    Ok(format!(
        "wordcount corpus: {total} words ({distinct} distinct) in {files} files, seed {seed}, at {}",
        out.display()
    ))
}
