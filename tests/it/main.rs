//! eventfold's integration tests: one binary, one module per area.

mod common;
mod core;
mod projections;
mod subscriptions;
