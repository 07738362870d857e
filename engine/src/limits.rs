//! Named bounds. Every queue, batch and input size in the engine has one here,
//! and relations between them are checked when the crate compiles.

/// Lines in one order (DESIGN.md: default 64); the protocol fixes it, so
/// that an order's answer has a size known before it runs.
pub const ORDER_LINES_MAX: usize = mercato_protocol::ORDER_LINES_MAX;
/// The longest reservation a `Deferred` order may ask for: 30 days.
pub const ORDER_TTL_MS_MAX: u64 = 30 * 24 * 3600 * 1000;
/// Orders one `list_orders` call returns at most.
pub const LIST_ORDERS_LIMIT_MAX: u32 = 1_000;
/// Bytes of orders (as the protocol sizes them) one `list_orders` page
/// holds at most: a page stops early, saying there is more, rather than
/// pass it, so that no `limit` can make a shard build a huge answer.
pub const LIST_PAGE_BYTES_MAX: usize = mercato_protocol::LIST_PAGE_BYTES_MAX;
/// Commands in one `submit` batch.
pub const BATCH_LEN_MAX: usize = 4_096;
/// Requests waiting in one shard's inbound queue; past this, callers get `Busy`.
pub const INBOUND_DEPTH_MAX: usize = 4_096;
/// Message batches in flight on one shard-to-shard ring.
pub const RING_DEPTH_MAX: usize = 1_024;
/// Inbound requests a shard takes per loop turn, so peers' messages are never starved.
pub const INBOUND_PER_TURN_MAX: usize = 64;
/// Commands (or peer messages) a shard runs before it sends what they
/// produced: messages to peers, records to its log, answers to callers. It
/// also takes no more inbound requests in a turn once it holds this many
/// commands (but at least one request, whatever its size). A two-phase
/// order waits for both shards in turn, so what one shard sits on, the
/// other waits for: with 64 requests of about 128 commands a turn and
/// messages sent only at its end, each shard of an embedded carts run sat
/// idle about 30% of the time (BENCHMARKS.md).
pub const TURN_COMMANDS_MAX: usize = 64;
/// Failed orders per generation of remembered rejections, per shard: the
/// latest this many are always remembered for idempotent retries, and at
/// most twice this many. It is what a table of 2^20 buckets holds (7/8 of
/// them), so a full generation never grows its table.
pub const REJECTIONS_GENERATION_LEN: usize = (1 << 20) / 8 * 7;
/// Shards one engine may run; `ShardId` is `u16` and message counters are per pair.
pub const SHARDS_MAX: usize = 256;
/// Expired orders one shard settles per loop turn, so a mass expiry cannot stall it.
pub const EXPIRIES_PER_TURN_MAX: usize = 1_024;
/// Commands, messages or replayed log records whose table slots a shard
/// brings into cache before it runs them (`Shard::warm`,
/// `Shard::warm_records`): enough for the CPU to overlap many misses, few
/// enough that the first stay in cache (128 orders touch a few 64-byte
/// lines each, some 32 KiB by that count: well inside a 512 KiB L2).
pub const WARM_CHUNK_LEN: usize = 128;
/// Log bytes a shard lets wait for its flusher before it stops taking new
/// client work: a disk slower than the shard must slow callers, not grow memory.
pub const LOG_BACKLOG_BYTES_MAX: usize = 64 << 20;
/// Turns of replies or messages waiting for durability, per shard; past it
/// the shard takes no new client work until the log catches up.
pub const HELD_GROUPS_MAX: usize = 4_096;
/// Closed log segments per shard that trigger a background snapshot: with
/// 64 MiB segments, a shard replays at most about 320 MiB of log on open.
pub const SNAPSHOT_SEGMENTS_DEFAULT: usize = 4;
/// The snapshot thread's niceness on Linux (0 to 19; the shards run at 0).
/// Under a load that keeps both cores busy, a thread at 10 gets about a
/// tenth of a core against two at 0 (by the kernel's weights, 110 against
/// 1,024; computed), so the shards keep theirs while a snapshot is built
/// (durable carts: +4% to +19% orders/s in six A/B pairs, BENCHMARKS.md);
/// when the cores have room it runs at full speed.
/// The price is a snapshot that takes longer under sustained full load,
/// so more log to replay if the engine stops meanwhile.
pub const SNAPSHOT_NICE_DEFAULT: u8 = 10;
/// The highest niceness Linux knows.
pub const SNAPSHOT_NICE_MAX: u8 = 19;
/// How often the snapshot thread looks at the logs.
pub const SNAPSHOT_POLL_MS: u64 = 1_000;
/// After a shard's snapshot fails, the wait before it is tried again; each
/// further failure doubles it, up to the max, and a success resets it. The
/// engine serves on meanwhile, since the log holds everything; what grows
/// is the log, and so the next restart's replay.
pub const SNAPSHOT_RETRY_MS_MIN: u64 = 1_000;
pub const SNAPSHOT_RETRY_MS_MAX: u64 = 60_000;
/// Client connections one shard serves; past it new ones are closed.
pub const CONNS_PER_SHARD_MAX: usize = 4_096;
/// Requests one connection may have sent and not yet had answered.
pub const IN_FLIGHT_PER_CONN_MAX: usize = 16_384;
/// Answer bytes one connection may have reserved for batches running or
/// waiting to be written (`Welcome::answer_bytes_max`): a batch whose
/// answers could pass it alone is refused before it runs, one that fits
/// later waits, and the connection is not read meanwhile.
pub const ANSWER_BYTES_PER_CONN_MAX: usize = 16 << 20;
/// How long a new connection may take to send its `Hello`.
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// How long a connection may sit with nothing running and nothing sent
/// either way before the server closes it (0: never). The client library
/// reconnects on its next call.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 300_000;
/// Connections the main port may have handed to a shard that has not
/// picked them up yet.
pub const ACCEPTED_QUEUE_MAX: usize = 1_024;
/// How long an idle shard sleeps before it looks at its expiry clock again.
pub const IDLE_SLEEP_MS_MAX: u64 = 50;

