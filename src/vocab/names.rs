//! Names and their rules: stream ids, event types, consumer and projection
//! names, and the category a stream id belongs to.

use super::error::{Error, Result};

/// Longest stream id or event type, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 256;

/// Most tags one event may carry.
pub const MAX_TAGS: usize = 64;

/// Checks an event's tags: at most [`MAX_TAGS`], each 1 to [`MAX_TAG_LEN`]
/// bytes without control characters, none listed twice.
pub(crate) fn validate_tags(tags: &[String]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::InvalidTag {
            tag: shorten(tags.get(MAX_TAGS).map_or("", String::as_str)),
            reason: format!("an event carries {} tags, the limit is {MAX_TAGS}", tags.len()),
        });
    }
    for (i, tag) in tags.iter().enumerate() {
        if let Some(reason) = name_problem(tag, MAX_TAG_LEN) {
            return Err(Error::InvalidTag { tag: shorten(tag), reason });
        }
        if tags[..i].contains(tag) {
            return Err(Error::InvalidTag { tag: shorten(tag), reason: "is listed twice".into() });
        }
    }
    Ok(())
}

/// Why `name` is not a valid stream id, event type or consumer name (at most
/// `limit` bytes), or `None` when it is.
pub(crate) fn name_problem(name: &str, limit: usize) -> Option<String> {
    if name.is_empty() {
        Some("must not be empty".into())
    } else if name.len() > limit {
        Some(format!("is {} bytes, the limit is {limit}", name.len()))
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

pub(crate) fn shorten(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_string();
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    format!("{}…", &s[..end])
}

/// Checks a stream id: non-empty, at most [`MAX_NAME_LEN`] bytes, no control characters.
pub(crate) fn validate_stream_id(stream: &str) -> Result<()> {
    match name_problem(stream, MAX_NAME_LEN) {
        Some(reason) => Err(Error::InvalidStreamId { stream: shorten(stream), reason }),
        None => Ok(()),
    }
}

/// The longest consumer or projection name, in bytes.
pub const MAX_CONSUMER_NAME_LEN: usize = 200;

/// Checks a consumer or projection name: 1 to 200 bytes, no control characters.
pub(crate) fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    match name_problem(name, MAX_CONSUMER_NAME_LEN) {
        Some(reason) => Err(Error::InvalidName { kind, name: name.chars().take(64).collect(), reason }),
        None => Ok(()),
    }
}

/// The category of a stream id: the part before the first `-`, or the whole
/// id when it has no `-`.
pub fn category_of(stream_id: &str) -> &str {
    stream_id.split_once('-').map_or(stream_id, |(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_stream_ids_are_rejected() {
        assert!(matches!(validate_stream_id(""), Err(Error::InvalidStreamId { .. })));
        assert!(matches!(validate_stream_id(&"x".repeat(300)), Err(Error::InvalidStreamId { .. })));
        assert!(matches!(validate_stream_id("a\nb"), Err(Error::InvalidStreamId { .. })));
    }
}
