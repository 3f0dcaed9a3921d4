//! Training precision, named with Lightning Fabric's vocabulary.
//!
//! A precision name is `<bits>-<mode>`. `-true` means parameters and math both live in
//! that dtype; `-mixed` means f32 master weights with math autocast to the half dtype
//! (only `16-mixed` needs a dynamic loss scaler, because bf16 has f32's exponent range).
//! The bare aliases follow Lightning so scripts and configs port over unchanged: `"32"` and
//! `"64"` are the `-true` modes, while `"16"` and `"bf16"` are the *mixed* modes, since a
//! bare half precision almost always means AMP rather than pure half training.
//! The choice can come from a `--precision` flag, a config file (serde) or the
//! [`PRECISION_ENV`] variable; [`Precision::resolve`] refuses to silently pick one.
//! [`Precision`] implements [`FromStr`], so clap parses the flag with no feature of this
//! crate (its error lists the valid values):
//!
//! ```
//! use burn_mixed::Precision;
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Args {
//!     /// Training precision, e.g. bf16-mixed.
//!     #[arg(long)]
//!     precision: Option<Precision>,
//! }
//!
//! let args = Args::parse_from(["train", "--precision", "bf16-mixed"]);
//! // A program calls `Precision::resolve(args.precision)`, which also reads BURN_PRECISION;
//! // here the environment is given, so that the example does not depend on the shell's.
//! let precision = Precision::resolve_with(args.precision, None)?;
//! assert_eq!(precision, Precision::MixedBf16);
//! # Ok::<(), burn_mixed::PrecisionError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use burn::tensor::FloatDType;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Environment variable consulted by [`Precision::from_env`] and [`Precision::resolve`].
pub const PRECISION_ENV: &str = "BURN_PRECISION";

/// The precision a user asks to train in. Defaults to `32-true`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// `32-true`: everything in f32.
    #[default]
    True32,
    /// `64-true`: everything in f64.
    True64,
    /// `16-mixed`: f32 weights, f16 math, dynamic loss scaling.
    Mixed16,
    /// `bf16-mixed`: f32 weights, bf16 math.
    MixedBf16,
    /// `16-true`: weights and math in f16.
    True16,
    /// `bf16-true`: weights and math in bf16.
    TrueBf16,
}

/// Canonical name, string alias, integer alias, compute dtype, parameter dtype.
type Spec = (&'static str, Option<&'static str>, Option<i64>, FloatDType, FloatDType);

/// Every accepted value, comma separated (strings quoted, integers bare), in the order
/// error messages list them.
pub fn valid_values() -> String {
    let mut items = Vec::new();
    for (name, alias, int, ..) in Precision::ALL.map(Precision::spec) {
        items.push(format!("{name:?}"));
        items.extend(alias.map(|a| format!("{a:?}")));
        items.extend(int.map(|i| i.to_string()));
    }
    items.join(", ")
}

fn invalid(value: impl fmt::Display) -> PrecisionError {
    let value = value.to_string();
    PrecisionError::Invalid { value }
}

impl Precision {
    /// All six precisions, in declaration order.
    pub const ALL: [Precision; 6] = [Self::True32, Self::True64, Self::Mixed16, Self::MixedBf16, Self::True16, Self::TrueBf16];

    /// One table for names, aliases and dtypes, so parsing, the error message and the
    /// dtype queries cannot drift apart.
    const fn spec(self) -> Spec {
        use FloatDType::*;
        match self {
            Self::True32 => ("32-true", Some("32"), Some(32), F32, F32),
            Self::True64 => ("64-true", Some("64"), Some(64), F64, F64),
            Self::Mixed16 => ("16-mixed", Some("16"), Some(16), F16, F32),
            Self::MixedBf16 => ("bf16-mixed", Some("bf16"), None, BF16, F32),
            Self::True16 => ("16-true", None, None, F16, F16),
            Self::TrueBf16 => ("bf16-true", None, None, BF16, BF16),
        }
    }

