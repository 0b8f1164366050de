//! Arguments of the commands that need subscriptions, projections and
//! snapshots: `tail`, `state`, `snapshot`, `projection`, `consumers`.
//!
//! They are fixed here so the command line is designed in one place; each is
//! added to `Command` in `main.rs` together with the library API it runs on.
//! Until then they are not reachable, hence the `dead_code` allowance.
#![allow(dead_code)]

use clap::{Args, Subcommand};

/// `eventfold tail [--from P] [filters]`: follow new events live; Ctrl-C ends it.
#[derive(Args)]
pub struct TailArgs {
    /// First position to show (default: only events appended from now on).
    #[arg(long, value_name = "P")]
    pub from: Option<u64>,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only streams of this category (repeatable).
    #[arg(long, value_name = "C")]
    pub category: Vec<String>,
    /// Only this stream.
    #[arg(long)]
    pub stream: Option<String>,
}

/// `eventfold state STREAM [--as-of-version V | --as-of-time T]`: the
/// JSON-merge state of a stream.
#[derive(Args)]
pub struct StateArgs {
    /// The stream.
    pub stream: String,
    /// Fold events up to this version.
    #[arg(long, value_name = "V", conflicts_with = "as_of_time")]
    pub as_of_version: Option<u64>,
    /// Fold events recorded up to this time (RFC 3339 UTC).
    #[arg(long, value_name = "RFC3339")]
    pub as_of_time: Option<String>,
}

/// `eventfold snapshot …`
#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Save the stream's JSON-merge state as a snapshot at its current version.
    Create {
        /// The stream.
        stream: String,
    },
    /// Show the stream's latest snapshot.
    Show {
        /// The stream.
        stream: String,
    },
    /// List snapshots (stream, version, size, time).
    List {
        /// Only streams whose id starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

/// `eventfold projection …`
#[derive(Subcommand)]
pub enum ProjectionCommand {
    /// Projections with their checkpoints and lag.
    List,
    /// One projection's checkpoint, head, lag in events and time.
    Status {
        /// The projection's name.
        name: String,
    },
    /// Rebuild a projection from position 1 (with progress); readers keep the
    /// old model until the new one has caught up.
    Rebuild {
        /// The projection's name.
        name: String,
    },
}

/// `eventfold consumers`: durable consumers with their checkpoints and lag.
#[derive(Args)]
pub struct ConsumersArgs {}
