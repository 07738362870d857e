//! What the crash tests share: a scratch directory and the checks they run
//! on a directory after a kill.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

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

/// A child killed on drop, so a failed assertion leaves no server behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `mercato` binary, beside `mercato-load`. It belongs to another
/// package, which a run of this one alone may not have built, or built
/// before a change: cargo brings it up to date (at once, if it is).
pub fn mercato_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let load = PathBuf::from(env!("CARGO_BIN_EXE_mercato-load"));
    let bin = load.with_file_name(format!("mercato{}", std::env::consts::EXE_SUFFIX));
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "mercato-engine", "--bin", "mercato"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "build mercato");
    });
    bin
}

/// `mercato serve` with 2 shards and durability `always` on `listen`
/// (`127.0.0.1:0` lets the system choose), once it says it listens;
/// returns it and its main address. A port a killed server just held can
/// take a moment to bind again, so a refusal is tried again for 10 s.
pub fn serve_durable(data: &Path, listen: &str) -> (Killed, String) {
    serve_durable_with(data, listen, &[])
}

/// `serve_durable` with more flags.
pub fn serve_durable_with(data: &Path, listen: &str, flags: &[&str]) -> (Killed, String) {
    use std::io::BufRead;
    for _ in 0..100 {
        let mut child = Command::new(mercato_bin())
            .args(["serve", "--listen", listen, "--shards", "2"])
            .args(["--durability", "always"])
            .args(flags)
            .arg("--data-dir")
            .arg(data)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mercato serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if let Some(rest) = line.trim().strip_prefix("listening on ") {
            let main = rest.split_once(';').unwrap().0.to_string();
            return (Killed(child), main);
        }
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("mercato serve never listened on {listen}");
}
