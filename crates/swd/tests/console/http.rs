//! A minimal HTTP/1.1 GET over a std `TcpStream` (the tests need nothing more, and the
//! server under test is the real one).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The status code and body of `GET url` (`http://HOST:PORT/PATH`), with `accept` as the
/// Accept header when given.
pub fn get_with(url: &str, accept: Option<&str>) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{accept}Connection: close\r\n\r\n"
    )
    .expect("send");
    // Read the header, then Content-Length bytes (Chromium's DevTools server keeps the
    // connection open whatever the request says), or to the end without one.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).expect("read response");
        assert!(
            n > 0,
            "connection closed in the header: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(raw[..split].to_vec()).expect("utf-8 header");
    let mut body = raw[split + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    match length {
        Some(length) => {
            while body.len() < length {
                let n = stream.read(&mut buf).expect("read body");
                assert!(n > 0, "connection closed in the body");
                body.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut body).expect("read body");
        }
    }
    let body = String::from_utf8(body).expect("utf-8 body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line in {head:?}"));
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "the helper reads only plain bodies: {head}"
    );
    (status, body)
}

/// `GET url`, which must answer 200.
pub fn get(url: &str) -> String {
    let (status, body) = get_with(url, None);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}
