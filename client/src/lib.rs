//! mercato's TCP client (being written; see the network-face issue).
//!
//! Written so far: [`balance`], the read balancers (random, round-robin,
//! nginx's smooth weighted round-robin, least outstanding, power of two
//! choices) and nginx-style passive health. The rest of this crate will connect to `mercato serve`, read the handshake, keep one
//! connection per shard, send each write to the shard that owns it, spread
//! reads with a `Balancer` (random, round-robin, nginx's smooth weighted
//! round-robin, least outstanding, power of two choices), coalesce concurrent
//! callers into batch frames, and retry `place_order` safely under the same
//! order id. It depends on `mercato-protocol` only.
#![forbid(unsafe_code)]

pub mod balance;
