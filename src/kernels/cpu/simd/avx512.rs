//! The AVX-512 loops themselves: `unsafe fn`s whose contract (the CPU's features, slice
//! lengths) the safe functions of `simd` check.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

use burn::tensor::{bf16, f16};

use super::{HostIsa, level};

const LANES: usize = 16;

/// Whether these loops run here.
pub(super) fn available() -> bool {
    level() > HostIsa::Portable
}

/// The lanes of the first `n` elements of a group (`n <= 16`).
#[inline]
pub(super) fn mask(n: usize) -> __mmask16 {
    if n >= LANES { 0xffff } else { (1u16 << n) - 1 }
}

/// A half type's 16-lane load (widening) and store (rounding).
pub(crate) trait Lanes: Copy {
    /// The masked lanes of `src` widened to f32 (0 elsewhere; nothing outside the mask is
    /// read). A signalling NaN may stay signalling: every f32 op on it gives a quiet one.
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW/VL, and `src` is readable for the masked lanes.
    unsafe fn load(src: *const Self, mask: __mmask16) -> __m512;

    /// [`Lanes::load`] with every NaN quiet, sign and payload kept (a cast's result: see
    /// `Half`). The column sums and element-wise loops load without it (three more
    /// instructions a group doubled the column sums' time).
    ///
    /// # Safety
    /// As [`Lanes::load`].
    unsafe fn load_quiet(src: *const Self, mask: __mmask16) -> __m512;

    /// `v` rounded to the half type, stored into the masked lanes of `dst`.
    ///
    /// # Safety
    /// The CPU has AVX-512F/BW/VL, and `dst` is writable for the masked lanes.
    unsafe fn store(dst: *mut Self, v: __m512, mask: __mmask16);

    /// [`Lanes::store`] with the CPU's own conversion instruction where it has one that
    /// rounds the same (bf16: `vcvtneps2bf16`, one instruction for the ten of the integer
    /// rounding); the same results.
    ///
    /// # Safety
    /// As [`Lanes::store`], and the CPU has AVX512-BF16.
    unsafe fn store_native(dst: *mut Self, v: __m512, mask: __mmask16);
}

impl Lanes for bf16 {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load(src: *const Self, mask: __mmask16) -> __m512 {
        // SAFETY: the caller's contract (features, readable lanes).
        let bits = unsafe { _mm256_maskz_loadu_epi16(mask, src as *const i16) };
        // bf16 is the top half of an f32.
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(bits)))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load_quiet(src: *const Self, mask: __mmask16) -> __m512 {
        // SAFETY: the caller's contract (features, readable lanes).
        let v = unsafe { Self::load(src, mask) };
        // NaN is the one value unordered with itself; setting the quiet bit leaves the rest.
        let is_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        let wide = _mm512_castps_si512(v);
        _mm512_castsi512_ps(_mm512_mask_or_epi32(wide, is_nan, wide, _mm512_set1_epi32(0x0040_0000)))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn store(dst: *mut Self, v: __m512, mask: __mmask16) {
        let bits = _mm512_castps_si512(v);
        // To nearest even: add 0x7fff plus the lowest kept bit, keep the top half.
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))));
        // NaN keeps its sign and top payload bits, made quiet.
        let magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fff_ffff));
        let is_nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f80_0000));
        let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x0040));
        let halves = _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(is_nan, rounded, quiet));
        // SAFETY: the caller's contract (features, writable lanes).
        unsafe { _mm256_mask_storeu_epi16(dst as *mut i16, mask, halves) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    unsafe fn store_native(dst: *mut Self, v: __m512, mask: __mmask16) {
        // `vcvtneps2bf16` flushes subnormal inputs to zero, where rounding keeps them (bf16
        // has f32's exponent range): a group with one takes the integer rounding. NaN and
        // everything else round as there (checked bit for bit by the cast tests).
        let bits = _mm512_castps_si512(v);
        let exponent_zero = _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f80_0000));
        let fraction = _mm512_test_epi32_mask(bits, _mm512_set1_epi32(0x007f_ffff));
        if exponent_zero & fraction & mask != 0 {
            // SAFETY: the caller's contract.
            return unsafe { Self::store(dst, v, mask) };
        }
        // SAFETY: `__m256bh` and `__m256i` are both 256 bits of plain integer lanes: the
        // sixteen bf16 encodings seen as 16-bit integers.
        let halves: __m256i = unsafe { core::mem::transmute(_mm512_cvtneps_pbh(v)) };
        // SAFETY: the caller's contract (features, writable lanes).
        unsafe { _mm256_mask_storeu_epi16(dst as *mut i16, mask, halves) }
    }
}

