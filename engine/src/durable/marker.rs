//! The file that makes a directory a mercato data directory: the data format
//! and the shard count, both fixed when the directory is created (every
//! SKU's and account's shard depends on the count).
//!
//! It is a few lines of text so an operator can read it: `cat DIR/MERCATO`.

use std::path::{Path, PathBuf};

use crate::error::OpenError;

pub const MARKER_NAME: &str = "MERCATO";
/// The data format: log record bodies and snapshot layout. Any change to
/// `durable::codec` or `durable::snapshot` bumps it.
pub const DATA_FORMAT: u32 = 1;

const FIRST_LINE: &str = "mercato data directory";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub format: u32,
    pub shards: u16,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(MARKER_NAME)
}

/// The marker in `dir`, or `None` for a directory mercato never wrote.
pub fn read(dir: &Path) -> Result<Option<Marker>, OpenError> {
    let p = path(dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(OpenError::Io {
                op: "read",
                path: p,
                source,
            });
        }
    };
    let bad = |what| OpenError::BadMarker {
        path: p.clone(),
        what,
    };
    let mut lines = text.lines();
    if lines.next() != Some(FIRST_LINE) {
        return Err(bad("first line is not `mercato data directory`"));
    }
    let mut field = |name: &str| -> Result<u64, OpenError> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or(bad("expected `format N` then `shards N`"))
    };
    let format = field("format ")? as u32;
    let shards = field("shards ")?;
    if shards == 0 || shards > crate::limits::SHARDS_MAX as u64 {
        return Err(bad("shard count out of range"));
    }
    Ok(Some(Marker {
        format,
        shards: shards as u16,
    }))
}

/// Write the marker: to a temporary file, synced, renamed, directory synced,
/// so a crash leaves either no marker or a whole one.
pub fn write(dir: &Path, m: Marker) -> Result<(), OpenError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let tmp = dir.join(format!("{MARKER_NAME}.tmp"));
    let text = format!("{FIRST_LINE}\nformat {}\nshards {}\n", m.format, m.shards);
    std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &tmp))?;
    let p = path(dir);
    std::fs::rename(&tmp, &p).map_err(io("rename", &p))?;
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", dir))
}

/// Where shard `i` keeps its log and snapshots.
pub fn shard_dir(dir: &Path, shard: u16) -> PathBuf {
    dir.join(format!("shard-{shard}"))
}
