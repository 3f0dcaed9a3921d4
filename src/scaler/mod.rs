//! Dynamic loss scaling for f16 training.
//!
//! - `state`: the loss-scale state machine (PyTorch's algorithm, plus a floor, hysteresis,
//!   collapse detection and a report for every step);
//! - [`GradScaler`]: the shared handle the optimizer wrapper and the metrics read, and
//!   through which `Mixed`'s `backward` multiplies the loss by the current scale (reached
//!   through the precision region the backward runs in, never through the device);
//! - `optim`: unscaling, the one-sync overflow check and the skip, around any optimizer;
//! - [`ScalerRecord`]: the scaler's state in the optimizer's Burn record (checkpoints).

mod optim;
mod record;
mod replicas;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use replicas::ReplicaGroup;

pub use optim::PrecisionOptimizer;
pub use record::ScalerRecord;
pub use state::{CollapseAction, GradScalerConfig, LossScale, ScalerCollapse, ScalerConfigError, ScalerState, StepReport};

/// A loss scaler shared by the optimizer wrapper(s), the metrics and `Mixed`'s `backward`.
///
/// Cloning shares the state. `MixedPrecision::setup` puts it in the prepared model's
/// precision region: `loss.backward()` on `Mixed<Autodiff<_>>` tensors inside that region
/// (the model's `TrainStep`, or a hand-written loop that entered it) scales the loss first,
/// so a user's training step needs no edit, and nothing outside the region is scaled.
///
/// ```
/// use burn_mixed::{GradScaler, GradScalerConfig};
///
/// let scaler = GradScaler::new(GradScalerConfig::default().with_init_scale(1024.0).with_growth_interval(2))?;
/// assert_eq!(scaler.scale(), 1024.0);
/// assert_eq!(scaler.inv_scale(), 1.0 / 1024.0); // what the optimizer unscales by
///
/// // Bad settings are refused with the field, the value and the rule.
/// let refused = GradScaler::new(GradScalerConfig::default().with_backoff_factor(2.0)).unwrap_err();
/// assert_eq!(refused.field(), "backoff_factor");
/// # Ok::<(), burn_mixed::scaler::ScalerConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct GradScaler {
    shared: Arc<Mutex<Shared>>,
    /// Data-parallel replicas stepping clones of one optimizer: one update per iteration.
    replicas: Arc<ReplicaGroup>,
}

#[derive(Debug)]
struct Shared {
    scale: LossScale,
    /// Whether a backward pass was scaled since the last update (the scale only changes at
    /// an update, so every one of them used the current scale). When none was, the
    /// gradients the optimizer gets are not scaled either.
    backward_scaled: bool,
    /// Optimizers that step each iteration before the one update (PyTorch's recipe for
    /// several optimizers sharing a scaler), and what this iteration has seen so far.
    optimizers_per_step: usize,
    reported: usize,
    found_inf: bool,
    last: Option<StepReport>,
}

/// What one optimizer learns when it reports its overflow check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Its own gradients were finite: step.
    Step,
    /// Its own gradients overflowed: skip (parameters and state untouched).
    Skip,
}

impl GradScaler {
    /// A scaler with validated settings.
    pub fn new(config: GradScalerConfig) -> Result<Self, ScalerConfigError> {
        Ok(Self::from_loss_scale(LossScale::new(config)?))
    }

