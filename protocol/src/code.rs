//! Error codes, as numbers on the wire. A number never changes meaning;
//! new codes take new numbers.

/// Why a request failed or a connection is being closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    // Framing: the connection closes after these.
    BadMagic = 1,
    UnsupportedVersion = 2,
    UnknownKind = 3,
    BadFlags = 4,
    FrameTooLarge = 5,
    BadChecksum = 6,
    BadBody = 7,
    /// A frame of a kind the other side must not send (a `Requests` before `Hello`).
    UnexpectedFrame = 8,
    AuthFailed = 9,
    BatchTooLong = 10,
    TooManyInFlight = 11,
    /// A batch whose answers could pass `Welcome::answer_bytes_max`.
    AnswerTooLarge = 12,
    /// The shard already serves `conns_max` connections.
    TooManyConnections = 13,
    /// No `Hello` within the server's handshake timeout.
    HandshakeTimeout = 14,
    /// Nothing sent or received within the server's idle timeout.
    IdleTimeout = 15,
    /// A plain connection to a port that serves TLS only.
    TlsRequired = 16,
    // Per request, in `Answer::Failed`: the request did not run.
    Busy = 100,
    Shutdown = 101,
    /// The shard's log failed; whether the request took effect is unknown.
    Unavailable = 102,
    /// No answer within the client's timeout (client side only).
    Timeout = 103,
    Internal = 199,
}

impl ErrorCode {
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            1 => BadMagic,
            2 => UnsupportedVersion,
            3 => UnknownKind,
            4 => BadFlags,
            5 => FrameTooLarge,
            6 => BadChecksum,
            7 => BadBody,
            8 => UnexpectedFrame,
            9 => AuthFailed,
            10 => BatchTooLong,
            11 => TooManyInFlight,
            12 => AnswerTooLarge,
            13 => TooManyConnections,
            14 => HandshakeTimeout,
            15 => IdleTimeout,
            16 => TlsRequired,
            100 => Busy,
            101 => Shutdown,
            102 => Unavailable,
            103 => Timeout,
            199 => Internal,
            _ => return None,
        })
    }

    /// The code for a framing error.
    pub fn of_frame_error(e: &crate::FrameError) -> ErrorCode {
        use crate::FrameError as F;
        match e {
            F::BadMagic { .. } => ErrorCode::BadMagic,
            F::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            F::UnknownKind { .. } => ErrorCode::UnknownKind,
            F::BadFlags { .. } => ErrorCode::BadFlags,
            F::TooLarge { .. } => ErrorCode::FrameTooLarge,
            F::BadChecksum { .. } => ErrorCode::BadChecksum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself() {
        for v in 0..=u16::MAX {
            if let Some(c) = ErrorCode::from_u16(v) {
                assert_eq!(c as u16, v);
            }
        }
        assert_eq!(ErrorCode::from_u16(0), None);
    }
}
