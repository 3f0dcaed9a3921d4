//! The MLP's task: Gaussian blobs in 16 dimensions, one class per blob.
//!
//! Everything is generated in plain Rust from a seed (no tensors, no downloads), so a run
//! can create its data before `MixedPrecision::setup` touches the device, and the
//! inference example can regenerate the validation set from the seed saved at training.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
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
pub enum Stream {
    Centres = 0,
    Train = 1,
    Valid = 2,
}

/// The generator of `stream` under `seed`. ChaCha8 rather than `StdRng`, whose algorithm
/// may change between rand versions: the inference example regenerates the validation set
/// from the seed saved at training time, and must get the same items.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
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
        let mut rng = rng(self.seed, Stream::Centres);
        (0..CLASSES).map(|_| std::array::from_fn(|_| CENTRE_SPREAD * rng.sample::<f64, _>(StandardNormal))).collect()
    }

    fn samples(&self, stream: Stream, n: usize) -> Result<Vec<Sample>, String> {
        if (self.input_dim, self.classes) != (INPUT_DIM, CLASSES) {
            return Err(format!(
                "the data spec has {} features and {} classes; this build makes {INPUT_DIM} and {CLASSES}",
                self.input_dim, self.classes
            ));
        }
        let centres = self.centres();
        let mut rng = rng(self.seed, stream);
        Ok((0..n)
            .map(|i| {
                // Balanced classes, interleaved; the data loader shuffles anyway.
                let label = i % CLASSES;
                let centre = &centres[label];
                let features = std::array::from_fn(|d| (centre[d] + rng.sample::<f64, _>(StandardNormal)) as f32);
                Sample { features, label: label as u8 }
            })
            .collect())
    }

    pub fn train(&self) -> Result<Vec<Sample>, String> {
        self.samples(Stream::Train, self.train_items)
    }

    pub fn valid(&self) -> Result<Vec<Sample>, String> {
        self.samples(Stream::Valid, self.valid_items)
    }
}