    fn from_loss_scale(scale: LossScale) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Shared {
                scale,
                backward_scaled: false,
                optimizers_per_step: 1,
                reported: 0,
                found_inf: false,
                last: None,
            })),
            replicas: Arc::new(ReplicaGroup::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves consistent state (updates are atomic
        // assignments), so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `other` is a handle to this very scaler (clones share one state).
    pub fn same_as(&self, other: &GradScaler) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The scale a backward pass multiplies its loss by (`None` when disabled), recorded
    /// so that the optimizer unscales by what was actually applied.
    pub(crate) fn scale_for_backward(&self) -> Option<f32> {
        let mut shared = self.lock();
        if !shared.scale.is_enabled() {
            return None;
        }
        shared.backward_scaled = true;
        Some(shared.scale.scale())
    }

    /// The factor that unscales this iteration's gradients: 1 / the scale their backward
    /// passes used (in f64), or 1 when none was scaled (the backward ran outside the model's
    /// region), which is logged: those gradients are true values but may have underflowed.
    pub(crate) fn unscale_factor(&self) -> f64 {
        let shared = self.lock();
        match shared.backward_scaled {
            true => shared.scale.inv_scale(),
            false => {
                if shared.scale.is_enabled() {
                    log::warn!(
                        "GradScaler: the optimizer got gradients from a backward pass that was not scaled; call \
                         loss.backward() inside the prepared model's region (its TrainStep, or model.enter() in a \
                         hand-written loop) so that 16-mixed gradients do not underflow"
                    );
                }
                1.0
            }
        }
    }

    /// Declares how many optimizers step per iteration with this scaler; the scale is
    /// updated once, after the last of them, from all of their overflow checks.
    pub fn set_optimizers_per_step(&self, n: usize) {
        let mut shared = self.lock();
        shared.optimizers_per_step = n.max(1);
        shared.reported = 0;
        shared.found_inf = false;
    }

    /// Declares that `n` data-parallel replicas (one per device, as burn-train's DDP
    /// strategy runs them) each step a clone of the optimizer every iteration. Their
    /// reports then make one round: the scale is updated once, from whether *any* replica
    /// overflowed, and every replica gets that same verdict, whatever the order in which
    /// they report. A replica waits at most `timeout` (default 10 minutes) for the others,
    /// then panics with a message. Set it before training (`burn_mixed::data_parallel`
    /// does); 1 (the default) is a single optimizer. Optimizers that share the scaler
    /// (`set_optimizers_per_step`) must step in the same order on every replica.
    pub fn set_replicas(&self, n: usize, timeout: Option<Duration>) {
        self.replicas.configure(n.max(1), timeout);
    }

    /// The number of data-parallel replicas whose reports make one update.
    pub fn replicas(&self) -> usize {
        self.replicas.replicas()
    }

    /// [`report`](Self::report), once per round of replicas.
    pub(crate) fn report_replica(&self, found_inf: bool) -> Result<Verdict, ScalerCollapse> {
        self.replicas.arrive(found_inf, |any_inf| self.report(any_inf))
    }

    /// The scale the next backward pass multiplies the loss by (1 when disabled).
    pub fn scale(&self) -> f32 {
        self.lock().scale.scale()
    }

    /// 1 / scale, computed in f64.
    pub fn inv_scale(&self) -> f64 {
        self.lock().scale.inv_scale()
    }

    /// Whether the scaler scales at all (`false` for every precision but 16-mixed).
    pub fn is_enabled(&self) -> bool {
        self.lock().scale.is_enabled()
    }

    /// Optimizer steps skipped so far because gradients overflowed.
    pub fn skipped_steps(&self) -> u64 {
        self.lock().scale.skipped_steps()
    }

    /// The report of the last scale update.
    pub fn last_report(&self) -> Option<StepReport> {
        self.lock().last.clone()
    }

    /// A snapshot for checkpoints.
    pub fn state(&self) -> ScalerState {
        self.lock().scale.state()
    }

    /// Restores a snapshot (a checkpoint being resumed).
    pub fn load_state(&self, state: ScalerState) -> Result<(), ScalerConfigError> {
        let mut shared = self.lock();
        shared.scale = LossScale::from_state(state)?;
        shared.reported = 0;
        shared.found_inf = false;
        shared.backward_scaled = false;
        Ok(())
    }

    /// Records one optimizer's overflow check; after the last optimizer of the iteration,
    /// updates the scale. A collapse configured as an error comes back as `Err`.
    pub(crate) fn report(&self, found_inf: bool) -> Result<Verdict, ScalerCollapse> {
        let mut shared = self.lock();
        shared.found_inf |= found_inf;
        shared.reported += 1;
        if shared.reported >= shared.optimizers_per_step {
            let any_inf = shared.found_inf;
            shared.reported = 0;
            shared.found_inf = false;
            shared.backward_scaled = false;
            let report = shared.scale.update(any_inf);
            if let Ok(report) = &report {
                log_step(report, shared.scale.skipped_steps());
                shared.last = Some(report.clone());
            }
            report?;
        }
        Ok(if found_inf { Verdict::Skip } else { Verdict::Step })
    }
}

/// The log line for each step: skipped steps and scale changes are never silent.
fn log_step(report: &StepReport, skipped_total: u64) {
    if report.skipped {
        log::warn!(
            "GradScaler: gradients overflowed at scale {}; optimizer step skipped ({} skipped so far), scale now {}",
            report.scale_used,
            skipped_total,
            report.new_scale
        );
    } else if report.new_scale != report.scale_used {
        log::info!("GradScaler: scale grew from {} to {}", report.scale_used, report.new_scale);
    }
    if let Some(warning) = &report.collapse_warning {
        log::warn!("{warning}");
    }
}
