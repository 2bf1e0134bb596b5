//! Request bodies of the admin API: a JSON object read field by field, so that a bad or
//! unknown field is a 400 that names it (rather than a generic deserialisation error).

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::registry::Refused;

/// A request's JSON object; an empty body is an empty object (every field absent).
#[derive(Debug)]
pub(super) struct Fields(Map<String, Value>);

fn bad(message: String) -> Refused {
    Refused(StatusCode::BAD_REQUEST, message)
}

impl Fields {
    /// Parses `body`; refuses what is not a JSON object, and any field not in `known`.
    pub(super) fn parse(body: &Bytes, known: &[&str]) -> Result<Fields, Refused> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields(Map::new()));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|error| bad(format!("the body is not JSON: {error}")))?;
        let Value::Object(fields) = value else {
            return Err(bad("the body must be a JSON object".to_owned()));
        };
        if let Some(unknown) = fields.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(bad(format!(
                "{unknown}: unknown field (known: {})",
                known.join(", ")
            )));
        }
        Ok(Fields(fields))
    }

    /// A field, `None` when absent or null.
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|value| !value.is_null())
    }

    pub(super) fn string(&self, name: &str) -> Result<Option<&str>, Refused> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(bad(format!("{name}: must be a string"))),
        }
    }

    pub(super) fn required_string(&self, name: &str) -> Result<&str, Refused> {
        self.string(name)?
            .ok_or_else(|| bad(format!("{name}: required")))
    }

    pub(super) fn boolean(&self, name: &str) -> Result<Option<bool>, Refused> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(bad(format!("{name}: must be true or false"))),
        }
    }

    /// An integer from `min` to `max`.
    pub(super) fn integer(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, Refused> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => match value.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(bad(format!(
                    "{name}: must be an integer from {min} to {max}"
                ))),
            },
        }
    }

    /// A raw field, for the few with a shape of their own (user properties).
    pub(super) fn value(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// A refusal of field `name`: `{name}: {why}`.
pub(super) fn field_error(name: &str, why: impl std::fmt::Display) -> Refused {
    bad(format!("{name}: {why}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &'static str) -> Result<Fields, Refused> {
        Fields::parse(&Bytes::from_static(text.as_bytes()), &["a", "b", "n"])
    }

    #[test]
    fn fields_are_read_and_refused_by_name() {
        let fields = parse(r#"{"a": "x", "b": true, "n": 7}"#).unwrap();
        assert_eq!(fields.string("a").unwrap(), Some("x"));
        assert_eq!(fields.boolean("b").unwrap(), Some(true));
        assert_eq!(fields.integer("n", 0, 9).unwrap(), Some(7));
        assert!(fields.integer("n", 0, 2).unwrap_err().1.starts_with("n: "));
        assert!(fields.boolean("a").unwrap_err().1.starts_with("a: "));
        assert!(fields.string("b").unwrap_err().1.starts_with("b: "));
        assert_eq!(fields.string("absent").unwrap(), None);
        assert!(fields.required_string("absent").is_err());

        assert!(parse("").unwrap().string("a").unwrap().is_none());
        assert!(
            parse(r#"{"c": 1}"#)
                .unwrap_err()
                .1
                .starts_with("c: unknown field")
        );
        assert!(parse("[1]").is_err());
        assert!(parse("{").is_err());
    }
}
