//! `mercato demo`, the command the README gives a newcomer, run as a real
//! process on a small shop: it must sell exactly the flash-sale stock and
//! pass its audit.

use std::process::Command;

#[test]
fn the_demo_sells_exactly_its_stock_and_passes_the_audit() {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato"))
        .args([
            "demo",
            "--shards",
            "2",
            "--threads",
            "3",
            "--skus",
            "200",
            "--accounts",
            "2000",
        ])
        .args([
            "--flash-stock",
            "300",
            "--buyers",
            "5000",
            "--cart-orders",
            "3000",
        ])
        .output()
        .expect("the mercato binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("units sold         300 of 300 in stock (exact: no oversell)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rejected PerUserLimit"),
        "repeat buyers meet the limit:\n{stdout}"
    );
    assert!(stdout.contains("invariants: all hold"), "{stdout}");
}
