//! The network face: converting between the wire protocol's types and the
//! engine's ([`convert`]), one connection's protocol state without its
//! socket ([`conn`]), and TLS between that state and the socket ([`tls`]).
//! The mio loops that drive them are the shards' (`runtime/net.rs`).

pub mod conn;
pub mod convert;
pub mod tls;
