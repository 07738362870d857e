//! Bodies to bytes and back. Decoding copies the body into an aligned
//! buffer (a frame's bytes sit at any offset of a read buffer, and rkyv's
//! archived integers need their alignment), validates it with bytecheck, and
//! only then builds the value.

use crate::message::{Answers, ErrorBody, FeedBatch, Hello, Notice, Requests, Welcome};

/// A body that is not a valid archive of the type its frame kind says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} body: {reason}")]
pub struct BodyError {
    pub what: &'static str,
    pub reason: String,
}

/// A type that travels as a frame body.
pub trait Body: Sized {
    const NAME: &'static str;
    fn to_body(&self) -> Vec<u8> {
        self.try_to_body()
            .expect("a bounded message always serialises to memory")
    }
    /// Serialise, or say why not (rkyv's 32-bit offsets cannot address a
    /// body past 2 GiB).
    fn try_to_body(&self) -> Result<Vec<u8>, BodyError>;
    fn from_body(body: &[u8]) -> Result<Self, BodyError>;
}

macro_rules! body {
    ($($t:ident),*) => {$(
        impl Body for $t {
            const NAME: &'static str = stringify!($t);

            fn try_to_body(&self) -> Result<Vec<u8>, BodyError> {
                rkyv::to_bytes::<rkyv::rancor::Error>(self)
                    .map(|b| b.into_vec())
                    .map_err(|e| BodyError {
                        what: Self::NAME,
                        reason: e.to_string(),
                    })
            }

            fn from_body(body: &[u8]) -> Result<Self, BodyError> {
                let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
                aligned.extend_from_slice(body);
                rkyv::from_bytes::<$t, rkyv::rancor::Error>(&aligned).map_err(|e| BodyError {
                    what: Self::NAME,
                    reason: e.to_string(),
                })
            }
        }
    )*};
}

body!(
    Hello, Welcome, Requests, Answers, ErrorBody, Notice, FeedBatch
);
