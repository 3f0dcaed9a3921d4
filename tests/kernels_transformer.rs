//! The host fast path on a transformer's ops (Flex): products over attention heads (batch
//! dimensions that are strided views), gelu bit for bit against Flex and its backward
//! within one rounding of f64, and
//! attention with its scores in f32 against an f64 reference, masks and all.

#![cfg(feature = "flex")]

mod kernels_support;

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::gelu;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, FloatDType, Tensor, TensorData};
use burn_mixed::Mixed;
use burn_mixed::autocast::autocast;
use burn_mixed::kernels::{host_kernel_calls, reset_host_kernel_calls, with_host_kernels};
use kernels_support::*;

type T = Mixed<Autodiff<Flex>>;

/// `[batch, seq, heads * dim]` values viewed as `[batch, heads, seq, dim]` (reshape, then
/// swap): the layout a transformer hands its attention, and the values in that order.
fn heads(values: &[f64], [b, s, h, d]: [usize; 4], dtype: FloatDType) -> (Tensor<M, 4>, Vec<f64>) {
    let t = tensor::<M, 3>(values, [b, s, h * d], dtype, &Default::default()).reshape([b, s, h, d]).swap_dims(1, 2);
    let mut ordered = Vec::with_capacity(values.len());
    for (bi, hi, si, di) in
        (0..b).flat_map(|bi| (0..h).flat_map(move |hi| (0..s).flat_map(move |si| (0..d).map(move |di| (bi, hi, si, di)))))
    {
        ordered.push(values[((bi * s + si) * h + hi) * d + di]);
    }
    (t, ordered)
}

#[test]
fn products_over_head_views_take_the_kernels() {
    let shape = [2, 24, 3, 8];
    let n: usize = shape.iter().product();
    for dtype in HALVES {
        let (q, q_values) = heads(&values(n, 400, dtype), shape, dtype);
        let (k, k_values) = heads(&values(n, 401, dtype), shape, dtype);
        let k_t: Vec<f64> = k_values.chunks(24 * 8).flat_map(|m| (0..8).flat_map(move |j| (0..24).map(move |i| m[i * 8 + j]))).collect();
        reset_host_kernel_calls();
        let scores = q.matmul(k.transpose());
        assert_eq!(host_kernel_calls().matmul, 1, "{dtype:?}: strided batch dimensions take the kernel");
        assert_eq!(scores.dims(), [2, 3, 24, 24]);
        assert_one_rounding("q @ k^T over heads", &read(scores), &reference(&q_values, &k_t, 6, 24, 8, 24), dtype);
    }
}

/// Inputs around gelu's interesting range (and its special values), exactly representable.
fn gelu_inputs(dtype: FloatDType) -> Vec<f32> {
    let mut v = representable(dtype);
    v.iter_mut().skip(32).for_each(|x| *x /= 50.0);
    round_to(v.iter().map(|x| f64::from(*x)).collect(), dtype).into_iter().map(|x| x as f32).collect()
}

#[test]
fn gelu_is_bit_identical_to_flex() {
    let device = Default::default();
    for dtype in HALVES {
        let v = gelu_inputs(dtype);
        let n = v.len();
        reset_host_kernel_calls();
        let mixed = gelu(Tensor::<M, 1>::from_data(TensorData::new(v.clone(), [n]), &device).cast(dtype));
        assert_eq!(host_kernel_calls().gelu, 1, "{dtype:?}: the kernel ran");
        assert_eq!(mixed.dtype(), DType::from(dtype));
        let flex = gelu(Tensor::<Flex, 1>::from_data(TensorData::new(v.clone(), [n]), &device).cast(dtype));
        assert_same_bits(&format!("{dtype:?}: gelu"), mixed.into_data(), flex.into_data(), &v);
    }
}

