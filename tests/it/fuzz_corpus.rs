//! Replays the fuzzers' checked-in corpora (`fuzz/corpus/*`) through the same
//! code the fuzz targets run, so `cargo test` catches regressions without a
//! nightly toolchain or cargo-fuzz.

#[path = "../../fuzz/src/model.rs"]
pub(crate) mod model;
#[path = "../../fuzz/src/record_decode.rs"]
mod record_decode;
#[cfg(feature = "protocol")]
#[path = "../../fuzz/src/wire_request.rs"]
mod wire_request;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap())).collect()
}

#[test]
fn record_decode_corpus_replays() {
    let inputs = corpus("record_decode");
    assert!(!inputs.is_empty());
    for (_name, data) in inputs {
        record_decode::run(&data);
    }
}

#[test]
fn model_corpus_replays() {
    let inputs = corpus("model");
    assert!(!inputs.is_empty());
    for (_name, data) in inputs {
        model::run(&data);
    }
}

#[cfg(feature = "protocol")]
#[test]
fn wire_request_corpus_replays() {
    let inputs = corpus("wire_request");
    assert!(!inputs.is_empty());
    for (_name, data) in inputs {
        wire_request::run(&data);
    }
}
