//! The classifier for the blobs: an MLP with two hidden layers of 64 (the first one
//! layer-normalised), written as any Burn model would be. Mixed precision adds exactly two
//! calls, both in `forward_f32`: `MixedPrecision::input` on the features (so the `-true`
//! precisions feed the layers in their own dtype) and `MixedPrecision::output` on the
//! logits (so the cross-entropy and the metrics see f32).

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, Relu};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_mixed::{MixedPrecision, Precision};
use serde::{Deserialize, Serialize};

/// Layer widths; saved in `config.json` so the inference example rebuilds the same model.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct MlpSpec {
    pub input_dim: usize,
    pub hidden: usize,
    pub classes: usize,
}

impl MlpSpec {
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

    /// The weight of the first layer, e.g. to read the dtype parameters are stored in.
    pub fn first_weight(&self) -> Tensor<B, 2> {
        self.input.weight.val()
    }
}
