//! A [`Storage`] for tests that remembers which bytes were synced, and at a
//! simulated power cut forgets the rest, as TigerBeetle's simulated storage
//! and redb's crash backend do.
//!
//! A SIGKILL leaves the page cache, so a crash test that kills a process
//! cannot catch an answer sent after `write` but before `fdatasync`. This
//! storage can: it writes through to real files (so the engine runs as it
//! does in production), and beside each file keeps its content and the
//! writes made since that file's last sync. At the cut (the n-th sync, or
//! [`PowerLossStorage::cut_now`]) it computes what a disk would hold:
//! every synced byte, plus an arbitrary prefix of the unsynced writes in
//! the order they were made, the last one possibly torn. A file whose name
//! no directory sync made durable is lost, or is found under its old name.
//! From the cut on, every operation fails with EIO, so nothing more is
//! acknowledged. Once the engine has stopped, [`PowerLossStorage::apply`]
//! writes that image over the real files, and a new engine recovers from
//! what a power cut would have left.
//!
//! It covers the log's files, which are all this trait opens. Snapshot
//! files are written, synced and renamed outside it; tests of the log under
//! power loss run with snapshots off.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::storage::{LogFile, OsStorage, Spread, Storage};

/// One file as the simulation sees it.
#[derive(Debug)]
struct Tracked {
    /// Where it is now, and where the last directory sync left its name
    /// (`None`: no sync has seen it, so a cut loses it).
    path: PathBuf,
    durable_path: Option<PathBuf>,
    /// Its content now, as the engine sees it.
    content: Vec<u8>,
    /// Writes since its last sync, oldest first: offset, bytes before,
    /// bytes after.
    unsynced: Vec<(u64, Vec<u8>, Vec<u8>)>,
}

impl Tracked {
    /// What a disk holds after a cut that kept `kept` bytes of the
    /// unsynced writes (in order; the last one kept may be torn).
    fn image(&self, mut kept: u64) -> Vec<u8> {
        let mut bytes = self.content.clone();
        for (offset, before, _) in self.unsynced.iter().rev() {
            let at = *offset as usize;
            bytes[at..at + before.len()].copy_from_slice(before);
        }
        for (offset, _, after) in &self.unsynced {
            let n = (after.len() as u64).min(kept) as usize;
            let at = *offset as usize;
            bytes[at..at + n].copy_from_slice(&after[..n]);
            kept -= n as u64;
        }
        bytes
    }

    fn unsynced_bytes(&self) -> u64 {
        self.unsynced.iter().map(|(_, _, a)| a.len() as u64).sum()
    }
}

#[derive(Debug, Default)]
struct State {
    files: Vec<Tracked>,
    syncs: u64,
    /// Cut at this sync (counted from 1 over all files); 0: only when asked.
    cut_at_sync: u64,
    /// Chooses how much of the unsynced writes survive.
    rng: u64,
    cut: Option<Cut>,
}

/// What the disk holds after the cut: each file under its durable name,
/// and the names that did not survive.
#[derive(Debug)]
struct Cut {
    images: Vec<(PathBuf, Vec<u8>)>,
    gone: Vec<PathBuf>,
}

