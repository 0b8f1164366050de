//! The Python client's tests (`clients/python/tests`), run against the
//! node this build makes, so that `cargo test` covers the client too.
//! Without `python3` they are skipped with a printed reason.

use std::process::Command;

#[test]
fn the_python_client_passes_its_tests() {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => "python3",
        _ => {
            eprintln!("skipped: no python3 on this machine, so the Python client's tests cannot run");
            return;
        }
    };
    let out = Command::new(python)
        .args(["-m", "unittest", "discover", "-s", "tests", "-p", "test_client.py", "-v"])
        .current_dir(format!("{root}/clients/python"))
        .env("EVENTFOLD_BIN", env!("CARGO_BIN_EXE_eventfold"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client's tests failed:\n{text}");
    assert!(!text.contains("skipped"), "the Python client's tests were skipped:\n{text}");
}

/// The `eventsourcing` library's own recorder and application test cases
/// against `clients/python/eventfold_eventsourcing` (see
/// `clients/python/tests/test_eventsourcing.py`). Skipped with a printed
/// reason when `python3` or the `eventsourcing` package is missing.
#[test]
fn the_eventsourcing_module_passes_the_librarys_tests() {
    let root = env!("CARGO_MANIFEST_DIR");
    let probe = Command::new("python3").args(["-c", "import eventsourcing.tests.persistence"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr);
            let why = why.lines().last().unwrap_or("").to_string();
            eprintln!(
                "skipped: the eventsourcing package is not importable ({why}): python3 -m pip install 'eventsourcing[crypto]==9.5.6'"
            );
            return;
        }
        Err(e) => {
            eprintln!(
                "skipped: no python3 on this machine ({e}), so the eventsourcing module's tests cannot run"
            );
            return;
        }
    }
    let out = Command::new("python3")
        .args(["-m", "unittest", "tests.test_eventsourcing", "-v"])
        .current_dir(format!("{root}/clients/python"))
        .env("EVENTFOLD_BIN", env!("CARGO_BIN_EXE_eventfold"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the eventsourcing module's tests failed:\n{text}");
    assert!(!text.contains("skipped"), "the eventsourcing module's tests were skipped:\n{text}");
}
