//! Gradients under autocast on `Mixed<Autodiff<B>>`: parameters stay f32, their gradients
//! come back in f32 through the recorded casts, and match the f32 run within the dtype's
//! tolerance.

use burn::backend::Autodiff;
use burn::tensor::activation::relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::{avg_pool2d, conv2d, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::autocast::AutocastGuard;

use super::{half_dtypes, sample};

/// Norm-relative tolerance per autocast dtype: bf16 keeps 8 mantissa bits, f16 11. The
/// f16 bound is twice PyTorch's 1e-3 because the CNN's weight gradient goes through four
/// f16 roundings (input, saved activation, head gradient, conv backward output); measured
/// on Flex: MLP below 1e-3, CNN 1.3e-3.
fn tolerance(dtype: FloatDType) -> f32 {
    match dtype {
        FloatDType::BF16 => 1.6e-2,
        _ => 2e-3,
    }
}

fn leaf<A: AutodiffBackend, const D: usize>(shape: [usize; D], seed: u64, device: &A::Device) -> Tensor<A, D> {
    // Centre the values so that relu keeps about half of the units alive.
    (Tensor::<A, D>::from_data(sample(shape, seed), device) - 0.5).require_grad()
}

/// Runs `forward` on fresh f32 parameters (inside an autocast region when `region` is
/// set), back-propagates, and returns each parameter's gradient as f32 values.
fn gradients<A: AutodiffBackend>(
    device: &A::Device,
    region: Option<FloatDType>,
    forward: impl Fn(&[Tensor<A, 4>]) -> Tensor<A, 1>,
    shapes: &[[usize; 4]],
) -> Vec<Vec<f32>> {
    let params: Vec<Tensor<A, 4>> =
        shapes.iter().enumerate().map(|(i, s)| leaf(*s, 10 + i as u64, device)).collect();
    let loss = {
        let _region = region.map(|d| AutocastGuard::enable::<A>(device, d).expect("supported"));
        forward(&params)
    };
    assert_eq!(loss.dtype(), DType::F32, "losses are reduced in f32");
    let grads = loss.backward();
    params
        .iter()
        .map(|p| {
            let g = p.grad(&grads).expect("every parameter takes part");
            assert_eq!(g.dtype(), DType::F32, "f32 parameters get f32 gradients");
            g.into_data().to_vec::<f32>().expect("f32 data")
        })
        .collect()
}

fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    let diff: f32 = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum::<f32>().sqrt();
    let norm: f32 = want.iter().map(|w| w * w).sum::<f32>().sqrt();
    diff / norm.max(f32::MIN_POSITIVE)
}

fn compare<B: Backend>(
    name: &str,
    device: &B::Device,
    forward: impl Fn(&[Tensor<Mixed<Autodiff<B>>, 4>]) -> Tensor<Mixed<Autodiff<B>>, 1>,
    shapes: &[[usize; 4]],
) {
    let reference = gradients::<Mixed<Autodiff<B>>>(device, None, &forward, shapes);
    for half in half_dtypes::<B>(device) {
        let mixed = gradients::<Mixed<Autodiff<B>>>(device, Some(half), &forward, shapes);
        for (i, (got, want)) in mixed.iter().zip(&reference).enumerate() {
            let err = relative_error(got, want);
            println!("{name} param {i} under {half:?}: relative gradient error {err:.2e}");
            assert!(err <= tolerance(half), "{name} param {i} under {half:?}: relative error {err}");
            assert!(err > 0.0, "{name} param {i}: {half:?} autocast must change the arithmetic");
        }
    }
}

/// Two linear layers with a relu, mean squared error against a fixed target.
pub fn mlp_gradients<B: Backend>(device: &B::Device) {
    let forward = |p: &[Tensor<Mixed<Autodiff<B>>, 4>]| {
        let x = Tensor::<Mixed<Autodiff<B>>, 2>::from_data(sample([16, 8], 1), device);
        let target = Tensor::<Mixed<Autodiff<B>>, 2>::from_data(sample([16, 4], 2), device);
        let w1 = p[0].clone().reshape([8, 32]);
        let b1 = p[1].clone().reshape([32]);
        let w2 = p[2].clone().reshape([32, 4]);
        let h = relu(linear(x, w1, Some(b1)));
        let y = linear(h, w2, None);
        (y - target).powi_scalar(2).mean()
    };
    compare::<B>("mlp", device, forward, &[[1, 1, 8, 32], [1, 1, 1, 32], [1, 1, 32, 4]]);
}

/// Conv, relu, average pooling and a linear head.
pub fn cnn_gradients<B: Backend>(device: &B::Device) {
    let forward = |p: &[Tensor<Mixed<Autodiff<B>>, 4>]| {
        let x = Tensor::<Mixed<Autodiff<B>>, 4>::from_data(sample([2, 3, 8, 8], 3), device);
        let conv_b = p[1].clone().reshape([4]);
        let h = relu(conv2d(x, p[0].clone(), Some(conv_b), ConvOptions::new([1, 1], [1, 1], [1, 1], 1)));
        let h = avg_pool2d(h, [2, 2], [2, 2], [0, 0], true, false);
        let head = p[2].clone().reshape([64, 3]);
        linear(h.reshape([2, 64]), head, None).powi_scalar(2).mean()
    };
    compare::<B>("cnn", device, forward, &[[4, 3, 3, 3], [1, 1, 1, 4], [1, 1, 64, 3]]);
}
