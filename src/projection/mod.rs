//! Projections: fold the events a projection wants into a read model of JSON
//! documents, kept in the `projections/` LMDB environment of the store.
//!
//! Each projection has two document databases (slots) and one entry in the
//! environment's `meta` database naming the active slot, the projection's
//! version and its checkpoint. A batch of events commits its document writes
//! and the checkpoint in one transaction of that environment, so a crash never
//! applies an event twice or skips one. A rebuild fills the other slot from
//! position 1 and, once caught up, flips the active slot in one transaction:
//! readers see the old model until that commit and the new one after it.

mod context;
mod identity;
mod info;
mod read_model;
pub(crate) mod runner;
mod sealed;
mod verify;

pub use context::ProjectionContext;
pub use info::StoredProjection;
pub(crate) use read_model::ProjEnv;
pub use read_model::ReadModel;
pub use runner::{ProjectionRunner, RunningProjections};
pub(crate) use verify::verify_read_models;

use serde::{Deserialize, Serialize};

use crate::vocab::Filter;
use crate::vocab::RecordedEvent;
use crate::vocab::Result;

/// A read model built from events.
///
/// `NAME` identifies the model on disk; `VERSION` is the version of the
/// projection's code: change it when `apply` changes meaning, and the runner
/// rebuilds the model from position 1 (readers keep the old one meanwhile).
///
/// ```
/// use eventfold::{Filter, Projection, ProjectionContext, RecordedEvent, Result};
///
/// struct OrderCount;
///
/// impl Projection for OrderCount {
///     const NAME: &'static str = "order_count";
///     const VERSION: u32 = 1;
///
///     fn filter(&self) -> Filter {
///         Filter::new().event_type("OrderPlaced")
///     }
///
///     fn apply(&self, ctx: &mut ProjectionContext<'_>, _event: &RecordedEvent) -> Result<()> {
///         ctx.update("total", |n: &mut u64| *n += 1)
///     }
/// }
/// ```
pub trait Projection: Send + Sync + 'static {
    /// The projection's name: 1 to 200 bytes, no control characters.
    const NAME: &'static str;
    /// The version of the projection's code; a change rebuilds the model.
    const VERSION: u32;

    /// The events the projection wants (by type and/or category). The
    /// default is every event.
    fn filter(&self) -> Filter {
        Filter::new()
    }

    /// Folds one event into the read model. An error stops this projection
    /// at this event (its batch is rolled back); other projections go on.
    fn apply(&self, ctx: &mut ProjectionContext<'_>, event: &RecordedEvent) -> Result<()>;
}

/// What a projection is doing.
///
/// More states may be added: a `match` outside eventfold needs a wildcard
/// arm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
#[non_exhaustive]
pub enum ProjectionState {
    /// Not run yet in this runner.
    Idle,
    /// Applying events, behind the head.
    Running,
    /// At the head of the log.
    CaughtUp,
    /// Building a new model in the shadow slot; readers see the old one.
    Rebuilding {
        /// Positions processed by the rebuild so far.
        done: u64,
        /// The head of the log when this was measured.
        total: u64,
    },
    /// `apply` failed: the projection stopped before this event.
    Failed {
        /// The position of the event that failed.
        position: u64,
        /// The error `apply` returned.
        error: String,
    },
}

/// A projection's progress, from [`ProjectionRunner::status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// The version of the model readers see.
    pub version: u32,
    /// The last position applied to the model readers see.
    pub checkpoint: u64,
    /// The head of the log.
    pub head: u64,
    /// Positions between the checkpoint and the head.
    pub lag_events: u64,
    /// Time between the last event applied and the newest event of the log,
    /// in microseconds (0 when caught up).
    pub lag_micros: u64,
    /// Throughput of the most recent batch, in log positions per second.
    pub events_per_sec: f64,
    /// What the projection is doing.
    pub state: ProjectionState,
}

/// Progress of a rebuild, passed to [`ProjectionRunner::on_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildProgress<'a> {
    /// The projection being rebuilt.
    pub name: &'a str,
    /// Positions processed so far.
    pub done: u64,
    /// The head of the log now (it grows while appends go on).
    pub total: u64,
    /// Set on the call made when the new model has been swapped in.
    pub finished: bool,
}
