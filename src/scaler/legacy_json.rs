//! Reads the scaler state as earlier burn-mixed versions stored it in optimizer records:
//! one string, `serde_json`'s rendering of [`ScalerState`].
//!
//! A small JSON reader of what that rendering holds (objects, strings, numbers, booleans,
//! null) feeds [`ScalerState`]'s own derived `Deserialize`, so field names, defaults and
//! enum spellings are serde's, as when the string was written, and the library needs no
//! JSON crate for checkpoints it no longer writes.

use serde::Deserialize;
use serde::de::value::{Error, MapDeserializer};
use serde::de::{self, Deserializer, Error as _, IntoDeserializer, Visitor};

use super::ScalerState;

/// Parses `text`, the JSON of a [`ScalerState`].
pub(super) fn state_from_json(text: &str) -> Result<ScalerState, Error> {
    let mut reader = Reader { text, pos: 0 };
    let value = reader.value()?;
    reader.skip_whitespace();
    if reader.pos != text.len() {
        return Err(reader.error("trailing characters after the JSON value"));
    }
    ScalerState::deserialize(value)
}

/// A parsed JSON value. Numbers keep their text, so that an `f32` field is parsed from it
/// directly: `serde_json` wrote the shortest text that reads back as the same `f32`, and
/// going through `f64` first could round twice.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Object(Vec<(String, Json)>),
}

struct Reader<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    pos: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> Error {
        Error::custom(format_args!("invalid JSON at byte {}: {what}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Error> {
        self.skip_whitespace();
        if self.peek() != Some(byte) {
            return Err(self.error(&format!("expected '{}'", byte as char)));
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Json, Error> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => Ok(self.number()),
            Some(b't') => self.keyword("true", Json::Bool(true)),
            Some(b'f') => self.keyword("false", Json::Bool(false)),
            Some(b'n') => self.keyword("null", Json::Null),
            Some(b'[') => Err(self.error("an array, which a scaler state does not hold")),
            Some(_) => Err(self.error("expected a JSON value")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn keyword(&mut self, word: &str, value: Json) -> Result<Json, Error> {
        match self.text[self.pos..].starts_with(word) {
            true => {
                self.pos += word.len();
                Ok(value)
            }
            false => Err(self.error(&format!("expected {word}"))),
        }
    }

    /// The characters a JSON number can hold; whether they make one is up to the parse
    /// of the field's type.
    fn number(&mut self) -> Json {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
            self.pos += 1;
        }
        Json::Number(self.text[start..self.pos].to_owned())
    }

    fn string(&mut self) -> Result<String, Error> {
        self.expect(b'"')?;
        let mut out = String::new();
        let mut chars = self.text[self.pos..].char_indices();
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += offset + 1;
                    return Ok(out);
                }
                // Field names and enum values are plain words; these are the escapes
                // serde_json writes for anything else a string could hold.
                '\\' => match chars.next().map(|(_, e)| e) {
                    Some(e @ ('"' | '\\' | '/')) => out.push(e),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    _ => return Err(self.error("unsupported escape in a string")),
                },
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }

    fn object(&mut self) -> Result<Json, Error> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(entries));
        }
        loop {
            self.skip_whitespace();
            let key = self.string()?;
            self.expect(b':')?;
            entries.push((key, self.value()?));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(entries));
                }
                _ => return Err(self.error("expected ',' or '}' in an object")),
            }
        }
    }
}

impl Json {
    fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, Error> {
        text.parse().map_err(|_| Error::custom(format_args!("{text} is not {what}")))
    }

    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Json::Null => de::Unexpected::Unit,
            Json::Bool(b) => de::Unexpected::Bool(*b),
            Json::Number(n) => de::Unexpected::Other(n),
            Json::String(s) => de::Unexpected::Str(s),
            Json::Object(_) => de::Unexpected::Map,
        }
    }
}

impl<'de> IntoDeserializer<'de, Error> for Json {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Json {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Null => visitor.visit_unit(),
            Json::Bool(b) => visitor.visit_bool(b),
            Json::Number(n) => match (n.parse::<u64>(), n.parse::<i64>()) {
                (Ok(u), _) => visitor.visit_u64(u),
                (_, Ok(i)) => visitor.visit_i64(i),
                _ => visitor.visit_f64(Json::parse(&n, "a number")?),
            },
            Json::String(s) => visitor.visit_string(s),
            Json::Object(entries) => visitor.visit_map(MapDeserializer::new(entries.into_iter())),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Number(n) => visitor.visit_f32(Json::parse(&n, "an f32")?),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    /// Unit variants (`CollapseAction`) are written as their name.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Json::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => Err(de::Error::invalid_type(other.unexpected(), &format!("a variant of {name}: {variants:?}").as_str())),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::{CollapseAction, GradScalerConfig, LossScale};

    /// `serde_json` wrote these strings; the test suite checks against it, too
    /// (tests/scaler.rs), for a state after real steps.
    #[test]
    fn reads_what_serde_json_wrote() {
        let config = GradScalerConfig::default()
            .with_init_scale(1024.0)
            .with_min_scale(0.1)
            .with_collapse_threshold(1e-4)
            .with_on_collapse(CollapseAction::Warn);
        let mut scaler = LossScale::new(config).unwrap();
        for found_inf in [false, true, false] {
            scaler.update(found_inf).unwrap();
        }
        let state = scaler.state();
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(state_from_json(&json).unwrap(), state);
        let pretty = serde_json::to_string_pretty(&state).unwrap();
        assert_eq!(state_from_json(&pretty).unwrap(), state);
    }

    #[test]
    fn f32_fields_read_back_bit_for_bit() {
        let mut state = LossScale::default().state();
        for scale in [f32::MIN_POSITIVE, 1e-38, 0.1, 3.4028235e38, 65536.0 * 1.0000001] {
            state.scale = scale;
            let read = state_from_json(&serde_json::to_string(&state).unwrap()).unwrap();
            assert_eq!(read.scale.to_bits(), scale.to_bits(), "{scale:e}");
        }
    }

    #[test]
    fn malformed_json_is_an_error_that_says_where() {
        let good = serde_json::to_string(&LossScale::default().state()).unwrap();
        let cases = [
            (&good[..good.len() - 1], "invalid JSON"),
            ("{\"config\": [1]}", "array"),
            (&good.replace("\"scale\":65536.0", "\"scale\":\"big\""), "invalid type"),
            (&good.replace("\"error\"", "\"explode\""), "unknown variant"),
            (&format!("{good} x"), "trailing"),
        ];
        for (text, expected) in cases {
            let err = state_from_json(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