#[test]
fn gelu_gradients_are_within_one_rounding_of_f64() {
    fn grads<A: AutodiffBackend>(v: &[f32], g: &[f64], dtype: FloatDType) -> TensorData {
        let device = Default::default();
        let n = v.len();
        let x = Tensor::<A, 1>::from_data(TensorData::new(v.to_vec(), [n]), &device).cast(dtype).require_grad();
        let g = Tensor::<A, 1>::from_data(TensorData::new(g.iter().map(|g| *g as f32).collect::<Vec<_>>(), [n]), &device);
        let grads = (gelu(x.clone()).cast(FloatDType::F32) * g).sum().backward();
        x.grad(&grads).expect("x grad").into_data()
    }
    for dtype in HALVES {
        let v = gelu_inputs(dtype);
        let upstream = values(v.len(), 410, dtype);
        reset_host_kernel_calls();
        let fast = grads::<T>(&v, &upstream, dtype);
        let calls = host_kernel_calls();
        assert_eq!((calls.gelu, calls.gelu_backward), (1, 1), "{dtype:?}: Mixed<Autodiff<Flex>> forward and backward");
        reset_host_kernel_calls();
        let layered = grads::<Autodiff<Mixed<Flex>>>(&v, &upstream, dtype);
        let calls = host_kernel_calls();
        assert_eq!((calls.gelu, calls.gelu_backward), (1, 1), "{dtype:?}: Autodiff<Mixed<Flex>> forward and backward");
        assert_same_bits(&format!("{dtype:?}: gelu backward, both layerings"), layered, fast.clone(), &v);
        // The same inputs in f64 on Flex: `g * gelu'(x)` exactly, up to f64's rounding.
        let reference: Vec<f64> = grads::<Autodiff<Flex>>(&v, &upstream, FloatDType::F64).iter::<f64>().collect();
        let finite: Vec<f64> = reference.iter().copied().filter(|r| r.is_finite()).collect();
        let rms = (finite.iter().map(|r| r * r).sum::<f64>() / finite.len() as f64).sqrt();
        for (i, (got, want)) in fast.iter::<f64>().zip(&reference).enumerate() {
            if want.is_nan() {
                // An infinite input: `inf * 0` in `x * phi(x)`, in f64 as in the kernel.
                assert!(got.is_nan(), "{dtype:?} #{i}: x {}, got {got}, f64 NaN", v[i]);
                continue;
            }
            // One rounding at the value, or at a sixteenth of the RMS where the derivative
            // crosses zero (near x = -0.75).
            let allowed = ulp(want.abs().max(rms / 16.0), dtype);
            assert!((got - want).abs() <= allowed, "{dtype:?} #{i}: x {}, got {got}, f64 {want}", v[i]);
        }
    }
}

/// Attention in f64 on the given (already rounded) inputs, `[heads, seq, dim]` flattened:
/// the scores rounded to `dtype` (the product's output), softmax in f64, the probabilities
/// rounded to `dtype` (the second product's input). `visible(i, j)` masks scores.
#[allow(clippy::too_many_arguments, reason = "the op's own inputs and sizes, one by one")]
fn attention_reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    heads: usize,
    seq: usize,
    dim: usize,
    dtype: FloatDType,
    visible: impl Fn(usize, usize) -> bool,
) -> Vec<f64> {
    let scale = 1.0 / (dim as f64).sqrt();
    let mut out = vec![0.0; heads * seq * dim];
    for h in 0..heads {
        let at = |t: &[f64], i: usize, d: usize| t[(h * seq + i) * dim + d];
        for i in 0..seq {
            let scores: Vec<f64> = (0..seq).map(|j| (0..dim).map(|d| at(q, i, d) * at(k, j, d)).sum::<f64>()).collect();
            let scores: Vec<f64> = round_to(scores, dtype)
                .into_iter()
                .enumerate()
                .map(|(j, s)| if visible(i, j) { s * scale } else { f64::NEG_INFINITY })
                .collect();
            let max = scores.iter().copied().fold(f64::MIN, f64::max);
            let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = exp.iter().sum::<f64>().max(f64::from(f32::MIN_POSITIVE));
            let p = round_to(exp.iter().map(|e| e / sum).collect(), dtype);
            for d in 0..dim {
                out[(h * seq + i) * dim + d] = (0..seq).map(|j| p[j] * at(v, j, d)).sum();
            }
        }
    }
    out
}

