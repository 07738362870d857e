//! The PostgreSQL sink under kills: a real `mercato serve` (durability
//! `always`) under `mercato-load` over TCP, and `mercato sink postgres`
//! following it with a durable subscription. Each round SIGKILLs the
//! server, the sink or both at a random moment, and restarts what died;
//! the server comes back on the same port, so the sink also rides out a
//! server that goes away under it. After every round the positions the
//! database holds never went back. At the end the sink catches up and
//! `mercato sink compare` finds the tables equal, row for row, to the
//! state `mercato audit --rows` recovers from the data directory: every
//! SKU's figures, every balance, every order and its lines. An event lost,
//! or applied twice, would show there.
//!
//! PostgreSQL comes from `benches/peers.sh` (installed from Debian if
//! missing, on loopback, stopped at the end); the test runs itself under
//! it. CI runs 6 kills; `MERCATO_SINK_KILLS=100 cargo test --release -p
//! mercato-benches --test sink_crash` is the long mode, and
//! `MERCATO_CRASH_SEED` replays a run's choices.

#[allow(dead_code)]
mod util;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mercato_client::{Client, ClientConfig, wire};
use util::{Killed, TempDir, check, mercato_bin, serve_durable};

/// What `serve_durable` starts.
const SHARDS: u16 = 2;

/// A main port with the shard ports after it free too.
fn free_ports() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let all_free = (0..=SHARDS).all(|i| {
            port.checked_add(i)
                .is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return port;
        }
    }
}

fn serve(data: &Path, port: u16) -> Killed {
    serve_durable(data, &format!("127.0.0.1:{port}")).0
}

