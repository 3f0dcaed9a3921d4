//! The dynamic loss-scale state machine of the gradient scaler (pure Rust, no tensors).
//!
//! f16 gradients flush to zero when small, so the loss is multiplied by a large `scale`
//! before backward and the gradients are divided by it before the optimizer step. The scale
//! should be as large as f16 allows: after every step the caller reports whether any gradient
//! was inf/NaN ([`LossScale::update`]). An overflowing step is skipped and the scale is
//! multiplied by `backoff_factor`; after `growth_interval` finite steps in a row it is
//! multiplied by `growth_factor` to probe for headroom again. With the default settings the
//! trajectory is exactly that of PyTorch's `GradScaler`.
//!
//! Beyond PyTorch: every step returns a [`StepReport`] (skipped or not, scale used, new scale)
//! instead of leaving skips to be inferred; an optional `min_scale` floor and `max_scale` cap;
//! `hysteresis`, which absorbs isolated overflow spikes without backing off; and collapse
//! detection, which turns the silent failure of a diverged run (every step overflows, the
//! scale halves towards zero, nothing trains) into an error or a warning saying why.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What [`LossScale::update`] does when the run looks collapsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollapseAction {
    /// Return [`ScalerCollapse`] as an error (the default: a collapsed run wastes compute).
    #[default]
    Error,
    /// Keep going, but put a message in [`StepReport::collapse_warning`] for the caller to log.
    Warn,
}

/// Settings of the gradient scaler. [`Default`] gives PyTorch's defaults plus a collapse
/// limit of 50 consecutive skipped steps. Missing fields deserialize to their defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GradScalerConfig {
    /// When false the scaler is a no-op: scale 1.0, no step is ever skipped.
    pub enabled: bool,
    /// Starting scale (default 2^16).
    pub init_scale: f32,
    /// Multiplier applied after `growth_interval` finite steps in a row (default 2).
    pub growth_factor: f32,
    /// Multiplier applied when a step overflows (default 0.5).
    pub backoff_factor: f32,
    /// Consecutive finite steps before the scale grows (default 2000).
    pub growth_interval: u32,
    /// Floor for the scale; `None` (default) lets it shrink without limit, like PyTorch.
    pub min_scale: Option<f32>,
    /// Cap for the scale; `None` (default) lets it grow while it stays finite.
    pub max_scale: Option<f32>,
    /// Consecutive overflows needed before the scale backs off (default 1: every overflow,
    /// as in PyTorch). Overflowing steps are always skipped; only the backoff waits, and once
    /// it has happened every further consecutive overflow backs off until a finite step.
    pub hysteresis: u32,
    /// Consecutive skipped steps at which the run counts as collapsed (default 50).
    pub max_consecutive_skips: Option<u32>,
    /// Scale below which the run counts as collapsed (default `None`).
    pub collapse_threshold: Option<f32>,
    /// What to do on collapse (default [`CollapseAction::Error`]).
    pub on_collapse: CollapseAction,
}

impl Default for GradScalerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            min_scale: None,
            max_scale: None,
            hysteresis: 1,
            max_consecutive_skips: Some(50),
            collapse_threshold: None,
            on_collapse: CollapseAction::Error,
        }
    }
}

/// Generates the builder-style `with_*` setters of [`GradScalerConfig`].
macro_rules! setters {
    ($($field:ident: $ty:ty => $name:ident, $example:literal;)*) => {$(
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ")", $example, ".")]
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$field = value.into();
            self
        }
    )*};
}

impl GradScalerConfig {
    setters! {
        enabled: bool => with_enabled, "";
        init_scale: f32 => with_init_scale, "";
        growth_factor: f32 => with_growth_factor, "";
        backoff_factor: f32 => with_backoff_factor, "";
        growth_interval: u32 => with_growth_interval, "";
        min_scale: impl Into<Option<f32>> => with_min_scale, "; takes `2.0` or `None`";
        max_scale: impl Into<Option<f32>> => with_max_scale, "; takes `1e6` or `None`";
        hysteresis: u32 => with_hysteresis, "";
        max_consecutive_skips: impl Into<Option<u32>> => with_max_consecutive_skips, "; takes `50` or `None`";
        collapse_threshold: impl Into<Option<f32>> => with_collapse_threshold, "; takes `1e-4` or `None`";
        on_collapse: CollapseAction => with_on_collapse, "";
    }