impl Lanes for f16 {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load(src: *const Self, mask: __mmask16) -> __m512 {
        // SAFETY: the caller's contract (features, readable lanes).
        _mm512_cvtph_ps(unsafe { _mm256_maskz_loadu_epi16(mask, src as *const i16) })
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load_quiet(src: *const Self, mask: __mmask16) -> __m512 {
        // SAFETY: the caller's contract; `vcvtph2ps` already makes NaN quiet.
        unsafe { Self::load(src, mask) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn store(dst: *mut Self, v: __m512, mask: __mmask16) {
        let halves = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
        // SAFETY: the caller's contract (features, writable lanes).
        unsafe { _mm256_mask_storeu_epi16(dst as *mut i16, mask, halves) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn store_native(dst: *mut Self, v: __m512, mask: __mmask16) {
        // SAFETY: the caller's contract (`vcvtps2ph` is already the native conversion).
        unsafe { Self::store(dst, v, mask) }
    }
}

/// An element-wise op on f32 lanes.
pub(super) trait LaneOp: Copy {
    /// # Safety
    /// The CPU has AVX-512F.
    unsafe fn apply(self, a: __m512, b: __m512) -> __m512;
}

#[derive(Clone, Copy)]
pub(super) struct Add;
#[derive(Clone, Copy)]
pub(super) struct Mul;

impl LaneOp for Add {
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply(self, a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
}

impl LaneOp for Mul {
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn apply(self, a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
}

/// `out[i] = widen(src[i])`.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL ([`available`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn widen<T: Lanes>(src: &[T], out: &mut [MaybeUninit<f32>]) {
    let n = src.len().min(out.len());
    let (src, out) = (src.as_ptr(), out.as_mut_ptr() as *mut f32);
    for at in (0..n).step_by(LANES) {
        let m = mask(n - at);
        // SAFETY: the masked lanes lie in `at..n`, inside both slices.
        unsafe { _mm512_mask_storeu_ps(out.add(at), m, T::load_quiet(src.add(at), m)) }
    }
}

/// The loops that round into a half type, compiled once per way of rounding: `$store` is
/// [`Lanes::store`] or [`Lanes::store_native`], under the target features it needs.
macro_rules! rounding_loops {
    ($module:ident, $features:literal, $store:ident) => {
        mod $module {
            use super::*;

            /// `out[i] = narrow(src[i])`.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn narrow<T: Lanes>(src: &[f32], out: &mut [MaybeUninit<T>]) {
                let n = src.len().min(out.len());
                let (src, out) = (src.as_ptr(), out.as_mut_ptr() as *mut T);
                for at in (0..n).step_by(LANES) {
                    let m = mask(n - at);
                    // SAFETY: the masked lanes lie in `at..n`, inside both slices.
                    unsafe { T::$store(out.add(at), _mm512_maskz_loadu_ps(m, src.add(at)), m) }
                }
            }

            /// See [`super::zip`].
            #[target_feature(enable = $features)]
            pub(super) unsafe fn zip<T: Lanes, Op: LaneOp>(a: &[T], b: &[T], start: usize, out: &mut [MaybeUninit<T>], op: Op, swap: bool) {
                let (n, period) = (out.len(), b.len());
                assert!(a.len() >= n && period > 0, "operands cover the output");
                let (a, b, out) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr() as *mut T);
                let (mut done, mut at) = (0, start % period);
                // Runs over which `b` is contiguous: up to the end of its period.
                while done < n {
                    let run = (period - at).min(n - done);
                    for i in (0..run).step_by(LANES) {
                        let m = mask(run - i);
                        // SAFETY: the masked lanes lie in `done + i..done + run` of `a` and
                        // `out`, and in `at + i..at + run <= period` of `b`.
                        unsafe {
                            let (x, y) = (T::load(a.add(done + i), m), T::load(b.add(at + i), m));
                            let v = if swap { op.apply(y, x) } else { op.apply(x, y) };
                            T::$store(out.add(done + i), v, m);
                        }
                    }
                    done += run;
                    at = 0;
                }
            }
        }
    };
}

rounding_loops!(integer, "avx512f,avx512bw,avx512vl", store);
rounding_loops!(native, "avx512f,avx512bw,avx512vl,avx512bf16", store_native);

fn has_bf16_conversion() -> bool {
    level() >= HostIsa::Avx512Bf16
}

/// `out[i] = narrow(src[i])`.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL ([`available`]).
pub(super) unsafe fn narrow<T: Lanes>(src: &[f32], out: &mut [MaybeUninit<T>]) {
    // SAFETY: the caller's contract, and AVX512-BF16 where the native loop runs.
    unsafe {
        match has_bf16_conversion() {
            true => native::narrow(src, out),
            false => integer::narrow(src, out),
        }
    }
}

/// `out[i] = op(a[i], b[i % b.len()])`, or `op(b[..], a[i])` with `swap`: `b` as long as
/// `out`, or repeating over it from position `start % b.len()` (a bias over the rows).
///
/// # Safety
/// The CPU has AVX-512F/BW/VL ([`available`]); `a` is at least as long as `out`, and `b`
/// is not empty.
pub(super) unsafe fn zip<T: Lanes, Op: LaneOp>(a: &[T], b: &[T], start: usize, out: &mut [MaybeUninit<T>], op: Op, swap: bool) {
    // SAFETY: the caller's contract, and AVX512-BF16 where the native loop runs.
    unsafe {
        match has_bf16_conversion() {
            true => native::zip(a, b, start, out, op, swap),
            false => integer::zip(a, b, start, out, op, swap),
        }
    }
}

/// Adds every `cols`-long row of `rows` (widened) into `acc`, in row order: the same f32
/// sums as adding the widened rows one after another. Columns are taken 128 at a time,
/// their sums kept in eight registers down all the rows (a loop that loaded and stored
/// `acc` for every row ran at 1.1-1.3x Flex's f32 column sum).
///
/// # Safety
/// The CPU has AVX-512F/BW/VL ([`available`]); `acc` holds `cols` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn add_rows<T: Lanes>(rows: &[T], cols: usize, acc: &mut [f32]) {
    const GROUPS: usize = 8;
    assert!(acc.len() == cols && cols > 0, "one sum per column");
    let (acc, n_rows) = (acc.as_mut_ptr() as *const f32, rows.len() / cols);
    for first in (0..cols).step_by(GROUPS * LANES) {
        let width = (cols - first).min(GROUPS * LANES);
        // Groups past the last column have an empty mask: they read and write nothing. Their
        // addresses may lie past the end of `acc` and of the rows, so every group address
        // is formed with `wrapping_add` (no in-bounds requirement) and only dereferenced,
        // by a masked load or store, for the lanes its mask holds.
        let masks: [__mmask16; GROUPS] = core::array::from_fn(|g| mask(width.saturating_sub(g * LANES)));
        let column = |base: *const f32, g: usize| base.wrapping_add(first + g * LANES);
        // SAFETY: each masked lane is a column in `first..first + width <= cols`, of `acc`
        // and of every one of the `n_rows` rows (`rows` holds `n_rows * cols` values).
        unsafe {
            let mut sums: [__m512; GROUPS] = core::array::from_fn(|g| _mm512_maskz_loadu_ps(masks[g], column(acc, g)));
            for r in 0..n_rows {
                let row = rows.as_ptr().wrapping_add(r * cols + first);
                for g in 0..GROUPS {
                    sums[g] = _mm512_add_ps(sums[g], T::load(row.wrapping_add(g * LANES), masks[g]));
                }
            }
            for g in 0..GROUPS {
                _mm512_mask_storeu_ps(column(acc, g) as *mut f32, masks[g], sums[g]);
            }
        }
    }
}

/// `e^x` on f32 lanes, within about one f32 rounding: `x = k ln 2 + r` with `|r| <= ln 2 / 2`,
/// `e^r` from its Taylor series to the 8th power (truncation below 1e-8 relative) and the
/// power of two applied with `vscalefps` (subnormal and zero results included: `-inf`
/// gives 0). NaN stays NaN.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp(x: __m512) -> __m512 {
    // Below -104, e^x rounds to 0 in f32; above 88.8 it overflows. `max`/`min` return
    // their second operand for NaN, so NaN passes through.
    let x = _mm512_min_ps(_mm512_set1_ps(88.8), _mm512_max_ps(_mm512_set1_ps(-104.0), x));
    let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(core::f32::consts::LOG2_E),
    ));
    // ln 2 in two parts, the first with trailing zeros so that `k * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(1.0 / 40320.0);
    for c in [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, k)
}

