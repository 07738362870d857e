//! Shard snapshots: the state as an rkyv archive, written from the log by a
//! background compactor and loaded zero-copy at recovery.
//!
//! The live shard never takes part. [`compact`] brings a copy of a shard's
//! state from its newest snapshot up to the end of the log's closed
//! segments (those before the one being written), writes it as a snapshot
//! at the last closed LSN, and deletes what that covers. A [`Compactor`]
//! can keep that copy between snapshots, so each replays only what is new.
//! The shard keeps serving throughout; what it pays is the compactor's share
//! of the CPU and the memory of the second copy, while a snapshot runs or,
//! kept, always. This is the bound ARCHITECTURE.md documents and
//! BENCHMARKS.md measures.
//!
//! The archive (`durable/image.rs`) holds plain vectors, not hash tables:
//! loading walks them in place, straight out of the memory map, and builds
//! the shard's tables, with no deserialisation pass in between.

use std::path::Path;

use mercato_wal::snapshot::{drop_covered, list_snapshots, map_snapshot, write_snapshot_with};
use mercato_wal::{LogId, Lsn, ReadOptions, WalError, read_log};
use rkyv::ser::writer::IoWriter;

use super::codec::{self, state_of};
use super::image::{ArchivedImage, ArchivedLineImage, ImageView};
use super::marker::shard_dir;
use super::recovery::Replay;
use crate::error::OpenError;
use crate::record::Record;
use crate::shard::{Account, Hold, Order, Rejections, Shard, Sku};
use crate::types::{Line, OrderKey, OrderState};

fn lines_of(lines: &rkyv::vec::ArchivedVec<ArchivedLineImage>) -> Box<[Line]> {
    lines
        .iter()
        .map(|l| Line {
            sku: l.sku.to_native(),
            qty: l.qty.to_native(),
            unit_price: l.unit_price.to_native(),
        })
        .collect()
}

fn bad(path: &Path, what: impl Into<String>) -> OpenError {
    OpenError::Wal(WalError::BadSnapshot {
        path: path.to_path_buf(),
        what: what.into(),
    })
}

/// Build shard `i` of `n` from the archive in `bytes`, checked by bytecheck.
fn load(path: &Path, bytes: &[u8], i: u16, n: u16) -> Result<(Shard, Lsn), OpenError> {
    let img = rkyv::access::<ArchivedImage, rkyv::rancor::Error>(bytes)
        .map_err(|e| bad(path, e.to_string()))?;
    if (img.shard.to_native(), img.shards.to_native()) != (i, n) {
        return Err(bad(path, "snapshot of another shard layout"));
    }
    let mut shard = Shard::new(i, n);
    let st = &mut shard.state;
    st.skus.reserve(img.skus.len());
    for s in img.skus.iter() {
        st.skus.insert(
            s.id.to_native(),
            Sku {
                price: s.price.to_native(),
                available: s.available.to_native(),
                reserved: s.reserved.to_native(),
                sold: s.sold.to_native(),
                per_user_limit: s.per_user_limit.to_native(),
                stocked: s.stocked.to_native(),
            },
        );
    }
    st.accounts.reserve_touched(img.accounts.len());
    for a in img.accounts.iter() {
        st.accounts.insert(
            a.id.to_native(),
            Account {
                balance: a.balance.to_native(),
                newest: None,
            },
        );
    }
    // Orders in the order they were placed, each linked to its account's
    // newest so far: the lists `list_orders` walks, as placing built them.
    st.orders.reserve(img.orders.len());
    for o in img.orders.iter() {
        let id = (u128::from(o.id[0].to_native()) << 64) | u128::from(o.id[1].to_native());
        let key = OrderKey::new(o.account.to_native(), id);
        let state = state_of(o.state).ok_or_else(|| bad(path, "unknown order state"))?;
        let order = Order {
            lines: lines_of(&o.lines).into(),
            state,
            created_at: o.created_at.to_native(),
            ttl_ms: o.ttl_ms.to_native(),
            restocked: o.restocked,
            fingerprint: o.fingerprint.to_native(),
        };
        if state == OrderState::Reserved {
            st.expiry.insert((order.expires_at(), key));
        }
        let account = (st.accounts.get_mut(&key.account))
            .ok_or_else(|| bad(path, "an order of an account the snapshot lacks"))?;
        let placed = (st.orders.insert(key, order, account.newest))
            .map_err(|_| bad(path, "an order listed twice"))?;
        account.newest = Some(placed);
    }
    for p in img.purchases.iter() {
        st.purchases.insert(
            (p.sku.to_native(), p.account.to_native()),
            p.qty.to_native(),
        );
    }
    for h in img.holds.iter() {
        let tx = crate::message::TxId {
            coordinator: h.coordinator.to_native(),
            seq: h.seq.to_native(),
        };
        st.holds.insert(
            tx,
            Hold {
                account: h.account.to_native(),
                lines: lines_of(&h.lines).into(),
            },
        );
    }
    for p in img.prepared_upto.iter() {
        st.prepared_upto
            .insert(p.coordinator.to_native(), p.seq.to_native());
    }
    let mut rejected = Vec::with_capacity(img.rejected.len());
    for body in img.rejected.iter() {
        match codec::decode(codec::ORDER_REJECTED, body.as_slice()) {
            Ok(Record::OrderRejected {
                key,
                fingerprint,
                reject,
            }) => rejected.push((key, (fingerprint, reject))),
            _ => return Err(bad(path, "a remembered rejection does not decode")),
        }
    }
    st.rejected = Rejections::from_oldest_first(rejected.into_iter());
    st.revenue = img.revenue.to_native();
    st.deposited = img.deposited.to_native();
    st.withdrawn = img.withdrawn.to_native();
    Ok((shard, img.lsn.to_native()))
}