    /// Checks every setting; the error names the first bad one, its value and the valid range.
    /// The comparisons are written so that NaN fails them.
    pub fn validate(&self) -> Result<(), ScalerConfigError> {
        let (init, growth, backoff) = (self.init_scale, self.growth_factor, self.backoff_factor);
        let ok = init.is_finite() && init > 0.0;
        check("init_scale", init, ok, "finite and > 0")?;
        let ok = growth.is_finite() && growth > 1.0;
        check("growth_factor", growth, ok, "finite and > 1")?;
        let ok = backoff > 0.0 && backoff < 1.0;
        check("backoff_factor", backoff, ok, "in (0, 1)")?;
        let interval = self.growth_interval;
        check("growth_interval", interval, interval >= 1, ">= 1")?;
        check("hysteresis", self.hysteresis, self.hysteresis >= 1, ">= 1")?;
        let up_to_init = format!("finite and in (0, init_scale = {init}]");
        if let Some(min) = self.min_scale {
            let ok = min.is_finite() && min > 0.0 && min <= init;
            check("min_scale", min, ok, &up_to_init)?;
        }
        if let Some(max) = self.max_scale {
            let ok = max.is_finite() && max >= init;
            check("max_scale", max, ok, format!("finite and >= init_scale = {init}"))?;
        }
        if let Some(limit) = self.max_consecutive_skips {
            check("max_consecutive_skips", limit, limit >= 1, ">= 1")?;
        }
        if let Some(t) = self.collapse_threshold {
            // A threshold above init_scale would report a collapse before the first step.
            let ok = t.is_finite() && t > 0.0 && t <= init;
            check("collapse_threshold", t, ok, &up_to_init)?;
        }
        Ok(())
    }
}

fn check(field: &'static str, value: impl fmt::Display, ok: bool, requirement: impl Into<String>) -> Result<(), ScalerConfigError> {
    if ok {
        return Ok(());
    }
    Err(ScalerConfigError { field, value: value.to_string(), requirement: requirement.into(), in_state: false })
}

/// A setting (or, from [`LossScale::from_state`], a saved state field) out of its valid range.
#[derive(Clone, PartialEq, Eq)]
pub struct ScalerConfigError {
    field: &'static str,
    value: String,
    requirement: String,
    in_state: bool,
}

impl ScalerConfigError {
    /// Name of the offending field, e.g. `"backoff_factor"`.
    pub fn field(&self) -> &'static str {
        self.field
    }
    /// The rejected value, as displayed.
    pub fn value(&self) -> &str {
        &self.value
    }
    /// What the value must satisfy, e.g. `"in (0, 1)"`.
    pub fn requirement(&self) -> &str {
        &self.requirement
    }
}

impl fmt::Display for ScalerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.in_state { "state field" } else { "setting" };
        write!(f, "invalid GradScaler {what} {} = {}: must be {}", self.field, self.value, self.requirement)
    }
}

/// The [`Display`](fmt::Display) message: a `main` returning `Result<(), Box<dyn Error>>`
/// prints an error's `Debug`, and that should say what is wrong and what to do. The
/// accessors give the same facts, for code that inspects them.
impl fmt::Debug for ScalerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ScalerConfigError {}

/// The run looks collapsed: too many consecutive overflowing steps, or the scale fell below
/// `collapse_threshold`. A field is `Some` when its condition tripped.
#[derive(Clone, PartialEq)]
pub struct ScalerCollapse {
    /// 1-based number of the step whose update detected the collapse.
    pub step: u64,
    /// The scale after that update.
    pub scale: f32,
    /// Consecutive skipped steps, that step included.
    pub consecutive_skips: u32,
    /// The `max_consecutive_skips` limit, if it was reached.
    pub skip_limit: Option<u32>,
    /// The `collapse_threshold`, if the scale fell below it.
    pub threshold: Option<f32>,
}

const DIAGNOSIS: &str = "the model or learning rate diverged, or f16 overflows; \
                         try bf16-mixed, a lower learning rate, or gradient clipping";

impl fmt::Display for ScalerCollapse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.consecutive_skips;
        write!(f, "loss scale collapsed at step {}: ", self.step)?;
        match self.skip_limit {
            Some(limit) => write!(f, "{n} consecutive steps overflowed (limit {limit})")?,
            None => write!(f, "{n} consecutive overflowing steps")?,
        }
        write!(f, ", loss scale is now {}", self.scale)?;
        if let Some(t) = self.threshold {
            write!(f, " (below collapse_threshold {t})")?;
        }
        let symptom = if self.skip_limit.is_some() {
            "gradients are inf/NaN at every step"
        } else {
            "gradients overflow so often that the scale keeps shrinking"
        };
        write!(f, "; {symptom}: {DIAGNOSIS}")
    }
}

