//! The `mercato` binary. `mercato serve` serves the binary protocol;
//! `mercato demo` runs an embedded flash sale; `mercato wal check|dump`
//! and `mercato audit` look at a data directory without changing it;
//! `mercato sink postgres` keeps PostgreSQL tables current from the feed.

mod demo;
mod metrics;
mod serve;
mod sink;
mod storage;

// glibc's malloc spent a fifth of a flash sale's CPU in free lists (see
// BENCHMARKS.md); mimalloc's per-thread heaps suit a shard per core.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mercato_engine::alloc::Mimalloc = mercato_engine::alloc::Mimalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mercato",
    version,
    about = "An in-memory e-commerce trading engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load a catalog, run a flash sale and a cart workload in-process, audit, print a summary.
    Demo(demo::Args),
    /// Serve the binary protocol over TCP until SIGINT or SIGTERM.
    Serve(Box<serve::Args>),
    /// Look at a data directory's write-ahead log.
    #[command(subcommand)]
    Wal(storage::WalCmd),
    /// Recover a data directory in memory, without changing it, and check
    /// invariants 1 to 3; exit 0 only if all hold.
    Audit {
        dir: std::path::PathBuf,
        /// Print every SKU, account and order instead, one per line, sorted
        /// (the format `mercato sink compare` checks a database against).
        #[arg(long)]
        rows: bool,
    },
    /// Keep another system's tables current from the change feed.
    #[command(subcommand)]
    Sink(sink::SinkCmd),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Demo(args) => demo::run(args),
        Cmd::Serve(args) => serve::run(*args),
        Cmd::Wal(cmd) => storage::wal(cmd),
        Cmd::Audit { dir, rows: false } => storage::audit(&dir),
        Cmd::Audit { dir, rows: true } => storage::audit_rows(&dir),
        Cmd::Sink(cmd) => sink::run(cmd),
    };
    std::process::exit(code);
}
