//! Upcasters: turn an event stored in an old payload shape into today's, on
//! read. Stored events are never rewritten.
//!
//! Each step is registered for one `(event_type, from_schema_version)` and
//! returns the payload at `from_schema_version + 1`, possibly under a new
//! event type (a rename). Steps chain: an event stored as `("Deposited", 1)`
//! runs the step for `("Deposited", 1)`, then the one for whatever it became
//! at version 2, and so on until no step is registered.
//!
//! ```
//! use eventfold::Upcasters;
//! use serde_json::json;
//!
//! let mut upcasters = Upcasters::new();
//! // v1 -> v2: the amount was in whole units, now in cents.
//! upcasters.register("Deposited", 1, |mut p| {
//!     let units = p["amount"].as_i64().ok_or("amount is not an integer")?;
//!     p["amount"] = json!(units * 100);
//!     Ok(("Deposited".to_string(), p))
//! })?;
//! // v2 -> v3: renamed.
//! upcasters.register("Deposited", 2, |p| Ok(("MoneyDeposited".to_string(), p)))?;
//!
//! let up = upcasters.upcast("account-1", 1, "Deposited", 1, json!({"amount": 5}))?;
//! assert_eq!((up.event_type.as_str(), up.schema_version), ("MoneyDeposited", 3));
//! assert_eq!(up.payload, json!({"amount": 500}));
//! # Ok::<(), eventfold::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::vocab::{Error, Result};

/// What an upcaster step returns: the event type and payload at the next
/// schema version, or why the payload cannot be upcast.
pub type UpcastResult = std::result::Result<(String, Value), Box<dyn std::error::Error + Send + Sync>>;

type StepFn = Arc<dyn Fn(Value) -> UpcastResult + Send + Sync>;

/// An event after its upcaster chain.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Upcasted {
    /// The event type after renames.
    pub event_type: String,
    /// The schema version the chain reached.
    pub schema_version: u32,
    /// The payload at that version.
    pub payload: Value,
    /// How many steps ran.
    pub steps: u32,
}

/// A registry of upcaster steps keyed by `(event_type, from_schema_version)`.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Upcasters {
    /// Event type -> from version -> step. Keyed by type first so a lookup
    /// by `&str` allocates nothing on the read path.
    steps: HashMap<String, BTreeMap<u32, StepFn>>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<(&str, u32)> =
            self.steps.iter().flat_map(|(t, m)| m.keys().map(move |v| (t.as_str(), *v))).collect();
        keys.sort();
        f.debug_struct("Upcasters").field("steps", &keys).finish()
    }
}

impl Upcasters {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that reads `event_type` at `from_schema_version`
    /// and returns the event at `from_schema_version + 1`.
    ///
    /// Refused when a step is already registered for the pair, or the version
    /// is 0 (schema versions start at 1).
    pub fn register<F>(&mut self, event_type: &str, from_schema_version: u32, step: F) -> Result<&mut Self>
    where
        F: Fn(Value) -> UpcastResult + Send + Sync + 'static,
    {
        let refuse = |reason: &str| Error::UpcasterRegistration {
            event_type: event_type.to_string(),
            from_version: from_schema_version,
            reason: reason.to_string(),
        };
        if from_schema_version == 0 {
            return Err(refuse("schema versions start at 1"));
        }
        if from_schema_version == u32::MAX {
            return Err(refuse("there is no schema version after u32::MAX"));
        }
        let versions = self.steps.entry(event_type.to_string()).or_default();
        if versions.contains_key(&from_schema_version) {
            return Err(refuse("a step is already registered for this event type and version"));
        }
        versions.insert(from_schema_version, Arc::new(step));
        Ok(self)
    }

    /// [`register`](Self::register) for building a registry in one expression.
    pub fn with<F>(mut self, event_type: &str, from_schema_version: u32, step: F) -> Result<Self>
    where
        F: Fn(Value) -> UpcastResult + Send + Sync + 'static,
    {
        self.register(event_type, from_schema_version, step)?;
        Ok(self)
    }

    /// Whether no step is registered.
    pub fn is_empty(&self) -> bool {
        self.steps.values().all(BTreeMap::is_empty)
    }

    /// Whether a step reads `(event_type, schema_version)`.
    pub fn has_step(&self, event_type: &str, schema_version: u32) -> bool {
        self.step(event_type, schema_version).is_some()
    }

    /// The highest version a registered step reads for `event_type`, if any:
    /// a chain that stops below it has a missing step.
    pub fn highest_from_version(&self, event_type: &str) -> Option<u32> {
        self.steps.get(event_type).and_then(|m| m.keys().next_back().copied())
    }

    fn step(&self, event_type: &str, schema_version: u32) -> Option<&StepFn> {
        self.steps.get(event_type)?.get(&schema_version)
    }

    /// Runs the chain for an event stored at `position` (used in error
    /// messages) as `(event_type, schema_version)` with `payload`.
    ///
    /// When the chain stops at a version below one that a step is registered
    /// for (for example steps from 1 and from 3 but none from 2), the chain
    /// has a gap and this is [`Error::MissingUpcaster`].
    pub fn upcast(
        &self,
        stream: &str,
        position: u64,
        event_type: &str,
        schema_version: u32,
        payload: Value,
    ) -> Result<Upcasted> {
        let mut up = Upcasted { event_type: event_type.to_string(), schema_version, payload, steps: 0 };
        while let Some(step) = self.step(&up.event_type, up.schema_version) {
            let (ty, payload) = step(up.payload).map_err(|e| Error::UpcastFailed {
                stream: stream.to_string(),
                position,
                event_type: up.event_type.clone(),
                from_version: up.schema_version,
                reason: e.to_string(),
            })?;
            up.event_type = ty;
            up.payload = payload;
            // A step is never registered from u32::MAX, and each step moves
            // the version up by one, so neither saturates.
            up.schema_version = up.schema_version.saturating_add(1);
            up.steps = up.steps.saturating_add(1);
        }
        if let Some(highest) = self.highest_from_version(&up.event_type)
            && highest > up.schema_version
        {
            return Err(Error::MissingUpcaster {
                stream: stream.to_string(),
                position,
                event_type: up.event_type,
                found: up.schema_version,
                // No step is registered from u32::MAX.
                expected: highest.saturating_add(1),
            });
        }
        Ok(up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_and_zero_registrations_are_refused() {
        let mut u = Upcasters::new();
        u.register("A", 1, |p| Ok(("A".into(), p))).unwrap();
        let err = u.register("A", 1, |p| Ok(("A".into(), p))).err().unwrap();
        assert!(err.to_string().contains("already registered"), "{err}");
        assert!(u.register("A", 0, |p| Ok(("A".into(), p))).is_err());
    }

    #[test]
    fn a_gap_in_the_chain_is_reported() {
        let u = Upcasters::new()
            .with("A", 1, |p| Ok(("A".into(), p)))
            .unwrap()
            .with("A", 3, |p| Ok(("A".into(), p)))
            .unwrap();
        let err = u.upcast("a-1", 9, "A", 1, json!({})).unwrap_err();
        assert!(matches!(err, Error::MissingUpcaster { position: 9, found: 2, expected: 4, .. }), "{err}");
    }

    #[test]
    fn a_failing_step_names_the_event() {
        let u = Upcasters::new().with("A", 1, |_| Err("no amount".into())).unwrap();
        let err = u.upcast("a-1", 4, "A", 1, json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "upcasting event at position 4 of stream \"a-1\" (A schema version 1) failed: no amount"
        );
    }
}