/// The [`Display`](fmt::Display) message: a `main` returning `Result<(), Box<dyn Error>>`
/// prints an error's `Debug`, and that should say what is wrong and what to do. The
/// fields hold the same facts, for code that inspects them.
impl fmt::Debug for ScalerCollapse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ScalerCollapse {}

/// What one [`LossScale::update`] decided.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The optimizer step must be skipped (its gradients were inf/NaN).
    pub skipped: bool,
    /// The scale this step's loss was multiplied by (the scale before the update).
    pub scale_used: f32,
    /// The scale for the next step.
    pub new_scale: f32,
    /// Consecutive finite steps since the last growth or overflow, after the update.
    pub growth_tracker: u32,
    /// Consecutive skipped steps, after the update.
    pub consecutive_skips: u32,
    /// Set under [`CollapseAction::Warn`] when the run enters a collapse, for the caller to log.
    pub collapse_warning: Option<String>,
}

/// Everything [`LossScale`] knows, for checkpoints: [`LossScale::from_state`] on a snapshot
/// continues the exact trajectory of the scaler it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    /// The settings the scaler runs with.
    pub config: GradScalerConfig,
    /// Current scale (kept even when disabled, so re-enabling resumes from it).
    pub scale: f32,
    /// Consecutive finite steps since the last growth or overflow.
    pub growth_tracker: u32,
    /// Consecutive overflows that will still be skipped without backing off; refilled to
    /// `hysteresis - 1` by every finite step.
    pub hysteresis_left: u32,
    /// Consecutive skipped steps.
    pub consecutive_skips: u32,
    /// Updates while enabled.
    pub steps: u64,
    /// Steps skipped because of inf/NaN gradients.
    pub skipped_steps: u64,
    /// A collapse warning was already issued for the ongoing collapse.
    #[serde(default)]
    pub collapse_warned: bool,
}

/// The dynamic loss-scale state machine; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct LossScale {
    s: ScalerState,
}

impl Default for LossScale {
    fn default() -> Self {
        Self::fresh(GradScalerConfig::default())
    }
}

impl LossScale {
    /// A scaler at `init_scale`, after validating the settings.
    pub fn new(config: GradScalerConfig) -> Result<Self, ScalerConfigError> {
        config.validate()?;
        Ok(Self::fresh(config))
    }

    fn fresh(config: GradScalerConfig) -> Self {
        Self {
            s: ScalerState {
                config,
                scale: config.init_scale,
                growth_tracker: 0,
                hysteresis_left: config.hysteresis.saturating_sub(1),
                consecutive_skips: 0,
                steps: 0,
                skipped_steps: 0,
                collapse_warned: false,
            },
        }
    }

    /// Restores a snapshot. A checkpoint is outside data, so the settings and the fields
    /// that drive the trajectory are validated rather than trusted.
    pub fn from_state(state: ScalerState) -> Result<Self, ScalerConfigError> {
        let c = &state.config;
        c.validate()?;
        let scale = state.scale;
        let above_min = c.min_scale.is_none_or(|m| scale >= m);
        let below_max = c.max_scale.is_none_or(|m| scale <= m);
        let ok = scale.is_finite() && scale > 0.0 && above_min && below_max;
        let range = "finite, > 0 and within [min_scale, max_scale]";
        check("scale", scale, ok, range)
            .and_then(|()| {
                let tracker = state.growth_tracker;
                check("growth_tracker", tracker, tracker < c.growth_interval, "< growth_interval")
            })
            .and_then(|()| {
                let left = state.hysteresis_left;
                check("hysteresis_left", left, left < c.hysteresis, "< hysteresis")
            })
            .map_err(|e| ScalerConfigError { in_state: true, ..e })?;
        Ok(Self { s: state })
    }

    /// A snapshot for checkpointing.
    pub fn state(&self) -> ScalerState {
        self.s.clone()
    }

    /// The settings.
    pub fn config(&self) -> &GradScalerConfig {
        &self.s.config
    }

    /// Whether scaling is on.
    pub fn is_enabled(&self) -> bool {
        self.s.config.enabled
    }

