//! Messages read from the network: a frame body decoded as one message enum, and a byte stream
//! decoded frame by frame whatever the size of the reads.

use std::fmt::Debug;

use bytes::{BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use streamweave_distributed::protocol::{MessageCodec, DEFAULT_MAX_FRAME_SIZE};
use tokio_util::codec::{Decoder, Encoder};

/// The bounds every wire message has.
pub trait Message: Serialize + DeserializeOwned + Clone + PartialEq + Debug {}
impl<T: Serialize + DeserializeOwned + Clone + PartialEq + Debug> Message for T {}

/// Decodes `body` as the body of one frame holding a `T`, as a connection reads it; a message
/// that decodes must encode again and decode to itself.
pub fn decode<T: Message>(body: &[u8]) {
    let mut codec = MessageCodec::<T, T>::new(DEFAULT_MAX_FRAME_SIZE);
    let mut buf = BytesMut::with_capacity(4 + body.len());
    buf.put_u32(body.len() as u32);
    buf.extend_from_slice(body);
    let Ok(Some(message)) = codec.decode(&mut buf) else {
        return;
    };
    assert!(buf.is_empty(), "a whole frame was left partly unread");
    let mut encoded = BytesMut::new();
    codec
        .encode(message.clone(), &mut encoded)
        .expect("a decoded message encodes");
    let again = codec.decode(&mut encoded).expect("a re-encoded message decodes");
    assert_eq!(again, Some(message));
}

/// What decoding a stream produced: the messages, then how it ended (`None`: cleanly).
type Outcome<T> = (Vec<T>, Option<String>);

/// Decodes `data` (the first byte sets the read size, the second the maximum frame size) as a
/// stream of `T` frames arriving in reads of that size; the messages and the error that ends
/// them must be the same as when the whole stream arrives at once.
pub fn decode_stream<T: Message>(data: &[u8]) {
    let [chunk, max, stream @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk).max(1);
    // Small limits reach FrameTooLarge; 0 selects the default.
    let max = match *max {
        0 => DEFAULT_MAX_FRAME_SIZE,
        m => usize::from(m) * 4,
    };
    let whole = decode_chunks::<T>(stream, stream.len().max(1), max);
    let pieces = decode_chunks::<T>(stream, chunk, max);
    assert_eq!(whole, pieces, "the outcome depends on how the bytes arrive");
}

fn decode_chunks<T: Message>(stream: &[u8], chunk: usize, max: usize) -> Outcome<T> {
    let mut codec = MessageCodec::<T, T>::new(max);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => return (messages, Some(e.to_string())),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return (messages, None),
            Err(e) => return (messages, Some(e.to_string())),
        }
    }
}
