//! What a stored JSON text must be so that every reader of the store can
//! parse it.
//!
//! Payloads are stored as the text the appender gave, and read back by code
//! that parses them into `serde_json::Value` or a caller's type (the
//! JSON-merge state, `eventfold event`, aggregates, projections), and by
//! clients that parse whole protocol replies or export lines with the
//! payload inside. serde_json reads more than it can represent: a text with
//! a number beyond the range of a 64-bit float (`1e400`, an integer of 400
//! digits), arrays and objects nested deeper than its recursion limit, or an
//! escape of half a surrogate pair is well-formed enough to be skipped over,
//! but no reader can parse it into a value. Stored, such an event would fail
//! those readers forever, so the append refuses it.
//!
//! The rule is what `serde_json::from_slice::<Value>` accepts (the check
//! runs serde_json's own parser over the text, with its own number
//! conversion, without building the value), with nesting limited to
//! [`MAX_JSON_DEPTH`] levels.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deepest nesting of arrays and objects a stored JSON text (payload or
/// metadata) may have: 100 levels (`[[1]]` is 2).
///
/// serde_json parses at most 127 levels into a value. A payload is read
/// inside other JSON too: a protocol reply puts it 4 levels down
/// (`{"body":{"events":[{"event_data":…}]}}`), an export line 1 level, and
/// a client may wrap it again; 100 leaves room for those.
pub const MAX_JSON_DEPTH: usize = 100;

/// The message of the error [`Readable`] raises for too deep a text.
const TOO_DEEP: &str = "nesting limit exceeded";

/// Checks that `text` is one JSON value every reader can parse (see the
/// module docs). The error says what is wrong and where, for a person.
pub(crate) fn check_readable(text: &[u8]) -> Result<(), String> {
    readable(text).map_err(|e| explain(&e))
}

/// [`check_readable`] with serde_json's error, to word it with
/// [`explain_at`].
pub(crate) fn readable(text: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    Readable { depth: 0 }.deserialize(&mut de)?;
    de.end()
}

/// Checks only the nesting depth, for text that serde_json's serializer
/// wrote: such text is well-formed, its numbers are finite and its strings
/// valid, so depth is the one thing a reader can still trip over.
pub(crate) fn check_depth(text: &[u8]) -> Result<(), String> {
    // Too few brackets to nest that deep: most payloads stop here.
    if openers(text) <= MAX_JSON_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                i = string_end(text, i.saturating_add(1));
                continue;
            }
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                if depth > MAX_JSON_DEPTH {
                    return Err(too_deep(format_args!("at byte {i}")));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i = i.saturating_add(1);
    }
    Ok(())
}

/// How many `[` and `{` bytes `text` has, strings included (an upper bound
/// of its depth), counted in a loop the compiler vectorizes.
fn openers(text: &[u8]) -> usize {
    text.chunks(64)
        .map(|chunk| {
            // `[` is 0x5b and `{` 0x7b: with bit 5 set, both and only they are `{`.
            let n: u8 = chunk.iter().map(|&b| u8::from(b | 0x20 == b'{')).sum();
            usize::from(n)
        })
        .sum()
}

/// The index just past the closing quote of the string whose contents start
/// at `from` (or the text's length when it is not closed). Long strings are
/// skipped eight bytes at a time until a quote or a backslash shows up.
fn string_end(text: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has = |w: u64, c: u8| {
        // `c` in each of the eight bytes.
        let x = w ^ u64::from_le_bytes([c; 8]);
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    // `i` stays within a byte or two of the text's length (at most
    // `isize::MAX`), so the additions below never saturate.
    let mut i = from;
    loop {
        for chunk in text.get(i..).unwrap_or_default().chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            if has(w, b'"') || has(w, b'\\') {
                break;
            }
            i = i.saturating_add(8);
        }
        match text.get(i) {
            None => return text.len(),
            Some(b'"') => return i.saturating_add(1),
            Some(b'\\') => i = i.saturating_add(2),
            Some(_) => i = i.saturating_add(1),
        }
    }
}

fn too_deep(at: fmt::Arguments<'_>) -> String {
    format!(
        "arrays and objects are nested more than {MAX_JSON_DEPTH} levels deep {at}, more than a store keeps so that every reader can parse it: flatten the structure"
    )
}

/// serde_json's message, with its position as "at line L column C" (the
/// position in the text checked), reworded for the two problems only this
/// check finds.
fn explain(e: &serde_json::Error) -> String {
    explain_at(e, format_args!("at line {} column {}", e.line(), e.column()))
}

