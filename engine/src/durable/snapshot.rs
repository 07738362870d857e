//! Shard snapshots: the state as an rkyv archive, loaded zero-copy at
//! recovery. The engine's background snapshots are checkpoints the shards
//! copy themselves (`durable/checkpoint.rs`); this file holds the format,
//! the loader, and the older way, by replay, which `Engine::snapshot_now`
//! and `mercato compact` still use.
//!
//! By replay, the live shard never takes part. [`compact`] brings a copy of a shard's
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
//!
//! A snapshot is a sequence of such archives, its parts, each at most
//! `PART_BYTES_MAX` bytes and each holding a range of one table, so that a
//! shard of any size fits rkyv's 32-bit relative pointers:
//!
//! ```text
//! part 0, padded to 16 | part 1, padded | … | (offset u64, len u64) per part | parts u64 | "MRCPARTS"
//! ```
//!
//! (then the wal's trailer). A snapshot without the `MRCPARTS` tail is one
//! archive of everything, as written before parts; it still loads.

use std::path::Path;

use mercato_wal::snapshot::{list_snapshots, map_snapshot, write_snapshot_with};
use mercato_wal::{LogId, Lsn, ReadOptions, WalError, read_log};
use rkyv::ser::writer::IoWriter;

use super::codec::{self, state_of};
use super::image::{ArchivedImage, ArchivedLineImage, ImageView, PART_BYTES_MAX, parts};
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

/// What ends a snapshot written in parts.
const PARTS_MAGIC: [u8; 8] = *b"MRCPARTS";
/// Bytes an entry of the part table takes: offset and length.
const PART_ENTRY_BYTES: usize = 16;

/// Write the snapshot of `shard` at `lsn` to `w` in parts of at most
/// `part_bytes_max` bytes each.
fn write_parts(
    w: &mut mercato_wal::snapshot::SnapshotWriter,
    shard: &Shard,
    lsn: Lsn,
    part_bytes_max: usize,
) -> std::io::Result<()> {
    use rkyv::ser::Positional;
    let parts = parts(shard, part_bytes_max);
    lay_parts(w, parts.len(), |k, w| {
        let view = ImageView {
            shard,
            lsn,
            part: Some(parts[k]),
        };
        let written =
            rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&view, IoWriter::new(w))
                .map_err(std::io::Error::other)?;
        Ok(written.pos() as u64)
    })
}

/// Lays out `count` parts, each written by `write_part` and returning its
/// length, as a snapshot's parts.
fn lay_parts<W: std::io::Write>(
    w: &mut W,
    count: usize,
    mut write_part: impl FnMut(usize, &mut W) -> std::io::Result<u64>,
) -> std::io::Result<()> {
    let mut layout = PartsLayout::default();
    for k in 0..count {
        layout.add(w, |w| write_part(k, w))?;
    }
    layout.finish(w)
}

/// A snapshot's parts as they are written, one after another: each
/// aligned to 16, then the part table and the `MRCPARTS` tail.
#[derive(Default)]
pub(crate) struct PartsLayout {
    at: u64,
    table: Vec<(u64, u64)>,
}

impl PartsLayout {
    /// One more part, written by `write_part`, which returns its length.
    pub(crate) fn add<W: std::io::Write>(
        &mut self,
        w: &mut W,
        write_part: impl FnOnce(&mut W) -> std::io::Result<u64>,
    ) -> std::io::Result<()> {
        // Each part starts aligned as rkyv's archives need.
        let pad = ((16 - self.at % 16) % 16) as usize;
        w.write_all(&[0u8; 16][..pad])?;
        self.at += pad as u64;
        let len = write_part(w)?;
        self.table.push((self.at, len));
        self.at += len;
        Ok(())
    }

    pub(crate) fn finish<W: std::io::Write>(self, w: &mut W) -> std::io::Result<()> {
        let pad = ((8 - self.at % 8) % 8) as usize;
        w.write_all(&[0u8; 8][..pad])?;
        for (offset, len) in &self.table {
            w.write_all(&offset.to_le_bytes())?;
            w.write_all(&len.to_le_bytes())?;
        }
        w.write_all(&(self.table.len() as u64).to_le_bytes())?;
        w.write_all(&PARTS_MAGIC)
    }
}