    /// The canonical name, e.g. `"bf16-mixed"`.
    pub const fn as_str(self) -> &'static str {
        self.spec().0
    }

    /// Parses an integer precision: 32, 64, or 16 (which means `16-mixed`).
    pub fn from_int(value: i64) -> Result<Self, PrecisionError> {
        Self::ALL.into_iter().find(|p| p.spec().2 == Some(value)).ok_or_else(|| invalid(value))
    }

    /// `16-mixed` or `bf16-mixed`: f32 master weights with autocast math.
    pub const fn is_mixed(self) -> bool {
        matches!(self, Self::Mixed16 | Self::MixedBf16)
    }

    /// `16-true` or `bf16-true`: the weights themselves are stored in half precision.
    pub const fn is_true_half(self) -> bool {
        matches!(self, Self::True16 | Self::TrueBf16)
    }

    /// Only `16-mixed`: f16's narrow exponent range underflows small gradients, and the
    /// `-true` modes have no f32 master copy to unscale into.
    pub const fn uses_grad_scaler(self) -> bool {
        matches!(self, Self::Mixed16)
    }

    /// The dtype the forward and backward math runs in.
    pub const fn compute_dtype(self) -> FloatDType {
        self.spec().3
    }

    /// The dtype parameters (and optimizer state) are stored in.
    pub const fn param_dtype(self) -> FloatDType {
        self.spec().4
    }

    /// Reads [`PRECISION_ENV`]. Unset or blank is `Ok(None)`; anything else must parse.
    pub fn from_env() -> Result<Option<Self>, PrecisionError> {
        parse_env(env_value().as_deref())
    }

    /// Combines a `--precision` flag with [`PRECISION_ENV`]; see [`Precision::resolve_with`].
    pub fn resolve(flag: Option<Self>) -> Result<Self, PrecisionError> {
        Self::resolve_with(flag, env_value().as_deref())
    }

    /// Combines a flag with an environment value without reading the process environment.
    /// Disagreement is an error rather than an override, because a stale exported
    /// variable quietly changing a run's numerics is hard to notice.
    pub fn resolve_with(flag: Option<Self>, env: Option<&str>) -> Result<Self, PrecisionError> {
        match (flag, parse_env(env)?) {
            (Some(flag), Some(env)) if flag != env => Err(PrecisionError::Conflict { flag, env }),
            (Some(p), _) | (None, Some(p)) => Ok(p),
            (None, None) => Ok(Self::default()),
        }
    }
}

/// A non-Unicode value is kept (lossily) so it fails parsing instead of looking unset.
fn env_value() -> Option<String> {
    match std::env::var(PRECISION_ENV) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(raw)) => Some(raw.to_string_lossy().into_owned()),
    }
}

/// Shells make "set but empty" easy to produce by accident, so blank means unset.
fn parse_env(value: Option<&str>) -> Result<Option<Precision>, PrecisionError> {
    match value {
        Some(v) if !v.trim().is_empty() => v.parse().map(Some),
        _ => Ok(None),
    }
}

impl FromStr for Precision {
    type Err = PrecisionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL.into_iter().find(|p| p.spec().0 == wanted || p.spec().1 == Some(wanted)).ok_or_else(|| invalid(s))
    }
}

impl TryFrom<i64> for Precision {
    type Error = PrecisionError;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Self::from_int(value)
    }
}

impl TryFrom<u32> for Precision {
    type Error = PrecisionError;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::from_int(i64::from(value))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a precision could not be parsed or resolved.
#[derive(Clone, PartialEq, Eq)]
pub enum PrecisionError {
    /// The value is not one of [`valid_values`].
    Invalid {
        /// The rejected input, as given (untrimmed; integers in decimal).
        value: String,
    },
    /// The flag and [`PRECISION_ENV`] name different precisions.
    Conflict {
        /// What `--precision` asked for.
        flag: Precision,
        /// What the environment variable asked for.
        env: Precision,
    },
}

impl fmt::Display for PrecisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { value } => {
                let valid = valid_values();
                write!(f, "invalid precision {value:?}: expected one of {valid}")
            }
            Self::Conflict { flag, env } => write!(
                f,
                "precision conflict: --precision={flag} was given but {PRECISION_ENV}={env}; \
                 remove one or make them agree"
            ),
        }
    }
}

/// The [`Display`](fmt::Display) message: a `main` returning `Result<(), Box<dyn Error>>`
/// prints an error's `Debug`, and that should say what is wrong and what to do. The
/// variants hold the same facts as fields, for code that matches on them.
impl fmt::Debug for PrecisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for PrecisionError {}

impl Serialize for Precision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

struct PrecisionVisitor;

