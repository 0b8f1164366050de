//! The examples run as smoke tests: each example's `run` prints its labelled
//! output and returns an error when one of its checked invariants fails.
//! Their sources are compiled into this test binary, so the tests need no
//! example binary on disk.

#[allow(dead_code)]
#[path = "../../examples/bank.rs"]
mod bank;

#[allow(dead_code)]
#[path = "../../examples/orders/main.rs"]
mod orders;

#[allow(dead_code)]
#[path = "../../examples/audit.rs"]
mod audit;

#[test]
fn bank_example_holds_its_invariants() {
    let dir = tempfile::tempdir().unwrap();
    // A shorter long account than the example's 10,000 keeps the test quick.
    let report = bank::run(dir.path(), 500).unwrap();
    assert_eq!(report.long_account_events, 500);
}

#[test]
fn orders_example_holds_its_invariants() {
    let dir = tempfile::tempdir().unwrap();
    orders::run(dir.path()).unwrap();
}

#[test]
fn audit_example_holds_its_invariants() {
    let dir = tempfile::tempdir().unwrap();
    audit::run(dir.path()).unwrap();
}
