//! # eventfold-nats
//!
//! Relays an eventfold log to a NATS JetStream stream with an exactly-once
//! effect, so that readers on other machines can follow it.
//!
//! The [`Relay`] follows the global log as a durable eventfold consumer
//! (default name `nats-relay`, so `Store::consumers()` shows its checkpoint
//! and lag), publishes every event to `<prefix>.<category>.<stream id>`
//! (see [`subject`] for the encoding) with its metadata in headers (see
//! [`headers`]) and the payload as the body, and keeps a bounded window of
//! publishes awaiting JetStream's acknowledgement. Each publish expects the
//! previous event's id as the stream's last (`Nats-Expected-Last-Msg-Id`), so
//! the stream holds a gapless, ordered prefix of the log; after a crash or a
//! reconnect the relay resumes after the stream's last message. The
//! checkpoint only moves past acknowledged positions, in order, and
//! JetStream drops repeats by their `Nats-Msg-Id` (the event id) within the
//! stream's duplicate window. See `docs/scale-out.md`.
//!
//! ```no_run
//! use eventfold::Store;
//! use eventfold_nats::{Relay, RelayConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("data")?;
//! let mut config = RelayConfig::new("nats://127.0.0.1:4222", "EVENTS");
//! config.replicas = 3;
//! let stats = Relay::new(store, config)?.run_blocking()?;
//! println!("relayed {} events", stats.published);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod error;
pub mod headers;
mod relay;
pub mod subject;

pub use error::RelayError;
pub use headers::RelayedEvent;
pub use relay::{Relay, RelayConfig, RelayStats};
