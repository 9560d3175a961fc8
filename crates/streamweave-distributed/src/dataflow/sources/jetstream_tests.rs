use super::*;

#[test]
fn until_parses_end_and_sequences() {
    assert_eq!(Until::parse(None).expect("absent"), Until::Forever);
    assert_eq!(Until::parse(Some("end")).expect("end"), Until::End);
    assert_eq!(Until::parse(Some("42")).expect("a sequence"), Until::Sequence(42));
    assert!(Until::parse(Some("soon")).is_err());
}

#[test]
fn only_nats_urls_make_a_source() {
    assert!(JetStreamSource::parse(Path::new("data/in"), Until::End)
        .expect("a path")
        .is_none());
    let source = JetStreamSource::parse(Path::new("nats://h:1/S"), Until::End)
        .expect("valid")
        .expect("a nats:// URL");
    assert!(source.is_bounded());
}

#[test]
fn a_partitions_share_between_two_sequences_is_counted_exactly() {
    for n in 1..6u64 {
        for p in 0..n {
            for after in 0..20u64 {
                for upto in after..30u64 {
                    let brute = (after + 1..=upto).filter(|s| s % n == p).count() as u64;
                    assert_eq!(
                        share_between(after, upto, p, n),
                        brute,
                        "{after}..={upto}, {p} of {n}"
                    );
                }
            }
        }
    }
    assert_eq!(
        share_between(10, 5, 0, 2),
        0,
        "a position past the end has no lag"
    );
}

/// Against a real `nats-server -js` (scripts/tier2.sh).
mod tier2 {
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_nats::jetstream::message::PublishMessage;

    use super::*;
    use crate::dataflow::jetstream::tier2::{create_stream, publish_lines, server, OwnServer};
    use crate::dataflow::jetstream::{jetstream, run};

    /// A fresh stream `name` capturing subject `name.lines`, holding `lines`.
    fn stream_with(server: &str, name: &str, lines: Vec<String>) {
        create_stream(server, name);
        publish_lines(server, &format!("{name}.lines"), lines);
    }

    fn source(server: &str, name: &str, until: Until) -> JetStreamSource {
        JetStreamSource::parse(Path::new(&format!("nats://{server}/{name}")), until)
            .expect("valid")
            .expect("nats")
    }

    fn ctx(partition: usize, num_partitions: usize) -> SourceContext {
        SourceContext {
            partition,
            num_partitions,
        }
    }

    fn numbered(n: u64) -> Vec<String> {
        (1..=n).map(|i| format!("line {i}")).collect()
    }

