//! The host fast path (`burn_mixed::kernels`) on Flex: products against an f64 reference
//! in units of one rounding of the output dtype, the fused linear layer's single rounding,
//! odd shapes and layouts, gradients in both autodiff layerings, and the switch.
//!
//! Inputs are drawn in [-1, 1) and rounded to the half dtype first, so the f64 reference
//! is the exact product of the very values the kernels see.

#![cfg(feature = "flex")]

mod kernels_support;

use burn::backend::{Autodiff, Flex};
use burn::tensor::module::linear;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use burn_mixed::Mixed;
use burn_mixed::autocast::autocast;
use burn_mixed::kernels::{
    HOST_KERNELS_ENV, HostKernelCalls, host_kernel_calls, host_kernels_enabled, reset_host_kernel_calls, with_host_kernels,
};
use kernels_support::*;

#[test]
fn products_are_within_one_rounding_for_every_k_and_m() {
    let device = Default::default();
    let shapes = [(1, 1, 64, 64), (1, 1, 1024, 32), (1, 1, 4096, 16), (1, 5, 1, 7), (1, 64, 256, 64), (1, 33, 4096, 17), (3, 16, 128, 8)];
    for dtype in HALVES {
        for (i, &(batch, m, k, n)) in shapes.iter().enumerate() {
            let (a, b) = (values(batch * m * k, 2 * i as u64, dtype), values(batch * k * n, 2 * i as u64 + 1, dtype));
            let want = reference(&a, &b, batch, m, k, n);
            let label = format!("[{batch}, {m}, {k}] @ [{batch}, {k}, {n}]");
            let fast = tensor::<M, 3>(&a, [batch, m, k], dtype, &device).matmul(tensor(&b, [batch, k, n], dtype, &device));
            assert_eq!(fast.dtype(), DType::from(dtype), "{label}: the product stays in the half dtype");
            assert_one_rounding(&format!("fast {label}"), &read(fast), &want, dtype);
            let flex = tensor::<Flex, 3>(&a, [batch, m, k], dtype, &device).matmul(tensor(&b, [batch, k, n], dtype, &device));
            let (flex_rms, _) = rounding_units(&read(flex), &want, dtype);
            println!("  Flex's own kernel: {flex_rms:.2} roundings");
        }
    }
}

#[test]
fn one_row_f16_products_no_longer_accumulate_in_f16() {
    let device = Default::default();
    let dtype = FloatDType::F16;
    let (k, n) = (1024, 64);
    let (a, b) = (values(k, 40, dtype), values(k * n, 41, dtype));
    let want = reference(&a, &b, 1, 1, k, n);
    let product = || tensor::<M, 2>(&a, [1, k], dtype, &device).matmul(tensor(&b, [k, n], dtype, &device));
    let fast = assert_one_rounding("fast [1, 1024] @ [1024, 64]", &read(product()), &want, dtype);
    let (slow, _) = rounding_units(&read(with_host_kernels(false, product)), &want, dtype);
    println!("Flex's f16 kernel: {slow:.2} roundings");
    assert!(slow > 4.0 * fast, "Flex's one-row f16 product accumulates in f16 ({slow:.2} vs {fast:.2})");
}

/// f16 products on AMX tiles split every value into two bf16 values, and an infinity would
/// split into `inf + NaN` (its cross terms `inf * 0` make NaN where the product is an
/// infinity): a product with one takes gemmkit and multiplies as f32 does. Its finite rows
/// stay within one rounding.
#[test]
fn f16_products_with_infinities_multiply_as_f32_does() {
    let device = Default::default();
    let dtype = FloatDType::F16;
    let (m, k, n) = (64, 96, 48);
    let mut a = values(m * k, 50, dtype);
    // Quarters are bf16 values: their low halves are zero, and none of them is zero.
    let b: Vec<f64> = (0..k * n).map(|i| ((i % 7) as f64 + 1.0) / 4.0).collect();
    let want = reference(&a, &b, 1, m, k, n);
    (a[0], a[k + 5]) = (f64::INFINITY, f64::NEG_INFINITY);
    reset_host_kernel_calls();
    let got = read(tensor::<M, 2>(&a, [m, k], dtype, &device).matmul(tensor(&b, [k, n], dtype, &device)));
    assert!(got[..n].iter().all(|&v| v == f64::INFINITY), "row 0: {:?}", &got[..n]);
    assert!(got[n..2 * n].iter().all(|&v| v == f64::NEG_INFINITY), "row 1: {:?}", &got[n..2 * n]);
    assert_one_rounding("the finite rows", &got[2 * n..], &want[2 * n..], dtype);
    assert_eq!(host_kernel_calls().tile_products, 0, "not on the tiles");
    // Without the infinities the same product takes the tiles where this CPU has them.
    let finite = read(tensor::<M, 2>(&values(m * k, 50, dtype), [m, k], dtype, &device).matmul(tensor(&b, [k, n], dtype, &device)));
    assert_one_rounding("finite operands", &finite, &want, dtype);
    let tiles = burn_mixed::kernels::host_isa() >= burn_mixed::kernels::HostIsa::Amx;
    assert_eq!(host_kernel_calls().tile_products, u64::from(tiles), "on the tiles where the CPU has them");
}

