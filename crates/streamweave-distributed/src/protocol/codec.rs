//! Length-prefixed frames carrying postcard-encoded messages, with a maximum frame size.

use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use super::ProtocolError;

/// Default maximum frame size: 16 MiB. Large enough for a status of thousands of workers,
/// small enough that a hostile length prefix cannot make us allocate much.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

const LEN_BYTES: usize = 4;

/// How far ahead of the bytes received the buffer of a partial frame grows: a header alone
/// announcing a large frame must not make us allocate it (a peer could announce 16 MiB on many
/// connections and stall), so the buffer grows as the body arrives.
pub(crate) const READ_AHEAD: usize = 64 * 1024;

/// Encodes `Out` messages and decodes `In` messages as frames: a 4-byte big-endian length
/// followed by the postcard encoding of the message.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder, Encoder};
/// use streamweave_distributed::protocol::{MessageCodec, WorkerMessage};
///
/// let mut codec = MessageCodec::<WorkerMessage, WorkerMessage>::new(1024);
/// let mut buf = BytesMut::new();
/// codec.encode(WorkerMessage::Leave, &mut buf).unwrap();
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(WorkerMessage::Leave));
/// ```
#[derive(Debug)]
pub struct MessageCodec<Out, In> {
    max_frame_size: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out, In> MessageCodec<Out, In> {
    /// A codec refusing frames above `max_frame_size` bytes (body length, without the prefix).
    pub fn new(max_frame_size: usize) -> Self {
        MessageCodec {
            max_frame_size,
            _types: PhantomData,
        }
    }
}

impl<Out, In> Clone for MessageCodec<Out, In> {
    fn clone(&self) -> Self {
        MessageCodec::new(self.max_frame_size)
    }
}

impl<Out: Serialize, In> Encoder<Out> for MessageCodec<Out, In> {
    type Error = ProtocolError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_frame(&item, self.max_frame_size, dst)
    }
}

impl<Out, In: DeserializeOwned> Decoder for MessageCodec<Out, In> {
    type Item = In;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        decode_frame(self.max_frame_size, src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::Truncated),
        }
    }
}

/// Appends one frame holding `item` to `dst`.
pub(crate) fn encode_frame<T: Serialize>(
    item: &T,
    max_frame_size: usize,
    dst: &mut BytesMut,
) -> Result<(), ProtocolError> {
    let body = postcard::to_stdvec(item).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    if body.len() > max_frame_size || body.len() > u32::MAX as usize {
        return Err(ProtocolError::FrameTooLarge {
            size: body.len(),
            max: max_frame_size,
        });
    }
    dst.reserve(LEN_BYTES + body.len());
    dst.put_u32(body.len() as u32);
    dst.extend_from_slice(&body);
    Ok(())
}

/// Takes one whole frame off the front of `src` and decodes it, or returns `None` when the
/// frame is not complete yet.
pub(crate) fn decode_frame<T: DeserializeOwned>(
    max_frame_size: usize,
    src: &mut BytesMut,
) -> Result<Option<T>, ProtocolError> {
    if src.len() < LEN_BYTES {
        return Ok(None);
    }
    let size = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if size > max_frame_size {
        return Err(ProtocolError::FrameTooLarge {
            size,
            max: max_frame_size,
        });
    }
    if src.len() < LEN_BYTES + size {
        src.reserve((LEN_BYTES + size - src.len()).min(READ_AHEAD));
        return Ok(None);
    }
    src.advance(LEN_BYTES);
    let body = src.split_to(size);
    postcard::from_bytes(&body)
        .map(Some)
        .map_err(|e| ProtocolError::Decode(e.to_string()))
}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> io::Error {
        match e {
            ProtocolError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::WorkerMessage;

    #[test]
    fn a_header_announcing_a_large_frame_reserves_little() {
        let mut codec = MessageCodec::<WorkerMessage, WorkerMessage>::new(DEFAULT_MAX_FRAME_SIZE);
        let mut buf = BytesMut::new();
        buf.put_u32(DEFAULT_MAX_FRAME_SIZE as u32);
        buf.extend_from_slice(&[0u8; 100]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(
            buf.capacity() <= 2 * READ_AHEAD,
            "a 16 MiB header reserved {} bytes",
            buf.capacity()
        );
    }

    #[test]
    fn a_large_frame_still_decodes_as_its_body_arrives() {
        let mut codec = MessageCodec::<Vec<u8>, Vec<u8>>::new(DEFAULT_MAX_FRAME_SIZE);
        let body = vec![7u8; 1 << 20];
        let mut whole = BytesMut::new();
        codec.encode(body.clone(), &mut whole).unwrap();
        let mut buf = BytesMut::new();
        let mut decoded = None;
        for chunk in whole.chunks(10_000) {
            buf.extend_from_slice(chunk);
            // Never more than the buffered bytes plus the read-ahead (with Vec's doubling).
            assert!(
                buf.capacity() <= 2 * (buf.len() + READ_AHEAD),
                "{}",
                buf.capacity()
            );
            if let Some(v) = codec.decode(&mut buf).unwrap() {
                decoded = Some(v);
            }
        }
        assert_eq!(decoded, Some(body));
    }

    /// A value whose serializer fails, as a type postcard cannot encode would.
    struct Unencodable;

    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("cannot be encoded"))
        }
    }

    #[test]
    fn a_message_that_cannot_be_encoded_is_an_encode_error_and_writes_nothing() {
        let mut buf = BytesMut::new();
        let result = encode_frame(&Unencodable, DEFAULT_MAX_FRAME_SIZE, &mut buf);
        assert!(matches!(result, Err(ProtocolError::Encode(_))), "{result:?}");
        assert!(buf.is_empty());
    }
}