/// [`explain`] with the position said another way (`at` is e.g. "at column
/// 12 of the field").
pub(crate) fn explain_at(e: &serde_json::Error, at: fmt::Arguments<'_>) -> String {
    let text = e.to_string();
    if e.line() == 0 {
        // Not the parser's: no position to say.
        return text;
    }
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = text.strip_suffix(&position).unwrap_or(&text);
    match message {
        TOO_DEEP | "recursion limit exceeded" => too_deep(at),
        "number out of range" => format!(
            "number out of range {at}: numbers must fit a 64-bit float (at most about ±1.8e308); send larger numbers as strings"
        ),
        other => format!("{other} {at}"),
    }
}

/// A JSON value parsed the way `serde_json::Value` is (numbers converted,
/// strings unescaped), then thrown away; `depth` is the number of arrays and
/// objects around it.
struct Readable {
    depth: usize,
}

impl Readable {
    /// The seed for a value inside this one's array or object, or the error
    /// when that array or object is one level too deep.
    fn inner<E: serde::de::Error>(&self) -> Result<Readable, E> {
        let depth = self.depth.saturating_add(1);
        if depth > MAX_JSON_DEPTH { Err(E::custom(TOO_DEEP)) } else { Ok(Readable { depth }) }
    }
}

impl<'de> DeserializeSeed<'de> for Readable {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Readable {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while seq.next_element_seed(Readable { depth: inner.depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while map.next_key_seed(Readable { depth: inner.depth })?.is_some() {
            map.next_value_seed(Readable { depth: inner.depth })?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    /// Up to the depth limit, the check accepts exactly what parses into a
    /// `serde_json::Value`.
    #[test]
    fn agrees_with_serde_json_value() {
        let deep_object =
            format!("{}1{}", r#"{"a":"#.repeat(MAX_JSON_DEPTH + 1), "}".repeat(MAX_JSON_DEPTH + 1));
        let cases = [
            r#"{"a":1,"b":[true,null,"x"],"c":{"d":-1.5e-3}}"#.to_string(),
            "123456789012345678901234567890".to_string(),
            "1.7976931348623157e308".to_string(),
            "-1e-400".to_string(),
            r#""\ud83d\ude00""#.to_string(),
            r#"{"a":1,"a":2}"#.to_string(),
            nested(MAX_JSON_DEPTH),
            // Not readable:
            "1e400".to_string(),
            "-1.7976931348623159e308".to_string(),
            "9".repeat(400),
            r#"{"x":1e999999}"#.to_string(),
            nested(MAX_JSON_DEPTH + 1),
            nested(500_000),
            deep_object,
            r#""\ud800""#.to_string(),
            r#"{"a":1"#.to_string(),
            "1 2".to_string(),
            String::new(),
        ];
        for text in cases {
            let want = serde_json::from_str::<Value>(&text).is_ok()
                && text.matches(['[', '{']).count() <= MAX_JSON_DEPTH;
            assert_eq!(check_readable(text.as_bytes()).is_ok(), want, "{}", &text[..text.len().min(60)]);
        }
    }

    #[test]
    fn errors_name_the_problem_and_where() {
        let e = check_readable(br#"{"x":1e400}"#).unwrap_err();
        assert!(
            e.starts_with("number out of range at line 1 column 10: numbers must fit a 64-bit float"),
            "{e}"
        );
        let e = check_readable(nested(200).as_bytes()).unwrap_err();
        assert!(
            e.starts_with("arrays and objects are nested more than 100 levels deep at line 1 column 101"),
            "{e}"
        );
        let e =
            check_readable(format!("{}1{}", r#"{"a":"#.repeat(101), "}".repeat(101)).as_bytes()).unwrap_err();
        assert!(
            e.starts_with("arrays and objects are nested more than 100 levels deep at line 1 column 501"),
            "{e}"
        );
        let e = check_readable(b"{").unwrap_err();
        assert!(e.starts_with("EOF while parsing"), "{e}");
    }

    /// The depth scan of serializer output counts what serde_json counts,
    /// and ignores brackets inside strings.
    #[test]
    fn depth_scan_matches_the_parser() {
        assert!(check_depth(nested(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert!(check_depth(nested(MAX_JSON_DEPTH + 1).as_bytes()).is_err());
        let brackets_in_strings = serde_json::to_string(&["[[[[\"\\[{".repeat(100)]).unwrap();
        assert!(check_depth(brackets_in_strings.as_bytes()).is_ok());
        let mut v = Value::from(1);
        for _ in 0..MAX_JSON_DEPTH {
            v = Value::Array(vec![v]);
        }
        assert!(check_depth(serde_json::to_string(&v).unwrap().as_bytes()).is_ok());
        let v = Value::Array(vec![v]);
        let text = serde_json::to_string(&v).unwrap();
        assert!(check_depth(text.as_bytes()).is_err());
        assert!(check_readable(text.as_bytes()).is_err());
    }
}