#[test]
fn linear_adds_the_bias_before_the_one_rounding() {
    let device = Default::default();
    let (m, k, n) = (64, 256, 48);
    for dtype in HALVES {
        let (x, w, b) = (values(m * k, 50, dtype), values(k * n, 51, dtype), values(n, 52, dtype));
        let mut want = reference(&x, &w, 1, m, k, n);
        want.iter_mut().enumerate().for_each(|(i, v)| *v += b[i % n]);
        let fused =
            linear(tensor::<M, 2>(&x, [m, k], dtype, &device), tensor(&w, [k, n], dtype, &device), Some(tensor(&b, [n], dtype, &device)));
        let fused = assert_one_rounding("fused linear", &read(fused), &want, dtype);
        // What Flex's linear does: round the product, then round the sum again.
        let twice = linear(
            tensor::<Flex, 2>(&x, [m, k], dtype, &device),
            tensor(&w, [k, n], dtype, &device),
            Some(tensor(&b, [n], dtype, &device)),
        );
        let (twice, _) = rounding_units(&read(twice), &want, dtype);
        println!("  rounded twice: {twice:.2} roundings");
        assert!(fused < twice, "{dtype:?}: one rounding ({fused:.2}) beats two ({twice:.2})");
    }
}

#[test]
fn odd_shapes_and_layouts() {
    let device = Default::default();
    for dtype in HALVES {
        // Empty inner dimension: the sum of nothing, plus the bias.
        let a = Tensor::<M, 2>::zeros([3, 0], &device).cast(dtype);
        let b = Tensor::<M, 2>::zeros([0, 4], &device).cast(dtype);
        assert_eq!(read(a.clone().matmul(b.clone())), vec![0.0; 12]);
        let bias = values(4, 60, dtype);
        let with_bias = linear(a, b, Some(tensor(&bias, [4], dtype, &device)));
        assert_eq!(read(with_bias), bias.repeat(3));
        // No rows.
        let empty = Tensor::<M, 2>::zeros([0, 5], &device).cast(dtype).matmul(Tensor::<M, 2>::zeros([5, 3], &device).cast(dtype));
        assert_eq!(empty.dims(), [0, 3]);
        // k = 1.
        let (a, b) = (values(6, 61, dtype), values(4, 62, dtype));
        assert_one_rounding(
            "k = 1",
            &read(tensor::<M, 2>(&a, [6, 1], dtype, &device).matmul(tensor(&b, [1, 4], dtype, &device))),
            &reference(&a, &b, 1, 6, 1, 4),
            dtype,
        );

        // Transposed and sliced views: the same values as their contiguous copies.
        let (a, b) = (values(24 * 16, 63, dtype), values(24 * 16, 64, dtype));
        let a_t = tensor::<M, 2>(&a, [24, 16], dtype, &device).transpose(); // [16, 24], column-major
        let b_s = tensor::<M, 2>(&b, [24, 16], dtype, &device).slice([0..24, 3..11]); // [24, 8], strided rows
        let want = {
            let at: Vec<f64> = (0..16).flat_map(|i| (0..24).map(move |j| (i, j))).map(|(i, j)| a[j * 16 + i]).collect();
            let bs: Vec<f64> = (0..24).flat_map(|i| (3..11).map(move |j| (i, j))).map(|(i, j)| b[i * 16 + j]).collect();
            reference(&at, &bs, 1, 16, 24, 8)
        };
        assert_one_rounding("transposed @ sliced", &read(a_t.matmul(b_s)), &want, dtype);

        // Broadcast batch dimensions (either side repeated), on the kernels.
        let (a, b) = (values(2 * 3 * 4, 65, dtype), values(4 * 5, 66, dtype));
        reset_host_kernel_calls();
        let repeated_rhs = tensor::<M, 3>(&a, [2, 3, 4], dtype, &device).matmul(tensor(&b, [1, 4, 5], dtype, &device));
        let b2 = [b.clone(), b.clone()].concat();
        assert_one_rounding("rhs batch repeated", &read(repeated_rhs), &reference(&a, &b2, 2, 3, 4, 5), dtype);
        let (a, b) = (values(3 * 4, 72, dtype), values(2 * 4 * 5, 73, dtype));
        let repeated_lhs = tensor::<M, 3>(&a, [1, 3, 4], dtype, &device).matmul(tensor(&b, [2, 4, 5], dtype, &device));
        assert_one_rounding("lhs batch repeated", &read(repeated_lhs), &reference(&[a.clone(), a].concat(), &b, 2, 3, 4, 5), dtype);
        assert_eq!(host_kernel_calls().matmul, 2, "broadcast batches take the kernel");

        // A linear layer over a rank-3 input.
        let (x, w, bias) = (values(2 * 3 * 8, 67, dtype), values(8 * 4, 68, dtype), values(4, 69, dtype));
        let mut want = reference(&x, &w, 1, 6, 8, 4);
        want.iter_mut().enumerate().for_each(|(i, v)| *v += bias[i % 4]);
        let out = linear(
            tensor::<M, 3>(&x, [2, 3, 8], dtype, &device),
            tensor(&w, [8, 4], dtype, &device),
            Some(tensor(&bias, [4], dtype, &device)),
        );
        assert_eq!(out.dims(), [2, 3, 4]);
        assert_one_rounding("rank-3 linear", &read(out), &want, dtype);
    }
    // f32 never takes the fast path: bit-identical to Flex.
    let (a, b) = (values(16 * 32, 70, FloatDType::F32), values(32 * 8, 71, FloatDType::F32));
    let mixed = tensor::<M, 2>(&a, [16, 32], FloatDType::F32, &device).matmul(tensor(&b, [32, 8], FloatDType::F32, &device));
    let flex = tensor::<Flex, 2>(&a, [16, 32], FloatDType::F32, &device).matmul(tensor(&b, [32, 8], FloatDType::F32, &device));
    assert_eq!(mixed.into_data().as_bytes(), flex.into_data().as_bytes());
}

