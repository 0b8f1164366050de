//! The bodies of eventfold's fuzz targets. The cargo-fuzz binaries call these,
//! and `cargo test` in the main crate replays the checked-in corpus through
//! the same code (`tests/it/fuzz_corpus.rs` includes these files).

pub mod model;
pub mod record_decode;
pub mod wire_request;