fn sink(port: u16, dsn: &str) -> Killed {
    Killed(
        Command::new(mercato_bin())
            .args(["sink", "postgres", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--dsn", dsn, "--subscription", "crash"])
            .args(["--batch-wait-ms", "20", "--batch-events-max", "20000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mercato sink"),
    )
}

fn load(port: u16, round: u64) -> Killed {
    let workload = ["carts", "flash-sale"][(round % 2) as usize];
    let accounts = 5_000 * (1 + round / 2);
    Killed(
        Command::new(env!("CARGO_BIN_EXE_mercato-load"))
            .args(["--target", &format!("tcp://127.0.0.1:{port}")])
            .args(["--workload", workload, "--threads", "2"])
            .args(["--connections", "1", "--seconds", "60", "--batch", "64"])
            .args(["--accounts", &accounts.to_string(), "--skus", "500"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mercato-load"),
    )
}

fn positions(db: &mut postgres::Client) -> Vec<u64> {
    // The sink makes the table; before its first commit there is none.
    db.query(
        "SELECT next_lsn FROM mercato_feed_positions ORDER BY shard",
        &[],
    )
    .map(|rows| rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    .unwrap_or_default()
}

/// Where the server's feed would start now: what it has committed, plus 1.
fn committed(port: u16) -> Vec<u64> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = Client::connect(addr, ClientConfig::default()).expect("connect");
    let stream = client
        .subscribe(None, wire::FeedStart::Now, wire::FeedFilter::default())
        .expect("subscribe")
        .expect("subscribe");
    stream.started.clone()
}

/// PostgreSQL's URL, or `None` once `test` ran again under
/// benches/peers.sh, which starts it (and failed the test if that failed).
fn postgres_for(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var("MERCATO_POSTGRES_URL") {
        return Some(url);
    }
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/peers.sh"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .status()
        .expect("run benches/peers.sh");
    assert!(status.success(), "{test} under benches/peers.sh failed");
    None
}

/// A database of its own for one test, and its DSN.
fn database(url: &str, name: &str) -> (postgres::Client, String) {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    // One statement each: neither runs inside a transaction block.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let dsn = format!("{}/{name}", url.rsplit_once('/').unwrap().0);
    (admin, dsn)
}

fn stop(mut server: Killed) {
    let stopped = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(
        server.0.wait().unwrap().success(),
        "mercato serve stops cleanly"
    );
}

fn compare(dsn: &str, data: &Path) {
    let compared = check(
        "mercato sink compare",
        Command::new(mercato_bin())
            .args(["sink", "compare", "--dsn", dsn])
            .arg(data)
            .output()
            .unwrap(),
    );
    eprintln!("{}", compared.trim());
}

#[test]
fn the_sink_keeps_postgres_equal_to_the_engine_through_kills() {
    let Some(url) = postgres_for("the_sink_keeps_postgres_equal_to_the_engine_through_kills")
    else {
        return;
    };
    let kills = mercato_engine::workload::env_count("MERCATO_SINK_KILLS", 6);
    let seed = mercato_engine::workload::env_seed("MERCATO_CRASH_SEED");
    eprintln!("sink crash test: {kills} kills, MERCATO_CRASH_SEED={seed}");
    let mut rng = mercato_engine::workload::Rng::new(seed);

    let db_name = format!("sink_crash_{}", std::process::id());
    let (mut admin, dsn) = database(&url, &db_name);
    let mut db = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();

    let dir =
        TempDir(std::env::temp_dir().join(format!("mercato-sink-crash-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let data = dir.0.join("data");
    let port = free_ports();

    let mut server = serve(&data, port);
    let mut follower = sink(port, &dsn);
    let mut seen = vec![0u64; usize::from(SHARDS)];
    for round in 0..kills {
        let orders = load(port, round);
        let wait_ms = 300 + rng.below(1_200);
        std::thread::sleep(Duration::from_millis(wait_ms));
        let victim = ["server", "sink", "both"][rng.below(3) as usize];
        if victim != "sink" {
            server.0.kill().unwrap();
            server.0.wait().unwrap();
        }
        if victim != "server" {
            follower.0.kill().unwrap();
            follower.0.wait().unwrap();
        }
        // The load stops by itself when its server dies; else here.
        drop(orders);
        if victim != "sink" {
            server = serve(&data, port);
        }
        if victim != "server" {
            follower = sink(port, &dsn);
        }
        let now = positions(&mut db);
        if !now.is_empty() {
            assert!(
                now.iter().zip(&seen).all(|(n, s)| n >= s),
                "round {round}: positions went back from {seen:?} to {now:?}"
            );
            seen = now;
        }
        eprintln!("round {round}: killed {victim} {wait_ms} ms in; positions {seen:?}");
    }

    // Quiet now: the sink catches up with everything committed.
    let want = committed(port);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let now = positions(&mut db);
        if now.len() == want.len() && now.iter().zip(&want).all(|(n, w)| n >= w) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink never caught up: at {now:?}, the server at {want:?}"
        );
        assert!(follower.0.try_wait().unwrap().is_none(), "the sink exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(follower);
    stop(server);
    compare(&dsn, &data);
    let orders: i64 = db
        .query_one("SELECT count(*) FROM orders", &[])
        .unwrap()
        .get(0);
    assert!(orders > 0, "the load placed orders");
    check(
        "audit",
        Command::new(mercato_bin())
            .arg("audit")
            .arg(&data)
            .output()
            .unwrap(),
    );
    drop(db);
    admin
        .batch_execute(&format!("DROP DATABASE {db_name}"))
        .unwrap();
}

/// A database with no position is loaded from a copy of the state in one
/// transaction; a copy bigger than a batch goes in many pieces. Small
/// segments make the server checkpoint often, so the copy holds the
/// load's SKUs, accounts and orders. (Rows left staged by an earlier piece
/// would not show here, since a copy sets rows outright; they made a
/// million-SKU load quadratic, which the sink's benchmark showed.)
#[test]
fn a_copy_loaded_in_many_pieces_equals_the_engine() {
    let Some(url) = postgres_for("a_copy_loaded_in_many_pieces_equals_the_engine") else {
        return;
    };
    let db_name = format!("sink_copy_{}", std::process::id());
    let (mut admin, dsn) = database(&url, &db_name);
    let dir =
        TempDir(std::env::temp_dir().join(format!("mercato-sink-copy-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let data = dir.0.join("data");
    let (server, main) = util::serve_durable_with(
        &data,
        "127.0.0.1:0",
        &["--segment-bytes", "131072", "--snapshot-segments", "1"],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
        .args(["--target", &format!("tcp://{main}"), "--workload", "carts"])
        .args(["--threads", "2", "--seconds", "2", "--batch", "64"])
        .args(["--accounts", "2000", "--skus", "500"])
        .output()
        .unwrap();
    check("mercato-load", out);
    // Let a checkpoint take in the last of it.
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new(mercato_bin())
        .args(["sink", "postgres", "--addr", &main, "--dsn", &dsn])
        // Checkpoints go on, and only a subscription holds the log after
        // the copy: without one the stream may find it gone (`Lost`).
        .args(["--subscription", "copy"])
        .args(["--batch-events-max", "100", "--exit-idle-ms", "1500"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the sink failed: {said}");
    let rows: u64 = said
        .split("loaded a copy of ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no copy loaded: {said}"));
    assert!(
        rows > 1_000,
        "a copy of {rows} rows is too small to test: {said}"
    );
    stop(server);
    compare(&dsn, &data);
    admin
        .batch_execute(&format!("DROP DATABASE {db_name}"))
        .unwrap();
}

/// The sink and `sink compare` reach PostgreSQL over TLS when given its
/// authority (`--pg-tls-ca`), with `sslmode=require` so that plain TCP
/// would be refused; an authority that did not sign the database's
/// certificate is refused. `benches/peers.sh` starts PostgreSQL with TLS.
#[test]
fn the_sink_reaches_postgres_over_tls() {
    let Some(url) = postgres_for("the_sink_reaches_postgres_over_tls") else {
        return;
    };
    let ca = std::env::var("MERCATO_POSTGRES_CA").expect("peers.sh names the authority");
    let db_name = format!("sink_tls_{}", std::process::id());
    let (mut admin, dsn) = database(&url, &db_name);
    let dsn = format!("{dsn}?sslmode=require");
    let dir =
        TempDir(std::env::temp_dir().join(format!("mercato-sink-tls-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let data = dir.0.join("data");
    let (server, main) = util::serve_durable_with(&data, "127.0.0.1:0", &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
        .args(["--target", &format!("tcp://{main}"), "--workload", "carts"])
        .args(["--threads", "2", "--seconds", "1", "--batch", "16"])
        .args(["--accounts", "200", "--skus", "50"])
        .output()
        .unwrap();
    check("mercato-load", out);
    let sink = |ca: &str| {
        Command::new(mercato_bin())
            .args(["sink", "postgres", "--addr", &main, "--dsn", &dsn])
            .args(["--pg-tls-ca", ca, "--exit-idle-ms", "1000"])
            .output()
            .unwrap()
    };
    // Another authority: the database's certificate does not check out.
    let other = dir.0.join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-keyout"])
        .arg(dir.0.join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .args(["-days", "1", "-subj", "/CN=someone-else"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let refused = sink(other.to_str().unwrap());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a database we cannot check was used: {said}"
    );
    assert!(
        said.contains("certificate"),
        "the refusal names the cause: {said}"
    );
    let out = sink(&ca);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the sink failed over TLS: {said}");
    stop(server);
    let compared = check(
        "mercato sink compare over TLS",
        Command::new(mercato_bin())
            .args(["sink", "compare", "--dsn", &dsn, "--pg-tls-ca", &ca])
            .arg(&data)
            .output()
            .unwrap(),
    );
    eprintln!("{}", compared.trim());
    admin
        .batch_execute(&format!("DROP DATABASE {db_name}"))
        .unwrap();
}