/// A 16-mixed linear layer with one row, forward and backward: every gradient within one
/// rounding of f64, and the calls each pass made to the kernels.
fn linear_grads<A: burn::tensor::backend::AutodiffBackend>(device: &A::Device) -> HostKernelCalls {
    let dtype = FloatDType::F16;
    let (k, n) = (64, 1024);
    let (x, w, b, g) = (values(k, 80, dtype), values(k * n, 81, dtype), values(n, 82, dtype), values(n, 83, dtype));
    let x_leaf = tensor::<A, 2>(&x, [1, k], FloatDType::F32, device).require_grad();
    let w_leaf = tensor::<A, 2>(&w, [k, n], FloatDType::F32, device).require_grad();
    let b_leaf = tensor::<A, 1>(&b, [n], FloatDType::F32, device).require_grad();
    reset_host_kernel_calls();
    let y = autocast::<A, _>(device, dtype, || linear(x_leaf.clone(), w_leaf.clone(), Some(b_leaf.clone()))).expect("f16");
    let grads = (y.cast(FloatDType::F32) * tensor::<A, 2>(&g, [1, n], FloatDType::F32, device)).sum().backward();
    let calls = host_kernel_calls();
    // d/dx = g @ w^T (a one-row product over n = 1024), d/dw = x^T g, d/db = g.
    let x_grad = x_leaf.grad(&grads).expect("x grad");
    assert_eq!(x_grad.dtype(), DType::F32, "the gradient of an f32 leaf is f32");
    let w_t: Vec<f64> = (0..n).flat_map(|j| (0..k).map(move |i| (i, j))).map(|(i, j)| w[i * n + j]).collect();
    assert_one_rounding("input gradient", &read(x_grad), &reference(&g, &w_t, 1, 1, n, k), dtype);
    assert_one_rounding("weight gradient", &read(w_leaf.grad(&grads).expect("w grad")), &reference(&x, &g, 1, k, 1, n), dtype);
    assert_one_rounding("bias gradient", &read(b_leaf.grad(&grads).expect("b grad")), &g, dtype);
    calls
}

