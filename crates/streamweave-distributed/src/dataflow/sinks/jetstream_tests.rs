use super::*;

#[test]
fn only_nats_urls_make_a_sink_and_ids_are_subject_tokens() {
    assert!(JetStreamSink::parse(Path::new("out"), "x")
        .expect("a path")
        .is_none());
    let sink = JetStreamSink::parse(Path::new("nats://h:1/out.lines"), "word count/1.2")
        .expect("valid")
        .expect("nats");
    assert_eq!(sink.inner.id, "word_count_1_2");
    assert_eq!(sink.spool_subject(3, 7), "swd.spool.word_count_1_2.3.7");
}

/// Against a real `nats-server -js` (scripts/tier2.sh).
mod tier2 {
    use super::*;
    use crate::dataflow::jetstream::tier2::{create_stream, read_stream, server};

    fn lines(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("record {i}")).collect()
    }

    fn write_epoch(sink: &JetStreamSink, partition: usize, attempt: u64, epoch: u64, records: Vec<String>) {
        let mut writer = sink
            .open(&SinkContext {
                partition,
                num_partitions: 2,
                attempt,
            })
            .expect("open");
        for record in records {
            writer.write(record).expect("write");
        }
        writer.pre_commit(epoch).expect("pre-commit");
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn epochs_are_published_only_on_commit_exactly_once() {
        let server = server();
        let name = format!("sinkout{}", std::process::id());
        create_stream(&server, &name);
        let url = format!("nats://{server}/{name}.lines");
        let sink = JetStreamSink::parse(Path::new(&url), &name)
            .expect("valid")
            .expect("nats");
        sink.validate().expect("reachable");
        sink.discard_after(0, 0).expect("a clean spool");
        write_epoch(&sink, 0, 1, 1, lines(0..100));
        write_epoch(&sink, 0, 1, 2, lines(100..150));
        assert!(
            read_stream(&server, &name).is_empty(),
            "nothing before the commit"
        );

        sink.commit_epochs(0, 1).expect("commit 1");
        assert_eq!(read_stream(&server, &name), lines(0..100));
        sink.commit_epochs(0, 1).expect("repeated commit");
        assert_eq!(
            read_stream(&server, &name),
            lines(0..100),
            "a repeat publishes nothing new"
        );

        // Recovery from checkpoint 1: epoch 2 is thrown away, and written again by the new attempt.
        sink.discard_after(0, 1).expect("discard");
        sink.commit_epochs(0, 2).expect("nothing to commit");
        assert_eq!(read_stream(&server, &name), lines(0..100));
        write_epoch(&sink, 0, 2, 2, lines(100..150));
        sink.commit_epochs(0, 2).expect("commit 2");
        assert_eq!(read_stream(&server, &name), lines(0..150));
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn a_commit_repeated_after_its_records_were_acknowledged_is_dropped_by_the_ids() {
        let server = server();
        let name = format!("sinkdup{}", std::process::id());
        create_stream(&server, &name);
        let url = format!("nats://{server}/{name}.lines");
        let sink = JetStreamSink::parse(Path::new(&url), &name)
            .expect("valid")
            .expect("nats");
        sink.discard_after(1, 0).expect("a clean spool");
        write_epoch(&sink, 1, 1, 4, lines(0..3000));
        sink.commit_epochs(1, 4).expect("commit");
        // A worker that died after the acks but before the purge: the spool still holds the
        // epoch when the next owner commits it again.
        write_epoch(&sink, 1, 2, 4, lines(0..3000));
        sink.commit_epochs(1, 4).expect("commit again");
        assert_eq!(read_stream(&server, &name), lines(0..3000), "every record once");
    }
}
