//! What an operator sees of a real `mercato serve`: its Prometheus metrics,
//! scraped over HTTP while clients work, checked against what the clients
//! did and by `promtool check metrics` (from `ops/promtool.sh`, which
//! fetches Debian's package when promtool is missing); and its logs, where
//! a checkpoint that cannot be written shows as an error line with its
//! shard and cause.

mod util;

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mercato_client::{Client, ClientConfig, wire};
use util::TempDir;

/// `mercato serve` with stderr (its log) in `log`, killed when dropped.
struct Served {
    child: Child,
    main: SocketAddr,
    metrics: Option<SocketAddr>,
}

impl Served {
    fn start(args: &[&str], log: &std::path::Path) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mercato"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start mercato serve");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let rest = line.trim().strip_prefix("listening on ").expect(&line);
        let main = rest.split_once(';').unwrap().0.parse().unwrap();
        let metrics = args.contains(&"--metrics-listen").then(|| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let url = line.trim().strip_prefix("metrics on http://").expect(&line);
            url.strip_suffix("/metrics").unwrap().parse().unwrap()
        });
        Served {
            child,
            main,
            metrics,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET; the status line and the body. It must come within
/// 3 s, less than the 5 s the server gives a stalled client.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect(&text);
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Samples by their full name with labels, e.g.
/// `mercato_requests_total{shard="0",kind="info"}`.
fn samples(text: &str) -> HashMap<String, f64> {
    (text.lines())
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, v) = l.rsplit_once(' ').unwrap();
            (name.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The sum of every sample of `name` whose labels include all of `with`.
fn sum(s: &HashMap<String, f64>, name: &str, with: &[&str]) -> f64 {
    (s.iter())
        .filter(|(k, _)| {
            let base = k.split('{').next().unwrap();
            base == name && with.iter().all(|w| k.contains(w))
        })
        .map(|(_, v)| v)
        .sum()
}

fn promtool_check(text: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/promtool.sh");
    let mut child = Command::new(script)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ops/promtool.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The expressions of `ops/grafana-dashboard.json`, unescaped.
fn dashboard_exprs() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/grafana-dashboard.json");
    let json = std::fs::read_to_string(path).unwrap();
    let mut exprs = Vec::new();
    let mut rest = json.as_str();
    while let Some(at) = rest.find("\"expr\": \"") {
        rest = &rest[at + 9..];
        let mut expr = String::new();
        let mut chars = rest.char_indices();
        loop {
            let (i, c) = chars.next().expect("an expression's end");
            match c {
                '\\' => expr.push(chars.next().unwrap().1),
                '"' => {
                    rest = &rest[i + 1..];
                    break;
                }
                c => expr.push(c),
            }
        }
        exprs.push(expr);
    }
    exprs
}

/// Every dashboard query parses (`promtool check rules`, each written as
/// a recording rule) and names only metrics the scrape describes.
fn dashboard_matches(scrape: &str, dir: &std::path::Path) {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 16, "{} expressions", exprs.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // Grafana's variable, as Grafana would fill it in.
        let e = e.replace("$instance", ".*").replace('\'', "''");
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: '{e}'\n"
        ));
        for name in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !name.starts_with("mercato_") {
                continue;
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                scrape.contains(&format!("# TYPE {family} ")),
                "the dashboard's {name} is not in the scrape"
            );
        }
    }
    let file = dir.join("dashboard-rules.yml");
    std::fs::write(&file, rules).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/promtool.sh");
    let out = Command::new(script)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn line(sku: u64, qty: u32) -> wire::LineRequest {
    wire::LineRequest {
        sku,
        qty,
        expected_unit_price: None,
    }
}

