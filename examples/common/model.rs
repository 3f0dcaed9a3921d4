//! The two models the example trains, `--model transformer` (default) and `--model mlp`,
//! behind one Burn module (`Net`, an enum: its record is the chosen model's) with one
//! `TrainStep` and `InferenceStep`, so the training code is written once.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use burn_mixed::MixedPrecision;
use serde::{Deserialize, Serialize};

use super::data::{self, DataSpec};
use super::mlp::{Classifier, MlpSpec};
use super::sequence::{self, SequenceSpec};
use super::task::{Batch, Inputs, TaskSpec};
use super::transformer::{SequenceModel, TransformerSpec};

/// `--model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A 2-layer transformer encoder that learns to sort 16 tokens.
    Transformer,
    /// A 64-wide MLP that classifies Gaussian blobs.
    Mlp,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Transformer => "transformer",
            ModelKind::Mlp => "mlp",
        }
    }

    /// The model's sizes.
    pub fn spec(self) -> ModelSpec {
        match self {
            ModelKind::Transformer => ModelSpec::Transformer(TransformerSpec {
                vocab: sequence::VOCAB,
                seq_len: sequence::SEQ_LEN,
                d_model: 64,
                heads: 4,
                layers: 2,
                d_ff: 128,
            }),
            ModelKind::Mlp => ModelSpec::Mlp(MlpSpec { input_dim: data::INPUT_DIM, hidden: 64, classes: data::CLASSES }),
        }
    }

    /// The model's task, with `train_items` training items (default: the task's own).
    pub fn task(self, seed: u64, train_items: Option<usize>) -> TaskSpec {
        match self {
            ModelKind::Transformer => TaskSpec::Sorting(SequenceSpec::new(seed, train_items.unwrap_or(sequence::DEFAULT_TRAIN_ITEMS))),
            ModelKind::Mlp => TaskSpec::Blobs(DataSpec::new(seed, train_items.unwrap_or(data::DEFAULT_TRAIN_ITEMS))),
        }
    }

    /// Adam's learning rate when `--lr` is not given.
    pub fn default_lr(self) -> f64 {
        match self {
            ModelKind::Transformer => 2e-3,
            ModelKind::Mlp => 1e-2,
        }
    }
}

/// Sizes of either model; saved in `config.json`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case")]
pub enum ModelSpec {
    Transformer(TransformerSpec),
    Mlp(MlpSpec),
}

impl ModelSpec {
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelSpec::Transformer(_) => ModelKind::Transformer,
            ModelSpec::Mlp(_) => ModelKind::Mlp,
        }
    }

    /// Freshly initialised f32 parameters (from the backend's seeded RNG).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Net<B> {
        match self {
            ModelSpec::Transformer(spec) => Net::Transformer(spec.init(device)),
            ModelSpec::Mlp(spec) => Net::Mlp(spec.init(device)),
        }
    }
}

// One model per run, built once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net<B: Backend> {
    Transformer(SequenceModel<B>),
    Mlp(Classifier<B>),
}

impl<B: Backend> Net<B> {
    /// The same model, converting for `precision` (the one `MixedPrecision::setup` reports
    /// in force, which differs from the requested one after a fallback).
    pub fn with_precision(self, precision: MixedPrecision) -> Self {
        match self {
            Net::Transformer(m) => Net::Transformer(m.with_precision(precision)),
            Net::Mlp(m) => Net::Mlp(m.with_precision(precision)),
        }
    }

    /// f32 logits, one row per target, whatever the precision.
    pub fn forward_f32(&self, inputs: Inputs<B>) -> Result<Tensor<B, 2>, String> {
        match (self, inputs) {
            (Net::Transformer(m), Inputs::Tokens(tokens)) => Ok(m.forward_f32(tokens)),
            (Net::Mlp(m), Inputs::Features(features)) => Ok(m.forward_f32(features)),
            (Net::Transformer(_), Inputs::Features(_)) => Err("the transformer takes token sequences, got blob features".into()),
            (Net::Mlp(_), Inputs::Tokens(_)) => Err("the MLP takes blob features, got token sequences".into()),
        }
    }

    /// The loss and f32 logits of a batch. The loss is the plain, unscaled cross-entropy:
    /// under 16-mixed, `Mixed`'s `backward` multiplies it by the loss scale on its own.
    fn forward_classification(&self, batch: Batch<B>) -> ClassificationOutput<B> {
        // The data loaders are built from the model's own task, so the inputs always match.
        let logits = self.forward_f32(batch.inputs).expect("the model's own task");
        let loss = CrossEntropyLossConfig::new().init(&logits.device()).forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }

    /// A weight of the first layer, e.g. to read the dtype parameters are stored in.
    pub fn first_weight(&self) -> Tensor<B, 2> {
        match self {
            Net::Transformer(m) => m.first_weight(),
            Net::Mlp(m) => m.first_weight(),
        }
    }
}

impl<B: AutodiffBackend> TrainStep for Net<B> {
    type Input = Batch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: Batch<B>) -> TrainOutput<ClassificationOutput<B>> {
        let output = self.forward_classification(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl<B: Backend> InferenceStep for Net<B> {
    type Input = Batch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: Batch<B>) -> ClassificationOutput<B> {
        self.forward_classification(batch)
    }
}

/// How a model does on an evaluation set.
pub struct Evaluation {
    /// The mean cross-entropy over the targets.
    pub loss: f64,
    /// The fraction of targets (items or tokens) predicted right.
    pub accuracy: f64,
}

/// The model's loss and accuracy on `batch`, a whole evaluation set in one batch.
pub fn evaluate<B: Backend>(model: &Net<B>, batch: Batch<B>) -> Result<Evaluation, String> {
    let n = batch.targets.dims()[0];
    let logits = model.forward_f32(batch.inputs)?;
    let loss = CrossEntropyLossConfig::new().init(&logits.device()).forward(logits.clone(), batch.targets.clone());
    let correct = logits.argmax(1).flatten::<1>(0, 1).equal(batch.targets).int().sum().into_scalar();
    Ok(Evaluation { loss: loss.into_scalar().elem::<f64>(), accuracy: correct.elem::<f64>() / n as f64 })
}
