//! The three models the step benches run, written as a Burn user writes them (burn-nn
//! layers, the backend's fused `attention`), generic over the backend and built directly in
//! a precision's parameter dtype. Each holds its input batch, so a step is forward + loss +
//! backward and nothing else.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::nn::{Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, FloatDType, Tensor};
use burn_mixed::convert::convert_module;

/// A model with its input batch: the forward pass to a scalar f32 loss.
pub trait Workload<B: AutodiffBackend> {
    fn loss(&self) -> Tensor<B, 1>;
}

/// Mean square of the output, reduced in f32 whatever the model computes in (as
/// `MixedPrecision::output` hands a loss f32 logits).
fn mean_square<B: AutodiffBackend, const D: usize>(y: Tensor<B, D>) -> Tensor<B, 1> {
    y.cast(FloatDType::F32).powi_scalar(2).mean()
}

fn input<B: AutodiffBackend, const D: usize>(shape: [usize; D], dtype: FloatDType, device: &B::Device) -> Tensor<B, D> {
    Tensor::<B, D>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype)
}

/// Deep, narrow and wide-batched: saved activations dominate a step's memory, as in the
/// activation-heavy networks mixed precision is for.
pub struct Mlp<B: AutodiffBackend> {
    layers: Vec<Linear<B>>,
    head: Linear<B>,
    x: Tensor<B, 2>,
}

impl<B: AutodiffBackend> Mlp<B> {
    pub fn new(depth: usize, width: usize, batch: usize, dtype: FloatDType, device: &B::Device) -> Self {
        let layers = (0..depth).map(|_| convert_module(LinearConfig::new(width, width).init(device), dtype)).collect();
        let head = convert_module(LinearConfig::new(width, 16).init(device), dtype);
        Self { layers, head, x: input([batch, width], dtype, device) }
    }
}

impl<B: AutodiffBackend> Workload<B> for Mlp<B> {
    fn loss(&self) -> Tensor<B, 1> {
        let h = self.layers.iter().fold(self.x.clone(), |h, layer| Relu::new().forward(layer.forward(h)));
        mean_square(self.head.forward(h))
    }
}

/// Three 3x3 convolutions (3 -> c -> c, pool, c -> 2c) and a linear head over the pooled
/// map: a small image classifier.
pub struct Cnn<B: AutodiffBackend> {
    convs: Vec<Conv2d<B>>,
    pool: AvgPool2d,
    head: Linear<B>,
    x: Tensor<B, 4>,
}

impl<B: AutodiffBackend> Cnn<B> {
    pub fn new(channels: usize, side: usize, batch: usize, dtype: FloatDType, device: &B::Device) -> Self {
        let conv = |i, o| {
            let c = Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Same).init(device);
            convert_module(c, dtype)
        };
        let convs = vec![conv(3, channels), conv(channels, channels), conv(channels, 2 * channels)];
        let head = convert_module(LinearConfig::new(2 * channels * (side / 2).pow(2), 10).init(device), dtype);
        let pool = AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        Self { convs, pool, head, x: input([batch, 3, side, side], dtype, device) }
    }
}

impl<B: AutodiffBackend> Workload<B> for Cnn<B> {
    fn loss(&self) -> Tensor<B, 1> {
        let h = Relu::new().forward(self.convs[0].forward(self.x.clone()));
        let h = self.pool.forward(Relu::new().forward(self.convs[1].forward(h)));
        let h = Relu::new().forward(self.convs[2].forward(h));
        let [batch, ..] = h.dims();
        mean_square(self.head.forward(h.reshape([batch as i32, -1])))
    }
}

/// One pre-norm transformer block: layer norm, fused q/k/v projection, the backend's
/// attention, output projection, residual; layer norm, a 4x gelu MLP, residual.
pub struct TransformerBlock<B: AutodiffBackend> {
    norm1: LayerNorm<B>,
    qkv: Linear<B>,
    out: Linear<B>,
    norm2: LayerNorm<B>,
    up: Linear<B>,
    down: Linear<B>,
    heads: usize,
    x: Tensor<B, 3>,
}

impl<B: AutodiffBackend> TransformerBlock<B> {
    pub fn new(width: usize, heads: usize, batch: usize, seq: usize, dtype: FloatDType, device: &B::Device) -> Self {
        let linear = |i, o| convert_module(LinearConfig::new(i, o).init(device), dtype);
        let norm = || convert_module(LayerNormConfig::new(width).init(device), dtype);
        Self {
            norm1: norm(),
            qkv: linear(width, 3 * width),
            out: linear(width, width),
            norm2: norm(),
            up: linear(width, 4 * width),
            down: linear(4 * width, width),
            heads,
            x: input([batch, seq, width], dtype, device),
        }
    }
}

impl<B: AutodiffBackend> Workload<B> for TransformerBlock<B> {
    fn loss(&self) -> Tensor<B, 1> {
        let [batch, seq, width] = self.x.dims();
        let head_dim = width / self.heads;
        let qkv = self.qkv.forward(self.norm1.forward(self.x.clone()));
        let split = |i: usize| qkv.clone().narrow(2, i * width, width).reshape([batch, seq, self.heads, head_dim]).swap_dims(1, 2);
        let context = attention(split(0), split(1), split(2), None, None, AttentionModuleOptions::default());
        let x = self.x.clone() + self.out.forward(context.swap_dims(1, 2).reshape([batch, seq, width]));
        let mlp = self.down.forward(Gelu::new().forward(self.up.forward(self.norm2.forward(x.clone()))));
        mean_square(x + mlp)
    }
}
