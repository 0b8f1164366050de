//! Aggregates: domain state folded from a stream's events, commands that
//! decide new events, and a [`Repository`] that loads and saves them.
//!
//! An aggregate with id `42` of category `account` lives in stream
//! `account-42`. Its events are [`DomainEvent`]s: each variant has an event
//! type name and a schema version, and is stored as a JSON payload.
//!
//! ```
//! use eventfold::{Aggregate, DomainEvent, EventMetadata, Repository, Store};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! enum CounterEvent { Added { n: u64 } }
//!
//! impl DomainEvent for CounterEvent {
//!     fn event_type(&self) -> &'static str { "Added" }
//! }
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! struct Counter { total: u64 }
//!
//! impl Aggregate for Counter {
//!     const CATEGORY: &'static str = "counter";
//!     type Event = CounterEvent;
//!     type Command = u64;
//!     type Error = std::convert::Infallible;
//!
//!     fn apply(&mut self, CounterEvent::Added { n }: &CounterEvent) { self.total += n; }
//!     fn handle(&self, n: u64) -> Result<Vec<CounterEvent>, Self::Error> {
//!         Ok(vec![CounterEvent::Added { n }])
//!     }
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let counters = Repository::<Counter>::new(store);
//! counters.execute("c1", 5, EventMetadata::new().user_id("ann"))?;
//! let done = counters.execute("c1", 2, EventMetadata::new())?;
//! assert_eq!(done.version, 2);
//! assert_eq!(counters.load("c1")?.state.total, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod repository;
pub(crate) mod snapshot;
mod tagged;
#[cfg(feature = "testing")]
pub mod testing;
mod upcast;

pub use repository::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_DEADLINE, Envelope, Executed, LoadReport, Loaded, Repository,
    SnapshotPolicy,
};
pub use snapshot::{NewSnapshot, SNAPSHOT_LAYOUT_VERSION, Snapshot};
pub use upcast::{UpcastResult, Upcasted, Upcasters};

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An event of an aggregate: serde for its payload, an event type name per
/// variant and the schema version of the variant's payload shape.
///
/// The default [`encode`](Self::encode) and [`decode`](Self::decode) use
/// serde's default (externally tagged) enum representation and expect the
/// serde variant name to be the event type: the variant `Deposited { amount }`
/// is stored as event type `Deposited` with payload `{"amount": ...}`. A
/// plain struct is stored as itself. Override both for another mapping.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// The event type stored with the event.
    fn event_type(&self) -> &'static str;

    /// The schema version of this variant's payload shape (default 1).
    /// Raise it when the shape changes and register an upcaster from the
    /// previous version.
    fn schema_version(&self) -> u32 {
        1
    }

    /// The JSON payload to store.
    fn encode(&self) -> Result<Vec<u8>, String> {
        let value = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let ty = self.event_type();
        let payload = match value {
            Value::Object(mut map) if map.len() == 1 && map.contains_key(ty) => {
                map.remove(ty).unwrap_or(Value::Null)
            }
            Value::String(s) if s == ty => Value::Null,
            Value::Object(map) if map.len() == 1 => {
                let tag = map.keys().next().cloned().unwrap_or_default();
                return Err(format!(
                    "serde names this variant {tag:?} but event_type() says {ty:?}: make them agree (#[serde(rename)]) or override DomainEvent::encode and decode"
                ));
            }
            other => other,
        };
        serde_json::to_vec(&payload).map_err(|e| e.to_string())
    }

    /// Decodes a stored payload of `event_type` (after upcasting).
    fn decode(event_type: &str, payload: &[u8]) -> Result<Self, String> {
        match tagged::from_tagged(event_type, payload) {
            Ok(e) => Ok(e),
            Err(tagged) => {
                if payload.trim_ascii() == b"null"
                    && let Ok(e) = serde_json::from_value(Value::String(event_type.to_string()))
                {
                    return Ok(e);
                }
                // A plain struct is stored untagged.
                serde_json::from_slice(payload).map_err(|_| tagged.to_string())
            }
        }
    }
}

/// A consistency boundary: state folded from its events, and the rules that
/// turn a command into new events.
///
/// The state is `Default` (the aggregate before its first event) and serde
/// (for snapshots). Raise [`STATE_SCHEMA_VERSION`](Self::STATE_SCHEMA_VERSION)
/// when the state's serialized shape changes: snapshots of other versions are
/// then ignored and the state is replayed from the events.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stream category: aggregate `42` lives in stream `{CATEGORY}-42`.
    const CATEGORY: &'static str;

    /// The schema version of the serialized state, stored with snapshots.
    const STATE_SCHEMA_VERSION: u32 = 1;

    /// The aggregate's events.
    type Event: DomainEvent;

    /// What callers ask the aggregate to do.
    type Command;

    /// Why a command is refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Folds one event into the state. It must not fail: the event happened.
    fn apply(&mut self, event: &Self::Event);

    /// Decides what a command does: the events to record, or why not.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}

/// Why [`Repository::execute`] did not record a command's events.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The aggregate refused the command. Nothing was written.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// The store failed (or the command lost to concurrent writers too often).
    #[error(transparent)]
    Store(#[from] crate::Error),
}

impl<E> CommandError<E> {
    /// The aggregate's refusal, if that is what this is.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(e) => Some(e),
            CommandError::Store(_) => None,
        }
    }
}
