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
mod code;
pub mod frame;
pub mod message;

pub use body::{Body, BodyError};
pub use code::ErrorCode;
pub use frame::{
    FRAME_BYTES_MAX_DEFAULT, Frame, FrameDecoder, FrameError, HEADER_BYTES, Kind, VERSION,
    encode_frame,
};
pub use message::*;
