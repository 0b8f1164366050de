//! eventfold's integration tests: one binary, one module per area.

mod aggregates;
#[cfg(feature = "async")]
mod async_api;
#[cfg(feature = "async")]
mod bank_service;
#[cfg(feature = "cli")]
mod cli;
mod common;
mod core;
#[cfg(feature = "cli")]
mod corruption;
mod crash;
mod dcb_model;
mod disk_full;
mod examples;
#[cfg(feature = "fault-injection")]
mod faults;
mod forgetting;
mod formats;
mod fuzz_corpus;
mod indexes;
mod layers;
mod metadata;
#[cfg(feature = "cli")]
mod metrics;
mod model;
mod multiprocess;
mod payload_limits;
mod powercut;
mod powercut_scavenge;
mod projections;
#[cfg(feature = "cli")]
mod protocol;
#[cfg(feature = "cli")]
mod protocol_backend;
#[cfg(feature = "cli")]
mod protocol_dcb;
#[cfg(feature = "cli")]
mod protocol_security;
#[cfg(feature = "cli")]
mod python_client;
mod scavenge;
mod subscriptions;