#[test]
fn attention_scores_run_in_f32() {
    let device = Default::default();
    let (heads, seq, dim) = (4, 32, 16);
    let shape = [1, heads, seq, dim];
    let n = heads * seq * dim;
    for dtype in HALVES {
        let (q, k, v) = (values(n, 420, dtype), values(n, 421, dtype), values(n, 422, dtype));
        let causal = AttentionModuleOptions { is_causal: true, ..Default::default() };
        for (label, options, visible) in
            [("plain", AttentionModuleOptions::default(), (|_, _| true) as fn(usize, usize) -> bool), ("causal", causal, |i, j| j <= i)]
        {
            let want = attention_reference(&q, &k, &v, heads, seq, dim, dtype, visible);
            let run = |kernels: bool| {
                with_host_kernels(kernels, || {
                    let t = |x: &[f64]| tensor::<M, 4>(x, shape, dtype, &device);
                    attention(t(&q), t(&k), t(&v), None, None, options)
                })
            };
            reset_host_kernel_calls();
            let fast = run(true);
            assert_eq!(host_kernel_calls().matmul, 2, "{dtype:?} {label}: both products on the kernels");
            assert_eq!(fast.dtype(), DType::from(dtype), "{dtype:?} {label}: output dtype");
            let fast_units = rounding_units(&read(fast), &want, dtype);
            let flex_units = rounding_units(&read(run(false)), &want, dtype);
            println!("attention {dtype:?} {label}: fast path {fast_units:.2?}, Flex {flex_units:.2?} roundings (rms, worst ulp)");
            assert!(fast_units.0 <= 1.0, "{dtype:?} {label}: within one rounding (rms): {fast_units:?}");
            assert!(fast_units.0 <= flex_units.0, "{dtype:?} {label}: no worse than Flex's half attention");
        }
    }
}

#[test]
fn attention_masks_bias_and_softcap_match_f32() {
    let device = Default::default();
    let shape = [2, 2, 8, 4];
    let n: usize = shape.iter().product();
    let dtype = FloatDType::BF16;
    let (q, k, v, bias) = (values(n, 430, dtype), values(n, 431, dtype), values(n, 432, dtype), values(2 * 2 * 8 * 8, 433, dtype));
    // Row 3 of every head sees nothing: its output must be 0, not NaN.
    let mask: Vec<bool> = (0..2 * 2 * 8 * 8).map(|i| (i / 8) % 8 == 3 || i % 3 == 0).collect();
    let options = AttentionModuleOptions { softcap: Some(2.0), is_causal: true, ..Default::default() };
    let run = |dtype: FloatDType| {
        let t = |x: &[f64], s: [usize; 4]| tensor::<M, 4>(x, s, dtype, &device);
        let mask = Tensor::<M, 4, Bool>::from_data(TensorData::new(mask.clone(), [2, 2, 8, 8]), &device);
        attention(t(&q, shape), t(&k, shape), t(&v, shape), Some(mask), Some(t(&bias, [2, 2, 8, 8])), options)
    };
    reset_host_kernel_calls();
    let got = read(run(dtype));
    assert_eq!(host_kernel_calls().matmul, 2);
    let want = read(run(FloatDType::F32));
    assert!(got.iter().all(|x| x.is_finite()), "no NaN from fully masked rows");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if (i / 4) % 8 == 3 {
            assert_eq!((*g, *w), (0.0, 0.0), "fully masked row {i}");
        }
        assert!((g - w).abs() <= 2.0 * ulp(*w, dtype) + 1e-3, "element {i}: {g} vs f32's {w}");
    }
}

