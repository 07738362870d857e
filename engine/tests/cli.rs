//! `mercato-cli` against a real `mercato serve`: each command group, text
//! and JSON output, and the exit status of a refusal.

mod util;

use std::process::Command;

use util::Server;

/// `mercato-cli --server ADDR ARGS...`: its exit status and stdout.
fn cli_at(addr: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(util::mercato_cli())
        .args(["--server", addr])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_cli_drives_a_server() {
    let server = Server::start(2, &[]);
    let addr = server.main.to_string();
    let run = |args: &[&str]| cli_at(&addr, args);
    assert_eq!(
        run(&["sku", "put", "7", "--price", "1999", "--limit", "1"]).0,
        Some(0)
    );
    let (code, out) = run(&["sku", "restock", "7", "5"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("5 available"), "{out}");
    assert_eq!(run(&["account", "deposit", "42", "10000"]).0, Some(0));
    let (code, out) = run(&[
        "order",
        "place",
        "1",
        "--account",
        "42",
        "--line",
        "7:1",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("\"state\":\"Paid\"") && out.contains("\"total\":1999"),
        "{out}"
    );
    // The per-user limit of 1 refuses a second unit: exit status 1.
    let (code, out) = run(&["order", "place", "2", "--account", "42", "--line", "7:1"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("PerUserLimit"), "{out}");
    let (code, out) = run(&["order", "list", "--account", "42", "--json"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("{\"orders\":[")
            && out.contains("\"id\":\"1\"")
            && out.contains("\"more\":false"),
        "{out}"
    );
    let (code, out) = run(&["account", "get", "42"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("balance 8001"), "{out}");
    assert_eq!(
        run(&["order", "refund", "1", "--account", "42", "--restock"]).0,
        Some(0)
    );
    let (code, out) = run(&["stats"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 2, "{out}");
    drop(server);
}

#[test]
fn the_cli_drives_the_cache_keyspace() {
    let server = Server::start(2, &["--cache-policy", "arc"]);
    let addr = server.main.to_string();
    let run = |args: &[&str]| cli_at(&addr, args);
    assert_eq!(
        run(&["cache", "set", "greeting", "hello", "--ttl-ms", "60000"]).0,
        Some(0)
    );
    assert_eq!(
        run(&["cache", "get", "greeting"]),
        (Some(0), "hello\n".to_string())
    );
    assert_eq!(
        run(&["--json", "cache", "del", "greeting"]),
        (Some(0), "{\"deleted\":true}\n".to_string())
    );
    assert_eq!(
        run(&["cache", "get", "greeting"]),
        (Some(0), "(none)\n".to_string())
    );
    let (code, out) = run(&["--json", "cache", "stats"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("\"policy\":\"arc\"") && out.contains("\"inserts\":1"),
        "{out}"
    );
    assert_eq!(
        run(&["cache", "get", ""]).0,
        Some(1),
        "an empty key is refused"
    );
}

#[test]
fn the_cli_takes_and_gives_back_locks_and_permits() {
    let server = Server::start(2, &[]);
    let addr = server.main.to_string();
    let run = |args: &[&str]| cli_at(&addr, args);
    let (code, out) = run(&["--json", "lock", "acquire", "nightly", "--ttl-ms", "60000"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("{\"name\":\"nightly\",\"token\":1,"),
        "{out}"
    );
    // The lease outlived the command that took it.
    let (code, out) = run(&[
        "lock",
        "acquire",
        "nightly",
        "--ttl-ms",
        "1000",
        "--wait-ms",
        "50",
    ]);
    assert_eq!(code, Some(1), "held, so the wait runs out: {out}");
    let (code, out) = run(&["--json", "lock", "show", "nightly"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("\"last_token\":1,\"holders\":[{\"token\":1,"),
        "{out}"
    );
    assert_eq!(
        run(&["lock", "release", "nightly", "--token", "2"]).0,
        Some(1)
    );
    assert_eq!(
        run(&[
            "lock", "renew", "nightly", "--token", "1", "--ttl-ms", "5000"
        ])
        .0,
        Some(0)
    );
    assert_eq!(
        run(&["lock", "release", "nightly", "--token", "1"]).0,
        Some(0)
    );
    let (code, out) = run(&["lock", "acquire", "nightly", "--ttl-ms", "1000"]);
    assert_eq!((code, out.split('\t').next()), (Some(0), Some("2")));
    for token in ["1", "2"] {
        let (code, out) = run(&[
            "semaphore",
            "acquire",
            "pool",
            "--permits",
            "2",
            "--ttl-ms",
            "60000",
        ]);
        assert_eq!((code, out.split('\t').next()), (Some(0), Some(token)));
    }
    assert_eq!(
        run(&[
            "semaphore",
            "acquire",
            "pool",
            "--permits",
            "2",
            "--ttl-ms",
            "60000"
        ])
        .0,
        Some(1),
        "both permits are out"
    );
}

#[test]
fn the_cli_lists_and_shows_sagas() {
    let server = Server::start(2, &[]);
    let c = mercato_client::Client::connect(server.main, Default::default()).unwrap();
    let started = mercato_client::wire::StepPhase::Started {
        name: b"charge".to_vec(),
    };
    c.saga_begin(7, b"checkout", b"").unwrap().unwrap();
    c.saga_step(7, 0, started).unwrap().unwrap();
    c.saga_begin(8, b"checkout", b"").unwrap().unwrap();
    c.saga_end(8).unwrap().unwrap();
    let addr = server.main.to_string();
    let run = |args: &[&str]| cli_at(&addr, args);
    let (code, out) = run(&["--json", "saga", "list", "--unfinished"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("[{\"id\":\"7\",\"name\":\"checkout\",\"state\":\"Running\""),
        "{out}"
    );
    assert!(!out.contains("\"id\":\"8\""), "{out}");
    let (code, out) = run(&["saga", "list"]);
    assert_eq!((code, out.lines().count()), (Some(0), 2), "{out}");
    let (code, out) = run(&["saga", "show", "7"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("step 0 charge: Started"), "{out}");
    assert_eq!(run(&["saga", "show", "9"]).0, Some(1), "no such saga");
}

#[test]
fn the_cli_follows_the_change_feed() {
    let dir = util::TempDir::new("cli-feed");
    let path = dir.0.to_str().unwrap().to_string();
    let server = Server::start(2, &["--data-dir", &path]);
    let c = mercato_client::Client::connect(server.main, Default::default()).unwrap();
    c.deposit(7, 100).unwrap().unwrap();
    let addr = server.main.to_string();
    let run = |args: &[&str]| cli_at(&addr, args);
    // A copy of the state: the account, as JSON Lines.
    let (code, out) = run(&["--json", "feed", "--from", "snapshot", "--max-events", "1"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("\"type\":\"account_copy\"") || out.contains("\"type\":\"balance\""),
        "{out}"
    );
    // From now, durably: it waits for the next change.
    let follower = Command::new(util::mercato_cli())
        .args(["--server", &addr, "--json", "feed", "--from", "now"])
        .args(["--subscription", "tail", "--max-events", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.deposit(8, 5).unwrap().unwrap();
    let out = follower.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("{\"shard\":") && text.contains("\"type\":\"balance\",\"account\":8"),
        "{text}"
    );
    let (code, out) = run(&["--json", "subscription", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"name\":\"tail\",\"lost\":false"), "{out}");
    assert_eq!(run(&["subscription", "drop", "tail"]).0, Some(0));
    assert_eq!(
        run(&["feed", "--from", "1,2,3"]).0,
        Some(1),
        "three positions for two shards"
    );
}

/// `info`, like Redis' INFO: version, uptime, durability, memory, and a
/// line per shard with its committed LSN and table sizes, which follow
/// what was written; `--json` carries the same.
#[test]
fn the_cli_shows_info_per_shard() {
    let dir = util::TempDir::new("cli-info");
    let path = dir.0.to_str().unwrap().to_string();
    let server = Server::start(2, &["--data-dir", &path, "--durability", "always"]);
    let c = mercato_client::Client::connect(server.main, Default::default()).unwrap();
    for sku in 0..10 {
        c.put_sku(sku, 100, 0).unwrap().unwrap();
    }
    c.deposit(7, 100).unwrap().unwrap();
    let addr = server.main.to_string();
    let (code, out) = cli_at(&addr, &["info"]);
    assert_eq!(code, Some(0), "{out}");
    for key in [
        "version: ",
        "uptime_s: ",
        "shards: 2",
        "durability: always",
        "rss_bytes: ",
    ] {
        assert!(out.contains(key), "{key}: {out}");
    }
    assert!(!out.contains("rss_bytes: 0\n"), "{out}");
    let shard_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("shard ")).collect();
    assert_eq!(shard_lines.len(), 2, "{out}");
    // Every SKU and the account are counted on some shard, and each shard
    // that holds one has committed records.
    let (mut skus, mut accounts) = (0, 0);
    for l in &shard_lines {
        let n = |key: &str| -> u64 {
            let at = l.find(key).unwrap() + key.len();
            l[at..].split(',').next().unwrap().trim().parse().unwrap()
        };
        skus += n("skus ");
        accounts += n("accounts ");
        if n("skus ") + n("accounts ") > 0 {
            assert!(n("committed_lsn ") > 0, "{l}");
        }
    }
    assert_eq!((skus, accounts), (10, 1), "{out}");
    let (code, json) = cli_at(&addr, &["--json", "info"]);
    assert_eq!(code, Some(0));
    assert!(json.contains("\"durability\":\"always\""), "{json}");
    assert_eq!(json.matches("\"committed_lsn\":").count(), 2, "{json}");

    // In memory: no log, so no LSN, and the sizes still follow.
    let memory = Server::start(2, &[]);
    let c = mercato_client::Client::connect(memory.main, Default::default()).unwrap();
    for sku in 0..3 {
        c.put_sku(sku, 100, 0).unwrap().unwrap();
    }
    let (code, json) = cli_at(&memory.main.to_string(), &["--json", "info"]);
    assert_eq!(code, Some(0));
    assert!(json.contains("\"durability\":\"in memory\""), "{json}");
    assert_eq!(json.matches("\"committed_lsn\":0,").count(), 2, "{json}");
    let skus: u64 = (json.split("\"skus\":").skip(1))
        .map(|r| r.split(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(skus, 3, "{json}");
}
