//! Which events a read, subscription or projection wants.

use serde::{Deserialize, Serialize};

use super::names::category_of;

/// A filter on events: by event type, category, stream-id prefix or one
/// stream. Empty criteria match everything; within one criterion any listed
/// value matches; all given criteria must match.
///
/// ```
/// use eventfold::Filter;
/// let f = Filter::new().event_type("Deposited").category("account");
/// assert!(f.matches("account-1", "Deposited"));
/// assert!(!f.matches("order-1", "Deposited"));
/// ```
///
/// More criteria may be added: build a filter with [`Filter::new`] and the
/// builder methods, not with a struct literal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Filter {
    /// Event types to keep (any of).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Categories to keep (any of).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Keep only streams whose id starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_prefix: Option<String>,
    /// Keep only this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

impl Filter {
    /// A filter that matches every event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accept this event type.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_types.push(event_type.into());
        self
    }

    /// Accept any of these event types.
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Also accept this category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.categories.push(category.into());
        self
    }

    /// Accept only streams whose id starts with `prefix`.
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into());
        self
    }

    /// Accept only the stream `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    /// Whether the filter accepts everything.
    pub fn is_empty(&self) -> bool {
        self.event_types.is_empty()
            && self.categories.is_empty()
            && self.stream_prefix.is_none()
            && self.stream.is_none()
    }

    /// Whether an event of `event_type` in `stream_id` passes.
    pub fn matches(&self, stream_id: &str, event_type: &str) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
            && (self.categories.is_empty() || self.categories.iter().any(|c| c == category_of(stream_id)))
            && self.stream_prefix.as_deref().is_none_or(|p| stream_id.starts_with(p))
            && self.stream.as_deref().is_none_or(|s| s == stream_id)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(category_of("account-42"), "account");
        assert_eq!(category_of("account-42-x"), "account");
        assert_eq!(category_of("plain"), "plain");
    }

    #[test]
    fn criteria_combine() {
        assert!(Filter::new().matches("a-1", "X"));
        let f = Filter::new().event_types(["X", "Y"]).stream_prefix("a-");
        assert!(f.matches("a-1", "Y"));
        assert!(!f.matches("b-1", "Y"));
        assert!(!f.matches("a-1", "Z"));
        assert!(Filter::new().stream("a-1").matches("a-1", "Z"));
        assert!(!Filter::new().stream("a-1").matches("a-10", "Z"));
    }
}