/// The archives a snapshot's bytes hold: its parts, or the whole of an
/// older snapshot written as one archive.
fn parts_of<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, OpenError> {
    let Some(tail) = bytes.len().checked_sub(16) else {
        return Ok(vec![bytes]);
    };
    if bytes[tail + 8..] != PARTS_MAGIC {
        return Ok(vec![bytes]);
    }
    let count = u64::from_le_bytes(bytes[tail..tail + 8].try_into().expect("8 bytes"));
    let table_at = (count as usize)
        .checked_mul(PART_ENTRY_BYTES)
        .and_then(|t| tail.checked_sub(t))
        .ok_or_else(|| bad(path, "a part table longer than the snapshot"))?;
    let mut out = Vec::with_capacity(count as usize);
    for entry in bytes[table_at..tail].chunks_exact(PART_ENTRY_BYTES) {
        let offset = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
        let len = u64::from_le_bytes(entry[8..].try_into().expect("8 bytes"));
        let end = offset.checked_add(len).filter(|&e| e <= table_at as u64);
        if offset % 16 != 0 || end.is_none() {
            return Err(bad(path, "a part outside the snapshot"));
        }
        out.push(&bytes[offset as usize..(offset + len) as usize]);
    }
    if out.is_empty() {
        return Err(bad(path, "a snapshot of no parts"));
    }
    Ok(out)
}

/// Build shard `i` of `n` from the snapshot in `bytes`, every part checked
/// by bytecheck.
fn load(path: &Path, bytes: &[u8], i: u16, n: u16) -> Result<(Shard, Lsn), OpenError> {
    let mut shard = Shard::new(i, n);
    let mut rejected = Vec::new();
    let mut lsn = None;
    let mut images = Vec::new();
    for part in parts_of(path, bytes)? {
        let img = rkyv::access::<ArchivedImage, rkyv::rancor::Error>(part)
            .map_err(|e| bad(path, e.to_string()))?;
        let at = img.lsn.to_native();
        if *lsn.get_or_insert(at) != at {
            return Err(bad(path, "parts of different LSNs"));
        }
        images.push(img);
    }
    // Every table at its full size first. A checkpoint's accounts come in
    // the order of their slots, which is the order of their hashes: poured
    // into a table still growing, they all land on its first few slots, and
    // each insert probed the whole pile (10,000,000 orders reopened in 27 s
    // instead of about 1).
    let total = |count: fn(&ArchivedImage) -> usize| images.iter().map(|i| count(i)).sum::<usize>();
    let st = &mut shard.state;
    st.accounts.reserve_touched(total(|i| i.accounts.len()));
    st.purchases.reserve_touched(total(|i| i.purchases.len()));
    st.orders.reserve(total(|i| i.orders.len()));
    st.skus.reserve(total(|i| i.skus.len()));
    for img in &images {
        load_part(path, img, &mut shard, &mut rejected, i, n)?;
    }
    // Orders last, once every account is in: a checkpoint's parts come in
    // the order its slices were copied, with the orders' parts in the
    // order the orders were placed.
    for img in images {
        load_orders(path, img, &mut shard)?;
    }
    shard.state.rejected = Rejections::from_oldest_first(rejected.into_iter());
    Ok((shard, lsn.expect("at least one part")))
}

