//! `mercato serve`: the engine behind the binary protocol, until SIGINT or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mercato_engine::{Config, Durability, Engine, ServeConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The main port; shard i listens on the next port + i. Port 0 lets the
    /// system choose every port.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Shards; 0 means one per core (or the data directory's count).
    #[arg(long, default_value_t = 0)]
    shards: u16,
    /// Keep a write-ahead log here; without it the server is in memory only.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// always, interval=<ms> or never (with --data-dir).
    #[arg(long, default_value = "always")]
    durability: Durability,
    /// Clients must send this token in their Hello.
    #[arg(long)]
    auth_token: Option<String>,
    /// Client connections per shard.
    #[arg(long, default_value_t = mercato_engine::limits::CONNS_PER_SHARD_MAX)]
    conns_max: usize,
    /// Requests one connection may have unanswered.
    #[arg(long, default_value_t = mercato_engine::limits::IN_FLIGHT_PER_CONN_MAX)]
    in_flight_max: usize,
    /// Answer bytes waiting for a slow reader before it is disconnected.
    #[arg(long, default_value_t = mercato_engine::limits::OUT_BYTES_PER_CONN_MAX)]
    out_bytes_max: usize,
}

/// How long a stopping server waits for requests in flight.
const DRAIN_MS_MAX: u64 = 10_000;

pub fn run(a: Args) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("mercato serve: cannot handle signal {signal}: {e}");
            return 2;
        }
    }
    let config = Config {
        data_dir: a.data_dir,
        durability: a.durability,
        serve: Some(ServeConfig {
            listen: a.listen,
            auth_token: a.auth_token,
            conns_max: a.conns_max,
            in_flight_max: a.in_flight_max,
            out_bytes_max: a.out_bytes_max,
            ..ServeConfig::default()
        }),
        ..Config::with_shards(a.shards)
    };
    let engine = match Engine::open(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mercato serve: {e}");
            return 2;
        }
    };
    let (main, shards) = engine.addrs().expect("a serving engine has addresses");
    let ports: Vec<String> = shards.iter().map(|a| a.port().to_string()).collect();
    // One line a script can wait for and parse.
    println!("listening on {main}; shard ports {}", ports.join(","));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("mercato serve: stopping; finishing requests in flight");
    if !engine.drain_clients(Duration::from_millis(DRAIN_MS_MAX)) {
        eprintln!("mercato serve: some requests were still in flight after {DRAIN_MS_MAX} ms");
    }
    // Shutting down syncs every shard's log, whatever the policy.
    engine.shutdown();
    0
}
