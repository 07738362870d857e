//! What the crash tests share: a scratch directory and the checks they run
//! on a directory after a kill.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The standard output of a run that must have succeeded; its output in
/// the panic if not.
pub fn check(what: &str, out: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `mercato-load --verify-acks`: every order in `acks` is in the recovered
/// `dir`, and the invariants hold. Returns its summary line.
pub fn verify(dir: &Path, acks: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
        .arg("--verify-acks")
        .arg(acks)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run mercato-load --verify-acks");
    check("verification", out)
}
