//! Decoding an externally tagged enum from an event type and a payload,
//! without copying the payload into a `{"Type": payload}` document first.
//!
//! The tag is handed to serde as the map's one key and the payload is
//! deserialized in place as its value, so an aggregate load allocates
//! nothing per event beyond what the event itself holds.

use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess};
use serde_json::de::SliceRead;

/// A one-entry map: `tag` → the JSON document in `payload`.
struct Tagged<'a, 'de> {
    tag: Option<&'a str>,
    payload: &'a mut serde_json::Deserializer<SliceRead<'de>>,
}

impl<'de> MapAccess<'de> for Tagged<'_, 'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        match self.tag.take() {
            Some(tag) => seed.deserialize(StrDeserializer::<serde_json::Error>::new(tag)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        seed.deserialize(&mut *self.payload)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.tag.is_some()))
    }
}

/// `T` from `{"<tag>": <payload>}`, read as if that document had been built.
pub(crate) fn from_tagged<T: DeserializeOwned>(tag: &str, payload: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = T::deserialize(MapAccessDeserializer::new(Tagged { tag: Some(tag), payload: &mut de }))?;
    de.end()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::from_tagged;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Ev {
        Opened,
        Deposited { amount: u64 },
        Renamed(String),
        Moved(u32, u32),
    }

    /// Guards equivalence with decoding the wrapped document, for every
    /// variant shape serde has.
    #[test]
    fn every_variant_shape_decodes_like_the_wrapped_document() {
        let cases: [(&str, &str); 4] =
            [("Opened", "null"), ("Deposited", r#"{"amount":5}"#), ("Renamed", r#""x""#), ("Moved", "[1,2]")];
        for (tag, payload) in cases {
            let wrapped: Ev = serde_json::from_str(&format!("{{\"{tag}\":{payload}}}")).unwrap();
            let direct: Ev = from_tagged(tag, payload.as_bytes()).unwrap();
            assert_eq!(direct, wrapped);
        }
    }

    #[test]
    fn unknown_tags_bad_payloads_and_trailing_bytes_are_errors() {
        assert!(from_tagged::<Ev>("Closed", b"null").is_err());
        assert!(from_tagged::<Ev>("Deposited", br#"{"amount":"five"}"#).is_err());
        assert!(from_tagged::<Ev>("Deposited", br#"{"amount":5} x"#).is_err());
        assert!(from_tagged::<Ev>("Deposited", b"").is_err());
    }
}
