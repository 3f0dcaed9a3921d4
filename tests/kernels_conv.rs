//! The host fast path's 2-d convolutions on Flex, f16 and bf16: within one rounding of an
//! f64 reference (Flex's own f16 convolution accumulates in f16), forward and backward, in
//! both autodiff layerings, on one slice of the batch and on several (the fast path widens
//! a few samples at a time, see `src/kernels/flex/conv.rs`), grouped and not (the weight
//! gradient without groups takes its operands channels-first).

#![cfg(feature = "flex")]

mod kernels_support;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, TensorData};
use burn_mixed::Mixed;
use burn_mixed::kernels::{host_kernel_calls, reset_host_kernel_calls};
use kernels_support::*;

/// `[batch, in, h, w]` input, `[out, in / groups, kh, kw]` weight.
const X: [usize; 4] = [2, 4, 9, 7];
/// An input of 3 slices (18 + 18 + 4 samples of 3600 elements: the fast path widens 2^16
/// input elements at a time).
const X_SLICED: [usize; 4] = [40, 4, 30, 30];
const W: [usize; 4] = [6, 2, 3, 3];

/// A weight for one group (Burn composes the weight gradient differently then).
const W_UNGROUPED: [usize; 4] = [6, 4, 3, 3];

/// The layouts tested: input, weight, groups.
const LAYOUTS: [([usize; 4], [usize; 4], usize); 4] = [(X, W, 2), (X_SLICED, W, 2), (X, W_UNGROUPED, 1), (X_SLICED, W_UNGROUPED, 1)];

/// Whether this CPU runs the host kernels' products on AMX tiles.
fn tiles_here() -> bool {
    burn_mixed::kernels::host_isa() >= burn_mixed::kernels::HostIsa::Amx
}

fn options(groups: usize) -> ConvOptions<2> {
    ConvOptions::new([2, 1], [1, 2], [1, 2], groups)
}

