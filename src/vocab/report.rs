//! What `verify` reports: the faults found, and what was checked. Each part
//! of the store (the log, consumers' checkpoints, read models) checks its
//! own data into one report.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most faults a report lists one by one; the rest are only counted.
const MAX_LISTED: usize = 1000;

/// One thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Fault {
    /// Which database or check: `events`, `streams`, `stream_index`, `event_ids`, `meta`.
    pub area: String,
    /// The position concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The stream concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.area)?;
        if let Some(p) = self.position {
            write!(f, " position {p}")?;
        }
        if let Some(s) = &self.stream {
            write!(f, " stream {s:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What [`Store::verify`](crate::Store::verify) checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Records read from the log.
    pub events: u64,
    /// Stream heads read.
    pub streams: u64,
    /// Index runs read.
    pub index_runs: u64,
    /// Event-id entries read.
    pub event_ids: u64,
    /// Blocks of the secondary indexes (by type, category and tag) read.
    #[serde(default)]
    pub term_blocks: u64,
    /// Durable consumers' checkpoint and dedup entries read.
    #[serde(default)]
    pub checkpoints: u64,
    /// Read models (projections) whose checkpoint entry was read.
    #[serde(default)]
    pub read_models: u64,
    /// Read-model documents read (both slots of every projection).
    #[serde(default)]
    pub documents: u64,
    /// Positions recorded as removed by scavenging (holes on purpose).
    #[serde(default)]
    pub removed: u64,
    /// Faults found (at most 1000 listed; see `fault_count`).
    pub faults: Vec<Fault>,
    /// Number of faults found in all.
    pub fault_count: u64,
}

impl VerifyReport {
    /// Whether the store passed every check.
    pub fn is_ok(&self) -> bool {
        self.fault_count == 0
    }

    pub(crate) fn fault(
        &mut self,
        area: &str,
        position: Option<u64>,
        stream: Option<&str>,
        message: impl Into<String>,
    ) {
        self.fault_count = self.fault_count.saturating_add(1);
        if self.faults.len() < MAX_LISTED {
            self.faults.push(Fault {
                area: area.to_string(),
                position,
                stream: stream.map(str::to_string),
                message: message.into(),
            });
        }
    }
}
