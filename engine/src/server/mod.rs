//! The network face, as far as it is built: converting between the wire
//! protocol's types and the engine's ([`convert`]), and one connection's
//! protocol state without its socket ([`conn`]). The mio event loops of
//! `mercato serve` come next; see issue 4.

pub mod conn;
pub mod convert;
