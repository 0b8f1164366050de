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

#[allow(dead_code)]
#[path = "../../examples/enrolment.rs"]
mod enrolment;

/// Many concurrent enrolments: neither a course's capacity nor a student's
/// limit is ever exceeded (the example replays the log to check), and the
/// contention was real (some decisions were retried or refused).
#[test]
fn enrolment_example_never_exceeds_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let report = enrolment::run(dir.path(), 8, 60).unwrap();
    assert!(report.enrolled > 0);
    assert!(report.refused > 0, "the limits were reached: {report:?}");
}
