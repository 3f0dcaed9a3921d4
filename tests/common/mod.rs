//! Shared by the integration tests: a small network, deterministic data, exact bytes.
//!
//! Nothing here locks the device: a prepared model's precision lives in its own region, so
//! tests running in parallel threads on the one Flex device cannot see each other's. The
//! network's initial weights come from a hash of a seed, not from the backend's random
//! generator, which is process-wide (seeding and drawing from two threads interleave).

#![allow(dead_code)]

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, Param};
use burn::nn::{Linear, Relu};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn_mixed::Mixed;

pub type Train = Mixed<Autodiff<Flex>>;

#[derive(Module, Debug)]
pub struct Net<B: Backend> {
    pub hidden: Linear<B>,
    pub head: Linear<B>,
}

impl<B: Backend> Net<B> {
    /// Weights uniform in (-1/sqrt(fan_in), 1/sqrt(fan_in)), as Burn's default init, drawn
    /// from [`data`] (the same values for the same sizes, on every backend and thread).
    pub fn new(device: &B::Device, inputs: usize, outputs: usize) -> Self {
        Self { hidden: linear(device, inputs, 16, 3), head: linear(device, 16, outputs, 4) }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.head.forward(Relu::new().forward(self.hidden.forward(x)))
    }
}

fn linear<B: Backend>(device: &B::Device, inputs: usize, outputs: usize, seed: u64) -> Linear<B> {
    let bound = 1.0 / (inputs as f64).sqrt();
    Linear {
        weight: Param::from_tensor(data(inputs, outputs, seed, device) * bound),
        bias: Some(Param::from_tensor(data(1, outputs, seed + 100, device).reshape([outputs]) * bound)),
    }
}

/// Deterministic values in [-1, 1).
pub fn data<B: Backend>(rows: usize, cols: usize, seed: u64, device: &B::Device) -> Tensor<B, 2> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// The exact bytes of a record: two records are bit-identical iff these are equal.
pub fn record_bytes<R: burn::record::Record<B>, B: Backend>(record: R) -> Vec<u8> {
    BinBytesRecorder::<FullPrecisionSettings>::default().record(record, ()).expect("in-memory recording")
}

/// The exact bytes of an optimizer-adaptor record (one record per parameter), in parameter
/// order: the map itself is re-hashed on every recording, so its bytes are not comparable.
pub fn param_state_bytes<R: burn::record::Record<B>, B: Backend>(
    record: impl IntoIterator<Item = (burn::module::ParamId, R)>,
) -> Vec<(u64, Vec<u8>)> {
    let mut entries: Vec<_> = record.into_iter().map(|(id, r)| (id.val(), record_bytes(r))).collect();
    entries.sort();
    entries
}
