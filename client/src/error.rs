//! The client's one error type: what went wrong between the caller and the
//! server. A business rejection is not an error here; it is the inner
//! `Err(Reject)` of a call's result, as in the engine.

use mercato_protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server refused the handshake or closed with an error frame.
    #[error("the server refused: {code:?}: {message}")]
    Refused { code: ErrorCode, message: String },
    /// TLS could not be set up: a certificate or key that does not load,
    /// a handshake that failed, or a server that does not speak TLS.
    #[error("TLS: {what}")]
    Tls { what: String },
    /// The server sent something this client cannot read.
    #[error("protocol violation from the server: {what}")]
    Protocol { what: String },
    /// The connection to a shard broke before the answer came.
    #[error("lost the connection to shard {shard}")]
    Disconnected { shard: u16 },
    /// No answer within the call's timeout.
    #[error("no answer from shard {shard} within {timeout_ms} ms")]
    Timeout { shard: u16, timeout_ms: u64 },
    /// The request did not run (`Busy`, `Shutdown`) or its outcome is
    /// unknown (`Unavailable`).
    #[error("the request failed: {code:?}")]
    Failed { code: ErrorCode },
    /// The configuration does not fit the server it met.
    #[error("bad client configuration: {what}")]
    Config { what: String },
    #[error("a batch holds at most {max} requests, this one {len}")]
    BatchTooLong { len: usize, max: usize },
    /// One shard's part of a batch could take more bytes than the server
    /// reads in a frame (`what` = "request") or sends in one (`"answer"`);
    /// split it.
    #[error("a batch whose {what} may take {bytes} bytes; the server allows {max}")]
    BatchTooLarge {
        what: &'static str,
        bytes: usize,
        max: usize,
    },
}
