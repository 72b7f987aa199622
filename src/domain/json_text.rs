//! `JsonText`: a JSON document kept as canonical text inside events.
//!
//! bincode cannot carry a `serde_json::Value` (it is self-describing), so events hold JSON as
//! text. The text is canonical: parsed and re-serialised with sorted keys and no whitespace,
//! so two equal documents always have equal text. In JSON output (API, `--json`) it appears
//! as the document itself, not as a quoted string.

use std::fmt;

use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct JsonText(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid json: {0}")]
pub struct JsonTextError(#[from] serde_json::Error);

impl JsonText {
    /// Parses `text` and keeps its canonical form.
    pub fn parse(text: &str) -> Result<JsonText, JsonTextError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        Ok(JsonText::from_value(&value))
    }

    pub fn from_value(value: &serde_json::Value) -> JsonText {
        // serde_json's map is a BTreeMap (no `preserve_order`), so keys come out sorted.
        JsonText(value.to_string())
    }

    pub fn empty_object() -> JsonText {
        JsonText("{}".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn to_value(&self) -> serde_json::Value {
        // The text was produced by serde_json from a valid value, so this cannot fail for
        // texts made by `parse`/`from_value`; a corrupt payload degrades to the raw string.
        serde_json::from_str(&self.0).unwrap_or_else(|_| serde_json::Value::String(self.0.clone()))
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(JsonText::from_value(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_documents_have_equal_text_whatever_their_key_order_and_spacing() {
        let a = JsonText::parse(r#"{"b": 1, "a": {"y": [1, 2], "x": null}}"#).unwrap();
        let b = JsonText::parse(r#"{"a":{"x":null,"y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), r#"{"a":{"x":null,"y":[1,2]},"b":1}"#);
    }

    #[test]
    fn json_output_embeds_the_document_not_a_string() {
        let text = JsonText::parse(r#"{"pod": 3}"#).unwrap();
        assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"pod":3}"#);
    }

    #[test]
    fn invalid_json_is_an_error_that_says_so() {
        let error = JsonText::parse("{pod: 3").unwrap_err();
        assert!(error.to_string().starts_with("invalid json"), "{error}");
    }
}