    /// The factor to multiply the next loss by (1.0 when disabled).
    pub fn scale(&self) -> f32 {
        if self.is_enabled() { self.s.scale } else { 1.0 }
    }

    /// `1 / scale()`, computed in f64 so that unscaling adds no rounding of its own for
    /// power-of-two scales and stays finite for tiny ones.
    pub fn inv_scale(&self) -> f64 {
        1.0 / f64::from(self.scale())
    }

    /// Updates while enabled.
    pub fn steps(&self) -> u64 {
        self.s.steps
    }

    /// Steps skipped because of inf/NaN gradients.
    pub fn skipped_steps(&self) -> u64 {
        self.s.skipped_steps
    }

    /// Consecutive finite steps since the last growth or overflow.
    pub fn growth_tracker(&self) -> u32 {
        self.s.growth_tracker
    }

    /// Consecutive skipped steps so far.
    pub fn consecutive_skips(&self) -> u32 {
        self.s.consecutive_skips
    }

    /// Feeds back whether this step's gradients held an inf/NaN and moves the scale.
    ///
    /// An overflowing step is always skipped and resets the growth tracker; the scale backs
    /// off (not below `min_scale`) unless `hysteresis` still absorbs the overflow. Once the
    /// `hysteresis - 1` tolerated overflows are spent, every further consecutive overflow
    /// backs off: hysteresis is for isolated spikes and must not slow the response to a real
    /// overflow. A finite step refills the tolerance and, every `growth_interval` of them in a
    /// row, grows the scale (capped at `max_scale`, and only while it stays finite).
    ///
    /// The state is updated before the collapse check, so after an `Err` the scaler is still
    /// usable and a later finite step clears the condition. Under [`CollapseAction::Warn`] the
    /// warning is issued once when a collapse starts, not on every step it lasts.
    pub fn update(&mut self, found_inf: bool) -> Result<StepReport, ScalerCollapse> {
        let c = self.s.config;
        let s = &mut self.s;
        if !c.enabled {
            return Ok(StepReport {
                skipped: false,
                scale_used: 1.0,
                new_scale: 1.0,
                growth_tracker: s.growth_tracker,
                consecutive_skips: s.consecutive_skips,
                collapse_warning: None,
            });
        }
        let scale_used = s.scale;
        s.steps = s.steps.saturating_add(1);
        if found_inf {
            s.skipped_steps = s.skipped_steps.saturating_add(1);
            s.consecutive_skips = s.consecutive_skips.saturating_add(1);
            s.growth_tracker = 0;
            if s.hysteresis_left > 0 {
                s.hysteresis_left -= 1;
            } else {
                let mut new = s.scale * c.backoff_factor;
                if let Some(min) = c.min_scale {
                    new = new.max(min);
                }
                // Without a floor the scale could underflow to 0: every gradient would be
                // zero (so "finite") and inv_scale infinite. Stop at the smallest f32 instead.
                if new > 0.0 {
                    s.scale = new;
                }
            }
        } else {
            s.consecutive_skips = 0;
            s.hysteresis_left = c.hysteresis.saturating_sub(1);
            s.growth_tracker = s.growth_tracker.saturating_add(1);
            if s.growth_tracker >= c.growth_interval {
                let mut new = s.scale * c.growth_factor;
                if let Some(max) = c.max_scale {
                    new = new.min(max);
                }
                if new.is_finite() {
                    s.scale = new;
                }
                s.growth_tracker = 0;
            }
        }
        let mut report = StepReport {
            skipped: found_inf,
            scale_used,
            new_scale: s.scale,
            growth_tracker: s.growth_tracker,
            consecutive_skips: s.consecutive_skips,
            collapse_warning: None,
        };
        let skip_limit = c.max_consecutive_skips.filter(|&l| s.consecutive_skips >= l);
        let threshold = c.collapse_threshold.filter(|&t| s.scale < t);
        if skip_limit.is_none() && threshold.is_none() {
            s.collapse_warned = false;
            return Ok(report);
        }
        let collapse = ScalerCollapse { step: s.steps, scale: s.scale, consecutive_skips: s.consecutive_skips, skip_limit, threshold };
        match c.on_collapse {
            CollapseAction::Error => Err(collapse),
            CollapseAction::Warn => {
                if !s.collapse_warned {
                    s.collapse_warned = true;
                    report.collapse_warning = Some(collapse.to_string());
                }
                Ok(report)
            }
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
