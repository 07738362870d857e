//! `mercato sink postgres`: keeps the tables `skus`, `accounts`, `orders`
//! and `order_lines` of a PostgreSQL database current from a server's
//! change feed, and `mercato sink compare` checks them against a data
//! directory.
//!
//! The database is the sink's only memory. Each transaction applies a
//! batch of events and records, in `mercato_feed_positions`, the feed
//! position after it; a restart reads that position and resumes there,
//! skipping the events the feed sends again (it delivers at least once).
//! So whatever crashes (the sink, the server, PostgreSQL) nothing is lost
//! or applied twice. A database with no position is loaded from a copy of
//! the state (`FeedStart::Snapshot`) in one transaction, so a crash during
//! the load leaves nothing half-loaded. With `--subscription`, the server
//! keeps the log the sink has not yet applied (up to its retention limit),
//! and the sink acknowledges a position once it is committed here.

mod fold;
mod pg;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mercato_client::{Client, ClientConfig, ClientError, FeedStream, wire};

use fold::Pending;

#[derive(clap::Subcommand)]
pub enum SinkCmd {
    /// Follow the feed into PostgreSQL until interrupted.
    Postgres(PostgresArgs),
    /// Exit 0 if the database's tables hold exactly the state of a data
    /// directory (stopped, or quiet), as `mercato audit --rows` prints it.
    Compare {
        /// The database, as a libpq string or a postgres:// URL.
        #[arg(long)]
        dsn: String,
        /// Reach the database over TLS, as for `sink postgres`.
        #[arg(long)]
        pg_tls_ca: Option<PathBuf>,
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct PostgresArgs {
    /// The mercato server, any of its ports.
    #[arg(long, default_value = "127.0.0.1:7070")]
    addr: String,
    /// The database, as a libpq string or a postgres:// URL.
    #[arg(long)]
    dsn: String,
    /// A durable subscription to follow, so that the server keeps the log
    /// the sink has not applied (up to `--feed-retention-bytes-max`).
    /// Without it, a sink that stops for longer than the server keeps its
    /// log must be reloaded (`--reset`).
    #[arg(long)]
    subscription: Option<String>,
    /// Events applied in one transaction at most.
    #[arg(long, default_value_t = 50_000)]
    batch_events_max: u64,
    /// The longest an event waits for its transaction, in milliseconds.
    #[arg(long, default_value_t = 100)]
    batch_wait_ms: u64,
    /// How often a `--subscription`'s position is acknowledged to the
    /// server, in milliseconds: each is a durable write there. Events
    /// after it come again after a restart, and the sink skips them by
    /// the position its database holds.
    #[arg(long, default_value_t = 1_000)]
    ack_every_ms: u64,
    /// Empty the tables first and load them from a fresh copy: after the
    /// subscription was lost, or to start over.
    #[arg(long)]
    reset: bool,
    /// Exit (0) once nothing has come for this many milliseconds and all
    /// is applied, printing what was applied: for one-off loads and
    /// benchmarks. Default: never.
    #[arg(long)]
    exit_idle_ms: Option<u64>,
    /// Connect to a server that serves TLS, trusting the certificates in
    /// this PEM file; `MERCATO_TLS_CA` may name it instead. The token
    /// comes from `MERCATO_TOKEN`.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry. Default: the IP
    /// address `--addr` resolves to.
    #[arg(long, requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// Reach the database over TLS, trusting the certificates in this PEM
    /// file and checking its certificate names the DSN's host. With it,
    /// the DSN's `sslmode` (`prefer` unless given; `require` refuses a
    /// database without TLS) decides; without it the sink speaks plain
    /// TCP to the database.
    #[arg(long)]
    pg_tls_ca: Option<PathBuf>,
}

/// Why a session of the sink ended.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error("mercato: {0}")]
    Mercato(#[from] ClientError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    /// The server refused; these do not pass by retrying.
    #[error("mercato refused: {0:?}")]
    Refused(wire::Reject),
    #[error("the feed ended: {0}")]
    FeedEnded(String),
    #[error(
        "the database has positions for {db} shards and the server has {server}: \
         it follows another server"
    )]
    Shards { db: usize, server: usize },
    #[error(
        "subscription {name} starts at {server:?}, past the database's {db:?}: \
         the database lost commits; load it again with --reset"
    )]
    Ahead {
        name: String,
        server: Vec<u64>,
        db: Vec<u64>,
    },
    #[error("no address for {0}")]
    Address(String),
    #[error("TLS to PostgreSQL: {0}")]
    PgTls(String),
}