/// The transformer's attention under bf16 autocast on `Mixed<Autodiff<Flex>>`: inputs that
/// are head views of one projection, every product on the kernels, and the gradients of
/// all three inputs close to f32's.
#[test]
fn attention_gradients_over_head_views() {
    let device = Default::default();
    let (b, s, h, d) = (2, 16, 2, 8);
    let x = values(b * s * 3 * h * d, 440, FloatDType::F32);
    let x = Tensor::<T, 3>::from_data(TensorData::new(x.iter().map(|v| *v as f32).collect::<Vec<_>>(), [b, s, 3 * h * d]), &device)
        .require_grad();
    let run = |region: Option<FloatDType>| {
        let forward = || {
            let part = |i: usize| x.clone().narrow(2, i * h * d, h * d).reshape([b, s, h, d]).swap_dims(1, 2);
            attention(part(0), part(1), part(2), None, None, AttentionModuleOptions::default())
        };
        let out = match region {
            Some(dtype) => autocast::<T, _>(&device, dtype, forward).expect("bf16"),
            None => forward(),
        };
        let grads = out.cast(FloatDType::F32).powi_scalar(2).sum().backward();
        read(x.grad(&grads).expect("x grad"))
    };
    let want = run(None);
    reset_host_kernel_calls();
    let got = run(Some(FloatDType::BF16));
    let calls = host_kernel_calls();
    assert_eq!(calls.matmul, 2 + 4, "two products forward, four backward: {calls:?}");
    let norm = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
    println!("attention gradient over head views: worst element error {:.2e} x norm", worst / norm);
    assert!(worst <= 1.6e-2 * norm, "gradient within bf16's tolerance");
}

/// f32 scores for the softmax kernel, `rows x n`: random spreads up to +-80 (exponents
/// down to e^-160: zeros and subnormals after the shift), masked (`-inf`) entries, one row
/// masked throughout, and one of equal scores.
fn softmax_scores(rows: usize, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> =
        values(rows * n, 420, FloatDType::F32).iter().enumerate().map(|(i, x)| (x * [1.0, 8.0, 80.0][i / n % 3]) as f32).collect();
    v.iter_mut().step_by(7).for_each(|x| *x = f32::NEG_INFINITY);
    v[n..2 * n].fill(f32::NEG_INFINITY);
    v[2 * n..3 * n].fill(0.25);
    v
}

fn softmax_reference(scores: &[f32], n: usize) -> Vec<f64> {
    scores
        .chunks(n)
        .flat_map(|row| {
            let max = row.iter().map(|x| f64::from(*x)).fold(f64::from(f32::MIN), f64::max);
            let exp: Vec<f64> = row.iter().map(|x| (f64::from(*x) - max).exp()).collect();
            let sum = exp.iter().sum::<f64>().max(f64::from(f32::MIN_POSITIVE));
            exp.into_iter().map(move |e| e / sum)
        })
        .collect()
}

/// The softmax kernel rounds once from an f32 value: no element further from the f64
/// softmax than 0.5 ulp of the half dtype plus the f32 sum's error (n f32 epsilons, below
/// 0.02 ulp here), masked entries and fully masked rows exactly 0. Rows of 37 (16-lane groups
/// and a tail) and of 300 (split across threads).
#[test]
fn softmax_kernel_rounds_once_from_f32() {
    use burn::tensor::TensorPrimitive;
    use burn_mixed::kernels::HostKernels;
    for (rows, n) in [(15, 37), (400, 300)] {
        let scores = softmax_scores(rows, n);
        let want = softmax_reference(&scores, n);
        for dtype in HALVES {
            let input = Tensor::<Flex, 2>::from_data(TensorData::new(scores.clone(), [rows, n]), &Default::default());
            let out = <Flex as HostKernels>::half_softmax((input.into_primitive().tensor(), dtype))
                .unwrap_or_else(|_| panic!("{dtype:?}: taken"));
            let out = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(out));
            assert_eq!(out.dtype(), DType::from(dtype));
            let got = read(out);
            for (i, ((g, w), x)) in got.iter().zip(&want).zip(&scores).enumerate() {
                if *x == f32::NEG_INFINITY || (n..2 * n).contains(&i) {
                    assert_eq!(g.to_bits(), 0, "{dtype:?} [{rows}, {n}] #{i}: a masked score gives +0");
                    continue;
                }
                // The f32 part: the row sum's roundings, at most n of f32's epsilon.
                let f32_part = n as f64 * f64::from(f32::EPSILON) * w.abs() / ulp(*w, dtype);
                let off = (g - w).abs() / ulp(*w, dtype);
                assert!(off <= 0.5 + f32_part, "{dtype:?} [{rows}, {n}] #{i}: {g:e} is {off:.3} ulp from {w:e}");
            }
            let uniform = &got[2 * n..3 * n];
            assert!(uniform.iter().all(|p| *p == uniform[0]), "{dtype:?}: equal scores, equal probabilities");
        }
    }
}