#[test]
fn gradients_use_the_kernels_in_both_layerings() {
    let device = Default::default();
    // Forward: the fused linear; backward: grad @ w^T (linear), x^T @ grad (matmul) and
    // the bias gradient (sum), all in f16.
    let calls = linear_grads::<Mixed<Autodiff<Flex>>>(&device);
    assert_eq!((calls.matmul, calls.linear, calls.sum_to_last), (1, 2, 1), "Mixed<Autodiff<Flex>>");
    // x, weight, bias and the output forward, and their gradients back.
    assert_eq!(calls.cast, 8, "Mixed<Autodiff<Flex>>: casts");
    let calls = with_host_kernels(false, || linear_grads::<Mixed<Autodiff<Flex>>>(&device));
    assert_eq!(calls, HostKernelCalls::default(), "switched off");
    // Autodiff<Mixed<Flex>>: the tape does not see the casts, so the backward products get
    // the f32 parameters and run in f32 (promoted), on Flex; the forward takes the kernel.
    let calls = linear_grads::<Autodiff<Mixed<Flex>>>(&device);
    assert_eq!((calls.matmul, calls.linear, calls.sum_to_last), (0, 1, 1), "Autodiff<Mixed<Flex>>");
}

#[test]
fn matmul_gradients_in_bf16() {
    let device = Default::default();
    let dtype = FloatDType::BF16;
    type T = Mixed<Autodiff<Flex>>;
    let (m, k, n) = (8, 512, 16);
    let (a, b, g) = (values(m * k, 90, dtype), values(k * n, 91, dtype), values(m * n, 92, dtype));
    let a_leaf = tensor::<T, 2>(&a, [m, k], dtype, &device).require_grad();
    let b_leaf = tensor::<T, 2>(&b, [k, n], dtype, &device).require_grad();
    let y = a_leaf.clone().matmul(b_leaf.clone());
    let grads = (y.cast(FloatDType::F32) * tensor::<T, 2>(&g, [m, n], FloatDType::F32, &device)).sum().backward();
    let a_grad = a_leaf.grad(&grads).expect("a grad");
    assert_eq!(a_grad.dtype(), DType::BF16, "a bf16 leaf gets a bf16 gradient");
    let b_t: Vec<f64> = (0..n).flat_map(|j| (0..k).map(move |i| (i, j))).map(|(i, j)| b[i * n + j]).collect();
    assert_one_rounding("d/da = g @ b^T", &read(a_grad), &reference(&g, &b_t, 1, m, n, k), dtype);
    let a_t: Vec<f64> = (0..k).flat_map(|j| (0..m).map(move |i| (i, j))).map(|(i, j)| a[i * k + j]).collect();
    assert_one_rounding("d/db = a^T @ g", &read(b_leaf.grad(&grads).expect("b grad")), &reference(&a_t, &g, 1, k, m, n), dtype);
}

/// `MIXED_HOST_KERNELS=0` turns the fast path off: checked in a child process, since the
/// environment is read once per process.
#[test]
fn environment_switch() {
    const CHILD: &str = "BURN_MIXED_KERNELS_TEST_CHILD";
    let device = Default::default();
    let (a, b) = (values(1024, 100, FloatDType::F16), values(1024 * 8, 101, FloatDType::F16));
    let product =
        || tensor::<M, 2>(&a, [1, 1024], FloatDType::F16, &device).matmul(tensor(&b, [1024, 8], FloatDType::F16, &device)).into_data();
    let flex =
        tensor::<Flex, 2>(&a, [1, 1024], FloatDType::F16, &device).matmul(tensor(&b, [1024, 8], FloatDType::F16, &device)).into_data();
    if std::env::var_os(CHILD).is_some() {
        assert!(!host_kernels_enabled(), "{HOST_KERNELS_ENV}=0 turns the fast path off");
        assert_eq!(product().as_bytes(), flex.as_bytes(), "off: Flex's own kernel");
        return;
    }
    assert!(host_kernels_enabled(), "on by default");
    assert_ne!(product().as_bytes(), flex.as_bytes(), "on: not Flex's kernel");
    assert_eq!(with_host_kernels(false, product).as_bytes(), flex.as_bytes(), "off on this thread");
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "environment_switch", "--test-threads", "1"])
        .env(HOST_KERNELS_ENV, "0")
        .env(CHILD, "1")
        .status()
        .expect("the test binary runs");
    assert!(status.success(), "the child run with {HOST_KERNELS_ENV}=0 failed");
}

