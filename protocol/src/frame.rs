//! Frames: a fixed 24-byte little-endian header and a body.
//!
//! ```text
//! 0..4   magic "MRCT"
//! 4..6   protocol version (u16)
//! 6      kind (u8): see [`Kind`]
//! 7      flags (u8): none are defined in version 1; must be 0
//! 8..12  body length in bytes (u32)
//! 12..20 request id (u64), chosen by the client, echoed in the answer
//! 20..24 crc32c of bytes 0..20 followed by the body (u32)
//! ```
//!
//! [`FrameDecoder`] reads frames incrementally from a `BytesMut` that a
//! connection keeps appending to: a frame may arrive over many reads, and one
//! read may hold many frames. It checks the length against its limit before
//! it reserves a byte for the body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const MAGIC: [u8; 4] = *b"MRCT";
/// 2: `Welcome::answer_bytes_max`, paged `Reply::Orders`, `Info`, codes
/// 12 to 15.
pub const VERSION: u16 = 3;
pub const HEADER_BYTES: usize = 24;
/// The default limit on a frame's body (DESIGN.md: 1 MiB).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 1 << 20;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client → server, first frame: a [`crate::Hello`].
    Hello = 1,
    /// Server → client: a [`crate::Welcome`].
    Welcome = 2,
    /// Client → server: a [`crate::Requests`] batch.
    Requests = 3,
    /// Server → client: the [`crate::Answers`] to one batch, in order.
    Answers = 4,
    /// Server → client: a [`crate::ErrorBody`]; the server may close after it.
    Error = 5,
    /// Server → client, unasked: a [`crate::Notice`]; request id 0.
    Notice = 6,
    /// Server → client, unasked: a [`crate::FeedBatch`] of a subscription
    /// on this connection; request id 0.
    Feed = 7,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Requests,
            4 => Kind::Answers,
            5 => Kind::Error,
            6 => Kind::Notice,
            7 => Kind::Feed,
            _ => return None,
        })
    }
}

/// A whole frame, header checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub request_id: u64,
    pub body: Bytes,
}

/// Why bytes are not a frame. Every variant but `TooLarge` and
/// `BadChecksum` means framing is lost: the connection must close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("bad magic {found:02x?}; expected \"MRCT\"")]
    BadMagic { found: [u8; 4] },
    #[error("protocol version {found}; this side speaks {supported}")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("unknown frame kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("flags {flags:#04x} are not defined")]
    BadFlags { flags: u8 },
    #[error("frame body of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("frame {request_id} fails its checksum")]
    BadChecksum { request_id: u64 },
}

/// Append one frame to `out`.
pub fn encode_frame(out: &mut BytesMut, kind: Kind, request_id: u64, body: &[u8]) {
    out.reserve(HEADER_BYTES + body.len());
    let start = out.len();
    out.put_slice(&MAGIC);
    out.put_u16_le(VERSION);
    out.put_u8(kind as u8);
    out.put_u8(0);
    out.put_u32_le(body.len() as u32);
    out.put_u64_le(request_id);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 20]), body);
    out.put_u32_le(crc);
    out.put_slice(body);
}

/// Reads frames out of a growing buffer.
#[derive(Clone, Copy, Debug)]
pub struct FrameDecoder {
    pub frame_bytes_max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
        }
    }
}

