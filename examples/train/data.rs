//! A deterministic synthetic classification task: Gaussian blobs in 16 dimensions.
//!
//! Everything is generated in plain Rust from a seed (no tensors, no downloads), so a run
//! can create its data before `MixedPrecision::setup` touches the device, and the
//! inference example can regenerate the validation set from the seed saved at training.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Features per item.
pub const INPUT_DIM: usize = 16;
/// Classes (blobs).
pub const CLASSES: usize = 4;
/// Validation items, fixed so the validation set depends on the seed alone.
pub const VALID_ITEMS: usize = 512;
/// Training items when `--steps` is not given.
pub const DEFAULT_TRAIN_ITEMS: usize = 4096;

/// Standard deviation of the blob centres around the origin; the noise around each centre
/// has standard deviation 1, so neighbouring blobs overlap and accuracy stays below 100%.
const CENTRE_SPREAD: f64 = 0.6;

/// Which stream of the seed an item set draws from; the centres have their own stream, so
/// the validation set does not change when the training set grows.
#[derive(Clone, Copy)]
enum Stream {
    Centres = 0,
    Train = 1,
    Valid = 2,
}

/// SplitMix64: tiny, fast and reproducible on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: Stream) -> Self {
        let mut rng = Self(seed ^ (stream as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller; the second value is dropped for simplicity).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One labelled point.
#[derive(Clone, Debug)]
pub struct Sample {
    pub features: [f32; INPUT_DIM],
    pub label: u8,
}

/// What defines the data set; saved in `config.json` for the inference example.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DataSpec {
    pub seed: u64,
    pub input_dim: usize,
    pub classes: usize,
    pub train_items: usize,
    pub valid_items: usize,
}

impl DataSpec {
    pub fn new(seed: u64, train_items: usize) -> Self {
        Self { seed, input_dim: INPUT_DIM, classes: CLASSES, train_items, valid_items: VALID_ITEMS }
    }

    fn centres(&self) -> Vec<[f64; INPUT_DIM]> {
        let mut rng = Rng::new(self.seed, Stream::Centres);
        (0..CLASSES)
            .map(|_| std::array::from_fn(|_| CENTRE_SPREAD * rng.normal()))
            .collect()
    }

    fn samples(&self, stream: Stream, n: usize) -> Vec<Sample> {
        assert_eq!((self.input_dim, self.classes), (INPUT_DIM, CLASSES), "data spec from another version");
        let centres = self.centres();
        let mut rng = Rng::new(self.seed, stream);
        (0..n)
            .map(|i| {
                // Balanced classes, interleaved; the data loader shuffles anyway.
                let label = i % CLASSES;
                let centre = &centres[label];
                let features = std::array::from_fn(|d| (centre[d] + rng.normal()) as f32);
                Sample { features, label: label as u8 }
            })
            .collect()
    }

    pub fn train(&self) -> Vec<Sample> {
        self.samples(Stream::Train, self.train_items)
    }

    pub fn valid(&self) -> Vec<Sample> {
        self.samples(Stream::Valid, self.valid_items)
    }

    pub fn train_dataset(&self) -> InMemDataset<Sample> {
        InMemDataset::new(self.train())
    }

    pub fn valid_dataset(&self) -> InMemDataset<Sample> {
        InMemDataset::new(self.valid())
    }
}

/// A batch on a device: features `[n, INPUT_DIM]` (in the device's default float dtype,
/// f32 here; the model converts them with `MixedPrecision::input`) and class indices `[n]`.
#[derive(Clone, Debug)]
pub struct Batch<B: Backend> {
    pub features: Tensor<B, 2>,
    pub targets: Tensor<B, 1, Int>,
}

/// Stacks samples into a [`Batch`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BlobBatcher;

impl<B: Backend> Batcher<B, Sample, Batch<B>> for BlobBatcher {
    fn batch(&self, items: Vec<Sample>, device: &B::Device) -> Batch<B> {
        batch(&items, device)
    }
}

/// The batcher's work, also used directly for whole-set evaluation.
pub fn batch<B: Backend>(items: &[Sample], device: &B::Device) -> Batch<B> {
    let n = items.len();
    let features: Vec<f32> = items.iter().flat_map(|s| s.features).collect();
    let labels: Vec<i64> = items.iter().map(|s| i64::from(s.label)).collect();
    Batch {
        features: Tensor::from_data(TensorData::new(features, [n, INPUT_DIM]), device),
        targets: Tensor::from_data(TensorData::new(labels, [n]), device),
    }
}