/// Longest cache keyspace key.
pub const CACHE_KEY_BYTES_MAX: usize = mercato_protocol::CACHE_KEY_BYTES_MAX;
/// Largest cache keyspace value: a quarter of a frame, so a few fit a batch.
pub const CACHE_VALUE_BYTES_MAX: usize = mercato_protocol::CACHE_VALUE_BYTES_MAX;
/// What one keyspace entry is charged beyond its key and value bytes.
pub const CACHE_ENTRY_OVERHEAD_BYTES: u64 = 96;
/// SKU views and account views cached for reads from any shard, each,
/// unless configured: about 6 MiB for each kind.
pub const VIEW_CACHE_ENTRIES_DEFAULT: u64 = 65_536;
/// Embedded batches longer than this skip the views. What a view saves is
/// the hand-off to the owner's thread, and a long batch already shares one
/// hand-off among all its commands, after which the owner reads its own
/// table faster than callers read the shared cache: at 16 the two ways
/// measured even, at 256 the views were 2.9 times slower (BENCHMARKS.md).
pub const VIEW_BATCH_LEN_MAX: usize = 16;
/// The keyspace's memory budget unless configured.
pub const CACHE_BUDGET_BYTES_DEFAULT: u64 = 64 << 20;

const _: () = assert!(ORDER_LINES_MAX >= 1 && ORDER_LINES_MAX <= u8::MAX as usize);
const _: () = assert!(INBOUND_PER_TURN_MAX <= INBOUND_DEPTH_MAX);
// Orders store their TTL as a u32.
const _: () = assert!(ORDER_TTL_MS_MAX <= u32::MAX as u64);
const _: () = assert!(SHARDS_MAX <= u16::MAX as usize + 1);
const _: () = assert!(RING_DEPTH_MAX.is_power_of_two());
const _: () = assert!(SNAPSHOT_RETRY_MS_MIN > 0 && SNAPSHOT_RETRY_MS_MIN <= SNAPSHOT_RETRY_MS_MAX);
// The answer budget must take any single request's answer, or that request
// could never be served; and fit rkyv's 32-bit offsets.
const _: () = assert!(ANSWER_BYTES_PER_CONN_MAX >= ANSWER_BYTES_MIN);
const _: () = assert!(ANSWER_BYTES_PER_CONN_MAX <= i32::MAX as usize);
/// The smallest answer budget a server may be configured with: a batch of
/// one request of the largest answer (a cache value) fits it.
pub const ANSWER_BYTES_MIN: usize = 2 * CACHE_VALUE_BYTES_MAX;

/// A shard loop turn this long is slow (`Config::slow_turn_ms`): a turn
/// takes at most a few hundred requests and normally well under a
/// millisecond, so 50 ms is a stall an operator wants to hear of (a page
/// fault storm, a snapshot's copy, a huge order list), not noise.
pub const SLOW_TURN_MS_DEFAULT: u64 = 50;
