//! The JSON-merge state: a stream folded into one JSON document by merging
//! each event's payload, with snapshots of it.

mod snapshot;
mod state;

pub use snapshot::{JSON_STATE_SNAPSHOT_SCHEMA, JSON_STATE_SNAPSHOTS_KEPT};
pub use state::{JsonFields, JsonState};
