//! `--subscribe` with a tcp:// target: one change-feed subscriber follows
//! the server beside the load, from the moment before the load starts, to
//! show what a subscriber costs the shards (run with and without) and how
//! far behind the commits it runs.
//!
//! Its lag is, for each order placed, the time from the order's
//! `created_at` (the engine's clock when the shard ran it, in whole
//! milliseconds) to the batch holding it arriving here. A shard runs an
//! order before its log is synced, and the stamp is rounded down, so this
//! is an upper bound on commit-to-delivery lag, up to 1 ms above it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mercato_client::{Client, ClientConfig, FeedStream, wire};
use mercato_engine::workload::Latency;

/// How long the subscriber goes on once the load stops, for what is still
/// on its way; and the quiet that tells it nothing more is.
const DRAIN_MAX: Duration = Duration::from_secs(60);
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// What the subscriber saw.
#[derive(Default)]
pub struct FeedFigures {
    pub events: u64,
    pub orders: u64,
    /// Microseconds from an order's stamp to its arrival.
    pub lag: Latency,
    /// From the load's end to the last batch: the backlog left then.
    pub drain_ms: u64,
}

/// A subscriber from now, on a client of its own (with the load's TLS
/// settings), before the load starts.
pub fn subscribe(addr: SocketAddr, config: ClientConfig) -> Result<(Client, FeedStream), String> {
    let client = Client::connect(addr, config).map_err(|e| e.to_string())?;
    let stream = client
        .subscribe(None, wire::FeedStart::Now, wire::FeedFilter::default())
        .map_err(|e| e.to_string())?
        .map_err(|r| format!("subscribe: {r:?}"))?;
    Ok((client, stream))
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Follows `stream` until the load stops (`stop`), then until it has been
/// quiet for a while.
pub fn follow(stream: &FeedStream, stop: &AtomicBool) -> Result<FeedFigures, String> {
    let mut f = FeedFigures::default();
    let mut stopped_at: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        if stopped_at.is_none() && stop.load(Ordering::Relaxed) {
            stopped_at = Some(Instant::now());
        }
        if let Some(t) = stopped_at
            && (last.max(t).elapsed() >= DRAIN_QUIET || t.elapsed() >= DRAIN_MAX)
        {
            f.drain_ms = last.saturating_duration_since(t).as_millis() as u64;
            return Ok(f);
        }
        let Some(batch) = stream
            .next(Duration::from_millis(50))
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        if let Some(why) = batch.error {
            return Err(format!("the feed ended: {why}"));
        }
        last = Instant::now();
        let now_us = unix_us();
        f.events += batch.items.len() as u64;
        for item in &batch.items {
            if let wire::FeedEvent::OrderPlaced(o) = &item.event {
                f.orders += 1;
                let lag_us = now_us
                    .saturating_sub(o.created_at * 1_000)
                    .clamp(1, 60_000_000);
                let _ = f.lag.hist.record(lag_us);
            }
        }
    }
}
