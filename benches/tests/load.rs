//! `mercato-load --json` as a process: one second of each workload on a
//! small shop prints one JSON object with the documented fields, and the
//! final audit passes.

use std::process::Command;

const FIELDS: [&str; 12] = [
    "workload",
    "target",
    "shards",
    "seconds",
    "orders_committed",
    "orders_rejected",
    "orders_per_sec",
    "requests_per_sec",
    "p50_us",
    "p99_us",
    "p999_us",
    "invariants_ok",
];

#[test]
fn every_workload_prints_its_json_and_keeps_the_invariants() {
    for workload in ["flash-sale", "carts", "mixed"] {
        let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
            .args([
                "--workload",
                workload,
                "--shards",
                "2",
                "--threads",
                "2",
                "--seconds",
                "1",
            ])
            .args([
                "--accounts",
                "5000",
                "--skus",
                "5000",
                "--batch",
                "64",
                "--json",
            ])
            .output()
            .expect("mercato-load runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{workload}: exit {:?}\n{stdout}",
            out.status
        );
        let line = stdout.trim();
        assert!(
            line.starts_with('{') && line.ends_with('}') && !line.contains('\n'),
            "{line}"
        );
        for field in FIELDS {
            assert!(
                line.contains(&format!("\"{field}\":")),
                "{workload}: no {field} in {line}"
            );
        }
        assert!(
            line.contains(&format!("\"workload\":\"{workload}\"")),
            "{line}"
        );
        assert!(line.contains("\"invariants_ok\":true"), "{line}");
        assert!(
            !line.contains("\"orders_committed\":0,"),
            "{workload} committed nothing: {line}"
        );
    }
}

/// With every account buying once, a flash sale that outlasts its buyers
/// commits exactly one order per account and refuses the rest by the limit.
#[test]
fn a_flash_sale_of_buyers_once_sells_to_every_account_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
        .args([
            "--workload",
            "flash-sale",
            "--buyers",
            "once",
            "--shards",
            "2",
        ])
        .args(["--threads", "2", "--seconds", "1", "--accounts", "5000"])
        .args(["--batch", "64", "--json"])
        .output()
        .expect("mercato-load runs");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "exit {:?}\n{line}", out.status);
    for want in [
        "\"buyers\":\"once\"",
        "\"orders_committed\":5000,",
        "\"invariants_ok\":true",
    ] {
        assert!(line.contains(want), "no {want} in {line}");
    }
}

#[test]
fn an_unknown_or_unreachable_target_is_refused() {
    for (target, says) in [
        ("udp://127.0.0.1:1", "neither embedded nor tcp"),
        ("tcp://not-an-address", "tcp://not-an-address"),
        ("tcp://127.0.0.1:1", "cannot connect"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
            .args(["--target", target, "--seconds", "1"])
            .output()
            .expect("mercato-load runs");
        assert_eq!(out.status.code(), Some(2), "{target}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{target}: {err}");
    }
}

/// The mercato binary, next to mercato-load's; built if this run did not.
fn mercato() -> std::path::PathBuf {
    let path =
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_mercato-load")).with_file_name("mercato");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "mercato-engine", "--bin", "mercato"]);
        if path.components().any(|c| c.as_os_str() == "release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success());
    }
    path
}

#[test]
fn the_tcp_target_drives_a_server_and_prints_the_same_fields() {
    use std::io::BufRead;
    let mut server = Command::new(mercato())
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line["listening on ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for workload in ["flash-sale", "mixed"] {
        let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
            .args(["--target", &format!("tcp://{addr}"), "--workload", workload])
            .args([
                "--threads",
                "2",
                "--connections",
                "2",
                "--pipeline",
                "2",
                "--seconds",
                "1",
            ])
            .args(["--accounts", "2000", "--skus", "2000", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json = String::from_utf8(out.stdout).unwrap();
        for field in FIELDS {
            assert!(
                json.contains(&format!("\"{field}\":")),
                "{field} missing: {json}"
            );
        }
        assert!(json.contains("\"invariants_ok\":null"), "{json}");
        assert!(!json.contains("\"orders_committed\":0,"), "{json}");
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// `--ack-log` was once silently ignored over TCP. Flags are now either
/// taken by the target or refused before anything runs.
#[test]
fn a_flag_the_target_does_not_take_is_refused() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--target", "tcp://127.0.0.1:9", "--data-dir", "x"],
            "--data-dir",
        ),
        (
            &["--target", "tcp://127.0.0.1:9", "--shards", "2"],
            "--shards",
        ),
        (
            &["--target", "tcp://127.0.0.1:9", "--snapshot-keep-state"],
            "--snapshot-keep-state",
        ),
        (&["--connections", "4"], "--connections"),
    ];
    for (args, flag) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{flag} does nothing")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn the_locks_workload_counts_pairs_and_hand_overs() {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
        .args(["--workload", "locks", "--shards", "2", "--threads", "2"])
        .args(["--handoffs", "200"])
        .args([
            "--seconds",
            "1",
            "--batch",
            "64",
            "--pipeline",
            "2",
            "--json",
        ])
        .output()
        .expect("mercato-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{stdout}", out.status);
    let field = |name: &str| -> f64 {
        let at = stdout.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
        let rest = &stdout[at..];
        let end = rest.find([',', '}']).unwrap();
        rest[..end].parse().expect(name)
    };
    assert!(field("pairs") > 1_000.0, "{stdout}");
    assert!(
        field("busy") > 0.0,
        "10% of acquires are contended: {stdout}"
    );
    assert!(stdout.contains("\"handoff\":{\"p50_us\":"), "{stdout}");
}
