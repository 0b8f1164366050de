//! Subjects: `<prefix>.<category>.<stream id>`, with a reversible encoding of
//! the characters NATS subjects forbid.
//!
//! A NATS subject is a list of tokens separated by `.`; `*` and `>` are
//! wildcards, whitespace ends the subject, and non-ASCII bytes are not
//! portable across clients. A token here keeps ASCII letters, digits and
//! `-` `_` `:` `@` `+` `=` `/` as they are, and writes every other byte of
//! the UTF-8 string as `~` followed by two upper-case hex digits (`.` is
//! `~2E`, a space `~20`, `~` itself `~7E`, `é` is `~C3~A9`). The empty string
//! is the token `~` alone, which no other string encodes to. So
//! `order-1` stays `order-1`, and `user.ann smith` becomes
//! `user~2Eann~20smith`.

use crate::error::RelayError;

fn keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'@' | b'+' | b'=' | b'/')
}

/// Encodes `s` as one subject token (see the module docs).
pub fn encode_token(s: &str) -> String {
    if s.is_empty() {
        return "~".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('~');
            out.push_str(&format!("{b:02X}"));
        }
    }
    out
}

/// Decodes a token made by [`encode_token`]; `None` when it is not one.
pub fn decode_token(token: &str) -> Option<String> {
    if token == "~" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'~' {
            let hex = token.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if keep(v) || !hex.bytes().all(|h| h.is_ascii_digit() || h.is_ascii_uppercase()) {
                return None; // not canonical: one string, one token
            }
            out.push(v);
            i += 3;
        } else if keep(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a subject prefix: one or more `.`-separated tokens, each non-empty,
/// without wildcards, whitespace or non-ASCII characters.
pub fn validate_prefix(prefix: &str) -> Result<(), RelayError> {
    let bad = |reason: &str| {
        Err(RelayError::Config(format!(
            "subject prefix {prefix:?} is not usable: {reason}; use tokens like \"events\" or \"eu.orders\""
        )))
    };
    if prefix.is_empty() {
        return bad("it is empty");
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return bad("it has an empty token");
        }
        if token.bytes().any(|b| matches!(b, b'*' | b'>') || !b.is_ascii_graphic()) {
            return bad("it holds a wildcard, whitespace or a non-ASCII character");
        }
    }
    if prefix.starts_with('$') {
        return bad("subjects starting with `$` are reserved for the system");
    }
    Ok(())
}

/// The subject an event of `stream_id` is published to:
/// `<prefix>.<category>.<stream id>`, both encoded with [`encode_token`].
pub fn subject_for(prefix: &str, stream_id: &str) -> String {
    let category = eventfold::category_of(stream_id);
    format!("{prefix}.{}.{}", encode_token(category), encode_token(stream_id))
}

/// The subject filter matching every event of one category under `prefix`.
pub fn category_subject(prefix: &str, category: &str) -> String {
    format!("{prefix}.{}.*", encode_token(category))
}

/// The subject filter matching every event of one stream under `prefix`.
pub fn stream_subject(prefix: &str, stream_id: &str) -> String {
    subject_for(prefix, stream_id)
}

/// Splits a subject made by [`subject_for`] back into (category, stream id).
pub fn parse_subject(prefix: &str, subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (category, stream) = rest.split_once('.')?;
    Some((decode_token(category)?, decode_token(stream)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_stay_readable() {
        assert_eq!(subject_for("events", "order-1"), "events.order.order-1");
        assert_eq!(subject_for("eu.events", "account"), "eu.events.account.account");
    }

    #[test]
    fn forbidden_characters_are_escaped_and_round_trip() {
        let cases = [
            "user.ann smith",
            "a*b>c",
            "tab\there\nnewline",
            "kaffee-é☕",
            "~tilde~7E",
            "",
            "-leading-dash",
            "$sys",
            "x.y-z.w",
        ];
        for s in cases {
            let token = encode_token(s);
            assert!(
                !token.is_empty()
                    && token.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>' | b'$')),
                "{s:?} -> {token:?}"
            );
            assert_eq!(decode_token(&token).as_deref(), Some(s), "{s:?} -> {token:?}");
            let subject = subject_for("events", s);
            let (category, stream) = parse_subject("events", &subject).expect("parses");
            assert_eq!((category.as_str(), stream.as_str()), (eventfold::category_of(s), s));
        }
        assert_eq!(encode_token("user.ann smith"), "user~2Eann~20smith");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: String = (0u32..0x800).filter_map(char::from_u32).collect();
        assert_eq!(decode_token(&encode_token(&all)).as_deref(), Some(all.as_str()));
    }

    #[test]
    fn non_canonical_tokens_are_rejected() {
        assert_eq!(decode_token("a~2e"), None);
        assert_eq!(decode_token("a~41"), None); // `A` is never escaped
        assert_eq!(decode_token("a~2"), None);
        assert_eq!(decode_token("a.b"), None);
        assert_eq!(decode_token("~FF"), None); // not UTF-8
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(validate_prefix("events").is_ok());
        assert!(validate_prefix("eu.orders").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", "$JS", "é"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