impl Visitor<'_> for PrecisionVisitor {
    type Value = Precision;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a precision, one of {}", valid_values())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Precision, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Precision, E> {
        Precision::from_int(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Precision, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(E::custom(invalid(v))),
        }
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Binary formats cannot sniff the type, and we always serialize a string.
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(PrecisionVisitor)
        } else {
            deserializer.deserialize_str(PrecisionVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FloatDType::*;
    use Precision::*;
    use clap::Parser;

    /// Written out independently of `spec` so a typo there is caught.
    #[rustfmt::skip]
    const GOOD: [(&str, Precision); 10] = [
        ("32-true", True32), ("32", True32), ("64-true", True64), ("64", True64),
        ("16-mixed", Mixed16), ("16", Mixed16), ("bf16-mixed", MixedBf16), ("bf16", MixedBf16),
        ("16-true", True16), ("bf16-true", TrueBf16),
    ];
    const GOOD_INTS: [(i64, Precision); 3] = [(32, True32), (64, True64), (16, Mixed16)];
    const LIST: &str = r#""32-true", "32", 32, "64-true", "64", 64, "16-mixed", "16", 16, "bf16-mixed", "bf16", "16-true", "bf16-true""#;

    #[test]
    fn accepted_values_parse() {
        for (s, want) in GOOD {
            assert_eq!(s.parse(), Ok(want), "{s}");
            assert_eq!(format!(" {s}\t\n").parse(), Ok(want), "padded {s}");
        }
        for (i, want) in GOOD_INTS {
            assert_eq!(Precision::from_int(i), Ok(want));
            assert_eq!(Precision::try_from(i), Ok(want));
            assert_eq!(Precision::try_from(i as u32), Ok(want));
        }
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(Precision::default(), True32);
    }

    #[test]
    fn listed_values_are_exact_and_all_parse() {
        assert_eq!(valid_values(), LIST);
        for item in LIST.split(", ") {
            let parsed = match item.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(s) => s.parse().ok(),
                None => item.parse().ok().and_then(|i| Precision::from_int(i).ok()),
            };
            assert!(parsed.is_some(), "listed value {item} does not parse");
        }
    }

    #[test]
    fn bad_values_name_themselves_and_list_everything() {
        let strs = ["fp16", "8", "", "32-mixed", "half", "BF16", "16 mixed"];
        let strs = strs.map(|s| (s.to_owned(), s.parse::<Precision>()));
        let ints = [8, 0, -16].map(|i| (i.to_string(), Precision::from_int(i)));
        for (bad, got) in strs.into_iter().chain(ints) {
            assert_eq!(got, Err(invalid(&bad)));
            let want = format!("invalid precision {bad:?}: expected one of {LIST}");
            assert_eq!(invalid(&bad).to_string(), want);
        }
        assert_eq!(Precision::try_from(8u32), Err(invalid("8")));
    }

    #[test]
    fn dtype_queries() {
        let table = [
            (True32, false, false, false, F32, F32),
            (True64, false, false, false, F64, F64),
            (Mixed16, true, false, true, F16, F32),
            (MixedBf16, true, false, false, BF16, F32),
            (True16, false, true, false, F16, F16),
            (TrueBf16, false, true, false, BF16, BF16),
        ];
        for (p, mixed, half, scaler, compute, param) in table {
            let got = (p.is_mixed(), p.is_true_half(), p.uses_grad_scaler());
            assert_eq!(got, (mixed, half, scaler), "{p}");
            let dtypes = (p.compute_dtype(), p.param_dtype());
            assert_eq!(dtypes, (compute, param), "{p}");
        }
        let names = [F16, BF16, F32, F64].map(crate::autocast::dtype_name);
        assert_eq!(names, ["f16", "bf16", "f32", "f64"]);
    }

    #[test]
    fn serde_json_round_trip() {
        let from = |s: &str| serde_json::from_str::<Precision>(s);
        for p in Precision::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("{:?}", p.as_str()));
            assert_eq!(from(&json).unwrap(), p);
        }
        for (s, want) in GOOD {
            assert_eq!(from(&format!("{s:?}")).unwrap(), want);
        }
        for (i, want) in GOOD_INTS {
            assert_eq!(from(&i.to_string()).unwrap(), want);
        }
        let err = from(r#""fp16""#).unwrap_err().to_string();
        assert!(err.starts_with(&invalid("fp16").to_string()), "{err}");
        for bad in ["8", "-16", "18446744073709551615", "1.5", "null", "[]"] {
            let err = from(bad).unwrap_err().to_string();
            assert!(err.contains(LIST), "{bad}: {err}");
        }
    }

    #[test]
    fn resolve_with_cases() {
        let resolve = Precision::resolve_with;
        assert_eq!(resolve(None, None), Ok(True32));
        assert_eq!(resolve(None, Some("  ")), Ok(True32));
        assert_eq!(resolve(Some(True16), None), Ok(True16));
        assert_eq!(resolve(Some(True16), Some("")), Ok(True16));
        assert_eq!(resolve(None, Some(" bf16 ")), Ok(MixedBf16));
        assert_eq!(resolve(Some(Mixed16), Some("16")), Ok(Mixed16));
        let conflict = resolve(Some(Mixed16), Some("bf16-mixed")).unwrap_err();
        let (flag, env) = (Mixed16, MixedBf16);
        assert_eq!(conflict, PrecisionError::Conflict { flag, env });
        assert_eq!(
            conflict.to_string(),
            "precision conflict: --precision=16-mixed was given but BURN_PRECISION=bf16-mixed; \
             remove one or make them agree"
        );
        assert_eq!(resolve(None, Some("fp16")), Err(invalid("fp16")));
        assert_eq!(resolve(Some(True32), Some("fp16")), Err(invalid("fp16")));
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[arg(long)]
        precision: Option<Precision>,
    }

    #[test]
    fn clap_flag() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["prog"], args].concat());
        let flag = |args: &[&str]| parse(args).map(|cli| cli.precision).ok();
        assert_eq!(flag(&["--precision=bf16-mixed"]), Some(Some(MixedBf16)));
        assert_eq!(flag(&["--precision", "16"]), Some(Some(Mixed16)));
        assert_eq!(flag(&[]), Some(None));
        let err = parse(&["--precision=fp16"]).unwrap_err().to_string();
        assert!(err.contains(r#""fp16""#) && err.contains(LIST), "{err}");
    }
}
