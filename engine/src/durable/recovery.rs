//! Opening a data directory: replay each shard's log, then settle what a
//! crash left between shards, before anything is served.
//!
//! Replay rebuilds each shard exactly as its records left it. Between shards
//! a crash can leave two things: holds whose coordinator's decision never
//! arrived, and settlements (pay, cancel, expiry, refund) that the
//! coordinator logged but the SKU shard did not. Both are settled the same
//! way, from the one source of truth that DESIGN.md names, the coordinators'
//! orders: an order's existence means its transaction committed. Every hold
//! is released, and each SKU's reserved and sold units are set to what the
//! orders on all shards say, which keeps exactly the committed holds. Where
//! that changes a SKU, a `StockCorrected` record says so, so the next replay
//! arrives at the same state.

use std::path::Path;

use mercato_wal::{LogEnd, LogId, ReadOptions, TornTail, VisitError, read_log};

use super::codec;
use super::marker::{self, DATA_FORMAT, Marker};
use crate::error::OpenError;
use crate::hash::{IdMap, shard_of};
use crate::limits::{SHARDS_MAX, WARM_CHUNK_LEN};
use crate::record::Record;
use crate::shard::Shard;
use crate::types::{AccountId, OrderState, Qty, SkuId};

/// What recovery found on one shard.
#[derive(Clone, Debug)]
pub struct ShardRecovery {
    pub shard: u16,
    /// LSN of the snapshot recovery started from; 0 for none.
    pub snapshot_lsn: u64,
    /// Newer snapshots that failed to load, and why.
    pub snapshots_skipped: Vec<String>,
    /// Records replayed from the log.
    pub records: u64,
    /// A torn record cut off the end of the log, if there was one.
    pub torn: Option<TornTail>,
    pub(crate) end: LogEnd,
}

/// What recovery did, for the operator.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// The directory was new (no marker yet).
    pub created: bool,
    pub shards: Vec<ShardRecovery>,
    /// Two-phase holds found in doubt and settled from the coordinators' orders.
    pub holds_settled: usize,
    /// SKU stock and per-user counts corrected from the orders.
    pub corrections: usize,
}

pub(crate) struct Recovered {
    pub shards: Vec<Shard>,
    /// Records recovery applied on top of the log, per shard; they must be
    /// logged before anything else.
    pub settlement: Vec<Vec<Record>>,
    pub report: RecoveryReport,
}

/// Recover `dir` in memory and change nothing on disk: for audits, checks
/// and verifying acknowledgements. A torn tail is reported, not cut, and
/// what recovery would settle is applied to the returned shards only.
pub fn inspect(dir: &Path) -> Result<(Vec<Shard>, RecoveryReport), OpenError> {
    let r = recover(dir, 0, false)?;
    Ok((r.shards, r.report))
}

/// Recover `dir` for `shards_asked` shards (0: whatever the directory says,
/// or one per core for a new one). With `repair` a torn tail is cut off and
/// a new directory gets its marker; without it nothing on disk changes.
pub(crate) fn recover(dir: &Path, shards_asked: u16, repair: bool) -> Result<Recovered, OpenError> {
    let found = marker::read(dir)?;
    let n = match (found, shards_asked) {
        (Some(m), _) if m.format != DATA_FORMAT => {
            return Err(OpenError::WrongFormat {
                path: marker::path(dir),
                found: m.format,
                supported: DATA_FORMAT,
            });
        }
        (Some(m), 0) => m.shards,
        (Some(m), asked) if asked != m.shards => {
            return Err(OpenError::WrongShardCount {
                path: marker::path(dir),
                found: m.shards,
                asked,
            });
        }
        (Some(m), _) => m.shards,
        (None, _) if !repair => {
            return Err(OpenError::BadMarker {
                path: marker::path(dir),
                what: "missing: this is not a mercato data directory",
            });
        }
        (None, 0) => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(SHARDS_MAX) as u16,
        (None, asked) => asked,
    };
    if found.is_none() {
        marker::write(
            dir,
            Marker {
                format: DATA_FORMAT,
                shards: n,
            },
        )?;
    }
    let bar = progress_bar(dir, n);
    let replayed: Vec<Result<(Shard, ShardRecovery), OpenError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .map(|i| {
                let bar = bar.clone();
                s.spawn(move || replay_shard(dir, i, n, repair, &bar))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a replay thread panicked"))
            .collect()
    });
    bar.finish_and_clear();
    let mut shards = Vec::with_capacity(n as usize);
    let mut report = RecoveryReport {
        created: found.is_none(),
        ..RecoveryReport::default()
    };
    for r in replayed {
        let (shard, rec) = r?;
        shards.push(shard);
        report.shards.push(rec);
    }
    let settlement = settle(&mut shards, &mut report);
    restart_sequences(&mut shards);
    Ok(Recovered {
        shards,
        settlement,
        report,
    })
}

