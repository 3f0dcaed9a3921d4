//! burn-train glue: the prepared model's step traits, and metrics that put the loss scaler
//! in the training display.
//!
//! `PrecisionModule<M>` implements `TrainStep` and `InferenceStep` by running the user's
//! model's own steps inside the precision region, on whichever thread burn-train calls them
//! (its worker threads included): the user's `TrainStep` is unchanged, its `loss.backward()`
//! is scaled under 16-mixed, and validation runs under the training precision. The default
//! `optimize` steps the prepared optimizer (`PrecisionOptimizer`); a model's own `optimize`
//! override is not reached through the wrapper, because its optimizer type is the inner one.
//!
//! Register the metrics with `SupervisedTraining::metric_train_numeric(LossScaleMetric::new(&scaler))`.
//! Their input is `()`, so they work with any training output. Metrics are updated from a
//! step's output, before that step's optimizer update, so the values shown are the scale
//! the step's loss was multiplied by and the skips up to the previous step.

use std::sync::Arc;

use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry, SerializedEntry,
};

use burn::train::{InferenceStep, TrainOutput, TrainStep};

use crate::module::PrecisionModule;
use crate::scaler::GradScaler;

impl<M: TrainStep> TrainStep for PrecisionModule<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: M::Input) -> TrainOutput<M::Output> {
        self.run_or_panic(|model| model.step(item))
    }
}

impl<M: InferenceStep> InferenceStep for PrecisionModule<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: M::Input) -> M::Output {
        self.run_or_panic(|model| model.step(item))
    }
}

/// Which number of the scaler a [`ScalerMetric`] shows.
#[derive(Clone, Copy, Debug)]
enum Reading {
    Scale,
    SkippedSteps,
}

/// A numeric burn-train metric reading a [`GradScaler`].
#[derive(Clone)]
pub struct ScalerMetric {
    scaler: GradScaler,
    reading: Reading,
    name: MetricName,
    state: NumericMetricState,
}

impl ScalerMetric {
    /// The current loss scale.
    pub fn loss_scale(scaler: &GradScaler) -> Self {
        Self::new(scaler, Reading::Scale, "Loss Scale")
    }

    /// How many optimizer steps were skipped because gradients overflowed.
    pub fn skipped_steps(scaler: &GradScaler) -> Self {
        Self::new(scaler, Reading::SkippedSteps, "Skipped Steps")
    }

    fn new(scaler: &GradScaler, reading: Reading, name: &str) -> Self {
        Self { scaler: scaler.clone(), reading, name: Arc::new(name.to_string()), state: NumericMetricState::new() }
    }
}

impl Metric for ScalerMetric {
    type Input = ();

    fn update(&mut self, _item: &(), _metadata: &MetricMetadata) -> SerializedEntry {
        let value = match self.reading {
            Reading::Scale => self.scaler.scale() as f64,
            Reading::SkippedSteps => self.scaler.skipped_steps() as f64,
        };
        self.state.update(value, 1, FormatOptions::new(self.name()).precision(0))
    }

    fn clear(&mut self) {
        self.state.reset()
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: None, higher_is_better: matches!(self.reading, Reading::Scale) }.into()
    }
}

impl Numeric for ScalerMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}