/// The newest snapshot of shard `i` that loads, and its LSN; a fresh shard
/// at LSN 0 when there is none. A damaged newest snapshot is skipped for an
/// older one: the log from that one's LSN is still there, since segments go
/// only once a newer snapshot covers them... unless that newer one is the
/// damaged one, and then the log's gap is what refuses to open.
pub(crate) fn load_newest(
    dir: &Path,
    i: u16,
    n: u16,
) -> Result<(Shard, Lsn, Vec<String>), OpenError> {
    let sd = shard_dir(dir, i);
    let mut skipped = Vec::new();
    for (_, path) in list_snapshots(&sd)?.into_iter().rev() {
        let loaded = map_snapshot(&path)
            .map_err(OpenError::from)
            .and_then(|m| load(&path, m.bytes(), i, n));
        match loaded {
            Ok((shard, lsn)) => return Ok((shard, lsn, skipped)),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    Ok((Shard::new(i, n), 0, skipped))
}

/// Check the snapshot at `path` of shard `i` of `n` the way recovery loads
/// it (trailer, bytecheck, every value decoded); returns its LSN.
pub fn check_snapshot(path: &Path, i: u16, n: u16) -> Result<Lsn, OpenError> {
    let m = map_snapshot(path)?;
    load(path, m.bytes(), i, n).map(|(_, lsn)| lsn)
}

/// What one compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    pub shard: u16,
    /// The new snapshot's LSN.
    pub lsn: Lsn,
    pub records_replayed: u64,
    pub segments_removed: usize,
    pub snapshot_bytes: u64,
}

/// Snapshot shard `i` of the data directory `dir` up to the end of its last
/// closed segment, if that is newer than its newest snapshot; then remove
/// the segments and snapshots the new one covers. Safe while the engine
/// runs: it reads only closed segments, which nothing writes any more.
///
/// This loads the newest snapshot from disk every time; a [`Compactor`]
/// made to keep can start from the state it left instead.
pub fn compact(dir: &Path, i: u16, n: u16) -> Result<Option<Compacted>, OpenError> {
    compact_onto(dir, i, n, None)
}

/// Snapshots a data directory's shards one after another. When asked to
/// keep, it holds each shard's state as of its newest snapshot in memory
/// between them, so that a snapshot replays only the segments closed since
/// the last one instead of first rebuilding the shard from the last one's
/// file. The rebuild is a whole shard's tables built afresh, with the
/// kernel zeroing their memory, each time; under load it can take longer
/// than the replay (BENCHMARKS.md, "A state kept between snapshots").
///
/// The price is memory: the second copy of every shard's state, which a
/// snapshot otherwise holds only while it runs, stays.
pub struct Compactor {
    dir: std::path::PathBuf,
    shards: u16,
    keep: bool,
    kept: Vec<Option<Kept>>,
}

/// A shard's state and the LSN of the snapshot it equals.
struct Kept {
    shard: Shard,
    lsn: Lsn,
}

impl Compactor {
    /// A compactor for the `shards` shards of `dir`, keeping their states
    /// between snapshots if `keep`.
    pub fn new(dir: &Path, shards: u16, keep: bool) -> Compactor {
        Compactor {
            dir: dir.to_path_buf(),
            shards,
            keep,
            kept: (0..shards).map(|_| None).collect(),
        }
    }

    /// [`compact`] shard `i`, starting from the state this compactor kept
    /// when it last snapshotted that shard, if it keeps states and that is
    /// still the newest snapshot on disk.
    pub fn compact(&mut self, i: u16) -> Result<Option<Compacted>, OpenError> {
        let slot = &mut self.kept[usize::from(i)];
        compact_onto(&self.dir, i, self.shards, self.keep.then_some(slot))
    }

    /// [`Compactor::compact`] every shard, in order; what each did, for
    /// those that had closed segments to cover.
    pub fn compact_all(&mut self) -> Result<Vec<Compacted>, OpenError> {
        let mut done = Vec::new();
        for i in 0..self.shards {
            done.extend(self.compact(i)?);
        }
        Ok(done)
    }
}

/// The state shard `i` had at its newest snapshot on disk: `kept` when it
/// is that snapshot's, else loaded from the file.
fn newest_state(dir: &Path, i: u16, n: u16, kept: Option<Kept>) -> Result<(Shard, Lsn), OpenError> {
    let newest = list_snapshots(&shard_dir(dir, i))?
        .last()
        .map_or(0, |&(lsn, _)| lsn);
    match kept {
        Some(k) if k.lsn == newest => Ok((k.shard, k.lsn)),
        _ => load_newest(dir, i, n).map(|(shard, lsn, _)| (shard, lsn)),
    }
}

/// [`compact`]; given a `kept` slot, starting from the state in it when
/// that matches the newest snapshot, and leaving in it the state of the
/// snapshot written. On any error the slot is left empty: a half-replayed
/// state must not be taken for a snapshot's.
fn compact_onto(
    dir: &Path,
    i: u16,
    n: u16,
    mut kept: Option<&mut Option<Kept>>,
) -> Result<Option<Compacted>, OpenError> {
    let sd = shard_dir(dir, i);
    let segments = mercato_wal::list_segments(&sd)?;
    let Some(&(last_first, _)) = segments.last() else {
        return Ok(None);
    };
    let upto = last_first - 1;
    let (mut shard, from) = newest_state(dir, i, n, kept.as_mut().and_then(|k| k.take()))?;
    if upto <= from {
        if let Some(k) = kept {
            *k = Some(Kept { shard, lsn: from });
        }
        return Ok(None);
    }
    let opts = ReadOptions {
        from_lsn: from + 1,
        to_lsn: upto,
        repair: false,
    };
    let mut replay = Replay::new(&mut shard);
    let end = read_log(
        &sd,
        LogId {
            shard: i,
            shards: n,
        },
        opts,
        |r| replay.visit(r),
        |_| {},
    )?;
    replay.finish();
    debug_assert_eq!(end.next_lsn, upto + 1);
    // Streamed to the file straight from the shard's tables: no image of
    // the shard and no buffer of the snapshot's whole size.
    let view = ImageView {
        shard: &shard,
        lsn: upto,
    };
    let (_, snapshot_bytes) = write_snapshot_with(&sd, upto, |w| {
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&view, IoWriter::new(w))
            .map(drop)
            .map_err(std::io::Error::other)
    })?;
    if let Some(k) = kept {
        *k = Some(Kept { shard, lsn: upto });
    }
    let dropped = drop_covered(&sd, upto)?;
    Ok(Some(Compacted {
        shard: i,
        lsn: upto,
        records_replayed: end.visited,
        segments_removed: dropped.segments,
        snapshot_bytes,
    }))
}

/// Closed segments of shard `i` not yet covered by a snapshot: the
/// compactor's trigger.
pub fn closed_segments(dir: &Path, i: u16) -> usize {
    let sd = shard_dir(dir, i);
    let segments = mercato_wal::list_segments(&sd).unwrap_or_default();
    let covered = list_snapshots(&sd)
        .ok()
        .and_then(|s| s.last().map(|&(lsn, _)| lsn))
        .unwrap_or(0);
    // A segment is closed once a later one exists; it counts if it holds
    // records past the snapshot.
    segments.windows(2).filter(|w| w[1].0 - 1 > covered).count()
}