fn infinity_bits(dtype: FloatDType) -> u16 {
    if dtype == FloatDType::BF16 { 0x7f80 } else { 0x7c00 }
}

/// The bits of `value` rounded to nearest (ties to even) in `dtype`, from f64 arithmetic on
/// the neighbouring values: the reference the cast kernel is held to.
fn nearest_even(value: f32, dtype: FloatDType) -> u16 {
    type Conversions = (fn(u16) -> f64, fn(f32) -> u16);
    let (to_f64, from_f32): Conversions = match dtype {
        FloatDType::BF16 => (|b| half::bf16::from_bits(b).to_f64(), |v| half::bf16::from_f32(v).to_bits()),
        _ => (|b| half::f16::from_bits(b).to_f64(), |v| half::f16::from_f32(v).to_bits()),
    };
    let v = f64::from(value);
    let guess = from_f32(value);
    let sign = guess & 0x8000;
    // Infinity sits where the next binade would start: values at least half an ulp above
    // the largest finite one round to it (IEEE 754 overflow under round-to-nearest).
    let emax = if dtype == FloatDType::BF16 { 127 } else { 15 };
    let position = |c: u16| match to_f64(c) {
        x if x.is_infinite() => x.signum() * 2f64.powi(emax + 1),
        x => x,
    };
    if v.abs() >= 2f64.powi(emax + 1) {
        return sign | (infinity_bits(dtype));
    }
    // Search the same-sign bit patterns (monotone in magnitude) around a first guess.
    (guess.saturating_sub(2)..=guess.saturating_add(2))
        .filter(|c| c & 0x8000 == sign && !to_f64(*c).is_nan())
        .min_by(|a, b| {
            let (da, db) = ((position(*a) - v).abs(), (position(*b) - v).abs());
            da.total_cmp(&db).then((a & 1).cmp(&(b & 1)))
        })
        .expect("a candidate")
}

#[test]
fn casts_round_to_nearest_even() {
    let device = Default::default();
    let v = special_values();
    let n = v.len();
    for dtype in HALVES {
        reset_host_kernel_calls();
        let mixed = Tensor::<M, 1>::from_data(TensorData::new(v.clone(), [n]), &device).cast(dtype);
        let flex = Tensor::<Flex, 1>::from_data(TensorData::new(v.clone(), [n]), &device).cast(dtype);
        let words = |d: TensorData| -> Vec<u16> { d.as_bytes().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect() };
        let (got, flex_bits) = (words(mixed.clone().into_data()), words(flex.clone().into_data()));
        for (i, (&x, &g)) in v.iter().zip(&got).enumerate() {
            if x.is_nan() {
                assert!(g & 0x7fff > 0x7f80 || (dtype == FloatDType::F16 && g & 0x7fff > 0x7c00), "#{i}: NaN stays NaN");
                continue;
            }
            assert_eq!(g, nearest_even(x, dtype), "{dtype:?} #{i}: {x:e} rounds to nearest even");
        }
        let off = got.iter().zip(&flex_bits).zip(&v).filter(|((g, f), x)| g != f && !x.is_nan()).count();
        println!("{dtype:?}: {off} of {n} values rounded differently by Flex's own cast (through f64)");
        assert_eq!(host_kernel_calls().cast, 1, "{dtype:?}: the kernel ran");
        drop(mixed);

        // Widening is exact: bit-identical to Flex on the same half values (representable
        // ones, so that the narrowing casts agree too).
        let exact = representable(dtype);
        let widen = |t: Tensor<M, 1>| t.cast(dtype).cast(FloatDType::F32).into_data();
        let widened = widen(Tensor::from_data(TensorData::new(exact.clone(), [n]), &device));
        let flex_widened =
            Tensor::<Flex, 1>::from_data(TensorData::new(exact.clone(), [n]), &device).cast(dtype).cast(FloatDType::F32).into_data();
        assert_same_bits(&format!("{dtype:?}: half -> f32"), widened, flex_widened, &exact);
        assert_eq!(host_kernel_calls().cast, 3, "{dtype:?}: the kernels ran");

        // A transposed view is left to Flex.
        let grid = |t: Tensor<M, 2>| t.transpose().cast(dtype).into_data();
        let values: Vec<f32> = v[..300 * 333].iter().map(|x| half::f16::from_f32(*x).to_f32()).collect();
        let strided = grid(Tensor::from_data(TensorData::new(values.clone(), [300, 333]), &device));
        let flex = Tensor::<Flex, 2>::from_data(TensorData::new(values, [300, 333]), &device).transpose().cast(dtype).into_data();
        assert_same_bits(&format!("{dtype:?}: strided cast"), strided, flex, &[]);
    }
}