/// A bar on stderr while a long log replays, drawn by the `mercato`
/// binary (the `cli` feature); an embedding program sees nothing.
#[cfg(feature = "cli")]
type Bar = indicatif::ProgressBar;

#[cfg(not(feature = "cli"))]
#[derive(Clone)]
struct Bar;

#[cfg(not(feature = "cli"))]
impl Bar {
    fn inc(&self, _bytes: u64) {}
    fn finish_and_clear(&self) {}
}

#[cfg(not(feature = "cli"))]
fn progress_bar(_dir: &Path, _n: u16) -> Bar {
    Bar
}

#[cfg(feature = "cli")]
fn progress_bar(dir: &Path, n: u16) -> Bar {
    let total: u64 = (0..n)
        .flat_map(|i| mercato_wal::list_segments(&marker::shard_dir(dir, i)).unwrap_or_default())
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    // Only a replay long enough to wonder about gets a bar.
    if total < 256 << 20 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "replaying the log {bar:40} {binary_bytes}/{binary_total_bytes} ({eta} left)",
        )
        .expect("a valid template"),
    );
    bar
}

fn replay_shard(
    dir: &Path,
    i: u16,
    n: u16,
    repair: bool,
    bar: &Bar,
) -> Result<(Shard, ShardRecovery), OpenError> {
    let (mut shard, snapshot_lsn, skipped) = super::snapshot::load_newest(dir, i, n)?;
    let opts = ReadOptions {
        from_lsn: snapshot_lsn + 1,
        to_lsn: u64::MAX,
        repair,
    };
    let mut last = 0;
    let mut replay = Replay::new(&mut shard);
    let end = read_log(
        &marker::shard_dir(dir, i),
        LogId {
            shard: i,
            shards: n,
        },
        opts,
        |r| replay.visit(r),
        |read| {
            bar.inc(read - last);
            last = read;
        },
    )?;
    replay.finish();
    let rec = ShardRecovery {
        shard: i,
        snapshot_lsn,
        snapshots_skipped: skipped,
        records: end.visited,
        torn: end.torn.clone(),
        end,
    };
    Ok((shard, rec))
}

/// Applies the records a log visitor is handed to a shard, a chunk at a
/// time: the chunk's table slots are looked up first (`Shard::warm_records`),
/// so their cache misses overlap instead of following one another. Replay
/// was memory-bound: the account lookup of `insert_order` alone was a
/// quarter of it, nearly all of that one miss (`perf` of
/// `mercato-reopen-bench`). Call [`finish`](Self::finish) once the log is
/// read, to apply the last chunk.
pub(crate) struct Replay<'a> {
    shard: &'a mut Shard,
    chunk: Vec<Record>,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(shard: &'a mut Shard) -> Self {
        Replay {
            shard,
            chunk: Vec::with_capacity(WARM_CHUNK_LEN),
        }
    }

    /// The log visitor: decodes `r` and queues it.
    pub(crate) fn visit(&mut self, r: mercato_wal::RecordRef<'_>) -> Result<(), VisitError> {
        let record = codec::decode(r.kind, r.body).map_err(|e| Box::new(e) as VisitError)?;
        self.chunk.push(record);
        if self.chunk.len() == WARM_CHUNK_LEN {
            self.apply_chunk();
        }
        Ok(())
    }

    fn apply_chunk(&mut self) {
        self.shard.warm_records(&self.chunk);
        for record in self.chunk.drain(..) {
            self.shard.replay(record);
        }
    }

    /// Applies what is still queued.
    pub(crate) fn finish(mut self) {
        self.apply_chunk();
    }
}

