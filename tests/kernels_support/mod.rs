//! What the kernel tests share: deterministic inputs rounded to a half dtype, tensors in
//! and out of a backend, an f64 product reference, and error measures in units of one
//! rounding of the output dtype (or bit for bit).

// Each test binary uses part of this module.
#![allow(dead_code)]

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor, TensorData};
use burn_mixed::Mixed;

pub type M = Mixed<Flex>;

pub const HALVES: [FloatDType; 2] = [FloatDType::BF16, FloatDType::F16];

/// Significand bits (with the implicit one) and the smallest normal exponent.
pub fn format(dtype: FloatDType) -> (i32, i32) {
    match dtype {
        FloatDType::BF16 => (8, -126),
        FloatDType::F16 => (11, -14),
        other => panic!("not a half dtype: {other:?}"),
    }
}

/// The spacing of `dtype` around `value` (subnormals included).
pub fn ulp(value: f64, dtype: FloatDType) -> f64 {
    let (p, min_exp) = format(dtype);
    let exp = if value == 0.0 { min_exp } else { (value.abs().log2().floor() as i32).max(min_exp) };
    2f64.powi(exp - (p - 1))
}

pub fn round_to(values: Vec<f64>, dtype: FloatDType) -> Vec<f64> {
    values
        .into_iter()
        .map(|v| match dtype {
            FloatDType::BF16 => half::bf16::from_f64(v).to_f64(),
            FloatDType::F16 => half::f16::from_f64(v).to_f64(),
            _ => v,
        })
        .collect()
}

/// Deterministic values in [-1, 1), rounded to `dtype`.
pub fn values(len: usize, seed: u64, dtype: FloatDType) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0xD1B5_4A32_D192_ED03) | 1;
    let raw = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    round_to(raw, dtype)
}

pub fn tensor<B: Backend, const D: usize>(values: &[f64], shape: [usize; D], dtype: FloatDType, device: &B::Device) -> Tensor<B, D> {
    let data: Vec<f32> = values.iter().map(|v| *v as f32).collect();
    Tensor::<B, D>::from_data(TensorData::new(data, shape), device).cast(dtype)
}

pub fn read<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.cast(FloatDType::F32).into_data().to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect()
}

/// `a [batch, m, k] @ b [batch, k, n]` in f64.
pub fn reference(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; batch * m * n];
    for p in 0..batch {
        for i in 0..m {
            for l in 0..k {
                let x = a[p * m * k + i * k + l];
                for j in 0..n {
                    out[p * m * n + i * n + j] += x * b[p * k * n + l * n + j];
                }
            }
        }
    }
    out
}

/// The error of `got` against `want` in units of one rounding of `dtype`: the relative
/// RMS error over the RMS error of one round-to-nearest (2^-p / sqrt(3)), and the largest
/// element error in ulps among elements not lost to cancellation (|want| >= rms / 16).
pub fn rounding_units(got: &[f64], want: &[f64], dtype: FloatDType) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    if want.is_empty() {
        return (0.0, 0.0);
    }
    let (p, _) = format(dtype);
    let n = want.len() as f64;
    let rms = (want.iter().map(|w| w * w).sum::<f64>() / n).sqrt().max(f64::MIN_POSITIVE);
    let err_rms = (got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum::<f64>() / n).sqrt();
    let one_rounding = 2f64.powi(-p) / 3f64.sqrt();
    let worst =
        got.iter().zip(want).filter(|(_, w)| w.abs() >= rms / 16.0).map(|(g, w)| (g - w).abs() / ulp(*w, dtype)).fold(0.0, f64::max);
    (err_rms / rms / one_rounding, worst)
}

pub fn assert_one_rounding(label: &str, got: &[f64], want: &[f64], dtype: FloatDType) -> f64 {
    let (rms, worst) = rounding_units(got, want, dtype);
    println!("{label} {dtype:?}: {rms:.2} roundings (rms), worst element {worst:.2} ulp");
    assert!(rms <= 1.0, "{label} {dtype:?}: {rms:.2} x one rounding");
    assert!(worst <= 1.0, "{label} {dtype:?}: an element is {worst:.2} ulp off");
    rms
}

/// f32 values that exercise every rounding case: ties, overflow to infinity (f16),
/// subnormals of both formats, signed zeros, infinities and NaN, then a long random tail
/// (odd length, parallel size).
pub fn special_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65504.0,
        65520.0,
        70000.0,
        -70000.0,
        6.0e-8,
        3.0e-8,
        1.0e-40,
        -1.0e-40,
        f32::MIN_POSITIVE,
        1.0 + 2f32.powi(-8),
        1.0 + 3.0 * 2f32.powi(-9),
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-12),
        3.4e38,
        -3.4e38,
    ];
    v.extend(values(100_003, 110, FloatDType::F32).into_iter().map(|x| (x * 300.0) as f32));
    v
}

/// Asserts two encodings are equal, reporting the first few differing elements (as 16-bit
/// or 32-bit words) instead of every byte.
pub fn assert_same_bits(label: &str, got: TensorData, want: TensorData, inputs: &[f32]) {
    let width = got.dtype.size();
    let (got, want) = (got.as_bytes().to_vec(), want.as_bytes().to_vec());
    assert_eq!(got.len(), want.len(), "{label}: lengths");
    let word = |b: &[u8], i: usize| b[i * width..(i + 1) * width].iter().rev().fold(0u32, |w, x| (w << 8) | *x as u32);
    let diffs: Vec<String> = (0..got.len() / width)
        .filter(|&i| word(&got, i) != word(&want, i))
        .take(5)
        .map(|i| format!("#{i} (input {:e}): {:#x} vs {:#x}", inputs.get(i).copied().unwrap_or(f32::NAN), word(&got, i), word(&want, i)))
        .collect();
    assert!(diffs.is_empty(), "{label}: differs at {}", diffs.join(", "));
}

/// [`special_values`] made exactly representable in `dtype`, so that every cast on the
/// way is exact and the results can be compared with Flex bit for bit.
pub fn representable(dtype: FloatDType) -> Vec<f32> {
    special_values().into_iter().map(|x| round_to(vec![f64::from(x)], dtype)[0] as f32).collect()
}

/// Runs `tests` of this test binary again in child processes with `MIXED_HOST_LANES=0`
/// and `=avx512`, so that the element-wise loops a CPU without AVX-512, or without its bf16
/// conversion, takes are checked here too (the switch is read once per process). Asserts
/// that each ran and passed.
pub fn rerun_without_lanes(tests: &[&str]) {
    for level in ["0", "avx512"] {
        rerun_at_level(level, tests);
    }
}

/// Runs each of `tests` again in a child process at `MIXED_HOST_LANES=level` (nothing in a
/// child: the variable is set there).
pub fn rerun_at_level(level: &str, tests: &[&str]) {
    use burn_mixed::kernels::HOST_LANES_ENV;
    if std::env::var(HOST_LANES_ENV).is_ok() {
        return; // Already a child.
    }
    let exe = std::env::current_exe().expect("the test binary");
    for test in tests {
        let out = std::process::Command::new(&exe)
            .args([test, "--exact", "--test-threads=1"])
            .env(HOST_LANES_ENV, level)
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{test} with {HOST_LANES_ENV}={level} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{test} ran with {HOST_LANES_ENV}={level}:\n{stdout}");
    }
}
