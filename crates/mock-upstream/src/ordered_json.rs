//! JSON parsed with object keys in document order. The workspace's
//! `serde_json::Value` sorts keys, but Google's field-violation paths name
//! map entries by position (`properties[2].value`), so validation that
//! quotes them needs the order the client sent.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum OValue {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<OValue>),
    Obj(Vec<(String, OValue)>),
}

impl OValue {
    pub fn parse(bytes: &[u8]) -> Option<OValue> {
        serde_json::from_slice(bytes).ok()
    }

    /// The value as Google quotes it in "Invalid value" errors.
    pub fn quoted(&self) -> String {
        match self {
            OValue::Null => "null".to_owned(),
            OValue::Bool(b) => b.to_string(),
            OValue::Num(n) => n.to_string(),
            OValue::Str(s) => format!("{s:?}"),
            OValue::Arr(_) => "[".to_owned(),
            OValue::Obj(_) => "{".to_owned(),
        }
    }
}

struct OVisitor;

impl<'de> Visitor<'de> for OVisitor {
    type Value = OValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<OValue, E> {
        Ok(OValue::Null)
    }

    fn visit_none<E>(self) -> Result<OValue, E> {
        Ok(OValue::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<OValue, E> {
        Ok(OValue::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<OValue, E> {
        Ok(OValue::Num(n as f64))
    }

    fn visit_u64<E>(self, n: u64) -> Result<OValue, E> {
        Ok(OValue::Num(n as f64))
    }

    fn visit_f64<E>(self, n: f64) -> Result<OValue, E> {
        Ok(OValue::Num(n))
    }

    fn visit_str<E>(self, s: &str) -> Result<OValue, E> {
        Ok(OValue::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<OValue, E> {
        Ok(OValue::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OValue::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OValue, A::Error> {
        let mut fields = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, OValue>()? {
            fields.push((k, v));
        }
        Ok(OValue::Obj(fields))
    }
}

impl<'de> Deserialize<'de> for OValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OValue, D::Error> {
        d.deserialize_any(OVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order() {
        let v =
            OValue::parse(br#"{"z": 1, "a": [true, null, "x"], "m": {"b": 2, "a": 1}}"#).unwrap();
        let OValue::Obj(fields) = &v else {
            unreachable!()
        };
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        let OValue::Obj(inner) = &fields[2].1 else {
            unreachable!()
        };
        assert_eq!(inner[0].0, "b");
        assert_eq!(fields[1].1.quoted(), "[");
        assert_eq!(OValue::Str("x".into()).quoted(), "\"x\"");
        assert!(OValue::parse(b"{").is_none());
    }
}
