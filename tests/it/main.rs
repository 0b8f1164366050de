//! eventfold's integration tests: one binary, one module per area.

mod common;
mod core;
mod crash;
#[cfg(feature = "fault-injection")]
mod faults;
mod fuzz_corpus;
mod model;
