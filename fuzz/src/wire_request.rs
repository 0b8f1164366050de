//! Arbitrary bytes as protocol input: each line goes through the same parser
//! and dispatcher the node uses, against a real store. Every line gets exactly
//! one reply, a JSON object with a `body`, and nothing panics.

use std::sync::OnceLock;

use eventfold::protocol::Session;
use eventfold::{Durability, Store};

/// One store for the whole fuzzing process: opening a store per input would
/// measure LMDB's open instead of the protocol.
fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir for the fuzz store");
        let store = Store::builder(dir.path())
            .durability(Durability::NoSync)
            .map_size(1 << 30)
            .open()
            .expect("open the fuzz store");
        (dir, store)
    });
    store
}

/// Runs one input: its lines, in order, through one session.
pub fn run(data: &[u8]) {
    let mut session = Session::new(store().clone());
    for line in data.split(|b| *b == b'\n').take(64) {
        let reply = session.handle_line(line);
        session.after_reply();
        assert!(!reply.contains('\n'), "a reply must be one line: {reply}");
        let value: serde_json::Value = match serde_json::from_str(&reply) {
            Ok(v) => v,
            Err(e) => panic!("reply is not JSON ({e}): {reply}"),
        };
        assert!(
            value.get("body").is_some_and(|b| b.get("type").is_some()),
            "reply without a body type: {reply}"
        );
    }
    session.close();
}
