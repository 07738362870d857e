//! mercato's wire protocol: frames, message bodies and error codes.
//!
//! A frame is a fixed 24-byte little-endian header (magic, version, kind,
//! flags, body length, request id, crc32c; see [`frame`]) and a body that is
//! an rkyv archive of one of the [`message`] types, validated on receipt.
//! [`FrameDecoder`] reads frames incrementally and checks the size limit
//! before allocating. `PROTOCOL.md`, next to this crate, is the byte-level
//! spec for writing a client in another language. The crate depends on
//! nothing else of mercato's, so a client never links the engine.
//!
//! ```
//! use bytes::BytesMut;
//! use mercato_protocol::{Body, FrameDecoder, Kind, Request, Requests, encode_frame};
//!
//! let batch = Requests { requests: vec![Request::GetSku { sku: 7 }] };
//! let mut wire = BytesMut::new();
//! encode_frame(&mut wire, Kind::Requests, 1, &batch.to_body());
//!
//! let frame = FrameDecoder::default().decode(&mut wire).unwrap().unwrap();
//! assert_eq!(frame.kind, Kind::Requests);
//! assert_eq!(Requests::from_body(&frame.body).unwrap(), batch);
//! ```
#![forbid(unsafe_code)]

mod body;
mod bounds;
mod code;
pub mod frame;
pub mod message;

pub use body::{Body, BodyError};
pub use bounds::*;
pub use code::ErrorCode;
pub use frame::{
    FRAME_BYTES_MAX_DEFAULT, Frame, FrameDecoder, FrameError, HEADER_BYTES, Kind, VERSION,
    encode_frame,
};
pub use message::*;

/// The shard that owns `id` (a SKU or an account) among `shards`: hash 1 of
/// `Welcome::shard_hash`. SplitMix64's finalizer spreads sequential ids,
/// then a multiply-shift maps the hash onto `0..shards` without a division.
#[inline]
pub fn shard_of(id: u64, shards: u16) -> u16 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((u128::from(z) * u128::from(shards)) >> 64) as u16
}

/// The id a named object (a lock, a semaphore, a saga) is placed by:
/// FNV-1a over its name's bytes, then [`shard_of`] like any id. Fixed
/// here, since clients route by it too.
#[inline]
pub fn name_id(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
