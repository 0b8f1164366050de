//! Which events a read, subscription or projection wants.

use serde::{Deserialize, Serialize};

use super::names::category_of;

/// A filter on events: by event type, category, tag, stream-id prefix or
/// one stream. Empty criteria match everything; within one criterion any
/// listed value matches; all given criteria must match.
///
/// A read of the global log with a filter on event types, categories or
/// tags walks the store's secondary indexes, so it costs what it returns,
/// not the size of the log (see `docs/indexes.md`).
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
    /// Tags to keep (any of): an event passes when it carries one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
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

    /// Also accept events that carry this tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Accept events that carry any of these tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
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
            && self.tags.is_empty()
            && self.stream_prefix.is_none()
            && self.stream.is_none()
    }

    /// Whether an event of `event_type` in `stream_id`, without tags,
    /// passes; [`matches_tagged`](Self::matches_tagged) for an event with
    /// tags.
    pub fn matches(&self, stream_id: &str, event_type: &str) -> bool {
        self.matches_tagged(stream_id, event_type, [])
    }

    /// Whether an event of `event_type` in `stream_id` carrying `tags` passes.
    pub fn matches_tagged<'a>(
        &self,
        stream_id: &str,
        event_type: &str,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        self.matches_untagged(stream_id, event_type)
            && (self.tags.is_empty() || tags.into_iter().any(|t| self.tags.iter().any(|w| w == t)))
    }

    fn matches_untagged(&self, stream_id: &str, event_type: &str) -> bool {
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
        let tagged = Filter::new().tags(["t:1", "t:2"]).event_type("X");
        assert!(tagged.matches_tagged("a-1", "X", ["u:9", "t:2"]));
        assert!(!tagged.matches_tagged("a-1", "Y", ["t:2"]));
        assert!(!tagged.matches_tagged("a-1", "X", ["u:9"]));
        assert!(!tagged.matches("a-1", "X"));
    }
}
