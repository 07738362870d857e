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

#[test]
fn an_unknown_target_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato-load"))
        .args(["--target", "tcp://127.0.0.1:1", "--seconds", "1"])
        .output()
        .expect("mercato-load runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported yet"));
}
