//! The framing of every stored file, data and manifest alike, so that a reader detects a torn,
//! truncated or altered file on its own, without the manifest:
//!
//! ```text
//! "SWCK" | version u8 | payload length u64 LE | crc32 of payload u32 LE | payload
//! ```
//!
//! Any single changed byte is caught: in the magic or version by their check, in the length by
//! the size of what follows, in the checksum or the payload by the crc32.

/// The first bytes of every stored checkpoint file.
pub const MAGIC: [u8; 4] = *b"SWCK";

/// The version of the framing written by this build.
pub const FRAME_VERSION: u8 = 1;

/// Bytes before the payload: magic, version, length, crc32.
pub const HEADER_LEN: usize = 4 + 1 + 8 + 4;

/// `payload` framed for storage.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    frame_pieces(&[payload])
}

/// The payload made of `pieces`, one after another, framed for storage: one copy, where
/// joining the pieces first would make two.
pub fn frame_pieces(pieces: &[&[u8]]) -> Vec<u8> {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let mut crc = crc32fast::Hasher::new();
    pieces.iter().for_each(|p| crc.update(p));
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&MAGIC);
    out.push(FRAME_VERSION);
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    pieces.iter().for_each(|p| out.extend_from_slice(p));
    out
}

/// The payload of a framed file, or why the file is not a complete, intact frame.
pub fn unframe(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    check(&bytes)?;
    bytes.drain(..HEADER_LEN);
    Ok(bytes)
}

/// Checks a framed file without copying it.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if header[..4] != MAGIC {
        return Err(format!("bad magic {:02x?}", &header[..4]));
    }
    if header[4] != FRAME_VERSION {
        return Err(format!("unsupported frame version {}", header[4]));
    }
    let len = u64::from_le_bytes(header[5..13].try_into().expect("8 bytes"));
    if len != payload.len() as u64 {
        return Err(format!(
            "header says {len} payload bytes, {} present (torn or truncated)",
            payload.len()
        ));
    }
    let want = u32::from_le_bytes(header[13..17].try_into().expect("4 bytes"));
    let got = crc32fast::hash(payload);
    if want != got {
        return Err(format!("crc32 {got:08x}, header says {want:08x}"));
    }
    Ok(())
}
