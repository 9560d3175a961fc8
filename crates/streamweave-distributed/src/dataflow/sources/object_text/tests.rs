//! Tests of the object source: the same records and offsets as the file source for the same
//! files (the parity that makes checkpoints portable between them), reads across chunk
//! boundaries, resumption, and clear errors. Tier 1 runs on `memory://`; module `tier2` runs
//! the core cases against S3 (scripts/tier2.sh).

use std::fs;

use object_store::PutPayload;
use proptest::collection::vec;
use proptest::prelude::*;

use std::io::Seek;

use super::*;
use crate::dataflow::sources::{read_lines, TextDirSource};
use crate::storage::block_on;

/// Writes `files` both into a fresh directory and under `url`; returns the directory.
fn put_both(url: &StorageUrl, files: &[(String, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let location = url.open().unwrap();
    for (name, content) in files {
        fs::write(dir.path().join(name), content).unwrap();
        let (store, key) = (location.store.clone(), location.key(name));
        let payload = PutPayload::from(content.clone());
        block_on(async move { store.put(&key, payload).await }).unwrap();
    }
    dir
}

/// Every share of both sources is the same, and so is a read stopped after `stop_fraction` of
/// a share and resumed from the offset it reported.
fn assert_same_shares(
    files: &TextDirSource,
    objects: &ObjectTextSource,
    num_partitions: usize,
    stop_fraction: f64,
) {
    let empty = files.empty_partitions(num_partitions).unwrap().unwrap();
    let plan = objects.plan(num_partitions).unwrap();
    assert_eq!(empty, plan.iter().map(Vec::is_empty).collect::<Vec<_>>());
    for p in 0..num_partitions {
        let (lines, end) = read_lines(files, p, num_partitions, SourceOffset(0), None);
        assert_eq!(
            read_lines(objects, p, num_partitions, SourceOffset(0), None),
            (lines.clone(), end),
            "partition {p} of {num_partitions}"
        );
        let stop_after = (lines.len() as f64 * stop_fraction) as usize + 1;
        if stop_after <= lines.len() {
            let head = read_lines(objects, p, num_partitions, SourceOffset(0), Some(stop_after));
            assert_eq!(
                head,
                read_lines(files, p, num_partitions, SourceOffset(0), Some(stop_after))
            );
            let SourceEnd::Stopped(at) = head.1 else {
                panic!("{:?}", head.1)
            };
            // Resumed by a source that never read it (the open reader is not there to go on
            // with), then by the one that stopped (it goes on with its parked reader).
            let fresh = ObjectTextSource {
                parked: Arc::default(),
                ..objects.clone()
            };
            let rest = read_lines(&fresh, p, num_partitions, at, None);
            assert_eq!(rest, (lines[stop_after..].to_vec(), end), "resumed from {at:?}");
            let rest = read_lines(objects, p, num_partitions, at, None);
            assert_eq!(rest, (lines[stop_after..].to_vec(), end), "went on from {at:?}");
        }
    }
}

/// `count` lines of varied lengths (some longer than a probe GET), numbered so every line is
/// distinct.
fn numbered_lines(count: usize, seed: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        let width = match (i * 7 + seed) % 97 {
            0 => 100_000, // Longer than a probe: straddles several GETs.
            n => n * 3,
        };
        out.extend_from_slice(format!("{seed}-{i} ").as_bytes());
        out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, width));
        out.push(b'\n');
    }
    out
}

#[test]
fn objects_read_like_files_across_chunk_boundaries_and_resume_at_the_same_offsets() {
    let url = StorageUrl::parse("memory://object-source-chunks/in").unwrap();
    // About 20 MiB and 1 MiB: the large object spans several 8 MiB chunks and is cut into
    // ranges whose ends fall inside chunks and inside long lines.
    let files = vec![
        ("big.txt".to_string(), numbered_lines(120_000, 1)),
        ("small.txt".to_string(), numbered_lines(6_000, 2)),
        ("_SUCCESS".to_string(), b"hidden\n".to_vec()),
    ];
    assert!(files[0].1.len() > 2 * ranged::CHUNK as usize);
    let dir = put_both(&url, &files);
    for (num_partitions, min_split) in [(1, DEFAULT_MIN_SPLIT), (5, 1), (7, 3 << 20)] {
        let by_file = TextDirSource::new(dir.path()).with_min_split(min_split);
        let by_object = ObjectTextSource::new(&url).unwrap().with_min_split(min_split);
        assert_same_shares(&by_file, &by_object, num_partitions, 0.6);
    }
}

