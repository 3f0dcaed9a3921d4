//! The two tasks behind one item type, one batch type and one saved description, so that
//! one burn-train setup (one data loader type, one `Learner`) trains either model.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::data::{self, DataSpec, Sample};
use super::sequence::{self, Sequence, SequenceSpec};

/// One training or validation item of either task.
#[derive(Clone, Debug)]
pub enum Item {
    Point(Sample),
    Sequence(Sequence),
}

impl Item {
    /// The item and its target(s), next to `predicted` (one class per target), for the
    /// inference example's listing.
    pub fn describe(&self, predicted: &[i64]) -> String {
        let join = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(" ");
        match self {
            Item::Point(sample) => {
                let mark = if predicted[0] == i64::from(sample.label) { "" } else { "  (wrong)" };
                format!("label {}, predicted {}{mark}", sample.label, predicted[0])
            }
            Item::Sequence(seq) => {
                let wrong = seq.targets.iter().zip(predicted).filter(|(t, p)| i64::from(**t) != **p).count();
                format!(
                    "{} -> {} (sorted: {}, {wrong} wrong)",
                    join(&mut seq.tokens.iter().map(|t| t.to_string())),
                    join(&mut predicted.iter().map(|t| t.to_string())),
                    join(&mut seq.targets.iter().map(|t| t.to_string())),
                )
            }
        }
    }

    /// How many targets (rows of logits) the item contributes to a batch.
    pub fn targets(&self) -> usize {
        match self {
            Item::Point(_) => 1,
            Item::Sequence(_) => sequence::SEQ_LEN,
        }
    }
}

/// What defines the data; saved in `config.json` for the inference example.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
pub enum TaskSpec {
    /// Gaussian blobs, for the MLP.
    Blobs(DataSpec),
    /// Sorting sequences, for the transformer.
    Sorting(SequenceSpec),
}

impl TaskSpec {
    pub fn train(&self) -> Result<Vec<Item>, String> {
        match self {
            TaskSpec::Blobs(spec) => Ok(spec.train()?.into_iter().map(Item::Point).collect()),
            TaskSpec::Sorting(spec) => Ok(spec.train()?.into_iter().map(Item::Sequence).collect()),
        }
    }

    pub fn valid(&self) -> Result<Vec<Item>, String> {
        match self {
            TaskSpec::Blobs(spec) => Ok(spec.valid()?.into_iter().map(Item::Point).collect()),
            TaskSpec::Sorting(spec) => Ok(spec.valid()?.into_iter().map(Item::Sequence).collect()),
        }
    }

    pub fn train_dataset(&self) -> Result<InMemDataset<Item>, String> {
        Ok(InMemDataset::new(self.train()?))
    }

    pub fn valid_dataset(&self) -> Result<InMemDataset<Item>, String> {
        Ok(InMemDataset::new(self.valid()?))
    }
}

/// A model's input: blob features `[n, INPUT_DIM]` (in the device's default float dtype,
/// f32 here; the MLP converts them with `MixedPrecision::input`) or token ids `[n, SEQ_LEN]`.
#[derive(Clone, Debug)]
pub enum Inputs<B: Backend> {
    Features(Tensor<B, 2>),
    Tokens(Tensor<B, 2, Int>),
}

/// A batch on a device: the inputs and one class index per row of logits (per item for
/// the blobs, per token for the sequences).
#[derive(Clone, Debug)]
pub struct Batch<B: Backend> {
    pub inputs: Inputs<B>,
    pub targets: Tensor<B, 1, Int>,
}

/// Stacks items into a [`Batch`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskBatcher;

impl<B: Backend> Batcher<B, Item, Batch<B>> for TaskBatcher {
    fn batch(&self, items: Vec<Item>, device: &B::Device) -> Batch<B> {
        batch(&items, device)
    }
}

/// The batcher's work, also used directly for whole-set evaluation. A batch holds items of
/// one task (the data sets do); an item of the other task would be a bug in this example.
pub fn batch<B: Backend>(items: &[Item], device: &B::Device) -> Batch<B> {
    let n = items.len();
    let mut features = Vec::new();
    let mut tokens = Vec::new();
    let mut targets = Vec::new();
    for item in items {
        match item {
            Item::Point(sample) => {
                features.extend(sample.features);
                targets.push(i64::from(sample.label));
            }
            Item::Sequence(seq) => {
                tokens.extend(seq.tokens.map(i64::from));
                targets.extend(seq.targets.map(i64::from));
            }
        }
    }
    let inputs = match (features.is_empty(), tokens.is_empty()) {
        (false, true) => Inputs::Features(Tensor::from_data(TensorData::new(features, [n, data::INPUT_DIM]), device)),
        (true, false) => Inputs::Tokens(Tensor::from_data(TensorData::new(tokens, [n, sequence::SEQ_LEN]), device)),
        _ => unreachable!("a batch mixes blobs and sequences, or is empty"),
    };
    let rows = targets.len();
    Batch { inputs, targets: Tensor::from_data(TensorData::new(targets, [rows]), device) }
}
