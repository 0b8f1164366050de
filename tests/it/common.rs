//! Helpers shared by the integration tests.

use eventfold::{NewEvent, Store};
use serde_json::json;
use tempfile::TempDir;

/// A fresh store in a temporary directory (removed when the `TempDir` drops).
pub fn temp_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

/// A small JSON event of type `ty` carrying `n`.
pub fn ev(ty: &str, n: u64) -> NewEvent {
    NewEvent::json(ty, &json!({ "n": n }))
}
