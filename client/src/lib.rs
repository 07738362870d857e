//! mercato's TCP client.
//!
//! [`Client::connect`] shakes hands with `mercato serve`, learns the shard
//! layout from its `Welcome`, and keeps one connection per shard on that
//! shard's own port. Each request goes to the shard that owns it (the
//! account's for orders and wallets, the SKU's for the catalog); a batch is
//! split by owner and its answers put back in order. `Client` is `Send +
//! Sync`: many threads share one, each call waiting on its own answers while
//! a reader thread per connection hands them out. [`Client::submit_ticket`]
//! pipelines; `place_order` is resent under the same order id after a lost
//! connection or a timeout, which the engine's idempotency makes safe.
//! [`balance`] holds the read balancers and passive health. Reads go to
//! their owner unless [`ClientConfig::read_balance`] names a policy; then
//! `get_sku` and `get_account` are spread over the healthy shards, which
//! answer them from the server's shared view cache.
//!
//! The client depends on `mercato-protocol` only, never on the engine.
#![forbid(unsafe_code)]

pub mod balance;
mod client;
mod error;
mod feed;
mod lock;
mod near;
mod saga;
mod shard_conn;
mod tls;

pub use client::{CallResult, Client, ClientConfig, OrderPage, Ticket};
pub use error::ClientError;
pub use feed::FeedStream;
pub use lock::{Acquired, LockGuard, LockOptions, LockTicket};
pub use mercato_protocol as wire;
pub use near::{NearCache, NearStats};
pub use saga::{Orchestrator, SagaDef, SagaOutcome, SagaRunError, StepCtx};
pub use tls::TlsSettings;
