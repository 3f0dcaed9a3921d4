//! Shared by the integration tests that touch process-wide device state.
//!
//! `MixedPrecision::setup` registers a device's default autocast dtype and attaches loss
//! scalers to devices, both process-wide (burn-train may step on worker threads). Tests of
//! one binary run in parallel threads on the one Flex device, so each of these tests takes
//! this lock and leaves the device clean.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn_mixed::Mixed;
use burn_mixed::autocast::set_device_autocast;

pub type Train = Mixed<Autodiff<Flex>>;

static DEVICE: Mutex<()> = Mutex::new(());

/// Exclusive use of the Flex device's process-wide settings for one test.
pub struct DeviceLock {
    _guard: MutexGuard<'static, ()>,
}

impl DeviceLock {
    pub fn take() -> Self {
        let guard = DEVICE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        set_device_autocast::<Train>(&Default::default(), None);
        Self { _guard: guard }
    }
}

impl Drop for DeviceLock {
    fn drop(&mut self) {
        set_device_autocast::<Train>(&Default::default(), None);
    }
}

#[derive(Module, Debug)]
pub struct Net<B: Backend> {
    pub hidden: Linear<B>,
    pub head: Linear<B>,
}

impl<B: Backend> Net<B> {
    pub fn new(device: &B::Device, inputs: usize, outputs: usize) -> Self {
        B::seed(device, 3);
        let net = Self { hidden: LinearConfig::new(inputs, 16).init(device), head: LinearConfig::new(16, outputs).init(device) };
        // Parameters are initialised lazily, separately in each clone; materialise them
        // once so that clones (and records taken from them) share the values.
        let record = net.clone().into_record();
        net.load_record(record)
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.head.forward(Relu::new().forward(self.hidden.forward(x)))
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
