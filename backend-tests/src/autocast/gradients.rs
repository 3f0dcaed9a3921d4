//! Gradients under autocast on `Mixed<Autodiff<B>>`: parameters stay f32, their gradients
//! come back in f32 through the recorded casts, and match the f32 run within the dtype's
//! tolerance.

use burn::backend::Autodiff;
use burn::tensor::activation::relu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::{attention, avg_pool2d, conv2d, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::autocast::AutocastGuard;

use super::{half_dtypes, layer_norm, sample};

/// Norm-relative tolerance of a whole network's gradients, per autocast dtype.
///
/// Each op is checked bitwise against a hand-cast control in `ops.rs`; here the question is
/// only whether a training signal survives. A gradient is a sum of many half-precision
/// products, rounded several times along the chain (input, saved activation, incoming
/// gradient, backward kernel output), and cancellation in the sum magnifies the relative
/// error. Measured maxima over Flex, NdArray and Wgpu: f16 7.5e-3 (the CNN's conv weight),
/// bf16 1.8e-2 (a transformer projection); PyTorch's per-op `assert_close` tolerances (1e-3,
/// 1.6e-2) do not bound whole-network gradients. The bounds keep a margin over those.
fn tolerance(dtype: FloatDType) -> f32 {
    match dtype {
        FloatDType::BF16 => 5e-2,
        _ => 1.5e-2,
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
            let err = relative_error(got, want);
            assert!(err <= tolerance(half), "param {i} under {half:?}: relative error {err}");
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
        let (q, k, val) = (linear(h.clone(), w(2, width, width), None), linear(h.clone(), w(3, width, width), None), linear(h, w(4, width, width), None));
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
/// gradient (accumulated in half, cast back once) still matches the f32 one.
pub fn cast_cache_reuses_parameter_casts<B: Backend>(device: &B::Device) {
    use burn_mixed::autocast::{cast_cache_stats, reset_cast_cache_stats};
    type A<B> = Mixed<Autodiff<B>>;
    let run = |region: Option<FloatDType>| {
        // A leaf used directly, as `Param::val()` hands it to a module's forward.
        let w: Tensor<A<B>, 2> = leaf([8, 8], 12, device);
        let _region = region.map(|d| AutocastGuard::enable::<A<B>>(device, d).expect("supported"));
        let mut h = Tensor::<A<B>, 2>::from_data(sample([4, 8], 6), device);
        // Gain 2 keeps activations (and so gradients) away from f16's underflow range.
        for _ in 0..8 {
            h = (h.matmul(w.clone()) * 2.0).tanh();
        }
        let grads = h.powi_scalar(2).sum().backward();
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
        let err = relative_error(&got, &reference);
        assert!(err <= tolerance(half), "{half:?}: relative error {err}");
    }
}
