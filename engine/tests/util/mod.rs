//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

pub mod fold;
pub mod model;
pub mod strategy;

use mercato_engine::{Command, PlaceOrder};
use strategy::Space;

/// Move a command generated over `Space::small()` into `sp`'s ids.
pub fn rebase(cmd: Command, sp: Space) -> Command {
    let small = Space::small();
    let sku = |s: u64| s - small.sku_base + sp.sku_base;
    let acct = |a: u64| a - small.account_base + sp.account_base;
    match cmd {
        Command::PutSku {
            sku: s,
            price,
            per_user_limit,
        } => Command::PutSku {
            sku: sku(s),
            price,
            per_user_limit,
        },
        Command::Restock { sku: s, qty } => Command::Restock { sku: sku(s), qty },
        Command::Deposit { account, amount } => Command::Deposit {
            account: acct(account),
            amount,
        },
        Command::Withdraw { account, amount } => Command::Withdraw {
            account: acct(account),
            amount,
        },
        Command::PlaceOrder(p) => Command::PlaceOrder(PlaceOrder {
            account: acct(p.account),
            lines: p
                .lines
                .into_iter()
                .map(|mut l| {
                    l.sku = sku(l.sku);
                    l
                })
                .collect(),
            ..p
        }),
        Command::Pay { account, order } => Command::Pay {
            account: acct(account),
            order,
        },
        Command::Cancel { account, order } => Command::Cancel {
            account: acct(account),
            order,
        },
        Command::Refund {
            account,
            order,
            restock,
        } => Command::Refund {
            account: acct(account),
            order,
            restock,
        },
        Command::GetSku { sku: s } => Command::GetSku { sku: sku(s) },
        Command::GetAccount { account } => Command::GetAccount {
            account: acct(account),
        },
        Command::GetOrder { account, order } => Command::GetOrder {
            account: acct(account),
            order,
        },
        Command::ListOrders {
            account,
            after,
            limit,
        } => Command::ListOrders {
            account: acct(account),
            after,
            limit,
        },
        other => other,
    }
}

/// The mercato-cli binary, next to mercato's. It belongs to another
/// package, which this test run may not have built, or built before a
/// change: cargo brings it up to date (at once, if it is).
pub fn mercato_cli() -> std::path::PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let path =
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_mercato")).with_file_name("mercato-cli");
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile_release = path.components().any(|c| c.as_os_str() == "release");
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-p", "mercato-client", "--bin", "mercato-cli"]);
        if profile_release {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success());
    });
    path
}

/// A directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("mercato-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An engine config on `dir` with small log segments, so tests do not
/// zero-fill 64 MiB per shard.
pub fn durable_config(dir: &std::path::Path, shards: u16) -> mercato_engine::Config {
    mercato_engine::Config {
        shards,
        data_dir: Some(dir.to_path_buf()),
        segment_bytes: mercato_wal::SEGMENT_BYTES_MIN,
        ..mercato_engine::Config::default()
    }
}

/// A `mercato serve` child process on ports the system chose, killed when
/// dropped.
pub struct Server {
    pub child: std::process::Child,
    pub main: std::net::SocketAddr,
    pub ports: Vec<u16>,
}

impl Server {
    /// `mercato` with these arguments (starting with `serve`); waits for its
    /// "listening on" line.
    pub fn start_with(args: &[&str]) -> Server {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mercato"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mercato serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "listening on 127.0.0.1:PORT; shard ports A,B"
        let rest = line.trim().strip_prefix("listening on ").expect(&line);
        let (main, ports) = rest.split_once("; shard ports ").unwrap();
        Server {
            child,
            main: main.parse().unwrap(),
            ports: ports.split(',').map(|p| p.parse().unwrap()).collect(),
        }
    }

    /// A server with `shards` shards on loopback, plus `extra` arguments.
    pub fn start(shards: u16, extra: &[&str]) -> Server {
        let shards = shards.to_string();
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--shards", &shards];
        args.extend_from_slice(extra);
        Server::start_with(&args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