#[test]
fn relu_is_bit_identical_to_flex() {
    let device = Default::default();
    for dtype in HALVES {
        let v = representable(dtype);
        let n = v.len();
        reset_host_kernel_calls();
        let mixed = burn::tensor::activation::relu(Tensor::<M, 1>::from_data(TensorData::new(v.clone(), [n]), &device).cast(dtype));
        let flex = burn::tensor::activation::relu(Tensor::<Flex, 1>::from_data(TensorData::new(v.clone(), [n]), &device).cast(dtype));
        assert_same_bits(&format!("{dtype:?}: relu"), mixed.into_data(), flex.into_data(), &v);
        assert_eq!(host_kernel_calls().relu, 1, "{dtype:?}: the kernel ran");

        // A unique input is overwritten in place; a shared one must be left as it was.
        let x = Tensor::<M, 1>::from_data(TensorData::new(v.clone(), [n]), &device).cast(dtype);
        let before = x.clone().into_data();
        let shared = burn::tensor::activation::relu(x.clone());
        assert_same_bits(&format!("{dtype:?}: input of a shared relu"), x.into_data(), before.clone(), &v);
        let owned = burn::tensor::activation::relu(Tensor::<M, 1>::from_data(before, &device).cast(dtype));
        assert_same_bits(&format!("{dtype:?}: in-place relu"), owned.into_data(), shared.into_data(), &v);
    }
}

#[test]
fn relu_gradients_are_bit_identical_to_flex() {
    let device = Default::default();
    fn grads<A: burn::tensor::backend::AutodiffBackend>(v: &[f32], g: &[f64], dtype: FloatDType, device: &A::Device) -> TensorData {
        let n = v.len();
        let x = Tensor::<A, 1>::from_data(TensorData::new(v.to_vec(), [n]), device).require_grad();
        let g = Tensor::<A, 1>::from_data(TensorData::new(g.iter().map(|g| *g as f32).collect::<Vec<_>>(), [n]), device);
        let y = burn::tensor::activation::relu(x.clone().cast(dtype)).cast(FloatDType::F32);
        let grads = (y * g).sum().backward();
        x.grad(&grads).expect("x grad").into_data()
    }
    for dtype in HALVES {
        let v = representable(dtype);
        let upstream = values(v.len(), 120, dtype);
        reset_host_kernel_calls();
        let fast = grads::<Mixed<Autodiff<Flex>>>(&v, &upstream, dtype, &device);
        let calls = host_kernel_calls();
        assert_eq!((calls.relu, calls.cast), (1, 4), "{dtype:?}: relu, and the casts forward and back");
        let flex = grads::<Autodiff<Flex>>(&v, &upstream, dtype, &device);
        assert_same_bits(&format!("{dtype:?}: relu backward, Mixed<Autodiff<Flex>>"), fast, flex.clone(), &v);
        let layered = grads::<Autodiff<Mixed<Flex>>>(&v, &upstream, dtype, &device);
        assert_same_bits(&format!("{dtype:?}: relu backward, Autodiff<Mixed<Flex>>"), layered, flex, &v);
    }
}

