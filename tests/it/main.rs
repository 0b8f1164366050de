//! eventfold's integration tests: one binary, one module per area.

mod aggregates;
mod common;
mod core;
mod crash;
mod disk_full;
mod examples;
#[cfg(feature = "fault-injection")]
mod faults;
mod fuzz_corpus;
mod model;
mod multiprocess;
mod projections;
mod subscriptions;