/// An error and its causes, `: `-separated: the database's driver says
/// "error performing TLS handshake" and keeps the why in its source.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// rustls refused the database (its certificate, or the handshake),
/// somewhere in the error's causes. An `io::Error` hides the error it
/// wraps from `source()`, so each is looked into.
fn tls_refused(e: &postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let wrapped = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        let wrapped = wrapped.map(|w| w as &(dyn std::error::Error + 'static));
        if c.is::<rustls::Error>() || wrapped.is_some_and(|w| w.is::<rustls::Error>()) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A connection to the database, over TLS when `ca` is given.
fn connect_db(dsn: &str, ca: Option<&std::path::Path>) -> Result<postgres::Client, SinkError> {
    let Some(ca) = ca else {
        return Ok(postgres::Client::connect(dsn, postgres::NoTls)?);
    };
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| SinkError::PgTls(format!("{}: {e}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let provider = mercato_engine::server::tls::provider();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::PgTls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    Ok(postgres::Client::connect(dsn, tls)?)
}

impl SinkError {
    /// Worth trying again after a pause: a connection lost on either side.
    fn passes(&self) -> bool {
        match self {
            SinkError::Mercato(_) => true,
            // A lost connection, a server shutting down or short of
            // resources, a conflict: worth another go. A statement the
            // database refuses (a duplicate key, say) is refused again.
            // A certificate that does not check out stays so.
            SinkError::Postgres(e) if tls_refused(e) => false,
            SinkError::Postgres(e) => e.code().is_none_or(|c| {
                ["08", "40", "53", "57"].contains(&c.code().get(..2).unwrap_or(""))
            }),
            SinkError::FeedEnded(why) => !why.contains("lost"),
            _ => false,
        }
    }
}

pub fn run(cmd: SinkCmd) -> i32 {
    match cmd {
        SinkCmd::Postgres(args) => follow(args),
        SinkCmd::Compare {
            dsn,
            pg_tls_ca,
            dir,
        } => compare(&dsn, pg_tls_ca.as_deref(), &dir),
    }
}

/// What a run has applied, for its summary.
#[derive(Default)]
struct Applied {
    events: u64,
    orders: u64,
    transactions: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

const RETRY_MS_MIN: u64 = 100;
/// How often a running sink says where it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const RETRY_MS_MAX: u64 = 5_000;

fn follow(args: PostgresArgs) -> i32 {
    let mut applied = Applied::default();
    let mut reset = args.reset;
    let mut retry_ms = RETRY_MS_MIN;
    loop {
        match session(&args, &mut reset, &mut applied) {
            Ok(()) => {
                summary(&applied);
                return 0;
            }
            Err(e) if e.passes() => {
                eprintln!("mercato sink: {}; again in {retry_ms} ms", causes(&e));
                std::thread::sleep(Duration::from_millis(retry_ms));
                retry_ms = (retry_ms * 2).min(RETRY_MS_MAX);
            }
            Err(e) => {
                eprintln!("mercato sink: {}", causes(&e));
                return 1;
            }
        }
        // A session that applied something had a working connection.
        if applied
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            retry_ms = RETRY_MS_MIN;
        }
    }
}

fn summary(a: &Applied) {
    let secs = match (a.first, a.last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    println!(
        "applied {} events ({:.0}/s), {} orders ({:.0}/s), in {} transactions over {secs:.3} s",
        a.events,
        per_sec(a.events),
        a.orders,
        per_sec(a.orders),
        a.transactions
    );
}

fn resolve(addr: &str) -> Result<SocketAddr, SinkError> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| SinkError::Address(addr.to_string()))
}

fn refused<T>(r: Result<T, wire::Reject>) -> Result<T, SinkError> {
    r.map_err(SinkError::Refused)
}

/// One connection to each side, from the database's position until a
/// connection fails (or, with `--exit-idle-ms`, the feed goes quiet).
fn session(args: &PostgresArgs, reset: &mut bool, applied: &mut Applied) -> Result<(), SinkError> {
    let mut db = connect_db(&args.dsn, args.pg_tls_ca.as_deref())?;
    pg::prepare(&mut db)?;
    if *reset {
        let mut tx = db.transaction()?;
        pg::truncate(&mut tx)?;
        tx.commit()?;
        *reset = false;
    }
    let positions = pg::positions(&mut db)?;
    let addr = resolve(&args.addr)?;
    let ca = (args.tls_ca.clone()).or_else(|| {
        std::env::var_os("MERCATO_TLS_CA")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    });
    let tls = match ca {
        None => None,
        Some(ca) => {
            let name = (args.tls_server_name.clone()).unwrap_or_else(|| addr.ip().to_string());
            Some(mercato_client::TlsSettings::from_files(&ca, &name, None)?)
        }
    };
    let config = ClientConfig {
        auth_token: std::env::var("MERCATO_TOKEN").ok(),
        tls,
        ..ClientConfig::default()
    };
    let client = Client::connect(addr, config)?;
    let shards = usize::from(client.shards());
    let name = args.subscription.as_deref();
    let (stream, mut next) = if positions.is_empty() {
        // A subscription left by a load that never committed would resume
        // past the copy: start it again with the copy.
        if let Some(n) = name {
            refused(client.drop_subscription(n)?)?;
        }
        let stream = refused(client.subscribe(
            name,
            wire::FeedStart::Snapshot,
            wire::FeedFilter::default(),
        )?)?;
        let next = load_copy(args, &mut db, &stream, applied)?;
        (stream, next)
    } else {
        if positions.len() != shards {
            return Err(SinkError::Shards {
                db: positions.len(),
                server: shards,
            });
        }
        let stream = refused(client.subscribe(
            name,
            wire::FeedStart::At(positions.clone()),
            wire::FeedFilter::default(),
        )?)?;
        if stream.started.iter().zip(&positions).any(|(s, d)| s > d) {
            return Err(SinkError::Ahead {
                name: name.unwrap_or_default().to_string(),
                server: stream.started.clone(),
                db: positions,
            });
        }
        (stream, positions)
    };
    eprintln!("mercato sink: following {} from {next:?}", args.addr);
    // Events before these are in the database: the feed may send them again.
    let mut done = next.clone();
    // What the feed has handed out: what may be acknowledged.
    let mut feed_next = stream.started.clone();
    let mut pending = Pending::default();
    let mut since: Option<Instant> = None;
    let mut heard = Instant::now();
    let wait = Duration::from_millis(args.batch_wait_ms);
    let mut told = Instant::now();
    let mut acked = Instant::now();
    loop {
        if told.elapsed() >= PROGRESS_EVERY {
            told = Instant::now();
            eprintln!(
                "mercato sink: {} events, {} orders applied; at {done:?}",
                applied.events, applied.orders
            );
        }
        let timeout = match since {
            Some(t) => wait.saturating_sub(t.elapsed()),
            None => wait,
        };
        if let Some(batch) = stream.next(timeout)? {
            heard = Instant::now();
            applied.first.get_or_insert(heard);
            if let Some(why) = batch.error {
                return Err(SinkError::FeedEnded(why));
            }
            for item in &batch.items {
                if item.lsn >= done[usize::from(item.shard)] {
                    pending.add(&item.event);
                }
            }
            // A subscription resumes from what it last acknowledged, which
            // may be behind the database: its position never goes back.
            for (n, b) in next.iter_mut().zip(&batch.next) {
                *n = (*n).max(*b);
            }
            feed_next = batch.next;
            since.get_or_insert_with(Instant::now);
        }
        let due =
            since.is_some_and(|t| t.elapsed() >= wait) || pending.events >= args.batch_events_max;
        if due {
            commit(&mut db, &pending, &next, applied)?;
            if name.is_some() && acked.elapsed() >= Duration::from_millis(args.ack_every_ms) {
                refused(stream.ack(&feed_next)?)?;
                acked = Instant::now();
            }
            done.clone_from(&next);
            pending = Pending::default();
            since = None;
        }
        if since.is_none()
            && args
                .exit_idle_ms
                .is_some_and(|ms| heard.elapsed() >= Duration::from_millis(ms))
        {
            return Ok(());
        }
    }
}

/// Applies `pending` and the position `next` in one transaction.
fn commit(
    db: &mut postgres::Client,
    pending: &Pending,
    next: &[u64],
    applied: &mut Applied,
) -> Result<(), SinkError> {
    let mut tx = db.transaction()?;
    pg::apply(&mut tx, pending, false)?;
    pg::save_positions(&mut tx, next)?;
    tx.commit()?;
    tally(pending, applied);
    Ok(())
}

fn tally(pending: &Pending, applied: &mut Applied) {
    let now = Instant::now();
    applied.events += pending.events;
    applied.orders += pending.orders_new;
    applied.transactions += 1;
    applied.last = Some(now);
}

/// Loads a `Snapshot` start's copy into emptied tables, in one
/// transaction with the position the stream goes on from.
fn load_copy(
    args: &PostgresArgs,
    db: &mut postgres::Client,
    stream: &FeedStream,
    applied: &mut Applied,
) -> Result<Vec<u64>, SinkError> {
    let mut tx = db.transaction()?;
    pg::truncate(&mut tx)?;
    let mut pending = Pending::default();
    let mut total = Pending::default();
    let next = loop {
        // The copy comes first and at once; a quiet minute means trouble.
        let Some(batch) = stream.next(Duration::from_secs(60))? else {
            return Err(SinkError::FeedEnded(
                "no copy of the state came within 60 s".into(),
            ));
        };
        if let Some(why) = batch.error {
            return Err(SinkError::FeedEnded(why));
        }
        applied.first.get_or_insert_with(Instant::now);
        for item in &batch.items {
            pending.add(&item.event);
        }
        if pending.events >= args.batch_events_max || batch.copy_done {
            pg::apply(&mut tx, &pending, total.events > 0)?;
            total.events += pending.events;
            total.orders_new += pending.orders_new;
            pending = Pending::default();
        }
        if batch.copy_done {
            break batch.next;
        }
    };
    pg::save_positions(&mut tx, &next)?;
    tx.commit()?;
    tally(&total, applied);
    if args.subscription.is_some() {
        refused(stream.ack(&next)?)?;
    }
    eprintln!(
        "mercato sink: loaded a copy of {} rows at {next:?}",
        total.events
    );
    Ok(next)
}

/// `mercato sink compare`: the database's rows against the directory's.
fn compare(dsn: &str, pg_tls_ca: Option<&std::path::Path>, dir: &std::path::Path) -> i32 {
    let want = match super::storage::state_rows(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mercato sink compare: {}: {e}", dir.display());
            return 2;
        }
    };
    let got = match connect_db(dsn, pg_tls_ca)
        .and_then(|mut db| pg::rows(&mut db).map_err(SinkError::from))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mercato sink compare: {}", causes(&e));
            return 2;
        }
    };
    let (mut only_db, mut only_dir) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < got.len() || j < want.len() {
        match (got.get(i), want.get(j)) {
            (Some(g), Some(w)) if g == w => (i, j) = (i + 1, j + 1),
            (Some(g), Some(w)) if g < w => {
                only_db.push(g);
                i += 1;
            }
            (Some(g), None) => {
                only_db.push(g);
                i += 1;
            }
            (_, Some(w)) => {
                only_dir.push(w);
                j += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    println!(
        "{} rows in the directory, {} in the database; {} only in the database, {} only in the directory",
        want.len(),
        got.len(),
        only_db.len(),
        only_dir.len()
    );
    for r in only_db.iter().take(10) {
        println!("  database:  {r}");
    }
    for r in only_dir.iter().take(10) {
        println!("  directory: {r}");
    }
    i32::from(!(only_db.is_empty() && only_dir.is_empty()))
}