/// Add what one part holds to `shard`; the remembered rejections are
/// gathered in `rejected`, oldest first, for the end.
fn load_part(
    path: &Path,
    img: &ArchivedImage,
    shard: &mut Shard,
    rejected: &mut Vec<(OrderKey, (u64, crate::error::Reject))>,
    i: u16,
    n: u16,
) -> Result<(), OpenError> {
    if (img.shard.to_native(), img.shards.to_native()) != (i, n) {
        return Err(bad(path, "snapshot of another shard layout"));
    }
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
    st.accounts
        .reserve_touched(st.accounts.len() + img.accounts.len());
    for a in img.accounts.iter() {
        st.accounts.insert(
            a.id.to_native(),
            Account {
                balance: a.balance.to_native(),
                ..Account::default()
            },
        );
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
                order: (u128::from(h.order[0].to_native()) << 64)
                    | u128::from(h.order[1].to_native()),
                lines: lines_of(&h.lines).into(),
            },
        );
    }
    for p in img.prepared_upto.iter() {
        st.prepared_upto
            .insert(p.coordinator.to_native(), p.seq.to_native());
    }
    rejected.reserve(img.rejected.len());
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
    for bytes in img.coordination.iter() {
        let bytes = bytes.as_slice();
        let decoded = match bytes.split_first() {
            Some((&kind, body)) => codec::decode(kind, body).ok(),
            None => None,
        };
        match decoded {
            Some(Record::Lock(r)) => st.locks.restore(&r),
            Some(Record::Saga(r)) => st.sagas.apply(&r),
            _ => return Err(bad(path, "a coordination record does not decode")),
        }
    }
    st.revenue = img.revenue.to_native();
    st.deposited = img.deposited.to_native();
    st.withdrawn = img.withdrawn.to_native();
    Ok(())
}

/// Add the orders one part holds to `shard`, in the order they were
/// placed, each linked to its account's newest so far: the lists
/// `list_orders` walks, as placing built them.
fn load_orders(path: &Path, img: &ArchivedImage, shard: &mut Shard) -> Result<(), OpenError> {
    let st = &mut shard.state;
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
        let placed = (st.orders.insert(key, order, account.newest.get()))
            .map_err(|_| bad(path, "an order listed twice"))?;
        account.newest.set(Some(placed));
    }
    Ok(())
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
    load_snapshot(path, i, n).map(|(_, lsn)| lsn)
}

/// Shard `i` of `n` as the snapshot at `path` holds it, and its LSN.
pub fn load_snapshot(path: &Path, i: u16, n: u16) -> Result<(Shard, Lsn), OpenError> {
    let m = map_snapshot(path)?;
    load(path, m.bytes(), i, n)
}