/// Softmax's backward kernel against the same formula in f64 on the same half inputs (the
/// rounded row renormalized, `q = p / sum(p)`, then `q * (g - sum(g * q))`): f32
/// arithmetic, so within 1e-5 of the terms' size.
#[test]
fn softmax_backward_kernel_matches_f64() {
    use burn::tensor::TensorPrimitive;
    use burn_mixed::kernels::HostKernels;
    for (rows, n) in [(15, 37), (400, 300)] {
        let want_p = softmax_reference(&softmax_scores(rows, n), n);
        for dtype in HALVES {
            let (p, g) = (round_to(want_p.clone(), dtype), values(rows * n, 421, dtype));
            let half = |v: &[f64]| tensor::<Flex, 2>(v, [rows, n], dtype, &Default::default()).into_primitive().tensor();
            let out = <Flex as HostKernels>::half_softmax_backward((half(&p), half(&g))).unwrap_or_else(|_| panic!("{dtype:?}: taken"));
            let out = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(out));
            assert_eq!(out.dtype(), DType::F32);
            let got = read(out);
            for (r, ((p, g), got)) in p.chunks(n).zip(g.chunks(n)).zip(got.chunks(n)).enumerate() {
                let total: f64 = p.iter().sum();
                // A row masked whole is all zeros, and so is its gradient.
                let p: Vec<f64> = p.iter().map(|p| if total > 0.0 { p / total } else { 0.0 }).collect();
                let dot: f64 = p.iter().zip(g).map(|(p, g)| p * g).sum();
                let scale: f64 = p.iter().zip(g).map(|(p, g)| (p * g).abs()).sum();
                for j in 0..n {
                    let want = p[j] * (g[j] - dot);
                    let bound = 1e-5 * p[j] * (g[j].abs() + scale) + 1e-30;
                    assert!((got[j] - want).abs() <= bound, "{dtype:?} row {r} #{j}: {} vs {want}", got[j]);
                }
            }
        }
    }
}

/// The softmax and layer-norm kernels on the loops a CPU without AVX-512, or without its bf16
/// conversion, runs.
#[test]
fn with_fewer_simd_instructions() {
    rerun_without_lanes(&[
        "softmax_kernel_rounds_once_from_f32",
        "softmax_backward_kernel_matches_f64",
        "layer_norm_is_bit_identical_to_flex",
        "layer_norm_gradients_within_one_rounding",
    ]);
}