#[test]
fn metrics_count_what_clients_did_and_pass_promtool() {
    let dir = TempDir::new("metrics");
    let log = std::env::temp_dir().join(format!("mercato-metrics-{}.log", std::process::id()));
    let data = dir.0.join("data");
    let server = Served::start(
        &[
            "--shards",
            "2",
            "--data-dir",
            data.to_str().unwrap(),
            "--segment-bytes",
            "131072",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &log,
    );
    let metrics = server.metrics.unwrap();
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    for sku in 0..4 {
        c.put_sku(sku, 100, 0).unwrap().unwrap();
        c.restock(sku, 10).unwrap().unwrap();
    }
    c.deposit(1, 1_000_000).unwrap().unwrap();
    // 20 orders of one unit of SKU 0..4 (40 units in stock), then 30 more
    // of SKU 0 alone, 5 of which find stock: 25 rejected.
    let mut placed = 0;
    let mut rejected = 0;
    for i in 0..50u128 {
        let sku = if i < 20 { (i % 4) as u64 } else { 0 };
        match c
            .place_order(i + 1, 1, vec![line(sku, 1)], wire::Payment::Immediate)
            .unwrap()
        {
            Ok(_) => placed += 1,
            Err(wire::Reject::OutOfStock { .. }) => rejected += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((placed, rejected), (25, 25));
    for sku in 0..4 {
        c.get_sku(sku).unwrap().unwrap();
    }
    // One keyspace hit and one miss.
    c.cache_set(b"k", b"v", 0).unwrap().unwrap();
    assert_eq!(c.cache_get(b"k").unwrap().unwrap(), Some(b"v".to_vec()));
    assert_eq!(c.cache_get(b"absent").unwrap().unwrap(), None);
    let info_before = c.info().unwrap();

    let (status, text) = get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let s = samples(&text);
    let requests = |kind: &str| sum(&s, "mercato_requests_total", &[&format!("kind=\"{kind}\"")]);
    assert_eq!(requests("put_sku"), 4.0, "{text}");
    assert_eq!(requests("place_order"), 50.0, "{text}");
    // Reads the view cache answered count too: they were requests.
    assert_eq!(requests("get_sku"), 4.0, "{text}");
    let out_of_stock = "reason=\"out_of_stock\"";
    assert_eq!(
        sum(&s, "mercato_answers_rejected_total", &[out_of_stock]),
        25.0
    );
    let answered = sum(&s, "mercato_answers_done_total", &[])
        + sum(&s, "mercato_answers_rejected_total", &[])
        + sum(&s, "mercato_answers_failed_total", &[]);
    let asked = sum(&s, "mercato_requests_total", &[]);
    // Every request read has its answer counted, and the latency
    // histogram has one observation per answer (the scrape's own `info`
    // call came before the scrape).
    assert_eq!(answered, asked, "{text}");
    assert_eq!(
        sum(&s, "mercato_reply_latency_seconds_count", &[]),
        answered
    );
    assert_eq!(
        sum(&s, "mercato_reply_latency_seconds_bucket", &["le=\"+Inf\""]),
        answered
    );
    // Table sizes as the shards published them, and as `info` says.
    let orders: u64 = info_before.shard_states.iter().map(|x| x.orders).sum();
    assert_eq!(orders, 25);
    assert_eq!(sum(&s, "mercato_table_rows", &["table=\"orders\""]), 25.0);
    assert_eq!(sum(&s, "mercato_table_rows", &["table=\"skus\""]), 4.0);
    assert!(sum(&s, "mercato_table_bytes", &[]) > 0.0);
    // The log: synced as far as written, at least one sync per write
    // request's records under `always`, and records per sync counted.
    assert!(sum(&s, "mercato_log_syncs_total", &[]) > 0.0, "{text}");
    assert!(
        sum(&s, "mercato_log_records_synced_total", &[]) >= 34.0,
        "{text}"
    );
    for shard in ["shard=\"0\"", "shard=\"1\""] {
        let written = sum(&s, "mercato_log_written_lsn", &[shard]);
        assert!(written > 0.0);
        assert_eq!(sum(&s, "mercato_log_synced_lsn", &[shard]), written);
    }
    assert!(sum(&s, "mercato_log_sync_latency_seconds_count", &[]) > 0.0);
    assert_eq!(sum(&s, "mercato_connections_open", &[]), 2.0, "{text}");
    assert!(sum(&s, "mercato_received_bytes_total", &[]) > 0.0);
    assert!(sum(&s, "mercato_sent_bytes_total", &[]) > 0.0);
    assert!(sum(&s, "mercato_resident_memory_bytes", &[]) > 1e6);
    let keyspace = "cache=\"keyspace\"";
    assert_eq!(
        sum(&s, "mercato_cache_hits_total", &[keyspace]),
        1.0,
        "{text}"
    );
    assert_eq!(
        sum(&s, "mercato_cache_misses_total", &[keyspace]),
        1.0,
        "{text}"
    );
    assert_eq!(sum(&s, "mercato_cache_entries", &[keyspace]), 1.0, "{text}");
    assert!(
        text.contains("mercato_mailbox_depth{shard=\"1\"}"),
        "{text}"
    );
    promtool_check(&text);
    dashboard_matches(&text, &dir.0);

    // Anything but GET /metrics is refused, and the port keeps serving.
    assert_eq!(get(metrics, "/").0, "HTTP/1.1 404 Not Found");
    let mut s = TcpStream::connect(metrics).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert_eq!(get(metrics, "/metrics?x=1").0, "HTTP/1.1 200 OK");

    // Clients that connect and say nothing hold a thread each, not the
    // port: a scrape is answered beside them, and past eight at once a
    // new connection is told 503 at once.
    let mut stalled: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    assert_eq!(get(metrics, "/metrics").0, "HTTP/1.1 200 OK");
    stalled.extend((0..5).map(|_| TcpStream::connect(metrics).unwrap()));
    assert_eq!(
        get(metrics, "/metrics").0,
        "HTTP/1.1 503 Service Unavailable"
    );
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(metrics, "/metrics").0 != "HTTP/1.1 200 OK" {
        assert!(
            Instant::now() < deadline,
            "the stalled connections' places were not freed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&log);
}

#[test]
fn a_failed_checkpoint_is_logged_with_its_shard_and_cause() {
    let dir = TempDir::new("checkpoint-log");
    let data = dir.0.join("data");
    let log = dir.0.join("server.log");
    std::fs::create_dir_all(&dir.0).unwrap();
    let server = Served::start(
        &[
            "--shards",
            "1",
            "--data-dir",
            data.to_str().unwrap(),
            "--segment-bytes",
            "131072",
            "--snapshot-segments",
            "1",
            "--log-format",
            "json",
        ],
        &log,
    );
    // A directory where the snapshot's temporary file goes: writing the
    // checkpoint fails, as a full or read-only disk would.
    std::fs::create_dir_all(data.join("shard-0").join("snapshot.tmp").join("in-the-way")).unwrap();
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    c.put_sku(1, 1, 0).unwrap().unwrap();
    c.restock(1, 1_000_000).unwrap().unwrap();
    c.deposit(1, u64::MAX / 2).unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 1u128;
    let failure = loop {
        assert!(Instant::now() < deadline, "no failed checkpoint logged");
        // Enough records to close a 128 KiB segment now and then.
        let batch: Vec<wire::Request> = (0..200)
            .map(|i| wire::Request::PlaceOrder {
                id: next + i,
                account: 1,
                lines: vec![line(1, 1)],
                payment: wire::Payment::Immediate,
            })
            .collect();
        next += 200;
        c.submit(batch).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(l) = text.lines().find(|l| l.contains("checkpoint failed")) {
            break l.to_string();
        }
    };
    // One JSON object: its level, its shard and the cause.
    assert!(
        failure.starts_with('{') && failure.ends_with('}'),
        "{failure}"
    );
    assert!(failure.contains("\"level\":\"ERROR\""), "{failure}");
    assert!(failure.contains("\"shard\":0"), "{failure}");
    assert!(
        failure.contains("snapshot.tmp"),
        "the cause names the file: {failure}"
    );
    // The server served on.
    assert!(c.get_sku(1).unwrap().is_ok());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.contains("mercato serve starting")),
        "{text}"
    );
}

/// A turn over `Config::slow_turn_ms` is counted on its shard. A limit of
/// one millisecond and a few batches of thousands of orders make some
/// turns slow in an unoptimised build (the one `cargo test` makes); an
/// optimised one may finish every turn within it, so there only the off
/// case is checked. With the check off, nothing is counted.
#[test]
fn slow_turns_are_counted_per_shard() {
    use mercato_engine::{Config, Engine, LineRequest, Payment, PlaceOrder};
    let run = |slow_turn_ms: u64| {
        let engine = Engine::open(Config {
            slow_turn_ms,
            ..Config::with_shards(1)
        })
        .unwrap();
        let h = engine.handle();
        h.put_sku(1, 1, 0).unwrap().unwrap();
        h.restock(1, 1_000_000).unwrap().unwrap();
        h.deposit(1, 1 << 40).unwrap().unwrap();
        for round in 0..5u128 {
            let batch = (0..4_000u128)
                .map(|i| {
                    mercato_engine::Command::PlaceOrder(PlaceOrder {
                        id: round * 4_000 + i + 1,
                        account: 1,
                        lines: vec![LineRequest {
                            sku: 1,
                            qty: 1,
                            expected_unit_price: None,
                        }],
                        payment: Payment::Immediate,
                    })
                })
                .collect();
            h.submit(batch).unwrap();
        }
        h.metrics().shards[0].slow_turns
    };
    if cfg!(debug_assertions) {
        assert!(run(1) > 0, "no turn of 4,000 orders took 1 ms");
    }
    assert_eq!(run(0), 0);
}

/// Waits until the log at `path` has `n` lines holding `what`.
fn wait_for_log(path: &std::path::Path, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().filter(|l| l.contains(what)).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no {what:?} in the log:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_the_tokens_for_new_connections_only() {
    const ADMIN: &str = "admin-0123456789abcdef";
    const READER: &str = "reader-0123456789abcdef";
    const NEW_ADMIN: &str = "new-admin-0123456789abcdef";
    const TRADER: &str = "trader-0123456789abcdef";
    let dir = TempDir::new("reload");
    std::fs::create_dir_all(&dir.0).unwrap();
    let tokens = dir.0.join("tokens");
    let log = dir.0.join("server.log");
    std::fs::write(&tokens, format!("admin {ADMIN}\nreader {READER}\n")).unwrap();
    let server = Served::start(
        &["--shards", "1", "--tokens-file", tokens.to_str().unwrap()],
        &log,
    );
    let connect = |token: &str| {
        let config = ClientConfig {
            auth_token: Some(token.to_string()),
            ..ClientConfig::default()
        };
        Client::connect(server.main, config)
    };
    let refused = |token: &str| match connect(token) {
        Err(mercato_client::ClientError::Refused { code, .. }) => {
            assert_eq!(code, wire::ErrorCode::AuthFailed);
        }
        other => panic!("{token}: {:?}", other.map(|_| ())),
    };
    let hup = || {
        // SAFETY: kill(2) on our own child's pid, with a valid signal.
        let rc = unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
        assert_eq!(rc, 0);
    };
    let old = connect(ADMIN).unwrap();
    refused(NEW_ADMIN);

    std::fs::write(&tokens, format!("admin {NEW_ADMIN}\ntrader {TRADER}\n")).unwrap();
    hup();
    wait_for_log(&log, "reloaded tokens", 1);
    refused(ADMIN);
    refused(READER);
    let admin = connect(NEW_ADMIN).unwrap();
    admin.put_sku(1, 10, 0).unwrap().unwrap();
    let trader = connect(TRADER).unwrap();
    assert!(matches!(
        trader.put_sku(2, 10, 0).unwrap(),
        Err(wire::Reject::Forbidden { .. })
    ));
    // The connection made before keeps the role it was given.
    old.restock(1, 5).unwrap().unwrap();

    // A file that would leave no tokens, or does not parse, is refused and
    // changes nothing.
    std::fs::write(&tokens, "# nobody\n").unwrap();
    hup();
    wait_for_log(&log, "reload refused", 1);
    std::fs::write(&tokens, "admin short\n").unwrap();
    hup();
    wait_for_log(&log, "reload refused", 2);
    refused(ADMIN);
    connect(NEW_ADMIN).unwrap();
    connect(TRADER).unwrap();
}
