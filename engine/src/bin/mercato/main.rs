//! The `mercato` binary. `mercato demo` runs an embedded flash sale; `serve`
//! and the `wal` tools arrive with the network and durability issues.

mod demo;

// glibc's malloc spent a fifth of a flash sale's CPU in free lists (see
// BENCHMARKS.md); mimalloc's per-thread heaps suit a shard per core.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Demo(args) => demo::run(args),
    };
    std::process::exit(code);
}
