//! The learning-rate schedule every run trains with: a linear warm-up to the peak (`--lr`),
//! then a cosine decay to a hundredth of it at the last step, made of burn's own linear and
//! cosine schedulers.
//!
//! At a constant rate Adam goes through a loss spike late in a run of this example, each
//! precision at a step of its own, so that the last steps of a comparison compare spikes
//! rather than precisions. The decay lets every run settle by the end; the warm-up spares
//! the first updates, whose moment estimates rest on a batch or two.
//!
//! Burn's `ComposedLrScheduler` runs its schedulers side by side and combines their rates
//! (a product, sum or mean) from the first step, so its cosine would already be decaying
//! during the warm-up, and the warm-up would not reach the peak. [`WarmupCosine`] runs them
//! one after the other instead.

use burn::optim::LearningRate;
use burn::optim::lr_scheduler::LrScheduler;
use burn::optim::lr_scheduler::cosine::{CosineAnnealingLrScheduler, CosineAnnealingLrSchedulerConfig};
use burn::optim::lr_scheduler::linear::{LinearLrScheduler, LinearLrSchedulerConfig};
use burn::tensor::backend::Backend;

/// The rate at the last step, as a fraction of the peak.
const FINAL_FRACTION: f64 = 0.01;

/// `--warmup-fraction`'s parser: a fraction of the steps in `[0, 1)`.
pub fn parse_warmup_fraction(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(fraction) if (0.0..1.0).contains(&fraction) => Ok(fraction),
        _ => Err(format!("{value:?} is not a fraction of the steps in [0, 1), e.g. 0.05")),
    }
}

/// burn-train steps the schedule once per optimizer step, before the step: the rate of
/// step `k` (from 0) is `peak * (k + 1) / (w + 1)` during the `w` warm-up steps, then a
/// cosine from `peak` (the first step after the warm-up) to `peak * FINAL_FRACTION` (the
/// last of `steps`).
#[derive(Clone, Debug)]
pub struct WarmupCosine {
    /// `None` without a warm-up.
    warmup: Option<LinearLrScheduler>,
    decay: CosineAnnealingLrScheduler,
    warmup_steps: usize,
    steps: usize,
    peak: LearningRate,
    final_rate: LearningRate,
    /// Steps taken so far.
    taken: usize,
}

impl WarmupCosine {
    /// The schedule of a run of `steps` optimizer steps, the first `warmup_steps` of them
    /// warming up (at most all but one: the peak is always reached). An error when `peak`
    /// is not in `(0, 1]`.
    pub fn new(peak: LearningRate, steps: usize, warmup_steps: usize) -> Result<Self, String> {
        let warmup_steps = warmup_steps.min(steps.saturating_sub(1));
        let invalid = |e: String| format!("--lr {peak}: {e}");
        // Burn's linear scheduler gives its initial rate at the first step and its final one
        // `num_iters` steps later, then keeps it. One increment short of the peak at the
        // last warm-up step; with one warm-up step, initial and final are the same.
        let warmup = match warmup_steps {
            0 => None,
            w => {
                let increment = peak / (w + 1) as f64;
                Some(LinearLrSchedulerConfig::new(increment, increment * w as f64, (w - 1).max(1)).init().map_err(invalid)?)
            }
        };
        // Burn's cosine gives `initial_lr` at the first step and `min_lr` `num_iters` steps
        // later (then restarts: see `step`). A decay of one step stays at the peak.
        let decay_steps = steps - warmup_steps;
        let final_rate = if decay_steps > 1 { peak * FINAL_FRACTION } else { peak };
        let decay = CosineAnnealingLrSchedulerConfig::new(peak, decay_steps.saturating_sub(1).max(1))
            .with_min_lr(final_rate)
            .init()
            .map_err(invalid)?;
        Ok(Self { warmup, decay, warmup_steps, steps, peak, final_rate, taken: 0 })
    }

    pub fn peak(&self) -> LearningRate {
        self.peak
    }

    pub fn warmup_steps(&self) -> usize {
        self.warmup_steps
    }

    /// The rate of the last step.
    pub fn final_rate(&self) -> LearningRate {
        self.final_rate
    }

    /// The rate of every step, in order.
    pub fn rates(&self) -> Vec<LearningRate> {
        let mut schedule = self.clone();
        (0..self.steps).map(|_| schedule.step()).collect()
    }
}

impl LrScheduler for WarmupCosine {
    /// Steps taken, then the warm-up's and the decay's own records.
    type Record<B: Backend> =
        (usize, Option<<LinearLrScheduler as LrScheduler>::Record<B>>, <CosineAnnealingLrScheduler as LrScheduler>::Record<B>);

    fn step(&mut self) -> LearningRate {
        self.taken += 1;
        match &mut self.warmup {
            Some(warmup) if self.taken <= self.warmup_steps => warmup.step(),
            // Past the last step burn's cosine would restart at the peak; the rate stays
            // at the end instead (an epoch longer than planned should not jump back up).
            _ if self.taken > self.steps => self.final_rate,
            _ => self.decay.step(),
        }
    }

    fn to_record<B: Backend>(&self) -> Self::Record<B> {
        (self.taken, self.warmup.as_ref().map(|w| w.to_record::<B>()), self.decay.to_record::<B>())
    }

    fn load_record<B: Backend>(mut self, (taken, warmup, decay): Self::Record<B>) -> Self {
        self.taken = taken;
        self.warmup = self.warmup.zip(warmup).map(|(scheduler, record)| scheduler.load_record::<B>(record));
        self.decay = self.decay.load_record::<B>(decay);
        self
    }
}
