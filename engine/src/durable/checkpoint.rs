//! Writing a shard's checkpoint (`shard/checkpoint.rs`) as a snapshot.
//!
//! The snapshot thread asks a shard for a checkpoint and hands it the
//! sending end of a bounded queue. The shard sends the head when it begins,
//! then each slice it copies, then `Done`; the snapshot thread serializes
//! each as one part of the snapshot file (`snapshot.rs`) as it arrives, so
//! the checkpoint never sits in memory whole. Orders' parts must be in the
//! order the orders were placed, and writes copy slices out of order, so an
//! orders' part that arrives early waits for those before it. Once the file
//! is durable under its name, the log segments it covers are dropped, as
//! after any snapshot.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use mercato_wal::Lsn;
use mercato_wal::snapshot::write_snapshot_with;
use rkyv::ser::Positional;
use rkyv::ser::writer::IoWriter;

use super::image::{Image, head_image, part_image};
use super::marker::shard_dir;
use super::snapshot::PartsLayout;
use crate::error::OpenError;
use crate::shard::{CheckpointHead, CheckpointPart, PartKind};

/// Pieces a shard may queue for the snapshot thread before it waits (and
/// keeps copying only what its writes must).
pub(crate) const CHECKPOINT_QUEUE_PIECES_MAX: usize = 64;

/// How long the snapshot thread waits for a piece before it looks whether
/// the engine is stopping.
const CHECKPOINT_WAIT_MS: u64 = 100;

/// What a shard sends the snapshot thread during a checkpoint.
#[derive(Debug)]
pub(crate) enum Piece {
    Head(CheckpointHead),
    Part(CheckpointPart),
    Done,
}

/// What one checkpoint wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub lsn: Lsn,
    pub parts: usize,
}

fn gone(why: &str) -> std::io::Error {
    std::io::Error::other(why.to_string())
}

/// The next piece, waiting while `stopping` says no.
fn next(rx: &Receiver<Piece>, stopping: &dyn Fn() -> bool) -> std::io::Result<Piece> {
    loop {
        match rx.recv_timeout(Duration::from_millis(CHECKPOINT_WAIT_MS)) {
            Ok(piece) => return Ok(piece),
            Err(RecvTimeoutError::Timeout) if !stopping() => {}
            Err(RecvTimeoutError::Timeout) => return Err(gone("the engine is stopping")),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(gone("the shard stopped before its checkpoint was complete"));
            }
        }
    }
}

fn write_image(
    layout: &mut PartsLayout,
    w: &mut mercato_wal::snapshot::SnapshotWriter,
    image: &Image,
) -> std::io::Result<()> {
    layout.add(w, |w| {
        let written =
            rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(image, IoWriter::new(w))
                .map_err(std::io::Error::other)?;
        Ok(written.pos() as u64)
    })
}

/// Receives shard `i`'s checkpoint from `rx` and writes it as the snapshot
/// at its LSN, then drops the log segments and snapshots it covers.
pub(crate) fn write_checkpoint(
    dir: &Path,
    i: u16,
    n: u16,
    rx: &Receiver<Piece>,
    stopping: &dyn Fn() -> bool,
) -> Result<Written, OpenError> {
    let io = |source: std::io::Error| {
        OpenError::Wal(mercato_wal::WalError::Io {
            op: "checkpoint",
            path: shard_dir(dir, i),
            source,
        })
    };
    let head = match next(rx, stopping).map_err(io)? {
        Piece::Head(head) => head,
        other => return Err(io(gone(&format!("a checkpoint began with {other:?}")))),
    };
    let sdir = shard_dir(dir, i);
    let mut parts = 1;
    let (_, _) = write_snapshot_with(&sdir, head.lsn, |w| {
        let mut layout = PartsLayout::default();
        write_image(&mut layout, w, &head_image(i, n, &head))?;
        // Orders' parts that came before their turn, by first position.
        let mut early: BTreeMap<usize, CheckpointPart> = BTreeMap::new();
        let mut next_order = 0;
        let mut accounts = 0;
        loop {
            let part = match next(rx, stopping)? {
                Piece::Part(part) => part,
                Piece::Done => break,
                Piece::Head(_) => return Err(gone("a second head in one checkpoint")),
            };
            if let PartKind::Orders { first, .. } = part.0 {
                early.insert(first, part);
            } else {
                if let PartKind::Accounts(a) = &part.0 {
                    accounts += a.len();
                }
                write_image(&mut layout, w, &part_image(i, n, &head, &part))?;
                parts += 1;
            }
            while let Some(part) = early.remove(&next_order) {
                let PartKind::Orders { orders, .. } = &part.0 else {
                    unreachable!("only orders wait");
                };
                next_order += orders.len();
                write_image(&mut layout, w, &part_image(i, n, &head, &part))?;
                parts += 1;
            }
        }
        // Every entry copied exactly once, or the snapshot is not written.
        if !early.is_empty() || next_order != head.orders || accounts != head.accounts {
            return Err(gone("a checkpoint's parts do not add up to its tables"));
        }
        layout.finish(w)
    })?;
    super::retention::drop_covered(dir, i, head.lsn)?;
    Ok(Written {
        lsn: head.lsn,
        parts,
    })
}
