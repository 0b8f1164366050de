//! Arbitrary bytes as protocol input: each line goes through the same parser
//! and dispatcher the node uses, against a real store. Every line gets exactly
//! one reply, a JSON object with a `body`, nothing panics, and every event an
//! append stored is readable: its payload and metadata parse into values.

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
        let body = &value["body"];
        let stored = match body["type"].as_str() {
            Some("appended") => body["sequence_number"].as_u64().map(|p| (p, p)),
            Some("appended_batch") => {
                body["first_sequence_number"].as_u64().zip(body["last_sequence_number"].as_u64())
            }
            _ => None,
        };
        if let Some((first, last)) = stored {
            let reader = store().read().expect("a read transaction");
            for position in first..=last {
                let event = reader.event(position).expect("readable").expect("stored").to_owned();
                let event = event.unwrap_or_else(|e| panic!("stored event {position} is unreadable: {e}"));
                if let Err(e) = event.payload_json() {
                    panic!("stored payload at {position} does not parse: {e}");
                }
            }
        }
    }
    session.close();
}