impl State {
    fn next_rand(&mut self) -> u64 {
        // SplitMix64: seeded, so a failing run can be replayed.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn cut(&mut self) {
        if self.cut.is_some() {
            return;
        }
        let mut images = Vec::new();
        let mut gone = Vec::new();
        for i in 0..self.files.len() {
            let unsynced = self.files[i].unsynced_bytes();
            let kept = match self.next_rand() % 3 {
                // Often nothing or everything unsynced survives; else a
                // torn prefix anywhere.
                0 => 0,
                1 => unsynced,
                _ => self.next_rand() % (unsynced + 1),
            };
            let f = &self.files[i];
            if f.durable_path.as_ref() != Some(&f.path) {
                gone.push(f.path.clone());
            }
            if let Some(p) = &f.durable_path {
                images.push((p.clone(), f.image(kept)));
            }
        }
        self.cut = Some(Cut { images, gone });
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

/// Storage that forgets what was not synced when its power is cut.
#[derive(Debug, Clone)]
pub struct PowerLossStorage {
    state: Arc<Mutex<State>>,
}

impl PowerLossStorage {
    /// Cut the power at the `cut_at_sync`-th sync (0: only at
    /// [`cut_now`](Self::cut_now)); `seed` chooses what unsynced data
    /// survives.
    pub fn new(cut_at_sync: u64, seed: u64) -> PowerLossStorage {
        PowerLossStorage {
            state: Arc::new(Mutex::new(State {
                cut_at_sync,
                rng: seed,
                ..State::default()
            })),
        }
    }

    /// Cut the power now, if it is not cut already.
    pub fn cut_now(&self) {
        self.state.lock().unwrap().cut();
    }

    /// Whether the power was cut.
    pub fn is_cut(&self) -> bool {
        self.state.lock().unwrap().cut.is_some()
    }

    /// Syncs so far, over all files.
    pub fn syncs(&self) -> u64 {
        self.state.lock().unwrap().syncs
    }

    /// Write what the disk held at the cut over the real files. Call it
    /// once whoever used this storage has stopped. Returns the bytes
    /// written over the files.
    pub fn apply(&self) -> io::Result<u64> {
        let s = self.state.lock().unwrap();
        let Some(Cut { images, gone }) = &s.cut else {
            return Err(io::Error::other("the power was never cut"));
        };
        for path in gone {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        for (path, bytes) in images {
            std::fs::write(path, bytes)?;
        }
        let written: u64 = images.iter().map(|(_, b)| b.len() as u64).sum();
        Ok(written)
    }

    fn track(&self, path: &Path, content: Vec<u8>, durable: bool) -> usize {
        let mut s = self.state.lock().unwrap();
        s.files.push(Tracked {
            path: path.to_path_buf(),
            durable_path: durable.then(|| path.to_path_buf()),
            content,
            unsynced: Vec::new(),
        });
        s.files.len() - 1
    }

    fn live(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let s = self.state.lock().unwrap();
        if s.cut.is_some() { Err(eio()) } else { Ok(s) }
    }
}

impl Storage for PowerLossStorage {
    fn create(&self, path: &Path, len: u64, spread: &Spread) -> io::Result<Box<dyn LogFile>> {
        drop(self.live()?);
        let os = OsStorage.create(path, len, spread)?;
        // The zeros were synced; the name is durable at the next directory
        // sync.
        let index = self.track(path, vec![0; len as usize], false);
        Ok(Box::new(SimFile {
            os,
            index,
            state: self.state.clone(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        drop(self.live()?);
        let os = OsStorage.open(path)?;
        let index = self.track(path, std::fs::read(path)?, true);
        Ok(Box::new(SimFile {
            os,
            index,
            state: self.state.clone(),
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.live()?;
        OsStorage.sync_dir(dir)?;
        for f in &mut s.files {
            if f.path.parent() == Some(dir) {
                f.durable_path = Some(f.path.clone());
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.live()?;
        std::fs::rename(from, to)?;
        for f in &mut s.files {
            if f.path == from {
                f.path = to.to_path_buf();
            }
        }
        Ok(())
    }
}

/// A tracked file: writes go through to the real one.
struct SimFile {
    os: Box<dyn LogFile>,
    index: usize,
    state: Arc<Mutex<State>>,
}

impl LogFile for SimFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.state.lock().unwrap();
        if s.cut.is_some() {
            return Err(eio());
        }
        let f = &mut s.files[self.index];
        let end = offset as usize + buf.len();
        if f.content.len() < end {
            f.content.resize(end, 0);
        }
        let at = offset as usize;
        let before = f.content[at..end].to_vec();
        f.content[at..end].copy_from_slice(buf);
        f.unsynced.push((offset, before, buf.to_vec()));
        self.os.write_at(buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.state.lock().unwrap();
        if s.cut.is_some() {
            return Err(eio());
        }
        s.syncs += 1;
        if s.syncs == s.cut_at_sync {
            // The power goes while this sync is under way: it never
            // returns, so nothing it covers was acknowledged.
            s.cut();
            return Err(eio());
        }
        self.os.sync_data()?;
        s.files[self.index].unsynced.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mercato-power-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn synced_bytes_survive_and_unsynced_ones_may_not() {
        let dir = scratch("image");
        let mut lost_any = false;
        let mut kept_any = false;
        for seed in 0..40 {
            let path = dir.join(format!("f{seed}"));
            let storage = PowerLossStorage::new(0, seed);
            let mut f = storage.create(&path, 64, &Spread::default()).unwrap();
            storage.sync_dir(&dir).unwrap();
            f.write_at(b"durable", 0).unwrap();
            f.sync_data().unwrap();
            f.write_at(b"maybe", 10).unwrap();
            f.write_at(b"later", 20).unwrap();
            storage.cut_now();
            assert!(f.write_at(b"x", 30).is_err() && f.sync_data().is_err());
            storage.apply().unwrap();
            let back = std::fs::read(&path).unwrap();
            assert_eq!(back.len(), 64);
            assert_eq!(&back[..7], b"durable");
            // What survives of the unsynced writes is a prefix, in order:
            // the second never without the whole first.
            let first = &back[10..15];
            let second = &back[20..25];
            assert!(b"maybe".starts_with(first.split(|&b| b == 0).next().unwrap()));
            assert!(second == [0; 5] || first == b"maybe", "{back:?}");
            assert!(back[30] == 0);
            lost_any |= second == [0; 5];
            kept_any |= second == b"later";
        }
        assert!(lost_any && kept_any);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_name_no_directory_sync_saw_is_lost() {
        let dir = scratch("names");
        let storage = PowerLossStorage::new(2, 1);
        let mut a = storage
            .create(&dir.join("spare"), 16, &Spread::default())
            .unwrap();
        a.write_at(b"head", 0).unwrap();
        a.sync_data().unwrap();
        storage
            .rename(&dir.join("spare"), &dir.join("seg-1"))
            .unwrap();
        storage.sync_dir(&dir).unwrap();
        let _b = storage
            .create(&dir.join("spare"), 16, &Spread::default())
            .unwrap();
        // A rename that no directory sync followed: found under the old name.
        storage
            .rename(&dir.join("seg-1"), &dir.join("seg-2"))
            .unwrap();
        // The second sync is where the power goes.
        assert!(a.sync_data().is_err());
        assert!(storage.is_cut());
        storage.apply().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["seg-1"]);
        assert_eq!(&std::fs::read(dir.join("seg-1")).unwrap()[..4], b"head");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
