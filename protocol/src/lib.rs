//! mercato's wire protocol (not written yet; see the network-face issue).
//!
//! This crate will hold the frame format (a fixed little-endian header with
//! magic, version, kind, flags, body length, request id and a crc32c), the
//! message types as validated rkyv archives, incremental encoding and decoding
//! on `bytes` buffers with the frame size checked before any allocation, the
//! error codes, and `PROTOCOL.md`, the byte-level spec. It depends on nothing
//! else in the workspace, so a client never links the engine.
#![forbid(unsafe_code)]