/// Per-step losses of a small MLP (16 -> 64 -> 64 -> 4, relu, mean-square loss) trained with
/// plain SGD for `steps` steps from fixed weights on fixed data. `autocast` runs its
/// forward pass under that dtype (parameters and updates stay in `param` dtype). `fused`:
/// each layer is `linear` (the bias added inside the product); otherwise `x @ w + b`, two
/// ops, so in half precision the product is rounded before the bias is added.
fn training_curve(param: FloatDType, autocast_to: Option<FloatDType>, steps: usize, seed: u64, fused: bool) -> Vec<f64> {
    type T = Mixed<Autodiff<Flex>>;
    let device = Default::default();
    let leaf = |v: Vec<f64>, shape: [usize; 2]| tensor::<T, 2>(&v, shape, FloatDType::F32, &device).cast(param).require_grad();
    let scaled = |n: usize, seed: u64, fan_in: usize| {
        values(n, seed, FloatDType::F32).into_iter().map(|v| v / (fan_in as f64).sqrt()).collect::<Vec<_>>()
    };
    let mut params = vec![
        leaf(scaled(16 * 64, seed + 200, 16), [16, 64]),
        leaf(scaled(64, seed + 201, 16), [1, 64]),
        leaf(scaled(64 * 64, seed + 202, 64), [64, 64]),
        leaf(scaled(64, seed + 203, 64), [1, 64]),
        leaf(scaled(64 * 4, seed + 204, 64), [64, 4]),
        leaf(scaled(4, seed + 205, 64), [1, 4]),
    ];
    let x = tensor::<T, 2>(&values(128 * 16, seed + 206, FloatDType::F32), [128, 16], FloatDType::F32, &device).cast(param);
    let y = tensor::<T, 2>(&values(128 * 4, seed + 207, FloatDType::F32), [128, 4], FloatDType::F32, &device).cast(param);
    let mut losses = Vec::new();
    for _ in 0..steps {
        let forward = || {
            let layer = |h: Tensor<T, 2>, w: &Tensor<T, 2>, b: &Tensor<T, 2>| match fused {
                true => linear(h, w.clone(), Some(b.clone().reshape([-1]))),
                false => h.matmul(w.clone()) + b.clone(),
            };
            let h = burn::tensor::activation::relu(layer(x.clone(), &params[0], &params[1]));
            let h = burn::tensor::activation::relu(layer(h, &params[2], &params[3]));
            layer(h, &params[4], &params[5])
        };
        let out = match autocast_to {
            Some(dtype) => autocast::<T, _>(&device, dtype, forward).expect("flex runs half types"),
            None => forward(),
        };
        let loss = (out.cast(param) - y.clone()).powi_scalar(2).mean();
        losses.push(loss.clone().into_data().convert::<f64>().to_vec::<f64>().expect("f64")[0]);
        let grads = loss.backward();
        params = params
            .into_iter()
            .map(|p| {
                let g = p.grad(&grads).expect("every parameter has a gradient");
                Tensor::from_inner(p.inner() - g * 0.5).require_grad()
            })
            .collect();
    }
    losses
}

/// The mean relative deviation of `curve` from `reference`, step by step.
fn deviation(curve: &[f64], reference: &[f64]) -> f64 {
    curve.iter().zip(reference).map(|(c, r)| ((c - r) / r).abs()).sum::<f64>() / reference.len() as f64
}