/// Write `shard` as its snapshot at `lsn` in `dir`'s directory for it, as
/// the compactor does, in parts of at most `PART_BYTES_MAX`; returns the
/// file and its size. For tools and tests: the engine's own snapshots
/// come from the compactor.
pub fn write_snapshot_of(
    dir: &Path,
    shard: &Shard,
    lsn: Lsn,
) -> Result<(std::path::PathBuf, u64), OpenError> {
    let sd = shard_dir(dir, shard.id());
    std::fs::create_dir_all(&sd).map_err(|source| OpenError::Io {
        op: "create",
        path: sd.clone(),
        source,
    })?;
    Ok(write_snapshot_with(&sd, lsn, |w| {
        write_parts(w, shard, lsn, PART_BYTES_MAX)
    })?)
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
    let (_, snapshot_bytes) =
        write_snapshot_with(&sd, upto, |w| write_parts(w, &shard, upto, PART_BYTES_MAX))?;
    if let Some(k) = kept {
        *k = Some(Kept { shard, lsn: upto });
    }
    let dropped = super::retention::drop_covered(dir, i, upto)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::image::tests::shard_pair_with_everything;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mercato-parts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Snapshots past 2 GiB cannot be one rkyv archive: they are written
    /// in parts. With a part limit of a few hundred bytes, a small shard
    /// takes many parts, and loads back as the shard it was.
    #[test]
    fn a_snapshot_in_many_small_parts_loads_back_whole() {
        let dir = scratch("many");
        for shard in shard_pair_with_everything() {
            let i = shard.id();
            for part_bytes_max in [1, 600, 4_096, PART_BYTES_MAX] {
                let n_parts = parts(&shard, part_bytes_max).len();
                let (path, _) = write_snapshot_with(&dir, u64::from(i) * 100 + 7, |w| {
                    write_parts(w, &shard, 42, part_bytes_max)
                })
                .unwrap();
                let map = map_snapshot(&path).unwrap();
                assert_eq!(parts_of(&path, map.bytes()).unwrap().len(), n_parts);
                let (back, lsn) = load(&path, map.bytes(), i, 2).unwrap();
                assert_eq!(lsn, 42);
                assert_eq!(back.state(), shard.state(), "limit {part_bytes_max}");
                if part_bytes_max <= 600 {
                    assert!(n_parts > 7, "{n_parts} parts at {part_bytes_max} bytes");
                }
                std::fs::remove_file(&path).unwrap();
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A snapshot written before parts, one archive of everything, still
    /// loads.
    #[test]
    fn a_snapshot_of_one_archive_still_loads() {
        let dir = scratch("one");
        for shard in shard_pair_with_everything() {
            let view = ImageView {
                shard: &shard,
                lsn: 9,
                part: None,
            };
            let (path, _) = write_snapshot_with(&dir, 9, |w| {
                rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&view, IoWriter::new(w))
                    .map(drop)
                    .map_err(std::io::Error::other)
            })
            .unwrap();
            let map = map_snapshot(&path).unwrap();
            let (back, lsn) = load(&path, map.bytes(), shard.id(), 2).unwrap();
            assert_eq!((lsn, back.state()), (9, shard.state()));
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_part_table_pointing_outside_is_refused() {
        let dir = scratch("bad");
        let shard = &shard_pair_with_everything()[0];
        let (path, _) = write_snapshot_with(&dir, 5, |w| write_parts(w, shard, 5, 600)).unwrap();
        let mut bytes = map_snapshot(&path).unwrap().bytes().to_vec();
        let tail = bytes.len() - 16;
        // The first entry's length, made huge.
        let count = u64::from_le_bytes(bytes[tail..tail + 8].try_into().unwrap()) as usize;
        let first = tail - count * PART_ENTRY_BYTES;
        bytes[first + 8..first + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(load(&path, &bytes, 0, 2).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    mod checkpoint {
        use super::*;
        use crate::command::{Command, PlaceOrder};
        use crate::durable::image::tests::checkpoint_images;
        use crate::shard::{CheckpointPart, PartKind};
        use crate::sim::Cluster;
        use crate::types::{LineRequest, Payment};
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Deposit(u64),
            Withdraw(u64),
            Place {
                account: u64,
                skus: Vec<u64>,
                deferred: bool,
            },
            Pay(u64, u64),
            Cancel(u64, u64),
            Restock(u64),
            /// The checkpoint copies this many slices of each table.
            Step(usize),
            /// Time passes: deferred orders lapse.
            Later,
        }

        fn op() -> impl Strategy<Value = Op> {
            // Many accounts, so the tables grow while the checkpoint runs;
            // a few buyers with several orders each, so that orders
            // placed before it change while it runs.
            let account = 0u64..600;
            let buyer = 0u64..24;
            prop_oneof![
                5 => account.clone().prop_map(Op::Deposit),
                1 => account.prop_map(Op::Withdraw),
                6 => (buyer.clone(), prop::collection::vec(0u64..6, 1..4), any::<bool>())
                    .prop_map(|(account, skus, deferred)| Op::Place { account, skus, deferred }),
                3 => (buyer.clone(), 0u64..6).prop_map(|(a, n)| Op::Pay(a, n)),
                2 => (buyer, 0u64..6).prop_map(|(a, n)| Op::Cancel(a, n)),
                1 => (0u64..6).prop_map(Op::Restock),
                2 => (0usize..2).prop_map(Op::Step),
                1 => Just(Op::Later),
            ]
        }

        /// The snapshot bytes of what a checkpoint copied, as the snapshot
        /// thread would lay them out.
        fn snapshot_bytes(
            i: u16,
            head: &crate::shard::CheckpointHead,
            parts: &[CheckpointPart],
        ) -> rkyv::util::AlignedVec {
            let archives: Vec<_> = checkpoint_images(i, 2, head, parts)
                .iter()
                .map(|image| rkyv::to_bytes::<rkyv::rancor::Error>(image).unwrap())
                .collect();
            let mut bytes = rkyv::util::AlignedVec::<16>::new();
            lay_parts(&mut bytes, archives.len(), |k, w| {
                std::io::Write::write_all(w, &archives[k])?;
                Ok(archives[k].len() as u64)
            })
            .unwrap();
            bytes
        }

        fn run(ops: &[Op], begin: usize, i: u16) {
            let mut cluster = Cluster::new(2);
            let mut now = 1_000;
            for sku in 0..6 {
                let limit = if sku == 5 { 2 } else { 0 };
                let put = Command::PutSku {
                    sku,
                    price: 10 + sku,
                    per_user_limit: limit,
                };
                let _ = cluster.call(put, now);
                let _ = cluster.call(Command::Restock { sku, qty: 10_000 }, now);
            }
            for account in 0..24 {
                let _ = cluster.call(
                    Command::Deposit {
                        account,
                        amount: 100_000,
                    },
                    now,
                );
            }
            let mut placed: crate::hash::IdMap<u64, u64> = Default::default();
            let mut parts = Vec::new();
            let mut head = None;
            for (n, op) in ops.iter().enumerate() {
                if n == begin {
                    let lsn = cluster.records[usize::from(i)].len() as u64;
                    head = Some(cluster.shards[usize::from(i)].begin_checkpoint(lsn));
                }
                now += 7;
                let cmd = match op {
                    Op::Deposit(account) => Command::Deposit {
                        account: *account,
                        amount: 500,
                    },
                    Op::Withdraw(account) => Command::Withdraw {
                        account: *account,
                        amount: 300,
                    },
                    Op::Place {
                        account,
                        skus,
                        deferred,
                    } => {
                        let n = placed.entry(*account).or_default();
                        *n += 1;
                        let mut skus = skus.clone();
                        skus.sort_unstable();
                        skus.dedup();
                        Command::PlaceOrder(PlaceOrder {
                            id: u128::from(*n - 1),
                            account: *account,
                            lines: skus.iter().map(|&s| LineRequest::new(s, 1)).collect(),
                            payment: if *deferred {
                                Payment::Deferred { ttl_ms: 50 }
                            } else {
                                Payment::Immediate
                            },
                        })
                    }
                    Op::Pay(account, order) => Command::Pay {
                        account: *account,
                        order: u128::from(*order),
                    },
                    Op::Cancel(account, order) => Command::Cancel {
                        account: *account,
                        order: u128::from(*order),
                    },
                    Op::Restock(sku) => Command::Restock { sku: *sku, qty: 3 },
                    Op::Step(slices) => {
                        cluster.shards[usize::from(i)].checkpoint_step(*slices, &mut parts);
                        continue;
                    }
                    Op::Later => {
                        now += 100;
                        cluster.tick(now);
                        continue;
                    }
                };
                let _ = cluster.call(cmd, now);
            }
            let shard = &mut cluster.shards[usize::from(i)];
            let head = head.unwrap_or_else(|| {
                let lsn = cluster.records[usize::from(i)].len() as u64;
                shard.begin_checkpoint(lsn)
            });
            while !shard.checkpoint_step(1, &mut parts) {}
            assert!(!shard.is_checkpointing());
            // Every entry copied once.
            let count = |f: fn(&CheckpointPart) -> usize| parts.iter().map(f).sum::<usize>();
            let accounts = count(|p| match &p.0 {
                PartKind::Accounts(a) => a.len(),
                _ => 0,
            });
            let orders = count(|p| match &p.0 {
                PartKind::Orders { orders, .. } => orders.len(),
                _ => 0,
            });
            assert_eq!((accounts, orders), (head.accounts, head.orders));

            let bytes = snapshot_bytes(i, &head, &parts);
            let (mut loaded, lsn) = load(Path::new("checkpoint"), &bytes, i, 2).unwrap();
            assert_eq!(lsn, head.lsn);
            for record in &cluster.records[usize::from(i)][lsn as usize..] {
                loaded.replay(record.clone());
            }
            assert!(
                loaded.state() == cluster.shards[usize::from(i)].state(),
                "the checkpoint at {lsn} plus the log after it differs from the shard"
            );
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// A checkpoint begun at a random point of a random workload,
            /// copied a few slices at a time while the shard keeps writing
            /// and its tables grow, plus the log after its LSN, rebuilds
            /// exactly the shard a full replay would.
            #[test]
            fn a_checkpoint_and_the_log_after_it_rebuild_the_shard(
                ops in prop::collection::vec(op(), 1..500),
                begin in 0usize..500,
                i in 0u16..2,
            ) {
                run(&ops, begin, i);
            }
        }
    }
}
