//! Dynamic Consistency Boundaries (the specification at dcb.events): a
//! [`Query`] over event types and tags, and the [`AppendCondition`] an
//! append can carry ("fail if an event matching this query was written
//! after position P").

use serde::{Deserialize, Serialize};

/// One item of a [`Query`]. An event matches it when its type is among the
/// item's types (or the item names none) and it carries every one of the
/// item's tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueryItem {
    /// Event types, any of which matches; none: any type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Tags the event must all carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl QueryItem {
    /// An item that matches every event; narrow it with the builders.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accept events of this type.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.types.push(event_type.into());
        self
    }

    /// Accept events of any of these types.
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.types.extend(types.into_iter().map(Into::into));
        self
    }

    /// Require this tag too.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Require all of these tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Whether an event of `event_type` carrying `tags` matches.
    pub fn matches<'a>(&self, event_type: &str, tags: impl IntoIterator<Item = &'a str> + Clone) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
            && self.tags.iter().all(|want| tags.clone().into_iter().any(|t| t == want))
    }

    /// Whether the item matches every event.
    pub fn matches_all(&self) -> bool {
        self.types.is_empty() && self.tags.is_empty()
    }
}

/// A DCB query: the events that match any of its items. A query without
/// items matches every event.
///
/// ```
/// use eventfold::{Query, QueryItem};
/// let seats = Query::new()
///     .item(QueryItem::new().event_type("CourseDefined").event_type("CourseCapacityChanged").tag("course:7"))
///     .item(QueryItem::new().event_type("StudentEnrolled").tag("course:7"));
/// assert!(seats.matches("StudentEnrolled", ["student:42", "course:7"]));
/// assert!(!seats.matches("StudentEnrolled", ["student:42", "course:8"]));
/// assert!(Query::all().matches("Anything", []));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Query {
    /// The items, any of which matches.
    #[serde(default)]
    pub items: Vec<QueryItem>,
}

impl Query {
    /// A query without items yet (it matches every event until one is added).
    pub fn new() -> Self {
        Self::default()
    }

    /// The query that matches every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Adds an item.
    pub fn item(mut self, item: QueryItem) -> Self {
        self.items.push(item);
        self
    }

    /// Whether an event of `event_type` carrying `tags` matches.
    pub fn matches<'a>(&self, event_type: &str, tags: impl IntoIterator<Item = &'a str> + Clone) -> bool {
        self.items.is_empty() || self.items.iter().any(|i| i.matches(event_type, tags.clone()))
    }

    /// Whether the query matches every event.
    pub fn matches_all(&self) -> bool {
        self.items.is_empty() || self.items.iter().any(QueryItem::matches_all)
    }
}

/// The condition of a DCB append: it fails, writing nothing, when an event
/// matching `fail_if_events_match` is in the log after position `after`
/// (anywhere in the log when `after` is `None`), counting the events of
/// requests committed before it in the same batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppendCondition {
    /// The events that must not have been written.
    pub fail_if_events_match: Query,
    /// The position the decision was made at: usually the `head` of the
    /// [`QueryResult`](crate::QueryResult) the decision read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

impl AppendCondition {
    /// Fail if an event matching `query` is in the log after `after`
    /// (`None`: at all).
    pub fn new(query: Query, after: Option<u64>) -> Self {
        AppendCondition { fail_if_events_match: query, after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_need_all_their_tags_and_any_of_their_types() {
        let item = QueryItem::new().event_types(["A", "B"]).tags(["x", "y"]);
        assert!(item.matches("A", ["y", "z", "x"]));
        assert!(!item.matches("A", ["x"]));
        assert!(!item.matches("C", ["x", "y"]));
        assert!(QueryItem::new().tag("x").matches("Any", ["x"]));
        assert!(QueryItem::new().event_type("A").matches("A", []));
        let q = Query::new().item(QueryItem::new().event_type("A")).item(QueryItem::new().tag("t"));
        assert!(q.matches("A", []) && q.matches("B", ["t"]) && !q.matches("B", ["u"]));
        assert!(!q.matches_all());
        assert!(Query::new().item(QueryItem::new()).matches_all());
    }
}
