//! eventfold's integration tests: one binary, one module per area.

#[cfg(feature = "cli")]
mod cli;
mod common;
mod core;
mod crash;
#[cfg(feature = "fault-injection")]
mod faults;
mod model;
#[cfg(feature = "cli")]
mod protocol;