/// `erf(z) / z` for `0 <= z < 1`, in powers of `z^2`: our least-squares fit (Chebyshev
/// nodes, then monomials), within 4e-9 of erf in f64.
const ERF_SMALL: [f32; 7] =
    [core::f32::consts::FRAC_2_SQRT_PI, -0.376_126_3, 0.112_836_35, -0.026_856_063, 0.005_192_942_5, -0.000_805_359_2, 0.000_080_062_67];
/// `erfc(z) e^(z^2)` for `1 <= z <= 4.5`, in powers of `1 / z`: our fit, within 2e-9 of erfc
/// in f64 (about 3e-7 relative in f32, from the alternating terms).
const ERFC_LARGE: [f32; 11] = [
    0.000_015_094_481,
    0.563_936_9,
    0.001_103_1,
    -0.275_476_85,
    -0.100_836_72,
    0.968_214_8,
    -1.625_616,
    1.524_682_6,
    -0.874_738_9,
    0.288_394_1,
    -0.042_094_72,
];

/// `p(t)` for the coefficients `c` in increasing powers (Horner, with FMA).
#[inline]
#[target_feature(enable = "avx512f")]
fn polynomial(c: &[f32], t: __m512) -> __m512 {
    let (last, rest) = c.split_last().expect("coefficients");
    rest.iter().rev().fold(_mm512_set1_ps(*last), |p, &c| _mm512_fmadd_ps(p, t, _mm512_set1_ps(c)))
}

