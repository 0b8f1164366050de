//! The rules for an event's metadata fields: correlation and causation ids
//! (any string: an HTTP request id, a trace id, a UUID), the user id, the
//! W3C `traceparent`, and the names an extra field may not take.
//!
//! `docs/format.md` says where each field is stored.

use serde_json::{Map, Value};

use super::{Error, Result, shorten};

/// The longest correlation, causation or user id, in bytes.
pub const MAX_METADATA_ID_LEN: usize = 256;

/// The longest `traceparent`, in bytes: a version `00` header is 55; later
/// versions may append fields.
pub const MAX_TRACEPARENT_LEN: usize = 256;

/// The metadata fields, by the names they have in every flat form
/// (the protocol's `metadata`, the CLI's `--metadata`, an export line): an
/// extra field of one of these names would be read back as the field.
pub(crate) const FIELD_NAMES: [&str; 4] = ["correlation_id", "causation_id", "user_id", "traceparent"];

/// The keys of the record's metadata object that hold a correlation id that
/// is not a canonical UUID, a causation id likewise, and the `traceparent`
/// (see `docs/format.md`). No extra field may take one of these names.
pub(crate) const CORRELATION_KEY: &str = "$correlation_id";
/// See [`CORRELATION_KEY`].
pub(crate) const CAUSATION_KEY: &str = "$causation_id";
/// See [`CORRELATION_KEY`].
pub(crate) const TRACEPARENT_KEY: &str = "$traceparent";
/// Every reserved key of the record's metadata object.
pub(crate) const RESERVED_KEYS: [&str; 3] = [CORRELATION_KEY, CAUSATION_KEY, TRACEPARENT_KEY];

/// Checks a correlation, causation or user id: 1 to [`MAX_METADATA_ID_LEN`]
/// bytes, no control characters. `field` names it in the error.
pub(crate) fn check_id(field: &'static str, id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "must not be empty".to_string()
    } else if id.len() > MAX_METADATA_ID_LEN {
        format!("is {} bytes, the limit is {MAX_METADATA_ID_LEN}", id.len())
    } else if id.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(Error::InvalidMetadataField { field, value: shorten(id), reason })
}

/// Checks a W3C trace-context `traceparent` header value:
/// `VERSION-TRACE_ID-PARENT_ID-FLAGS`, lower-case hex of 2, 32, 16 and 2
/// digits, the ids not all zeros, the version not `ff`. Version `00` has
/// exactly these four fields; a later version may append more after a `-`
/// (as the W3C recommendation asks of a reader that knows only `00`).
pub(crate) fn check_traceparent(value: &str) -> Result<()> {
    match traceparent_problem(value) {
        None => Ok(()),
        Some(reason) => {
            Err(Error::InvalidMetadataField { field: "traceparent", value: shorten(value), reason })
        }
    }
}

fn traceparent_problem(value: &str) -> Option<String> {
    const SHAPE: &str = "a traceparent is 00-<32 hex digits trace id>-<16 hex digits parent id>-<2 hex digits flags>, lower-case (W3C trace context)";
    if value.len() > MAX_TRACEPARENT_LEN {
        return Some(format!("is {} bytes, the limit is {MAX_TRACEPARENT_LEN}", value.len()));
    }
    let b = value.as_bytes();
    let hex = |range: std::ops::Range<usize>| {
        b.get(range).is_some_and(|s| s.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)))
    };
    let dash = |i: usize| b.get(i) == Some(&b'-');
    if !(hex(0..2) && dash(2) && hex(3..35) && dash(35) && hex(36..52) && dash(52) && hex(53..55)) {
        return Some(SHAPE.to_string());
    }
    let version = &value[0..2];
    if version == "ff" {
        return Some("version ff is not a valid traceparent version".to_string());
    }
    if value.len() > 55 {
        if version == "00" {
            return Some(format!("{SHAPE}; version 00 has nothing after the flags"));
        }
        if !dash(55) || value.chars().any(|c| !c.is_ascii_graphic()) {
            return Some(format!("{SHAPE}; a later version's further fields follow a `-`"));
        }
    }
    if value[3..35].bytes().all(|c| c == b'0') {
        return Some("the trace id must not be all zeros".to_string());
    }
    if value[36..52].bytes().all(|c| c == b'0') {
        return Some("the parent id must not be all zeros".to_string());
    }
    None
}

/// Checks that no extra field takes the name of a metadata field (it would
/// be read back as that field from every flat form) or a reserved key of
/// the record. An import (`imported`) may keep the former: a store written
/// before they were refused may hold them, and an import keeps what was
/// stored.
pub(crate) fn check_extra_names(extra: &Map<String, Value>, imported: bool) -> Result<()> {
    for key in extra.keys() {
        if !imported && FIELD_NAMES.contains(&key.as_str()) {
            return Err(Error::InvalidMetadata {
                reason: format!(
                    "extra field {key:?} has the name of a metadata field: set it with EventMetadata::{key}, not as an extra field"
                ),
            });
        }
        if RESERVED_KEYS.contains(&key.as_str()) {
            return Err(Error::InvalidMetadata {
                reason: format!(
                    "extra field {key:?} has a name eventfold reserves for its own use: rename it"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn ids_are_any_short_string_without_control_characters() {
        for ok in ["req-7f3a", "4bf92f3577b34da6a3ce929d0e0e4736", "ünïcødé ☃", "a b", &"x".repeat(256)]
        {
            assert!(check_id("correlation id", ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "a\nb", "tab\there", "\u{7f}", &"x".repeat(257)] {
            let err = check_id("correlation id", bad).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidMetadataField { field: "correlation id", .. }),
                "{bad:?}: {err}"
            );
        }
        let err = check_id("causation id", &"é".repeat(200)).unwrap_err();
        assert!(err.to_string().contains("is 400 bytes, the limit is 256"), "{err}");
        assert!(err.to_string().starts_with("invalid causation id \""), "{err}");
    }

    #[test]
    fn traceparents_follow_w3c_trace_context() {
        assert!(check_traceparent(TP).is_ok());
        assert!(check_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").is_ok());
        assert!(
            check_traceparent(
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"
            )
            .is_ok(),
            "a later version may carry more fields"
        );
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-a\nb",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for b in bad {
            let err = check_traceparent(b).unwrap_err();
            assert!(matches!(&err, Error::InvalidMetadataField { field: "traceparent", .. }), "{b:?}: {err}");
        }
        let long = format!("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-{}", "a".repeat(300));
        assert!(check_traceparent(&long).unwrap_err().to_string().contains("the limit is 256"));
    }

    #[test]
    fn extra_fields_may_not_take_reserved_names() {
        let mut extra = Map::new();
        extra.insert("ip".into(), "10.0.0.1".into());
        extra.insert("$schema".into(), "x".into());
        assert!(check_extra_names(&extra, false).is_ok());
        for name in FIELD_NAMES.iter().chain(&RESERVED_KEYS) {
            let mut m = extra.clone();
            m.insert(name.to_string(), "x".into());
            let err = check_extra_names(&m, false).unwrap_err();
            assert!(matches!(&err, Error::InvalidMetadata { reason } if reason.contains(name)), "{err}");
            assert_eq!(check_extra_names(&m, true).is_ok(), FIELD_NAMES.contains(name), "{name}");
        }
    }
}