#[test]
fn fusing_the_bias_brings_bf16_training_closer_to_f64() {
    // Roundings to nearest are unbiased, so one curve's deviation is noise-dominated:
    // average over many initialisations and data sets, and count the runs each way.
    let (steps, seeds) = (60, 96);
    let (mut d_f32, mut d_fused, mut d_twice, mut d_flex, mut fused_closer) = (0.0, 0.0, 0.0, 0.0, 0u64);
    for seed in (0..seeds).map(|s| s * 1000) {
        let f64_curve = training_curve(FloatDType::F64, None, steps, seed, true);
        assert!(f64_curve[steps - 1] < 0.9 * f64_curve[0], "the model learns: {f64_curve:?}");
        d_f32 += deviation(&training_curve(FloatDType::F32, None, steps, seed, true), &f64_curve);
        let bf16 = |fused| training_curve(FloatDType::F32, Some(FloatDType::BF16), steps, seed, fused);
        let fused = deviation(&with_host_kernels(true, || bf16(true)), &f64_curve);
        let twice = deviation(&with_host_kernels(true, || bf16(false)), &f64_curve);
        fused_closer += u64::from(fused < twice);
        (d_fused, d_twice) = (d_fused + fused, d_twice + twice);
        d_flex += deviation(&with_host_kernels(false, || bf16(true)), &f64_curve);
    }
    let n = seeds as f64;
    let (d_f32, d_fused, d_twice, d_flex) = (d_f32 / n, d_fused / n, d_twice / n, d_flex / n);
    println!(
        "mean per-step loss deviation from f64 over {seeds} runs: f32 {d_f32:.3e}; bf16-mixed, fused linear {d_fused:.3e}, \
         product and bias rounded apart {d_twice:.3e} ({:.3}x; fused closer in {fused_closer} runs), Flex's kernels {d_flex:.3e}",
        d_twice / d_fused
    );
    // Measured here: fused 1.010e-4, rounded apart 1.083e-4 (1.072x), fused closer in 61 of
    // 96 runs; Flex's kernels 1.098e-4 (their linear rounds twice too). With biases
    // initialised to zero the gap is 1.16x. A curve also carries the backward pass's
    // roundings (every gradient is a bf16 tensor), which fusing the forward bias leaves
    // alone: the gain is several percent, where one linear layer's output gains a whole rounding
    // (`linear_adds_the_bias_before_the_one_rounding`).
    assert!(d_fused < 1e-3 && d_twice < 1e-3, "bf16-mixed tracks the f64 curve to 1e-3");
    assert!(d_twice > 1.03 * d_fused, "the fused bias lowers the deviation: {d_fused:.3e} vs {d_twice:.3e}");
    assert!(fused_closer * 2 > seeds, "the fused linear is closer to f64 in most runs ({fused_closer} of {seeds})");
    assert!(d_fused < d_flex, "closer than Flex's own kernels ({d_fused:.3e} vs {d_flex:.3e})");
}

/// Under autocast on a host backend, attention is written out on `Mixed` so that both of
/// its products take the kernels (and its softmax runs in f32): within bf16's tolerance of
/// the f32 attention, forward and backward.
#[test]
fn attention_takes_the_kernels_under_autocast() {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    type T = Mixed<Autodiff<Flex>>;
    let device = Default::default();
    let shape = [2, 4, 16, 8];
    let input = |seed| {
        let v = values(shape.iter().product(), seed, FloatDType::F32);
        Tensor::<T, 4>::from_data(TensorData::new(v.iter().map(|x| *x as f32).collect::<Vec<_>>(), shape), &device).require_grad()
    };
    let (q, k, v) = (input(300), input(301), input(302));
    let run = |region: Option<FloatDType>| {
        let out = match region {
            Some(dtype) => autocast::<T, _>(&device, dtype, || {
                attention(q.clone(), k.clone(), v.clone(), None, None, AttentionModuleOptions::default())
            })
            .expect("bf16"),
            None => attention(q.clone(), k.clone(), v.clone(), None, None, AttentionModuleOptions::default()),
        };
        let grads = out.clone().cast(FloatDType::F32).sum().backward();
        (read(out), read(q.grad(&grads).expect("q grad")))
    };
    let (want_out, want_grad) = run(None);
    reset_host_kernel_calls();
    let (got_out, got_grad) = run(Some(FloatDType::BF16));
    let calls = host_kernel_calls();
    assert_eq!(calls.matmul, 2 + 4, "two products forward, four backward: {calls:?}");
    assert_eq!((calls.softmax, calls.softmax_backward), (1, 1), "the softmax forward and backward: {calls:?}");
    for (label, got, want) in [("output", got_out, want_out), ("query gradient", got_grad, want_grad)] {
        let norm = want.iter().map(|w| w * w).sum::<f64>().sqrt();
        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
        println!("attention {label}: worst element error {:.2e} x norm", worst / norm);
        assert!(worst <= 1.6e-2 * norm, "attention {label} within bf16's tolerance");
    }
}

/// Casts and a linear layer's gradients on the loops a CPU without AVX-512, or without its
/// bf16 conversion, runs.
#[test]
fn with_fewer_simd_instructions() {
    rerun_without_lanes(&["casts_round_to_nearest_even", "gradients_use_the_kernels_in_both_layerings"]);
}
