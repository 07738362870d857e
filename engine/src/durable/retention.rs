//! The change feed's named subscriptions, in `DIR/subscriptions`, and the
//! log segments they hold back from a snapshot's deletion, up to a limit
//! in bytes per shard, as PostgreSQL's `max_slot_wal_keep_size` does:
//! past it, the subscriptions that held the oldest segments are marked
//! lost and the segments go, so a stalled consumer never grows the log
//! without bound.
//!
//! The file is text, a line each: `limit BYTES`, then `NAME live|lost
//! LSN,LSN,...` (per shard, the LSN the subscription reads next). It is
//! replaced whole (a temporary file, synced, renamed), under one lock per
//! process, by acknowledgements and by the deletion of covered segments.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mercato_wal::snapshot::{Dropped, drop_covered_keeping};
use mercato_wal::{Lsn, WalError};

use super::marker::shard_dir;

const FILE: &str = "subscriptions";
const TMP: &str = "subscriptions.tmp";
/// Longest subscription name; names are ASCII letters, digits, `-`, `_`
/// and `.`, so the file needs no quoting.
pub const SUBSCRIPTION_NAME_BYTES_MAX: usize = 64;
/// Bytes of log a shard keeps for its subscriptions beyond what its
/// snapshots cover, by default: 16 segments of the default 64 MiB.
pub const RETENTION_BYTES_DEFAULT: u64 = 1 << 30;

/// Serialises every read-modify-write of a subscriptions file in this
/// process; another process never writes one, since a data directory has
/// one engine (`durable::lock`).
static FILE_LOCK: Mutex<()> = Mutex::new(());

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub name: String,
    /// Per shard, the LSN it reads next.
    pub positions: Vec<Lsn>,
    /// Its records were let go past the limit: it cannot go on.
    pub lost: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscriptions {
    pub retention_bytes_max: u64,
    pub list: Vec<Subscription>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            retention_bytes_max: RETENTION_BYTES_DEFAULT,
            list: Vec::new(),
        }
    }
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= SUBSCRIPTION_NAME_BYTES_MAX
        && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> WalError {
    WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, line: usize) -> WalError {
    io(
        "parse",
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line {line} is not a subscription"),
        ),
    )
}

fn load(dir: &Path) -> Result<Subscriptions, WalError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Subscriptions::default()),
        Err(e) => return Err(io("read", &path, e)),
    };
    let mut subs = Subscriptions::default();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["limit", bytes] => {
                subs.retention_bytes_max = bytes.parse().map_err(|_| bad(&path, i + 1))?;
            }
            [name, state @ ("live" | "lost"), positions] if valid_name(name) => {
                let positions = (positions.split(','))
                    .map(str::parse)
                    .collect::<Result<Vec<Lsn>, _>>()
                    .map_err(|_| bad(&path, i + 1))?;
                subs.list.push(Subscription {
                    name: name.to_string(),
                    positions,
                    lost: *state == "lost",
                });
            }
            _ => return Err(bad(&path, i + 1)),
        }
    }
    Ok(subs)
}

fn save(dir: &Path, subs: &Subscriptions) -> Result<(), WalError> {
    use std::io::Write;
    let mut text = format!("limit {}\n", subs.retention_bytes_max);
    for s in &subs.list {
        let positions: Vec<String> = s.positions.iter().map(u64::to_string).collect();
        let state = if s.lost { "lost" } else { "live" };
        text.push_str(&format!("{} {state} {}\n", s.name, positions.join(",")));
    }
    let tmp: PathBuf = dir.join(TMP);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write", &tmp, e))?;
    let path = dir.join(FILE);
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", dir, e))
}

/// Reads the subscriptions of `dir`, lets `f` change them, and writes them
/// back if it did; all under the file's lock.
pub fn with<R>(dir: &Path, f: impl FnOnce(&mut Subscriptions) -> R) -> Result<R, WalError> {
    let _held = FILE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut subs = load(dir)?;
    let before = subs.clone();
    let r = f(&mut subs);
    if subs != before {
        save(dir, &subs)?;
    }
    Ok(r)
}

/// Drops what shard `i`'s snapshot at `lsn` covers, keeping the segments
/// its live subscriptions still read, up to the limit; subscriptions that
/// needed more are marked lost.
pub fn drop_covered(dir: &Path, i: u16, lsn: Lsn) -> Result<Dropped, WalError> {
    let sd = shard_dir(dir, i);
    let keep_from = with(dir, |subs| {
        let live = |subs: &Subscriptions| {
            (subs.list.iter())
                .filter(|s| !s.lost)
                .filter_map(|s| s.positions.get(usize::from(i)).copied())
                .min()
                .unwrap_or(Lsn::MAX)
        };
        let keep_from = live(subs);
        if keep_from == Lsn::MAX {
            return Ok(keep_from);
        }
        // Segments the snapshot covers that a subscription holds back,
        // newest first, with their sizes.
        let segments = mercato_wal::list_segments(&sd)?;
        let mut held = Vec::new();
        for pair in segments.windows(2) {
            let (first, path) = &pair[0];
            let next_first = pair[1].0;
            if next_first <= lsn + 1 && next_first > keep_from {
                let bytes = std::fs::metadata(path)
                    .map_err(|e| io("stat", path, e))?
                    .len();
                held.push((*first, bytes));
            }
        }
        let total: u64 = held.iter().map(|&(_, b)| b).sum();
        if total <= subs.retention_bytes_max {
            return Ok(keep_from);
        }
        // Keep the newest that fit; whoever needs older ones is lost.
        let mut kept = 0;
        let mut boundary = lsn + 1;
        for &(first, bytes) in held.iter().rev() {
            if kept + bytes > subs.retention_bytes_max {
                break;
            }
            kept += bytes;
            boundary = first;
        }
        for s in &mut subs.list {
            if !s.lost
                && s.positions
                    .get(usize::from(i))
                    .is_some_and(|&p| p < boundary)
            {
                s.lost = true;
            }
        }
        Ok(live(subs))
    })??;
    drop_covered_keeping(&sd, lsn, keep_from)
}
