//! Request bodies parsed as JSON that cannot be read two ways (README, HTTP API).
//!
//! `serde_json::Value` keeps the last of two equal keys, so a sender's template that splices
//! a field into `{"data":{"email":"{{user}}"}}` could be retargeted by a value that closes the
//! string and adds `"email":"victim@x"`. A body with a repeated key anywhere is therefore
//! refused; keys are compared after unescaping, so `"em\u0061il"` repeats `"email"`.
//! Nesting stays bounded by serde_json's own recursion limit (128), which applies to this
//! visitor as it does to `Value`.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A UTF-8 byte-order mark, which some senders put before the JSON.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Longest key a duplicate-key error repeats back: it is the sender's text, not ours.
const MAX_KEY_IN_MESSAGE: usize = 64;

/// Parses a whole body as one JSON value, ignoring a leading byte-order mark and refusing a
/// key that appears twice in one object.
pub fn parse(body: &[u8]) -> Result<Value, serde_json::Error> {
    let json = body.strip_prefix(BOM).unwrap_or(body);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let value = StrictValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Builds a `Value` like serde_json's own `Deserialize`, except for repeated keys.
#[derive(Clone, Copy)]
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown: String = key.chars().take(MAX_KEY_IN_MESSAGE).collect();
                return Err(de::Error::custom(format_args!("duplicate key {shown:?}")));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn refused(body: &str) -> String {
        parse(body.as_bytes()).expect_err(body).to_string()
    }

    #[test]
    fn a_key_repeated_anywhere_is_refused() {
        for body in [
            r#"{"email":"a@x","email":"victim@x"}"#,
            r#"{"data":{"email":"a@x","email":"victim@x"}}"#,
            r#"{"employees":[{"email":"a@x"},{"email":"b@x","email":"c@x"}]}"#,
            r#"[[{"a":1,"b":{"c":[{"d":1,"d":2}]}}]]"#,
            r#"{"email":"a@x","em\u0061il":"victim@x"}"#,
            r#"{"a":{},"a":{}}"#,
        ] {
            assert!(refused(body).contains("duplicate key"), "{body}");
        }
    }

    #[test]
    fn the_message_names_the_key_and_where_but_not_a_long_key_whole() {
        let message = refused("{\"data\":{\"email\":1,\n\"email\":2}}");
        assert!(message.contains("duplicate key \"email\""), "{message}");
        assert!(message.contains("line 2"), "{message}");
        let long = "k".repeat(1000);
        let message = refused(&format!(r#"{{"{long}":1,"{long}":2}}"#));
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn equal_values_under_different_keys_are_fine() {
        let value = parse(br#"{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":1}]}"#).unwrap();
        assert_eq!(
            value,
            json!({"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":1}]})
        );
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored_once() {
        assert_eq!(parse(b"\xEF\xBB\xBF{\"a\":1}").unwrap(), json!({"a":1}));
        assert!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBF{\"a\":1}").is_err());
        assert!(parse(b"\xEF\xBB\xBF{\"a\":").is_err());
        assert!(parse(b"\xEF\xBB\xBF").is_err());
        assert!(parse(b"{\"a\":1}\xEF\xBB\xBF").is_err());
    }

    #[test]
    fn trailing_text_and_non_json_are_refused() {
        for body in [
            &b"{} {}"[..],
            b"{\"a\":1}x",
            b"",
            b"email=a@x",
            b"\xff\xfe{}",
        ] {
            assert!(parse(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_without_exhausting_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(refused(&deep).contains("recursion limit"));
        let deep = "{\"a\":".repeat(100_000);
        assert!(refused(&deep).contains("recursion limit"));
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(fine.as_bytes()).is_ok());
    }

    #[test]
    fn numbers_and_scalars_are_as_serde_json_reads_them() {
        let text = r#"{"i":-5,"u":18446744073709551615,"f":1.5e3,"t":true,"n":null,"s":"\u00e9"}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(text.as_bytes()).unwrap(), expected);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z\u{e9}\"\\\\]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Serialized values never repeat a key, so they read back as serde_json reads them.
        #[test]
        fn reads_what_serde_json_writes(value in json_value()) {
            let text = serde_json::to_vec(&value).unwrap();
            prop_assert_eq!(parse(&text).unwrap(), value);
        }
    }
}