/// The convolution in f64, for the options above.
fn reference(x: &[f64], w: &[f64], bias: &[f64], o: &ConvOptions<2>, xs: [usize; 4], ws: [usize; 4]) -> (Vec<f64>, [usize; 4]) {
    let [n, c, h, wd] = xs;
    let [oc, cg, kh, kw] = ws;
    let out_h = (h + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
    let out_w = (wd + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
    let per_group = oc / o.groups;
    let mut out = vec![0.0; n * oc * out_h * out_w];
    for (b, k, i, j) in (0..n).flat_map(|b| (0..oc).flat_map(move |k| (0..out_h).flat_map(move |i| (0..out_w).map(move |j| (b, k, i, j)))))
    {
        let mut acc = bias[k];
        for (ci, u, v) in (0..cg).flat_map(|ci| (0..kh).flat_map(move |u| (0..kw).map(move |v| (ci, u, v)))) {
            let channel = (k / per_group) * cg + ci;
            let y = (i * o.stride[0] + u * o.dilation[0]) as isize - o.padding[0] as isize;
            let z = (j * o.stride[1] + v * o.dilation[1]) as isize - o.padding[1] as isize;
            if (0..h as isize).contains(&y) && (0..wd as isize).contains(&z) {
                acc += x[((b * c + channel) * h + y as usize) * wd + z as usize] * w[((k * cg + ci) * kh + u) * kw + v];
            }
        }
        out[((b * oc + k) * out_h + i) * out_w + j] = acc;
    }
    (out, [n, oc, out_h, out_w])
}

fn inputs(dtype: FloatDType, xs: [usize; 4], ws: [usize; 4]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    (values(xs.iter().product(), 500, dtype), values(ws.iter().product(), 501, dtype), values(ws[0], 502, dtype))
}

#[test]
fn forward_against_f64_and_flex() {
    let device = Default::default();
    for (dtype, (xs, ws, groups)) in HALVES.into_iter().flat_map(|d| LAYOUTS.map(|l| (d, l))) {
        let (x, w, b) = inputs(dtype, xs, ws);
        reset_host_kernel_calls();
        let fast = conv2d(
            tensor::<M, 4>(&x, xs, dtype, &device),
            tensor(&w, ws, dtype, &device),
            Some(tensor(&b, [ws[0]], dtype, &device)),
            options(groups),
        );
        assert_eq!(host_kernel_calls().conv2d, 1, "{dtype:?} {xs:?}: the kernel runs");
        // Both half types run on AMX tiles (f16 split into bf16 pairs) where the CPU has them.
        assert_eq!(
            host_kernel_calls().tile_convs,
            u64::from(groups == 1 && tiles_here()),
            "{dtype:?} {xs:?} groups {groups}: on the tiles"
        );
        assert_eq!(fast.dtype(), DType::from(dtype));
        let (want, shape) = reference(&x, &w, &b, &options(groups), xs, ws);
        assert_eq!(fast.dims(), shape);
        assert_one_rounding(&format!("{dtype:?} conv2d {xs:?}"), &read(fast.clone()), &want, dtype);
        let flex = conv2d(
            tensor::<Flex, 4>(&x, xs, dtype, &device),
            tensor(&w, ws, dtype, &device),
            Some(tensor(&b, [ws[0]], dtype, &device)),
            options(groups),
        );
        // Flex accumulates f16 convolutions in f16; its bf16 convolution widens whole
        // operands (one element at a time) for its f32 one.
        let flex_units = rounding_units(&read(flex), &want, dtype).0;
        println!("Flex's own {dtype:?} conv2d {xs:?}: {flex_units:.2} roundings (rms)");
    }
}

/// An f16 convolution with an infinity in its input: the tiles' split would make `inf * 0`
/// (NaN) in a cross term, so it runs on the other path and gives the infinity.
#[test]
fn f16_infinities_leave_the_tiles_and_stay_infinite() {
    let device = Default::default();
    let dtype = FloatDType::F16;
    let (xs, ws) = (X, W_UNGROUPED);
    let mut x: Vec<f64> = vec![1.0; xs.iter().product()];
    x[0] = f64::INFINITY;
    // Positive quarters: bf16 values (zero low halves), none of them zero.
    let w: Vec<f64> = (0..ws.iter().product::<usize>()).map(|i| ((i % 5) as f64 + 1.0) / 4.0).collect();
    reset_host_kernel_calls();
    let plain = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    let y = conv2d(tensor::<M, 4>(&x, xs, dtype, &device), tensor(&w, ws, dtype, &device), None, plain);
    let calls = host_kernel_calls();
    assert_eq!((calls.conv2d, calls.tile_convs), (1, 0), "the fast path, off the tiles");
    let got = read(y);
    // Output (0, o, 0, 0) reads input (0, 0, 0, 0) through the kernel's top-left tap; the
    // last output of each channel does not read it.
    let [oh, ow] = [xs[2] - 2, xs[3] - 2];
    for o in 0..ws[0] {
        assert_eq!(got[o * oh * ow], f64::INFINITY, "output channel {o}");
        assert!(got[(o + 1) * oh * ow - 1].is_finite(), "output channel {o}, last pixel");
    }
    assert!(got.iter().all(|v| !v.is_nan()), "no NaN");
}

/// The gradients of `sum(conv2d(x, w, b) * g)` for x, w and b, inputs and `g` drawn in
/// `dtype` and computed in `compute`.
fn grads_in<A: AutodiffBackend>(
    dtype: FloatDType,
    compute: FloatDType,
    (xs, ws, groups): ([usize; 4], [usize; 4], usize),
) -> [TensorData; 3] {
    let device = Default::default();
    let (x, w, b) = inputs(dtype, xs, ws);
    let (x, w, b) = (
        tensor::<A, 4>(&x, xs, compute, &device).require_grad(),
        tensor::<A, 4>(&w, ws, compute, &device).require_grad(),
        tensor::<A, 1>(&b, [ws[0]], compute, &device).require_grad(),
    );
    let y = conv2d(x.clone(), w.clone(), Some(b.clone()), options(groups));
    let g = tensor::<A, 4>(&values(y.shape().num_elements(), 503, dtype), y.dims(), FloatDType::F32, &device);
    let grads = (y.cast(FloatDType::F32) * g).sum().backward();
    [x.grad(&grads).expect("x").into_data(), w.grad(&grads).expect("w").into_data(), b.grad(&grads).expect("b").into_data()]
}

fn grads<A: AutodiffBackend>(dtype: FloatDType, layout: ([usize; 4], [usize; 4], usize)) -> [TensorData; 3] {
    grads_in::<A>(dtype, dtype, layout)
}

#[test]
fn gradients_in_both_layerings() {
    for (dtype, layout) in HALVES.into_iter().flat_map(|d| LAYOUTS.map(|l| (d, l))) {
        let (xs, ws, groups) = layout;
        let context = format!("{dtype:?} {xs:?} {ws:?} groups {groups}");
        reset_host_kernel_calls();
        let fast = grads::<Mixed<Autodiff<Flex>>>(dtype, layout);
        let calls = host_kernel_calls();
        assert_eq!((calls.conv2d, calls.conv2d_backward, calls.sum_to_last), (1, 2, 1), "{context}: Mixed<Autodiff<Flex>>");
        assert_eq!(calls.tile_convs, 3 * u64::from(groups == 1 && tiles_here()), "{context}: on the tiles");
        reset_host_kernel_calls();
        let layered = grads::<Autodiff<Mixed<Flex>>>(dtype, layout);
        let calls = host_kernel_calls();
        assert_eq!((calls.conv2d, calls.conv2d_backward, calls.sum_to_last), (1, 2, 1), "{context}: Autodiff<Mixed<Flex>>");
        for (name, (a, b)) in ["x", "weight", "bias"].iter().zip(fast.iter().zip(&layered)) {
            assert_same_bits(&format!("{context} {name} gradient: both layerings"), a.clone(), b.clone(), &[]);
        }
        // Against the same gradients in f32 (inputs already half values; f32's own
        // accumulation error is 2^13 times smaller than an f16 rounding, 2^16 than bf16's).
        let exact = grads_in::<Autodiff<Flex>>(dtype, FloatDType::F32, layout);
        let values =
            |d: &TensorData| -> Vec<f64> { d.clone().convert::<f32>().to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect() };
        assert_one_rounding(&format!("{context} x gradient"), &values(&fast[0]), &values(&exact[0]), dtype);
        assert_one_rounding(&format!("{context} weight gradient"), &values(&fast[1]), &values(&exact[1]), dtype);
        // The bias gradient is the per-channel sum of g.
        let (y_len, per_channel) = {
            let (x, w, b) = inputs(dtype, xs, ws);
            let (_, s) = reference(&x, &w, &b, &options(groups), xs, ws);
            (s.iter().product::<usize>(), s[2] * s[3])
        };
        let g = values_of(y_len, dtype);
        let want: Vec<f64> =
            (0..ws[0]).map(|k| g.iter().enumerate().filter(|(i, _)| (i / per_channel) % ws[0] == k).map(|(_, v)| v).sum()).collect();
        let got: Vec<f64> = fast[2].clone().convert::<f32>().to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect();
        // Six sums: too few for an RMS figure, so each must be correctly rounded.
        let worst = rounding_units(&got, &want, dtype).1;
        assert!(worst <= 0.5, "{context} bias gradient: {worst:.2} ulp from the exact sum");
    }
}

/// The upstream gradient `grads_in` draws.
fn values_of(len: usize, dtype: FloatDType) -> Vec<f64> {
    values(len, 503, dtype)
}

/// The same convolutions on the conversion loops a CPU without AVX-512, or without its bf16
/// conversion, runs.
#[test]
fn with_fewer_simd_instructions() {
    rerun_without_lanes(&["forward_against_f64_and_flex", "gradients_in_both_layerings"]);
}