/// Gelu's derivative `Phi(x) + x phi(x)` on f32 lanes, within about 1e-7 absolute. With
/// `z = |x| / sqrt 2`: `erf(z)` from [`ERF_SMALL`] below 1, `erfc(z) = e^(-z^2) Q(1 / z)`
/// from [`ERFC_LARGE`] above (past 4.5, `Q(1 / 4.5)`: off by less than 1e-9), `Phi(x)` as
/// `erfc(z) / 2` for negative `x` and `1 - erfc(z) / 2` otherwise, and `phi(x) = e^(-z^2) /
/// sqrt(2 pi)`, taken as 0 where `e^(-z^2)` is below 1e-43, so that an infinite `x` gives
/// `inf * 0 = NaN`, as the scalar formula does. NaN stays NaN.
#[inline]
#[target_feature(enable = "avx512f")]
fn gelu_derivative(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    let z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(core::f32::consts::FRAC_1_SQRT_2));
    let z2 = _mm512_mul_ps(z, z);
    let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), z2));
    let erfc_small = _mm512_fnmadd_ps(z, polynomial(&ERF_SMALL, z2), one);
    let t = _mm512_div_ps(one, _mm512_min_ps(_mm512_max_ps(z, one), _mm512_set1_ps(4.5)));
    let erfc_large = _mm512_mul_ps(e, polynomial(&ERFC_LARGE, t));
    let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(z, one);
    let half_erfc = _mm512_mul_ps(_mm512_mask_blend_ps(small, erfc_large, erfc_small), _mm512_set1_ps(0.5));
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
    let cdf = _mm512_mask_blend_ps(negative, _mm512_sub_ps(one, half_erfc), half_erfc);
    let in_range = _mm512_cmp_ps_mask::<_CMP_NGT_UQ>(z2, _mm512_set1_ps(98.0));
    let pdf = _mm512_maskz_mul_ps(in_range, e, _mm512_set1_ps(0.398_942_3));
    _mm512_fmadd_ps(x, pdf, cdf)
}

/// `out[i] = g[i] * gelu'(x[i])` in f32, rounded once (gelu's backward).
///
/// # Safety
/// The CPU has AVX-512F/BW/VL ([`available`]); `x` and `g` are as long as `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn gelu_grad<T: Lanes>(x: &[T], g: &[T], out: &mut [MaybeUninit<T>]) {
    let n = out.len();
    let (x, g, out) = (x.as_ptr(), g.as_ptr(), out.as_mut_ptr() as *mut T);
    for at in (0..n).step_by(LANES) {
        let m = mask(n - at);
        // SAFETY: the masked lanes lie in `at..n`, inside the three slices.
        unsafe {
            let (xv, gv) = (T::load(x.add(at), m), T::load(g.add(at), m));
            T::store(out.add(at), _mm512_mul_ps(gv, gelu_derivative(xv)), m);
        }
    }
}