impl FrameDecoder {
    /// The next whole frame at the front of `buf`, removed from it; `None`
    /// if more bytes are needed. On an error nothing is removed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_BYTES {
            // Check what is there already, so garbage is refused at once
            // rather than after a header's worth of it.
            check_prefix(buf)?;
            return Ok(None);
        }
        let h = &buf[..HEADER_BYTES];
        check_prefix(h)?;
        let kind_byte = h[6];
        let kind = Kind::from_u8(kind_byte).ok_or(FrameError::UnknownKind { kind: kind_byte })?;
        if h[7] != 0 {
            return Err(FrameError::BadFlags { flags: h[7] });
        }
        let len = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) as usize;
        if len > self.frame_bytes_max {
            return Err(FrameError::TooLarge {
                len,
                max: self.frame_bytes_max,
            });
        }
        let request_id = u64::from_le_bytes(h[12..20].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(h[20..24].try_into().expect("4 bytes"));
        if buf.len() < HEADER_BYTES + len {
            buf.reserve(HEADER_BYTES + len - buf.len());
            return Ok(None);
        }
        let computed = crc32c::crc32c_append(
            crc32c::crc32c(&buf[..20]),
            &buf[HEADER_BYTES..HEADER_BYTES + len],
        );
        if computed != crc {
            return Err(FrameError::BadChecksum { request_id });
        }
        buf.advance(HEADER_BYTES);
        let body = buf.split_to(len).freeze();
        Ok(Some(Frame {
            kind,
            request_id,
            body,
        }))
    }
}

/// Magic and version, as far as `b` goes.
fn check_prefix(b: &[u8]) -> Result<(), FrameError> {
    let n = b.len().min(4);
    if b[..n] != MAGIC[..n] {
        let mut found = [0u8; 4];
        found[..n].copy_from_slice(&b[..n]);
        return Err(FrameError::BadMagic { found });
    }
    if b.len() >= 6 {
        let v = u16::from_le_bytes([b[4], b[5]]);
        if v != VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: v,
                supported: VERSION,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, id: u64, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        encode_frame(&mut b, kind, id, body);
        b
    }

    #[test]
    fn frames_arrive_in_pieces_and_in_bunches() {
        let d = FrameDecoder::default();
        let mut wire = frame(Kind::Requests, 7, b"hello");
        wire.extend_from_slice(&frame(Kind::Answers, 8, b""));
        wire.extend_from_slice(&frame(Kind::Error, 9, &[1; 1000]));
        // One byte at a time.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in wire.iter() {
            buf.put_u8(b);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].kind, got[0].request_id, &got[0].body[..]),
            (Kind::Requests, 7, &b"hello"[..])
        );
        assert_eq!((got[1].kind, got[1].body.len()), (Kind::Answers, 0));
        assert_eq!(got[2].body.len(), 1000);
        // All at once.
        let mut buf = wire.clone();
        let mut n = 0;
        while d.decode(&mut buf).unwrap().is_some() {
            n += 1;
        }
        assert_eq!((n, buf.len()), (3, 0));
    }

    #[test]
    fn an_oversize_length_is_refused_before_any_allocation() {
        let d = FrameDecoder {
            frame_bytes_max: 64,
        };
        let mut wire = frame(Kind::Requests, 1, &[0; 65]);
        wire.truncate(HEADER_BYTES);
        let mut buf = BytesMut::with_capacity(HEADER_BYTES);
        buf.extend_from_slice(&wire);
        let cap = buf.capacity();
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooLarge { len: 65, max: 64 })
        );
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn each_broken_header_field_has_its_error() {
        let d = FrameDecoder::default();
        let good = frame(Kind::Requests, 3, b"body");
        let cases: [(usize, u8, FrameError); 4] = [
            (0, b'X', FrameError::BadMagic { found: *b"XRCT" }),
            (
                4,
                9,
                FrameError::UnsupportedVersion {
                    found: 9,
                    supported: VERSION,
                },
            ),
            (6, 77, FrameError::UnknownKind { kind: 77 }),
            (7, 1, FrameError::BadFlags { flags: 1 }),
        ];
        for (at, v, want) in cases {
            let mut bad = good.clone();
            bad[at] = v;
            assert_eq!(d.decode(&mut bad), Err(want), "byte {at}");
        }
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            d.decode(&mut bad),
            Err(FrameError::BadChecksum { request_id: 3 })
        );
        // Garbage is refused as soon as its first byte is seen.
        let mut junk = BytesMut::from(&b"G"[..]);
        assert!(matches!(
            d.decode(&mut junk),
            Err(FrameError::BadMagic { .. })
        ));
    }
}
