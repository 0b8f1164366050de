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
        .args(["-m", "unittest", "discover", "-s", "tests", "-v"])
        .current_dir(format!("{root}/clients/python"))
        .env("EVENTFOLD_BIN", env!("CARGO_BIN_EXE_eventfold"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client's tests failed:\n{text}");
    assert!(!text.contains("skipped"), "the Python client's tests were skipped:\n{text}");
}
