//! Gradients under autocast on `Mixed<Autodiff<B>>`: parameters stay f32, their gradients
//! come back in f32 through the recorded casts, and match the f32 run within the dtype's
//! tolerance.

use burn::backend::Autodiff;
use burn::tensor::activation::{gelu, relu};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::{attention, avg_pool2d, conv2d, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::autocast::AutocastGuard;

use super::{half_dtypes, layer_norm, sample};

/// Tolerance of a whole network's gradients per autocast dtype, as a fraction of the f32
/// gradient's norm: every element must satisfy `|g_i - ref_i| <= rtol * ||ref||`.
///
/// The rtols are PyTorch's half-precision `assert_close` tolerances (f16 1e-3, bf16 1.6e-2).
/// Scaling by the norm rather than by each element keeps elements near zero (where any
/// rounding is a large relative change) from dominating, as an absolute tolerance would.
/// Each op is also checked bitwise against a hand-cast control in `ops.rs`; here the
/// question is whether the training signal survives the roundings along the chain.
fn rtol(dtype: FloatDType) -> f32 {
    match dtype {
        FloatDType::BF16 => 1.6e-2,
        _ => 1e-3,
    }
}

/// Worst element error over the reference's norm, and the whole error's norm over the
/// reference's norm (printed for the record, not asserted).
fn errors(got: &[f32], want: &[f32]) -> (f32, f32) {
    let norm = want.iter().map(|w| w * w).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max);
    let l2 = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum::<f32>().sqrt();
    (worst / norm, l2 / norm)
}

fn assert_close(label: &str, got: &[f32], want: &[f32], half: FloatDType) {
    let (worst, l2) = errors(got, want);
    println!("{label} under {half:?}: max element error {worst:.2e} x norm (error norm {l2:.2e} x norm)");
    assert!(worst <= rtol(half), "{label} under {half:?}: element error {worst:.3e} x norm > rtol {}", rtol(half));
    assert!(worst > 0.0, "{label}: {half:?} autocast must change the arithmetic");
}

fn leaf<A: AutodiffBackend, const D: usize>(shape: [usize; D], seed: u64, device: &A::Device) -> Tensor<A, D> {
    // Centre the values so that relu keeps about half of the units alive.
    (Tensor::<A, D>::from_data(sample(shape, seed), device) - 0.5).require_grad()
}

/// Loss scale of a run: 16-mixed is f16 autocast plus loss scaling (without it, gradients
/// of a few 1e-5 fall into f16's subnormal range and lose their digits); a power of two,
/// so scaling and unscaling are exact in f32. bf16 shares f32's exponent range: no scaling.
fn loss_scale(region: Option<FloatDType>) -> f32 {
    match region {
        Some(FloatDType::F16) => 65536.0,
        _ => 1.0,
    }
}

