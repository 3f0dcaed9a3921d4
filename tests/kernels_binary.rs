//! Element-wise add and mul of half tensors on the host fast path: bit-identical to Flex's
//! own (both compute in f32 between exact widening and one rounding) for equal shapes and
//! for one operand repeated over the other's leading dimensions; other broadcasts left to
//! Flex. Gradients in both autodiff layerings: the element-wise ones bit-identical to
//! Flex's; the ones summed down to a repeated operand's shape within one rounding of f64
//! under `Mixed<Autodiff<Flex>>`, where the kernels' node sums in f32. Under
//! `Autodiff<Mixed<Flex>>` that sum is Burn's autodiff's (one dimension at a time, rounded
//! in between), which the test reports beside bare `Autodiff<Flex>`'s.

#![cfg(feature = "flex")]

mod kernels_support;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{FloatDType, TensorData};
use burn_mixed::Mixed;
use burn_mixed::kernels::{host_kernel_calls, reset_host_kernel_calls};
use kernels_support::*;

/// `(lhs, rhs, taken)`: shapes, and whether the kernels take them.
const CASES: [([usize; 3], [usize; 3], bool); 5] = [
    ([4, 33, 70], [4, 33, 70], true),
    ([4, 33, 70], [1, 1, 70], true),
    ([1, 33, 70], [4, 33, 70], true),
    ([4, 33, 70], [1, 33, 70], true),
    // A broadcast in the middle: Flex's.
    ([4, 33, 70], [4, 1, 70], false),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Add,
    Mul,
}

fn apply<B: Backend>(op: Op, a: Tensor<B, 3>, b: Tensor<B, 3>) -> Tensor<B, 3> {
    match op {
        Op::Add => a + b,
        Op::Mul => a * b,
    }
}

fn operands(dtype: FloatDType, sa: [usize; 3], sb: [usize; 3]) -> (Vec<f64>, Vec<f64>) {
    (values(sa.iter().product(), 700, dtype), values(sb.iter().product(), 701, dtype))
}

#[test]
fn add_and_mul_are_bit_identical_to_flex() {
    let device = Default::default();
    for (dtype, op, (sa, sb, taken)) in
        HALVES.into_iter().flat_map(|d| [Op::Add, Op::Mul].into_iter().flat_map(move |o| CASES.map(|c| (d, o, c))))
    {
        let context = format!("{dtype:?} {op:?} {sa:?} {sb:?}");
        let (a, b) = operands(dtype, sa, sb);
        reset_host_kernel_calls();
        let mixed = apply(op, tensor::<M, 3>(&a, sa, dtype, &device), tensor(&b, sb, dtype, &device));
        assert_eq!(host_kernel_calls().binary, u64::from(taken), "{context}");
        let flex = apply(op, tensor::<Flex, 3>(&a, sa, dtype, &device), tensor(&b, sb, dtype, &device));
        assert_eq!(mixed.dims(), flex.dims(), "{context}");
        assert_same_bits(&context, mixed.into_data(), flex.into_data(), &[]);
    }
}

/// Infinities, NaN, signed zeros, subnormals and overflow, in both operands, on a tensor
/// large enough to be split across threads with a bias that does not start a new period at
/// the split (32873 elements of 71 columns).
#[test]
fn special_values_across_threads_are_bit_identical_to_flex() {
    let device = Default::default();
    let (rows, cols) = (463, 71);
    for dtype in HALVES {
        // Representable values, so that building the operands rounds nothing.
        let special = round_to(special_values().into_iter().map(f64::from).collect(), dtype);
        let a = &special[..rows * cols];
        let b: Vec<f64> = special[..cols].iter().rev().copied().collect();
        for op in [Op::Add, Op::Mul] {
            for (sa, sb, x, y) in [
                ([1, rows, cols], [1, 1, cols], a, &b[..]),
                ([1, 1, cols], [1, rows, cols], &b[..], a),
                ([1, rows, cols], [1, rows, cols], a, a),
            ] {
                let context = format!("{dtype:?} {op:?} {sa:?} {sb:?}");
                reset_host_kernel_calls();
                let mixed = apply(op, tensor::<M, 3>(x, sa, dtype, &device), tensor(y, sb, dtype, &device));
                assert_eq!(host_kernel_calls().binary, 1, "{context}");
                let flex = apply(op, tensor::<Flex, 3>(x, sa, dtype, &device), tensor(y, sb, dtype, &device));
                assert_same_bits(&context, mixed.into_data(), flex.into_data(), &[]);
            }
        }
    }
}

