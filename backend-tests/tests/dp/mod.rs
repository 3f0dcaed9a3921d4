//! Shared by the data-parallel tests: two Wgpu devices, a small network, its data.
//!
//! Two devices without a GPU: `WgpuDevice::Cpu` and `WgpuDevice::DefaultDevice` both run
//! on Mesa's lavapipe adapter but are separate Burn devices (different device ids, each
//! with its own compute server, queue and memory), so tensors move between them with
//! `to_device` as between two GPUs. What this cannot show: a real interconnect (NCCL,
//! peer-to-peer copies), two physical memories, timing.

#![allow(dead_code)]

use backend_tests::support::uniform;
use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Autodiff, Wgpu};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, Relu};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn_mixed::Mixed;

pub type Train = Mixed<Autodiff<Wgpu>>;
pub type Inner = <Train as AutodiffBackend>::InnerBackend;

pub const INPUTS: usize = 16;
pub const OUTPUTS: usize = 4;

pub fn devices() -> Vec<WgpuDevice> {
    vec![WgpuDevice::Cpu, WgpuDevice::DefaultDevice]
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub first: Linear<B>,
    pub second: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// The same weights on every device (no use of the backend's generator).
    pub fn new(device: &B::Device) -> Self {
        let linear = |inputs: usize, outputs: usize, seed: u64| {
            let bound = 1.0 / (inputs as f32).sqrt();
            Linear {
                weight: Param::from_tensor(Tensor::from_data(uniform([inputs, outputs], seed, -bound, bound), device)),
                bias: Some(Param::from_tensor(Tensor::from_data(uniform([outputs], seed + 1, -bound, bound), device))),
            }
        };
        Self { first: linear(INPUTS, 32, 10), second: linear(32, OUTPUTS, 20) }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.second.forward(Relu::new().forward(self.first.forward(x)))
    }

    /// Mean squared error over the rows of `(x, y)`.
    pub fn loss(&self, x: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 1> {
        (self.forward(x) - y).powi_scalar(2).mean()
    }
}

/// Row `i` of the data set: `INPUTS` inputs then `OUTPUTS` targets, in [-1, 1).
pub fn row(i: usize) -> Vec<f32> {
    uniform([INPUTS + OUTPUTS], 5000 + i as u64, -1.0, 1.0).to_vec().expect("f32")
}

/// Rows `range` as `(x, y)` on `device`.
pub fn rows<B: Backend>(range: std::ops::Range<usize>, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
    gather(&range.collect::<Vec<_>>(), device)
}

/// The rows numbered `items`, in that order, as `(x, y)` on `device`.
pub fn gather<B: Backend>(items: &[usize], device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let n = items.len();
    let values: Vec<f32> = items.iter().flat_map(|&i| row(i)).collect();
    let all = Tensor::<B, 2>::from_data(TensorData::new(values, [n, INPUTS + OUTPUTS]), device);
    (all.clone().slice([0..n, 0..INPUTS]), all.slice([0..n, INPUTS..INPUTS + OUTPUTS]))
}

/// Every parameter's values, in visiting order.
pub fn params<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().into_data().convert::<f32>().to_vec().expect("f32"));
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

/// The largest |a - b| over all parameters, relative to the largest |b|.
pub fn max_rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let scale = b.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().flatten().zip(b.iter().flatten()).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

pub fn bits(values: &[Vec<f32>]) -> Vec<Vec<u32>> {
    values.iter().map(|p| p.iter().map(|v| v.to_bits()).collect()).collect()
}
