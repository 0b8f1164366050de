//! eventfold's integration tests: one binary, one module per area.

mod aggregates;
mod common;
mod core;
mod examples;
