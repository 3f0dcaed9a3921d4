//! [`ScalerRecord`]: the loss scaler's half of a [`PrecisionOptimizer`](super::PrecisionOptimizer)
//! record, a Burn [`Record`] whose item writes the scaler's state field by field, so that a
//! checkpoint holds it as structure (a map in named MessagePack and JSON, one field after
//! the other in bincode) rather than as text.
//!
//! The item is `{ format: ScalerRecord::FORMAT, state: Option<ScalerState> }`. The `format` string comes
//! first on purpose: earlier versions stored the state in the same place as one JSON string
//! (`serde_json` of [`ScalerState`]), and in a format that does not describe itself
//! (bincode) the first thing read is then a string in both layouts, whose value tells them
//! apart. Self-describing formats (MessagePack, JSON) say themselves whether a string or a
//! map is there. Either way an old checkpoint loads, with the same state.

use std::fmt;

use burn::record::{PrecisionSettings, Record};
use burn::tensor::backend::Backend;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use super::ScalerState;

const FORMAT: &str = ScalerRecord::FORMAT;
const NAME: &str = "ScalerRecord";
const FIELDS: &[&str] = &["format", "state"];

/// The loss scaler's part of a [`PrecisionOptimizer`](super::PrecisionOptimizer) record
/// (its second half, after the inner optimizer's record).
///
/// It holds plain numbers, not tensors: every recorder and precision setting stores them
/// exactly, so a resumed run continues the same scale trajectory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScalerRecord {
    /// The scaler's state; `None` when the optimizer has no scaler (every precision but
    /// 16-mixed).
    pub state: Option<ScalerState>,
}

impl ScalerRecord {
    /// The value of the item's `format` field: names the layout, so that a later one can be
    /// recognised (and an unknown one refused by name rather than misread).
    pub const FORMAT: &str = "burn-mixed/scaler-state/1";

    /// A record of `state`.
    pub fn new(state: Option<ScalerState>) -> Self {
        Self { state }
    }
}

/// The record is its own item: plain data, the same under every [`PrecisionSettings`].
impl<B: Backend> Record<B> for ScalerRecord {
    type Item<S: PrecisionSettings> = ScalerRecord;

    fn into_item<S: PrecisionSettings>(self) -> Self::Item<S> {
        self
    }

    fn from_item<S: PrecisionSettings>(item: Self::Item<S>, _device: &B::Device) -> Self {
        item
    }
}

impl Serialize for ScalerRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut item = serializer.serialize_struct(NAME, FIELDS.len())?;
        item.serialize_field(FIELDS[0], FORMAT)?;
        item.serialize_field(FIELDS[1], &self.state)?;
        item.end()
    }
}

impl<'de> Deserialize<'de> for ScalerRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // JSON's struct deserialization refuses a string, which an old checkpoint holds here;
        // MessagePack's dispatches on what it finds anyway; bincode's reads the fields in order.
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(RecordVisitor)
        } else {
            deserializer.deserialize_struct(NAME, FIELDS, RecordVisitor)
        }
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = ScalerRecord;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "burn-mixed's loss-scaler record (format {FORMAT:?}), or the JSON string earlier versions stored")
    }

    /// A self-describing checkpoint of an earlier version.
    fn visit_str<E: de::Error>(self, text: &str) -> Result<ScalerRecord, E> {
        from_first_string(text).map_err(E::custom)
    }

    /// Bincode, in either layout: the first field is a string in both.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScalerRecord, A::Error> {
        let first: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
        if first != FORMAT {
            // An earlier version's string was the whole item: there is nothing more to read.
            return from_first_string(&first).map_err(de::Error::custom);
        }
        let state = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok(ScalerRecord { state })
    }

    /// Named MessagePack or JSON, in the current layout.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ScalerRecord, A::Error> {
        #[derive(Deserialize)]
        struct Fields {
            format: String,
            state: Option<ScalerState>,
        }
        let Fields { format, state } = Fields::deserialize(de::value::MapAccessDeserializer::new(map))?;
        match format == FORMAT {
            true => Ok(ScalerRecord { state }),
            false => Err(de::Error::custom(unknown_format(&format))),
        }
    }
}

/// Reads a string found where the item starts that is not [`ScalerRecord::FORMAT`]: an earlier version's
/// JSON state (empty without a scaler), or a layout this version does not know.
fn from_first_string(text: &str) -> Result<ScalerRecord, String> {
    if text.is_empty() {
        return Ok(ScalerRecord { state: None });
    }
    if !text.trim_start().starts_with('{') {
        return Err(unknown_format(text));
    }
    match serde_json::from_str::<ScalerState>(text) {
        Ok(state) => Ok(ScalerRecord { state: Some(state) }),
        Err(err) => Err(format!(
            "cannot read the loss scaler's state in this optimizer record: it is in the layout of earlier burn-mixed \
             versions (one JSON string), which could not be parsed ({err}); the checkpoint is damaged or was not \
             written by burn-mixed. Resume from another checkpoint, or, to keep the optimizer's state and start the \
             loss scaler afresh, load the record as `(O::Record, String)` and pass `(inner, ScalerRecord::default())` \
             to `load_record`"
        )),
    }
}

fn unknown_format(found: &str) -> String {
    const SHOWN: usize = 60;
    let shown: String = found.chars().take(SHOWN).collect();
    let more = if found.chars().count() > SHOWN { "..." } else { "" };
    // No quotes: burn's recorders show this message through `Debug` twice, which would
    // escape them twice.
    format!(
        "the loss scaler's part of this optimizer record has the unknown format `{shown}{more}`; this burn-mixed \
         reads format `{FORMAT}` and the JSON string of earlier versions. A checkpoint written by a newer \
         burn-mixed needs that version to load it"
    )
}

#[cfg(test)]
mod tests {
    use super::from_first_string;
    use crate::scaler::{CollapseAction, GradScalerConfig, LossScale, ScalerState};

    fn state_from_json(text: &str) -> Result<ScalerState, String> {
        from_first_string(text).map(|record| record.state.expect("a state"))
    }

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
            (&good[..good.len() - 1], "EOF while parsing"),
            ("{\"config\": [1]}", "invalid type"),
            (&good.replace("\"scale\":65536.0", "\"scale\":\"big\""), "invalid type"),
            (&good.replace("\"error\"", "\"explode\""), "unknown variant"),
            (&format!("{good} x"), "trailing characters"),
        ];
        for (text, expected) in cases {
            let err = state_from_json(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