/// Softmax of each `n`-long row of `scores`, in f32, rounded once into `out`; `row` is a
/// scratch row of `n` values. A row whose every score is `-inf` gives zeros (its maximum
/// is taken as the lowest finite f32, its sum at least the smallest normal).
///
/// # Safety
/// The CPU has AVX-512F/BW/VL ([`available`]); `out` is as long as `scores`, a whole
/// number of rows, and `row` holds `n > 0` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn softmax_rows<T: Lanes>(scores: &[f32], n: usize, row: &mut [f32], out: &mut [MaybeUninit<T>]) {
    assert!(n > 0 && row.len() == n && scores.len() == out.len() && scores.len().is_multiple_of(n), "whole rows");
    let (buf, out) = (row.as_mut_ptr(), out.as_mut_ptr() as *mut T);
    for (r, x) in scores.chunks_exact(n).enumerate() {
        let x = x.as_ptr();
        // SAFETY: every masked lane is a column `< n` of this row, of `buf` and of `out`'s
        // row `r`.
        unsafe {
            let mut max = _mm512_set1_ps(f32::MIN);
            for at in (0..n).step_by(LANES) {
                max = _mm512_max_ps(max, _mm512_mask_loadu_ps(_mm512_set1_ps(f32::MIN), mask(n - at), x.add(at)));
            }
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
            let mut sum = _mm512_setzero_ps();
            for at in (0..n).step_by(LANES) {
                let m = mask(n - at);
                let e = _mm512_maskz_mov_ps(m, exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x.add(at)), max)));
                _mm512_mask_storeu_ps(buf.add(at), m, e);
                sum = _mm512_add_ps(sum, e);
            }
            let sum = _mm512_set1_ps(_mm512_reduce_add_ps(sum).max(f32::MIN_POSITIVE));
            for at in (0..n).step_by(LANES) {
                let m = mask(n - at);
                T::store(out.add(r * n + at), _mm512_div_ps(_mm512_maskz_loadu_ps(m, buf.add(at)), sum), m);
            }
        }
    }
}

/// Softmax's backward for each `n`-long row, in f32 from the half probabilities `p` and
/// their gradient `g`: `q * (g - sum(g * q))` with `q = p / sum(p)` (see
/// `softmax::backward`).
///
/// # Safety
/// The CPU has AVX-512F/BW/VL ([`available`]); `p`, `g` and `out` have one length, a whole
/// number of `n > 0`-long rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn softmax_grad_rows<T: Lanes>(p: &[T], g: &[T], n: usize, out: &mut [MaybeUninit<f32>]) {
    assert!(n > 0 && p.len() == out.len() && g.len() == out.len() && out.len().is_multiple_of(n), "whole rows");
    let rows = out.len() / n;
    let (p, g, out) = (p.as_ptr(), g.as_ptr(), out.as_mut_ptr() as *mut f32);
    for start in (0..rows).map(|r| r * n) {
        // SAFETY: every masked lane is a column `< n` of the row at `start`, in all three.
        unsafe {
            let (mut dot, mut total) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for at in (0..n).step_by(LANES) {
                let m = mask(n - at);
                let pv = T::load(p.add(start + at), m);
                dot = _mm512_fmadd_ps(T::load(g.add(start + at), m), pv, dot);
                total = _mm512_add_ps(total, pv);
            }
            let scale = super::row_normalizer(_mm512_reduce_add_ps(total));
            let (dot, scale) = (_mm512_set1_ps(_mm512_reduce_add_ps(dot) * scale), _mm512_set1_ps(scale));
            for at in (0..n).step_by(LANES) {
                let m = mask(n - at);
                let (pv, gv) = (T::load(p.add(start + at), m), T::load(g.add(start + at), m));
                let q = _mm512_mul_ps(pv, scale);
                _mm512_mask_storeu_ps(out.add(start + at), m, _mm512_mul_ps(q, _mm512_sub_ps(gv, dot)));
            }
        }
    }
}
