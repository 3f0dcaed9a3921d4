//! Decorator overhead: the same training step on `Autodiff<Flex>` and on
//! `Mixed<Autodiff<Flex>>` in 32-true, measured in one run so the ratio holds on a noisy
//! machine. Goal: ratio <= 1.01.

use burn::backend::{Autodiff, Flex};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use burn_mixed::Mixed;
use criterion::{Criterion, criterion_group, criterion_main};

struct Mlp<B: AutodiffBackend> {
    layers: Vec<Linear<B>>,
    x: Tensor<B, 2>,
}

impl<B: AutodiffBackend> Mlp<B> {
    fn new(device: &B::Device) -> Self {
        B::seed(device, 7);
        let widths = [64, 256, 256, 10];
        let layers = widths.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect();
        let x = Tensor::random([32, 64], burn::tensor::Distribution::Default, device);
        Self { layers, x }
    }

    /// Forward, loss and backward: one training step without the optimizer.
    fn step(&self) -> B::Gradients {
        let mut h = self.x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i + 1 < self.layers.len() {
                h = Relu::new().forward(h);
            }
        }
        h.powi_scalar(2).mean().backward()
    }
}

/// A chain of cheap element-wise ops, where per-op dispatch cost shows most.
fn elementwise<B: AutodiffBackend>(x: &Tensor<B, 2>) -> B::Gradients {
    let x = x.clone().require_grad();
    let mut h = x;
    for _ in 0..16 {
        h = (h.clone() * 1.01 + 0.5).tanh() - h * 0.25;
    }
    h.sum().backward()
}

fn bench(c: &mut Criterion) {
    let device = Default::default();
    let bare = Mlp::<Autodiff<Flex>>::new(&device);
    let mixed = Mlp::<Mixed<Autodiff<Flex>>>::new(&device);
    let mut group = c.benchmark_group("mlp_step_32_true");
    group.bench_function("autodiff<flex>", |b| b.iter(|| bare.step()));
    group.bench_function("mixed<autodiff<flex>>", |b| b.iter(|| mixed.step()));
    group.finish();

    let xb = Tensor::<Autodiff<Flex>, 2>::ones([64, 64], &device);
    let xm = Tensor::<Mixed<Autodiff<Flex>>, 2>::ones([64, 64], &device);
    let mut group = c.benchmark_group("elementwise_chain_32_true");
    group.bench_function("autodiff<flex>", |b| b.iter(|| elementwise(&xb)));
    group.bench_function("mixed<autodiff<flex>>", |b| b.iter(|| elementwise(&xm)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
