//! How the config file spells the values a flag parses from text (durations, the audit source,
//! listen addresses), so one field declaration serves the flag and the file key alike; and the
//! names of a flag group's keys, read from its own `Deserialize`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};

/// A value written as its flag would take it: `audit_source: netlink`.
pub(super) fn parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(|e| de::Error::custom(format!("{text:?}: {e}")))
}

/// A duration as the flags take it: `500ms`, `30s`, `1m`.
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<humantime::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(|_| de::Error::custom(format!("{text:?} is not a duration like 500ms, 30s or 1m")))
}

/// `listen:`: one address, a comma-separated list (as in the environment), or a YAML list; never
/// empty, since an empty list would quietly mean the default.
pub(super) fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Listen {
        One(String),
        Many(Vec<String>),
    }
    let texts: Vec<String> = match Listen::deserialize(d)? {
        Listen::One(s) => s.split(',').map(|a| a.trim().to_owned()).collect(),
        Listen::Many(v) => v.into_iter().map(|a| a.trim().to_owned()).collect(),
    };
    if texts.is_empty() {
        return Err(de::Error::custom("listen needs at least one address like 127.0.0.1:9741"));
    }
    let parse = |a: String| {
        a.parse().map_err(|_| de::Error::custom(format!("listen: {a:?} is not an address like 127.0.0.1:9741 or [::1]:9741")))
    };
    texts.into_iter().map(parse).collect()
}

/// The keys `T` reads from the config file: the field names its derived `Deserialize` asks for
/// (skipped fields, such as flattened flag groups, are not among them).
pub(super) fn keys<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // The deserializer stops at the struct's field list; its error is the expected way out.
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

/// A deserializer that only records the field list a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names read"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Group {
        kept: u32,
        #[serde(skip)]
        skipped: u32,
        #[serde(rename = "renamed")]
        other: u32,
    }

    #[test]
    fn keys_are_what_deserialize_reads() {
        assert_eq!(keys::<Group>(), ["kept", "renamed"]);
    }
}