#[test]
fn the_plan_is_the_file_plan_by_name() {
    let url = StorageUrl::parse("memory://object-source-plan/in").unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("f{i}"), numbered_lines(50 + 40 * i, i)))
        .collect();
    let dir = put_both(&url, &files);
    let source = ObjectTextSource::new(&url).unwrap().with_min_split(1);
    let listing: Vec<(std::path::PathBuf, u64)> = files
        .iter()
        .map(|(name, content)| (dir.path().join(name), content.len() as u64))
        .collect();
    for num_partitions in [1, 3, 5, 8, 16] {
        let by_file: Vec<Vec<(String, u64, u64)>> = plan_splits_min(&listing, num_partitions, 1)
            .into_iter()
            .map(|share| {
                let file_name = |s: &Split| s.path.file_name().unwrap().to_str().unwrap().to_string();
                share.iter().map(|s| (file_name(s), s.start, s.end)).collect()
            })
            .collect();
        let by_object: Vec<Vec<(String, u64, u64)>> = source
            .plan(num_partitions)
            .unwrap()
            .into_iter()
            .map(|share| {
                let key_name = |s: &Split<ObjectPath>| s.path.filename().unwrap().to_string();
                share.iter().map(|s| (key_name(s), s.start, s.end)).collect()
            })
            .collect();
        assert_eq!(by_file, by_object, "{num_partitions} partitions");
    }
}

#[test]
fn a_split_downloads_its_own_bytes_not_the_object() {
    let url = StorageUrl::parse("memory://object-source-ranged/in").unwrap();
    let content = numbered_lines(60_000, 3);
    let _dir = put_both(&url, &[("big.txt".to_string(), content.clone())]);
    let location = url.open().unwrap();
    let (size, mib) = (content.len() as u64, 1 << 20);
    // A split [1 MiB, 2 MiB): a probe for its first line, then its bytes.
    let mut reader = RangedReader::new(location.clone(), location.key("big.txt"), size, 2 * mib);
    reader.seek(std::io::SeekFrom::Start(mib - 1)).unwrap();
    let mut buf = vec![0u8; mib as usize];
    std::io::Read::read_exact(&mut reader, &mut buf).unwrap();
    assert_eq!(&buf[..], &content[(mib - 1) as usize..(2 * mib - 1) as usize]);
    assert!(
        reader.fetched() < mib + 2 * ranged::PROBE,
        "fetched {} bytes of a {size}-byte object for a 1 MiB range",
        reader.fetched()
    );
}

#[test]
fn validate_names_the_url_of_an_empty_prefix() {
    let source =
        ObjectTextSource::new(&StorageUrl::parse("memory://object-source-empty/none").unwrap()).unwrap();
    let err = source.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid job: input memory://object-source-empty/none holds no objects"
    );
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just(String::new()), 6 => "[a-zé€ ]{1,12}", 1 => "[a-z]{2000,70000}"]
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
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_input_reads_as_the_file_source_reads_it(
        files in vec(file_content(), 0..6),
        num_partitions in 1usize..12,
        stop_fraction in 0.0f64..1.0,
        case in any::<u64>(),
    ) {
        let url = StorageUrl::parse(&format!("memory://object-source-prop-{case}/in")).unwrap();
        let files: Vec<(String, Vec<u8>)> =
            files.into_iter().enumerate().map(|(i, c)| (format!("f{i}"), c)).collect();
        let dir = put_both(&url, &files);
        let by_file = TextDirSource::new(dir.path()).with_min_split(1);
        let by_object = ObjectTextSource::new(&url).unwrap().with_min_split(1);
        assert_same_shares(&by_file, &by_object, num_partitions, stop_fraction);
    }
}

/// Needs the S3 server that `scripts/tier2.sh` starts.
mod tier2 {
    use super::*;
    use crate::storage::tests::tier2::s3_test_url;

    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn s3_objects_read_like_files_across_chunks_and_resume() {
        let url = s3_test_url("object-source");
        let files = vec![
            ("big.txt".to_string(), numbered_lines(50_000, 1)),
            ("small.txt".to_string(), numbered_lines(3_000, 2)),
        ];
        assert!(files[0].1.len() > ranged::CHUNK as usize);
        let dir = put_both(&url, &files);
        for (num_partitions, min_split) in [(1, DEFAULT_MIN_SPLIT), (4, 1)] {
            let by_file = TextDirSource::new(dir.path()).with_min_split(min_split);
            let by_object = ObjectTextSource::new(&url).unwrap().with_min_split(min_split);
            by_object.validate().unwrap();
            assert_same_shares(&by_file, &by_object, num_partitions, 0.5);
        }
    }

    #[test]
    #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
    fn a_missing_bucket_is_an_error_naming_it() {
        let url = StorageUrl::parse("s3://swd-no-such-bucket/in").unwrap();
        let _ = s3_test_url("bucket-check"); // Fails without the tier-2 environment.
        let err = ObjectTextSource::new(&url)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("s3://swd-no-such-bucket/in"), "{err}");
    }
}
