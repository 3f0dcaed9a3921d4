//! The classifier: an MLP with two hidden layers of 64 (the first one layer-normalised),
//! written as any Burn model would be. Mixed precision adds exactly two calls, both in
//! `forward_f32`: `MixedPrecision::input` on the features (so the `-true` precisions feed
//! the layers in their own dtype) and `MixedPrecision::output` on the logits (so the
//! cross-entropy and the metrics see f32).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, Relu};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use burn_mixed::{MixedPrecision, Precision};
use serde::{Deserialize, Serialize};

use crate::data::Batch;

/// Layer widths; saved in `config.json` so the inference example rebuilds the same model.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ModelSpec {
    pub input_dim: usize,
    pub hidden: usize,
    pub classes: usize,
}

impl ModelSpec {
    /// A model with freshly initialised f32 parameters, converting for 32-true until
    /// [`Classifier::with_precision`] says otherwise.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Classifier<B> {
        Classifier {
            input: LinearConfig::new(self.input_dim, self.hidden).init(device),
            norm: LayerNormConfig::new(self.hidden).init(device),
            hidden: LinearConfig::new(self.hidden, self.hidden).init(device),
            head: LinearConfig::new(self.hidden, self.classes).init(device),
            activation: Relu::new(),
            precision: MixedPrecision::new(Precision::True32),
        }
    }
}

#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    input: Linear<B>,
    norm: LayerNorm<B>,
    hidden: Linear<B>,
    head: Linear<B>,
    activation: Relu,
    /// Not a parameter: how inputs and outputs are converted for the run's precision.
    #[module(skip)]
    precision: MixedPrecision,
}

impl<B: Backend> Classifier<B> {
    /// The same model, converting inputs and outputs for `precision` (the one
    /// `MixedPrecision::setup` reports in force, which differs from the requested one after
    /// a fallback).
    pub fn with_precision(mut self, precision: MixedPrecision) -> Self {
        self.precision = precision;
        self
    }

    /// Logits, in the dtype the layers compute in.
    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = self.activation.forward(self.norm.forward(self.input.forward(features)));
        let x = self.activation.forward(self.hidden.forward(x));
        self.head.forward(x)
    }

    /// f32 logits for f32 features, whatever the precision.
    pub fn forward_f32(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        let logits = self.forward(self.precision.input(features));
        // f16 logits (16-true) would give a coarse loss; f32 also suits burn-train's metrics.
        self.precision.output(logits)
    }

    /// The loss and f32 logits of a batch. The loss is the plain, unscaled cross-entropy:
    /// under 16-mixed, `Mixed`'s `backward` multiplies it by the loss scale on its own.
    pub fn forward_classification(&self, features: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> ClassificationOutput<B> {
        let logits = self.forward_f32(features);
        let loss = CrossEntropyLossConfig::new().init(&logits.device()).forward(logits.clone(), targets.clone());
        ClassificationOutput::new(loss, logits, targets)
    }

    /// The predicted class of each row.
    pub fn predict(&self, features: Tensor<B, 2>) -> Tensor<B, 1, Int> {
        self.forward_f32(features).argmax(1).flatten(0, 1)
    }

    /// The weight of the first layer, e.g. to read the dtype parameters are stored in.
    pub fn first_weight(&self) -> Tensor<B, 2> {
        self.input.weight.val()
    }
}

impl<B: AutodiffBackend> TrainStep for Classifier<B> {
    type Input = Batch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: Batch<B>) -> TrainOutput<ClassificationOutput<B>> {
        let output = self.forward_classification(batch.features, batch.targets);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl<B: Backend> InferenceStep for Classifier<B> {
    type Input = Batch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: Batch<B>) -> ClassificationOutput<B> {
        self.forward_classification(batch.features, batch.targets)
    }
}

/// Fraction of `batch` whose predicted class is the target.
pub fn accuracy<B: Backend>(model: &Classifier<B>, batch: Batch<B>) -> f64 {
    let n = batch.targets.dims()[0];
    let correct = model.predict(batch.features).equal(batch.targets).int().sum().into_scalar();
    correct.elem::<f64>() / n as f64
}