/// The same comparisons on the loops a CPU without AVX-512, or without its bf16 conversion,
/// runs.
#[test]
fn with_fewer_simd_instructions() {
    rerun_without_lanes(&[
        "add_and_mul_are_bit_identical_to_flex",
        "special_values_across_threads_are_bit_identical_to_flex",
        "gradients_in_both_layerings",
    ]);
}

/// The gradients of `sum(f32(op(half(x), half(y))) * g)` for x and y.
fn grads<A: AutodiffBackend>(op: Op, dtype: FloatDType, sa: [usize; 3], sb: [usize; 3], g: &[f64]) -> [TensorData; 2] {
    let device = Default::default();
    let (a, b) = operands(dtype, sa, sb);
    let x = tensor::<A, 3>(&a, sa, FloatDType::F32, &device).require_grad();
    let y = tensor::<A, 3>(&b, sb, FloatDType::F32, &device).require_grad();
    let out = apply(op, x.clone().cast(dtype), y.clone().cast(dtype)).cast(FloatDType::F32);
    let g = tensor::<A, 3>(g, out.dims(), FloatDType::F32, &device);
    let grads = (out * g).sum().backward();
    [x.grad(&grads).expect("x").into_data(), y.grad(&grads).expect("y").into_data()]
}

/// The gradient for an operand of shape `shape`: `g` (times `factor`) summed in f64 over
/// the dimensions `shape` repeats over (the backward pass computes the products in f32 and
/// rounds only the sum).
fn reduced(g: &[f64], factor: Option<&[f64]>, out: [usize; 3], shape: [usize; 3]) -> Vec<f64> {
    let n: usize = out.iter().product();
    let terms: Vec<f64> = match factor {
        Some(f) => (0..n).map(|i| g[i] * f[i % f.len()]).collect(),
        None => g.to_vec(),
    };
    let len: usize = shape.iter().product();
    (0..len).map(|j| terms.iter().skip(j).step_by(len).sum()).collect()
}

#[test]
fn gradients_in_both_layerings() {
    for (dtype, op, (sa, sb, _)) in
        HALVES.into_iter().flat_map(|d| [Op::Add, Op::Mul].into_iter().flat_map(move |o| CASES[..4].iter().map(move |c| (d, o, *c))))
    {
        let context = format!("{dtype:?} {op:?} {sa:?} {sb:?}");
        let out = [sa[0].max(sb[0]), sa[1].max(sb[1]), sa[2].max(sb[2])];
        let g = values(out.iter().product(), 702, dtype);
        reset_host_kernel_calls();
        let fast = grads::<Mixed<Autodiff<Flex>>>(op, dtype, sa, sb, &g);
        let calls = host_kernel_calls().binary;
        // The forward, and under mul the gradient product of each operand of the output's
        // shape (a repeated operand's gradient sums its products in f32, off the kernel).
        let full = [sa, sb].iter().filter(|s| **s == out).count() as u64;
        assert_eq!(calls, if op == Op::Add { 1 } else { 1 + full }, "{context}: forward (and mul's gradient products)");
        let layered = grads::<Autodiff<Mixed<Flex>>>(op, dtype, sa, sb, &g);
        let flex = grads::<Autodiff<Flex>>(op, dtype, sa, sb, &g);
        let (a, b) = operands(dtype, sa, sb);
        for (i, (shape, other)) in [(sa, &b), (sb, &a)].into_iter().enumerate() {
            let name = format!("{context}: gradient {i}");
            if shape == out {
                // Element by element: the same roundings as Flex's.
                assert_same_bits(&name, fast[i].clone(), flex[i].clone(), &[]);
                assert_same_bits(&format!("{name}, Autodiff<Mixed<Flex>>"), layered[i].clone(), flex[i].clone(), &[]);
            } else {
                // Summed over the repeated dimensions, in f32, rounded once.
                let factor = (op == Op::Mul).then_some(other.as_slice());
                let want = reduced(&g, factor, out, shape);
                assert_one_rounding(&name, &read_data(&fast[i]), &want, dtype);
                for (label, other) in [("Autodiff<Mixed<Flex>>", &layered[i]), ("Autodiff<Flex>", &flex[i])] {
                    let (rms, worst) = rounding_units(&read_data(other), &want, dtype);
                    println!("{name}, {label} (Burn's sum): {rms:.2} roundings (rms), worst {worst:.2} ulp");
                }
            }
        }
    }
}

fn read_data(data: &TensorData) -> Vec<f64> {
    data.clone().convert::<f64>().to_vec::<f64>().expect("f64")
}