/// Runs `forward` on fresh f32 parameters (inside an autocast region when `region` is
/// set), back-propagates the loss (scaled under f16, as 16-mixed does), and returns each
/// parameter's unscaled gradient as f32 values.
fn gradients<A: AutodiffBackend>(
    device: &A::Device,
    region: Option<FloatDType>,
    forward: impl Fn(&[Tensor<A, 4>]) -> Tensor<A, 1>,
    shapes: &[[usize; 4]],
) -> Vec<Vec<f32>> {
    let params: Vec<Tensor<A, 4>> = shapes.iter().enumerate().map(|(i, s)| leaf(*s, 10 + i as u64, device)).collect();
    let loss = {
        let _region = region.map(|d| AutocastGuard::enable::<A>(device, d).expect("supported"));
        forward(&params)
    };
    assert_eq!(loss.dtype(), DType::F32, "losses are reduced in f32");
    let scale = loss_scale(region);
    let grads = (loss * scale).backward();
    params
        .iter()
        .map(|p| {
            let g = p.grad(&grads).expect("every parameter takes part");
            assert_eq!(g.dtype(), DType::F32, "f32 parameters get f32 gradients");
            let g = g.into_data().to_vec::<f32>().expect("f32 data");
            g.into_iter().map(|v| v / scale).collect()
        })
        .collect()
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
            assert_close(&format!("{name} param {i}"), got, want, half);
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

/// Conv, gelu, average pooling and a linear head.
///
/// Gelu rather than relu: with relu, pre-activations within a half rounding of zero flip
/// their mask, and the gradient changes by whole terms rather than by rounding (measured
/// f16 conv-weight error 3.6e-3 x norm with relu, 1e-4 to 7e-4 with gelu, the same on Flex and
/// Wgpu). Eight input channels and a batch of eight keep Flex on its gemm path: it sends
/// convolutions with at most four input channels (the weight gradient is one, with the batch
/// as its channels) to a direct kernel that accumulates f16 products in f16 (measured 3.5e-3
/// x norm where Wgpu gives 6.4e-4 for the same 3-channel network).
pub fn cnn_gradients<B: Backend>(device: &B::Device) {
    let forward = |p: &[Tensor<Mixed<Autodiff<B>>, 4>]| {
        // Zero-mean input, as a data pipeline's normalisation gives a CNN.
        let x = Tensor::<Mixed<Autodiff<B>>, 4>::from_data(sample([8, 8, 8, 8], 3), device) - 0.5;
        let conv_b = p[1].clone().reshape([8]);
        let h = gelu(conv2d(x, p[0].clone(), Some(conv_b), ConvOptions::new([1, 1], [1, 1], [1, 1], 1)));
        let h = avg_pool2d(h, [2, 2], [2, 2], [0, 0], true, false);
        let head = p[2].clone().reshape([128, 3]);
        linear(h.reshape([8, 128]), head, None).powi_scalar(2).mean()
    };
    compare::<B>("cnn", device, forward, &[[8, 8, 3, 3], [1, 1, 1, 8], [1, 1, 128, 3]]);
}

/// The other layering, `Autodiff<Mixed<B>>`: autodiff does not see Mixed's casts, so the
/// backward pass mixes half and f32 tensors; Mixed's promotion must keep it from
/// panicking, and the gradients of f32 parameters must come back in f32.
pub fn autodiff_outside_mixed<B: Backend>(device: &B::Device) {
    type Outer<B> = Autodiff<Mixed<B>>;
    let forward = |p: &[Tensor<Outer<B>, 4>]| {
        let x = Tensor::<Outer<B>, 2>::from_data(sample([16, 8], 1), device);
        let h = relu(linear(x, p[0].clone().reshape([8, 32]), Some(p[1].clone().reshape([32]))));
        linear(h, p[2].clone().reshape([32, 4]), None).powi_scalar(2).mean()
    };
    let shapes = [[1, 1, 8, 32], [1, 1, 1, 32], [1, 1, 32, 4]];
    let reference = gradients::<Outer<B>>(device, None, &forward, &shapes);
    for half in half_dtypes::<B>(device) {
        let mixed = gradients::<Outer<B>>(device, Some(half), &forward, &shapes);
        for (i, (got, want)) in mixed.iter().zip(&reference).enumerate() {
            assert_close(&format!("Autodiff<Mixed> param {i}"), got, want, half);
        }
    }
}

/// One pre-norm transformer block: layer norm, attention (q, k, v and output projections,
/// two heads), residual, layer norm, a relu MLP, residual.
pub fn transformer_block_gradients<B: Backend>(device: &B::Device) {
    type T<B> = Tensor<Mixed<Autodiff<B>>, 4>;
    let forward = |p: &[T<B>]| {
        let (batch, seq, width, heads) = (2, 4, 16, 2);
        let x = Tensor::<Mixed<Autodiff<B>>, 3>::from_data(sample([batch, seq, width], 4), device);
        let w = |i: usize, rows, cols| p[i].clone().reshape([rows, cols]);
        let v = |i: usize| p[i].clone().reshape([width]);
        let split = |t: Tensor<Mixed<Autodiff<B>>, 3>| t.reshape([batch, seq, heads, width / heads]).swap_dims(1, 2);
        let h = layer_norm(x.clone(), v(0), v(1));
        let (q, k, val) =
            (linear(h.clone(), w(2, width, width), None), linear(h.clone(), w(3, width, width), None), linear(h, w(4, width, width), None));
        let att = attention(split(q), split(k), split(val), None, None, AttentionModuleOptions::default());
        let att = att.swap_dims(1, 2).reshape([batch, seq, width]);
        let x = x + linear(att, w(5, width, width), None);
        let h = layer_norm(x.clone(), v(6), v(7));
        let out = x + linear(relu(linear(h, w(8, width, 2 * width), None)), w(9, 2 * width, width), None);
        out.powi_scalar(2).mean()
    };
    let (d, m) = (16, [1, 1, 16, 16]);
    let vec = [1, 1, 1, d];
    compare::<B>("transformer", device, forward, &[vec, vec, m, m, m, m, vec, vec, [1, 1, d, 2 * d], [1, 1, 2 * d, d]]);
}

/// A weight used eight times in one forward pass is cast once: one miss, seven hits; the
/// gradient (the eight contributions accumulated in half, cast back once) still matches
/// the f32 one. The uses are side by side, on eight inputs, so that the comparison measures
/// the shared cast rather than rounding compounded through a chain of layers.
pub fn cast_cache_reuses_parameter_casts<B: Backend>(device: &B::Device) {
    use burn_mixed::autocast::{cast_cache_stats, reset_cast_cache_stats};
    type A<B> = Mixed<Autodiff<B>>;
    let run = |region: Option<FloatDType>| {
        // A leaf used directly, as `Param::val()` hands it to a module's forward.
        let w: Tensor<A<B>, 2> = leaf([8, 8], 12, device);
        let _region = region.map(|d| AutocastGuard::enable::<A<B>>(device, d).expect("supported"));
        let outputs: Vec<_> =
            (0..8).map(|i| Tensor::<A<B>, 2>::from_data(sample([4, 8], 20 + i), device).matmul(w.clone()).tanh()).collect();
        let grads = Tensor::cat(outputs, 0).powi_scalar(2).sum().backward();
        let g = w.grad(&grads).expect("gradient");
        assert_eq!(g.dtype(), DType::F32);
        g.into_data().to_vec::<f32>().expect("f32")
    };
    let reference = run(None);
    for half in half_dtypes::<B>(device) {
        reset_cast_cache_stats();
        let got = run(Some(half));
        let stats = cast_cache_stats();
        assert_eq!((stats.misses, stats.hits), (1, 7), "{half:?}: {stats:?}");
        assert_close("reused weight", &got, &reference, half);
    }
}
