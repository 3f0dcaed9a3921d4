//! Runs a small MLP on `Mixed<Flex>`: once in full precision, once under bf16 autocast.
//!
//! `cargo run --release --example forward`

use burn::backend::Flex;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::autocast::autocast;

type B = Mixed<Flex>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    B::seed(&device, 42);
    let hidden: Linear<B> = LinearConfig::new(16, 32).init(&device);
    let head: Linear<B> = LinearConfig::new(32, 4).init(&device);
    let x = Tensor::<B, 2>::random([3, 16], Distribution::Default, &device);
    let forward = |x: Tensor<B, 2>| head.forward(Relu::new().forward(hidden.forward(x)));

    let full = forward(x.clone());
    let mixed = autocast::<B, _>(&device, FloatDType::BF16, || forward(x))?;

    println!("backend: {}", B::name(&device));
    println!("32-true    output ({:?}):\n{}", full.dtype(), full);
    println!("bf16 autocast output ({:?}):\n{}", mixed.dtype(), mixed);
    let diff = (full - mixed.cast(FloatDType::F32)).abs().max().into_scalar();
    println!("max |32-true - bf16| = {diff}");
    Ok(())
}
