//! eventfold's integration tests: one binary, one module per area.

mod common;
mod core;
mod crash;
mod disk_full;
#[cfg(feature = "fault-injection")]
mod faults;
mod fuzz_corpus;
mod model;
mod projections;
mod subscriptions;