    /// Reads until the source ends or `stop_after` records were emitted.
    fn read(
        source: &JetStreamSource,
        ctx: SourceContext,
        from: u64,
        stop_after: Option<usize>,
    ) -> (Vec<String>, SourceEnd) {
        let mut got = Vec::new();
        let end = source
            .read(&ctx, SourceOffset(from), &mut |line| {
                got.push(line);
                match Some(got.len()) == stop_after {
                    true => Flow::Stop,
                    false => Flow::Continue,
                }
            })
            .expect("read");
        (got, end)
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn partitions_split_by_sequence_and_end_at_the_last_one() {
        let server = server();
        let name = format!("split{}", std::process::id());
        stream_with(&server, &name, numbered(100));
        let source = source(&server, &name, Until::End);
        source.validate().expect("the stream exists");
        let mut all = Vec::new();
        for p in 0..3 {
            let (got, end) = read(&source, ctx(p, 3), 0, None);
            let expected: Vec<String> = (1..=100u64)
                .filter(|s| s % 3 == p as u64)
                .map(|s| format!("line {s}"))
                .collect();
            assert_eq!(got, expected, "partition {p} takes the sequences = {p} mod 3");
            assert_eq!(end, SourceEnd::Exhausted(SourceOffset(100)));
            all.extend(got);
        }
        all.sort();
        let mut expected = numbered(100);
        expected.sort();
        assert_eq!(all, expected);
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn lag_counts_the_partitions_messages_behind_the_streams_end() {
        let server = server();
        let name = format!("lag{}", std::process::id());
        stream_with(&server, &name, numbered(100));
        let source = source(&server, &name, Until::Forever);
        assert_eq!(source.lag(1), None, "nothing read yet");
        // Ten of partition 1's fifty messages (the odd sequences): the lag is as of the last
        // wait for messages, which may have come before some of the ten were taken.
        let (got, end) = read(&source, ctx(1, 2), 0, Some(10));
        assert_eq!(got.len(), 10);
        let lag = source.lag(1).expect("a lag once the consumer answered");
        assert!((40..=50).contains(&lag), "{lag}: stale by at most one wait");
        // The other forty, then one more wait that finds nothing: caught up.
        let emitted = std::cell::Cell::new(0usize);
        let waits_after = std::cell::Cell::new(0usize);
        let SourceEnd::Stopped(SourceOffset(from)) = end else {
            panic!("stopped, not {end:?}")
        };
        let end = source
            .read_interruptible(
                &ctx(1, 2),
                SourceOffset(from),
                &|| {
                    if emitted.get() < 40 {
                        return false;
                    }
                    waits_after.set(waits_after.get() + 1);
                    waits_after.get() >= 2
                },
                &mut |_| {
                    emitted.set(emitted.get() + 1);
                    Flow::Continue
                },
            )
            .expect("read");
        assert_eq!(emitted.get(), 40);
        assert_eq!(end, SourceEnd::Stopped(SourceOffset(100)));
        assert_eq!(source.lag(1), Some(0), "caught up with the stream");
        // Thirty more messages (new ids: the stream drops repeated ones), fifteen of them
        // partition 1's.
        let more: Vec<String> = (1..=30).map(|i| format!("more {i}")).collect();
        publish_lines(&server, &format!("{name}.lines"), more);
        let (got, _) = read(&source, ctx(1, 2), 100, Some(1));
        assert_eq!(
            got,
            vec!["more 1".to_string()],
            "sequence 101 is the new batch's first line"
        );
        assert_eq!(source.lag(1), Some(15));
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn a_stopped_partition_resumes_exactly_after_its_offset() {
        let server = server();
        let name = format!("resume{}", std::process::id());
        stream_with(&server, &name, numbered(60));
        let (got, end) = read(&source(&server, &name, Until::End), ctx(1, 2), 0, Some(10));
        assert_eq!(got.last().map(String::as_str), Some("line 19"));
        assert_eq!(
            end,
            SourceEnd::Stopped(SourceOffset(19)),
            "the offset is the stream sequence"
        );
        // A new source (another worker, a restored attempt) from that offset.
        let (rest, end) = read(&source(&server, &name, Until::End), ctx(1, 2), 19, None);
        assert_eq!(rest.first().map(String::as_str), Some("line 21"));
        assert_eq!(rest.len(), 20);
        assert_eq!(end, SourceEnd::Exhausted(SourceOffset(60)));
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn an_idle_unbounded_source_stops_when_interrupted() {
        let server = server();
        let name = format!("idle{}", std::process::id());
        stream_with(&server, &name, numbered(3));
        let source = source(&server, &name, Until::Forever);
        assert!(!source.is_bounded());
        let flag = AtomicBool::new(false);
        let mut got = Vec::new();
        let started = Instant::now();
        let end = source
            .read_interruptible(
                &ctx(0, 1),
                SourceOffset(0),
                &|| {
                    // Interrupt once everything there is was read and the source waits.
                    flag.load(Ordering::Acquire)
                },
                &mut |line| {
                    got.push(line);
                    if got.len() == 3 {
                        flag.store(true, Ordering::Release);
                    }
                    Flow::Continue
                },
            )
            .expect("read");
        assert_eq!(got, numbered(3));
        assert_eq!(end, SourceEnd::Stopped(SourceOffset(3)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    #[ignore = "tier 2: needs NATS (scripts/tier2.sh)"]
    fn a_server_restart_loses_and_repeats_nothing() {
        let mut own = OwnServer::start();
        let server = own.addr();
        let name = "restart";
        stream_with(&server, name, numbered(50));
        let source = source(&server, name, Until::Sequence(100));
        let (mut got, end) = read(&source, ctx(0, 1), 0, Some(30));
        assert_eq!(end, SourceEnd::Stopped(SourceOffset(30)));
        own.restart();
        // The process's client reconnects on its own; publish the second half through it.
        let url = NatsUrl {
            server: server.clone(),
            name: name.to_string(),
        };
        let js = url.client().expect("client");
        let more: Vec<String> = (51..=100).map(|i| format!("line {i}")).collect();
        let first_line = more[0].clone();
        run(async move {
            let js = jetstream(js);
            let deadline = Instant::now() + Duration::from_secs(20);
            // Until the client is back, publishing fails: retry the first one.
            loop {
                let first = PublishMessage::build()
                    .message_id(&first_line)
                    .payload(first_line.clone().into());
                if let Ok(ack) = js.send_publish(format!("{name}.lines"), first).await {
                    if ack.await.is_ok() {
                        break;
                    }
                }
                assert!(Instant::now() < deadline, "the client did not reconnect");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        publish_lines(&server, &format!("{name}.lines"), more[1..].to_vec());
        let (rest, end) = read(&source, ctx(0, 1), 30, None);
        got.extend(rest);
        assert_eq!(got, numbered(100), "every line once, in order");
        assert_eq!(end, SourceEnd::Exhausted(SourceOffset(100)));
    }
}
