//! The network face: converting between the wire protocol's types and the
//! engine's ([`convert`]), one connection's protocol state without its
//! socket ([`conn`]), and TLS between that state and the socket ([`tls`]).
//! The mio loops that drive them are the shards' (`runtime/net.rs`).

pub mod conn;
pub mod convert;
pub mod tls;

/// Bytes read and dropped from a socket about to be refused, at most.
const REFUSED_DRAIN_BYTES_MAX: usize = 64 << 10;

/// Reads and drops what a socket about to be refused and closed has
/// already received (its client's `Hello`, say): closing on unread bytes
/// sends a reset, which can reach the client before the refusal's frame
/// and lose it. Never waits: the socket is non-blocking.
pub(crate) fn drain_unread(sock: &mut mio::net::TcpStream) {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSED_DRAIN_BYTES_MAX {
        match sock.read(&mut buf) {
            Ok(n) if n > 0 => drained += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
}