/// Settle every hold and every lost settlement from the coordinators'
/// orders; returns the records that did it, per shard, already applied.
fn settle(shards: &mut [Shard], report: &mut RecoveryReport) -> Vec<Vec<Record>> {
    let n = shards.len() as u16;
    let mut out: Vec<Vec<Record>> = vec![Vec::new(); shards.len()];
    for (shard, records) in shards.iter_mut().zip(&mut out) {
        let mut txs: Vec<_> = shard.state.holds.keys().copied().collect();
        txs.sort();
        for tx in txs {
            let hold = &shard.state.holds[&tx];
            let abort = Record::HoldAborted {
                tx,
                account: hold.account,
                order: hold.order,
                lines: hold.lines.clone(),
            };
            shard.replay(abort.clone());
            records.push(abort);
            report.holds_settled += 1;
        }
    }
    // What the orders say each SKU holds, on the SKU's own shard.
    let mut reserved: Vec<IdMap<SkuId, u64>> = vec![IdMap::default(); shards.len()];
    let mut sold: Vec<IdMap<SkuId, u64>> = vec![IdMap::default(); shards.len()];
    let mut held: Vec<IdMap<(SkuId, AccountId), u64>> = vec![IdMap::default(); shards.len()];
    for shard in shards.iter() {
        for (key, o) in shard.state.orders.iter() {
            for l in o.lines.iter() {
                let p = shard_of(l.sku, n) as usize;
                let q = u64::from(l.qty);
                let live = match o.state {
                    OrderState::Reserved => {
                        *reserved[p].entry(l.sku).or_default() += q;
                        true
                    }
                    OrderState::Paid => {
                        *sold[p].entry(l.sku).or_default() += q;
                        true
                    }
                    OrderState::Refunded if !o.restocked => {
                        *sold[p].entry(l.sku).or_default() += q;
                        false
                    }
                    _ => false,
                };
                // Only pairs the SKU shard counts: a unit taken while its
                // SKU had no limit was never counted, and must not be now.
                let counted = shards[p]
                    .state
                    .purchases
                    .contains_key(&(l.sku, key.account));
                if live && counted {
                    *held[p].entry((l.sku, key.account)).or_default() += q;
                }
            }
        }
    }
    for (p, (shard, records)) in shards.iter_mut().zip(&mut out).enumerate() {
        let mut corrections = Vec::new();
        let mut skus: Vec<_> = shard.state.skus.iter().collect();
        skus.sort_by_key(|(id, _)| **id);
        for (&sku, s) in skus {
            let r = reserved[p].get(&sku).copied().unwrap_or(0);
            let d = sold[p].get(&sku).copied().unwrap_or(0);
            if u64::from(s.reserved) == r && u64::from(s.sold) == d {
                continue;
            }
            // The orders' units always fit what was stocked: they were taken
            // from it on the SKU shard, whose records precede any vote. If
            // they did not, the audit that follows recovery reports it.
            let available = u64::from(s.stocked).saturating_sub(r + d);
            corrections.push(Record::StockCorrected {
                sku,
                available: available as Qty,
                reserved: r as Qty,
                sold: d as Qty,
            });
        }
        let mut counts: Vec<((SkuId, AccountId), u64)> = shard
            .state
            .purchases
            .iter()
            .map(|(&k, &v)| (k, u64::from(v)))
            .collect();
        counts.sort();
        // A lost settlement leaves a count too high, never too low: units
        // are counted in the same record that takes them. So counts only
        // come down, to what the live orders hold. Raising one would count
        // units the running engine never counted (taken before the limit
        // was set), and a reopened engine would differ from the one that
        // stopped.
        for (k, v) in counts {
            let want = held[p].get(&k).copied().unwrap_or(0);
            if want < v {
                corrections.push(Record::PurchasesCorrected {
                    sku: k.0,
                    account: k.1,
                    qty: want as Qty,
                });
            }
        }
        report.corrections += corrections.len();
        for r in &corrections {
            shard.replay(r.clone());
        }
        records.append(&mut corrections);
    }
    out
}

/// A coordinator's transaction numbers restart above every number any
/// participant prepared for it, so no new Prepare is mistaken for an old,
/// already-decided one (whose fence would refuse it).
fn restart_sequences(shards: &mut [Shard]) {
    let n = shards.len();
    let mut above = vec![0u64; n];
    for s in shards.iter() {
        for (&c, &seq) in s.state.prepared_upto.iter() {
            above[c as usize] = above[c as usize].max(seq);
        }
    }
    for (s, upto) in shards.iter_mut().zip(above) {
        s.next_seq = s.next_seq.max(upto + 1);
    }
}