/// `layer_norm` on the backend's primitives (Burn's `LayerNorm` module calls the same op).
fn layer_norm_of<B: burn::tensor::backend::Backend>(x: Tensor<B, 3>, gamma: Tensor<B, 1>, beta: Tensor<B, 1>) -> Tensor<B, 3> {
    use burn::tensor::TensorPrimitive;
    let out = B::layer_norm(x.into_primitive().tensor(), gamma.into_primitive().tensor(), Some(beta.into_primitive().tensor()), 1e-5);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Layer-norm inputs `[2, 9, 40]`: rows with an offset and spread of their own (row i
/// centred near i - 9), so that centring matters; a scale and shift around 1 and 0.
fn layer_norm_inputs(dtype: FloatDType) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let x = values(2 * 9 * 40, 430, dtype).iter().enumerate().map(|(i, v)| (i / 40) as f64 - 9.0 + v * (1 + i / 40 % 4) as f64).collect();
    let gamma = values(40, 431, dtype).iter().map(|v| 1.0 + v / 2.0).collect();
    (round_to(x, dtype), round_to(gamma, dtype), values(40, 432, dtype))
}

/// The forward kernel is Flex's own half layer norm (its f32 layer norm between exact
/// widening and one rounding) on faster conversions: bit for bit.
#[test]
fn layer_norm_is_bit_identical_to_flex() {
    let device = Default::default();
    for dtype in HALVES {
        let (x, gamma, beta) = layer_norm_inputs(dtype);
        let run = |x: &[f64], g: &[f64], b: &[f64]| {
            (
                tensor::<M, 3>(x, [2, 9, 40], dtype, &device),
                tensor::<M, 1>(g, [40], dtype, &device),
                tensor::<M, 1>(b, [40], dtype, &device),
            )
        };
        let (tx, tg, tb) = run(&x, &gamma, &beta);
        reset_host_kernel_calls();
        let mixed = layer_norm_of(tx, tg, tb);
        assert_eq!(host_kernel_calls().layer_norm, 1, "{dtype:?}: the kernel ran");
        assert_eq!(mixed.dtype(), DType::from(dtype));
        let flex = layer_norm_of(
            tensor::<Flex, 3>(&x, [2, 9, 40], dtype, &device),
            tensor::<Flex, 1>(&gamma, [40], dtype, &device),
            tensor::<Flex, 1>(&beta, [40], dtype, &device),
        );
        assert_same_bits(&format!("{dtype:?}: layer norm"), mixed.into_data(), flex.into_data(), &[]);
    }
}

/// Layer norm's gradients in f64 from the same half values: `(dx, dgamma, dbeta)`.
fn layer_norm_grads_reference(x: &[f64], gamma: &[f64], g: &[f64], n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut dx, mut dgamma, mut dbeta) = (Vec::new(), vec![0.0; n], vec![0.0; n]);
    for (x, g) in x.chunks(n).zip(g.chunks(n)) {
        let mean = x.iter().sum::<f64>() / n as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        let x_hat: Vec<f64> = x.iter().map(|v| (v - mean) * rstd).collect();
        let h: Vec<f64> = g.iter().zip(gamma).map(|(g, s)| g * s).collect();
        let mean_h = h.iter().sum::<f64>() / n as f64;
        let mean_hx = h.iter().zip(&x_hat).map(|(h, x)| h * x).sum::<f64>() / n as f64;
        dx.extend(h.iter().zip(&x_hat).map(|(h, x)| (h - mean_h - x * mean_hx) * rstd));
        for j in 0..n {
            dgamma[j] += g[j] * x_hat[j];
            dbeta[j] += g[j];
        }
    }
    (dx, dgamma, dbeta)
}

/// In a `-true` precision (half parameters, no autocast) under `Mixed<Autodiff<Flex>>`, the
/// layer norm's node computes every gradient in f32 and rounds it once: within one
/// rounding of f64, where Burn's decomposition into half-precision ops is reported beside.
#[test]
fn layer_norm_gradients_within_one_rounding() {
    let device = Default::default();
    for dtype in HALVES {
        let (x, gamma, beta) = layer_norm_inputs(dtype);
        let upstream = values(2 * 9 * 40, 433, dtype);
        let grads = || {
            let leaf = |v: &[f64], shape: [usize; 1]| tensor::<T, 1>(v, shape, dtype, &device).require_grad();
            let tx = tensor::<T, 3>(&x, [2, 9, 40], dtype, &device).require_grad();
            let (tg, tb) = (leaf(&gamma, [40]), leaf(&beta, [40]));
            let y = layer_norm_of(tx.clone(), tg.clone(), tb.clone());
            let grads = (y.cast(FloatDType::F32) * tensor::<T, 3>(&upstream, [2, 9, 40], FloatDType::F32, &device)).sum().backward();
            [read(tx.grad(&grads).expect("dx")), read(tg.grad(&grads).expect("dgamma")), read(tb.grad(&grads).expect("dbeta"))]
        };
        reset_host_kernel_calls();
        let fast = grads();
        let calls = host_kernel_calls();
        assert_eq!((calls.layer_norm, calls.layer_norm_backward), (1, 1), "{dtype:?}: forward and backward on the kernels");
        let decomposed = with_host_kernels(false, grads);
        let (dx, dgamma, dbeta) = layer_norm_grads_reference(&x, &gamma, &upstream, 40);
        for (i, (label, want)) in [("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)].into_iter().enumerate() {
            let (burn_rms, burn_worst) = rounding_units(&decomposed[i], &want, dtype);
            println!("  Burn's decomposition in {dtype:?}: {burn_rms:.2} roundings, worst {burn_worst:.2} ulp");
            assert_one_rounding(&format!("layer norm {label}"), &fast[i], &want, dtype);
        }
    }
}
