//! Every `unsafe` of the host kernels, behind safe functions: the AVX-512 loops, and the
//! outputs they and the portable loops write without zeroing them first.
//!
//! **Outputs.** A kernel's new output is written into uninitialized memory ([`filled`]):
//! zeroing it first cost as much as the op itself (relu on 2048 x 256 bf16: 0.090 ms with
//! a zeroed output, 0.031 ms without; Flex's f32 relu 0.044 ms). Kernels write through
//! [`Out`], which hands out its elements front to back and counts them; [`filled`] checks
//! that every element was written before the memory is read as values, so no kernel can
//! leave one uninitialized, whatever it does.
//!
//! **AVX-512.** Element-wise and row loops fused into one pass over 16-lane registers: load
//! the half values, widen them, compute in f32, round once and store, with masked loads
//! and stores for the last partial group (no scalar tail). Each safe entry point returns
//! `false`, having written nothing, where the CPU lacks AVX-512F/BW/VL (checked at run time)
//! or `MIXED_HOST_LANES=0` asks for the portable loops; the caller then runs its portable
//! loop. bf16 rounds with `vcvtneps2bf16` where the CPU has AVX512-BF16
//! (`MIXED_HOST_LANES=avx512` keeps to the integer rounding, for comparison). The block
//! loops made five passes over L1 buffers per block (widen each operand, the op, round,
//! copy out), and left a broadcast add at 1.17-1.26x and a mul at 1.31-1.46x Flex's f32
//! time; here each element is loaded, computed and stored once.
//!
//! Results are the portable loops' bit for bit: the same exact widening, the same f32 op,
//! and the same rounding (f16: the hardware's conversion, to nearest even; bf16: the same
//! integer rounding, NaN made quiet). The softmax rows are the exception: their exp is a
//! polynomial here and the platform's `exp` in the portable loop, each within about one
//! f32 rounding, so a probability can round to the neighbouring half value.

use core::mem::MaybeUninit;

use rayon::prelude::*;

use crate::kernels::BinaryOp;

/// An output being written front to back: a kernel pushes its results in order, and
/// [`filled`] (or [`Out::par_blocks`]) checks that it wrote every element.
pub(crate) struct Out<'a, T> {
    buf: &'a mut [MaybeUninit<T>],
    written: usize,
}

impl<'a, T: Copy> Out<'a, T> {
    /// An output over an existing slice, overwritten in place (every element stays
    /// initialized: an `Out` only ever writes values).
    pub(crate) fn over(slice: &'a mut [T]) -> Self {
        // SAFETY: `MaybeUninit<T>` has `T`'s layout, and an `Out` writes only initialized
        // `T`s (with `MaybeUninit::write` or stores of values), so the slice stays
        // initialized; `T: Copy` has no drop to skip.
        let buf = unsafe { &mut *(slice as *mut [T] as *mut [MaybeUninit<T>]) };
        Self { buf, written: 0 }
    }

    /// Elements in all.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether every element is written.
    pub(crate) fn is_full(&self) -> bool {
        self.written == self.buf.len()
    }

    /// The next `n` elements, counted as written: every caller in this file writes all of
    /// them before anything can read them.
    fn next(&mut self, n: usize) -> &mut [MaybeUninit<T>] {
        assert!(n <= self.buf.len() - self.written, "a kernel wrote past the end of its output");
        let start = self.written;
        self.written += n;
        &mut self.buf[start..start + n]
    }

    /// Writes `values` next.
    pub(crate) fn push_slice(&mut self, values: &[T]) {
        self.next(values.len()).iter_mut().zip(values).for_each(|(d, v)| {
            d.write(*v);
        });
    }

    /// Writes `f(x)` for every `x` of `input` next.
    pub(crate) fn push_map<U: Copy>(&mut self, input: &[U], f: impl Fn(U) -> T) {
        self.next(input.len()).iter_mut().zip(input).for_each(|(d, x)| {
            d.write(f(*x));
        });
    }

    /// Writes `f(x, y)` for every pair of `a` and `b` (of one length) next.
    pub(crate) fn push_zip<U: Copy, V: Copy>(&mut self, a: &[U], b: &[V], f: impl Fn(U, V) -> T) {
        assert_eq!(a.len(), b.len(), "one value per pair");
        self.next(a.len()).iter_mut().zip(a.iter().zip(b)).for_each(|(d, (x, y))| {
            d.write(f(*x, *y));
        });
    }

    /// Writes the rest of the output in blocks of `block` elements across threads: `fill`
    /// gets each block's start (counted from the first element not yet written) and the
    /// block, and must write all of it.
    pub(crate) fn par_blocks(&mut self, block: usize, fill: impl Fn(usize, &mut Out<'_, T>) + Sync + Send)
    where
        T: Send,
    {
        let rest = self.buf.len() - self.written;
        let block = block.max(1);
        self.next(rest).par_chunks_mut(block).enumerate().for_each(|(i, buf)| {
            let mut out = Out { buf, written: 0 };
            fill(i * block, &mut out);
            assert!(out.is_full(), "a kernel left part of its output unwritten");
        });
    }
}

/// A new vector of `n` elements, written by `fill` without zeroing them first.
///
/// # Panics
/// When `fill` leaves an element unwritten (a kernel's bug, caught before anything reads it).
pub(crate) fn filled<T: Copy>(n: usize, fill: impl FnOnce(&mut Out<'_, T>)) -> Vec<T> {
    let mut data = Vec::with_capacity(n);
    let mut out = Out { buf: &mut data.spare_capacity_mut()[..n], written: 0 };
    fill(&mut out);
    assert!(out.is_full(), "a kernel left part of its output unwritten");
    // SAFETY: the first `n` elements of the allocation are initialized: `out` covered them,
    // counted every one it handed out, and only hands out elements it writes.
    unsafe { data.set_len(n) };
    data
}

/// `1 / sum(p)` for a row of rounded probabilities summing to `total`, 0 for a row masked
/// whole (all zeros): the renormalization of softmax's backward, shared by the AVX-512
/// and the portable loop.
#[inline]
pub(crate) fn row_normalizer(total: f32) -> f32 {
    if total > 0.0 { 1.0 / total } else { 0.0 }
}

/// A half type's 16-lane load and store (no lanes off x86-64: every type qualifies).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) trait Lanes {}
#[cfg(not(target_arch = "x86_64"))]
impl<T> Lanes for T {}
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::Lanes;

/// Whether the AVX-512 loops run here (the CPU has them, and `MIXED_HOST_LANES` allows them).
#[inline]
fn lanes() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Writes `widen(src[i])` next in `out`, on AVX-512; `false` (nothing written) without it.
pub(crate) fn widen<T: Lanes>(src: &[T], out: &mut Out<'_, f32>) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(src.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); `dst` is as long as `src`.
        unsafe { avx512::widen(src, dst) };
    }
    true
}

/// Writes `narrow(src[i])` next in `out`, on AVX-512; `false` (nothing written) without it.
pub(crate) fn narrow<T: Lanes>(src: &[f32], out: &mut Out<'_, T>) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(src.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); `dst` is as long as `src`.
        unsafe { avx512::narrow(src, dst) };
    }
    true
}

/// Writes `op(a[i], b[(start + i) % b.len()])` next in `out` for every `i < a.len()`, or
/// `op(b[..], a[i])` with `swap` (the operands' order kept for NaN payloads), on AVX-512;
/// `false` (nothing written) without it.
pub(crate) fn binary<T: Lanes>(a: &[T], b: &[T], start: usize, out: &mut Out<'_, T>, op: BinaryOp, swap: bool) -> bool {
    if !lanes() {
        return false;
    }
    assert!(!b.is_empty() || a.is_empty(), "a repeated operand with elements");
    #[cfg(target_arch = "x86_64")]
    if !a.is_empty() {
        let dst = out.next(a.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); `a` is as long as `dst`, `b` is
        // not empty.
        unsafe {
            match op {
                BinaryOp::Add => avx512::zip(a, b, start, dst, avx512::Add, swap),
                BinaryOp::Mul => avx512::zip(a, b, start, dst, avx512::Mul, swap),
            }
        }
    }
    true
}

/// Adds every `cols`-long row of `rows` (widened) into `acc`, in row order, on AVX-512;
/// `false` (nothing added) without it.
pub(crate) fn add_rows<T: Lanes>(rows: &[T], cols: usize, acc: &mut [f32]) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the loop checks `acc` against `cols`.
    unsafe {
        avx512::add_rows(rows, cols, acc)
    };
    true
}

/// Writes the softmax of every `n`-long row of `scores` next in `out`, rounded once,
/// with `row` (`n` values) as scratch, on AVX-512; `false` (nothing written) without it.
pub(crate) fn softmax_rows<T: Lanes>(scores: &[f32], n: usize, row: &mut [f32], out: &mut Out<'_, T>) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(scores.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the loop checks the row lengths.
        unsafe { avx512::softmax_rows(scores, n, row, dst) };
    }
    true
}

/// Writes softmax's backward for every `n`-long row of `p` and `g` next in `out`, on
/// AVX-512; `false` (nothing written) without it.
pub(crate) fn softmax_grad_rows<T: Lanes>(p: &[T], g: &[T], n: usize, out: &mut Out<'_, f32>) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(p.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the loop checks the row lengths.
        unsafe { avx512::softmax_grad_rows(p, g, n, dst) };
    }
    true
}

/// The AVX-512 loops themselves: `unsafe fn`s whose contract (the CPU's features, slice
/// lengths) the safe functions above check.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::*;
    use core::mem::MaybeUninit;
    use std::sync::OnceLock;

    use burn::tensor::{bf16, f16};

    const LANES: usize = 16;

    /// What the CPU offers these loops, capped by `MIXED_HOST_LANES` (`0`: none, the
    /// portable loops; `avx512`: no bf16 conversion instruction), decided once per process.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Level {
        Portable,
        Avx512,
        Avx512Bf16,
    }

    fn level() -> Level {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let cap = match std::env::var(crate::kernels::HOST_LANES_ENV).as_deref().map(str::trim) {
                Ok("0") => Level::Portable,
                Ok("avx512") => Level::Avx512,
                _ => Level::Avx512Bf16,
            };
            let cpu =
                if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl")) {
                    Level::Portable
                } else if is_x86_feature_detected!("avx512bf16") {
                    Level::Avx512Bf16
                } else {
                    Level::Avx512
                };
            cap.min(cpu)
        })
    }

    /// Whether these loops run here.
    pub(super) fn available() -> bool {
        level() > Level::Portable
    }

    /// The lanes of the first `n` elements of a group (`n <= 16`).
    #[inline]
    fn mask(n: usize) -> __mmask16 {
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
                pub(super) unsafe fn zip<T: Lanes, Op: LaneOp>(
                    a: &[T],
                    b: &[T],
                    start: usize,
                    out: &mut [MaybeUninit<T>],
                    op: Op,
                    swap: bool,
                ) {
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
        level() == Level::Avx512Bf16
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
}

#[cfg(test)]
mod tests {
    use super::{Out, filled};

    #[test]
    fn a_filled_output_holds_what_was_written_in_order() {
        let values = filled::<u16>(6, |out| {
            out.push_slice(&[1, 2]);
            out.push_map(&[3u8, 4], u16::from);
            out.push_zip(&[5u16, 6], &[0u16, 0], |a, b| a + b);
        });
        assert_eq!(values, [1, 2, 3, 4, 5, 6]);
        let blocks = filled::<usize>(10, |out| out.par_blocks(3, |start, block| block.push_map(&[0; 3][..block.len()], |_| start)));
        assert_eq!(blocks, [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]);
    }

    #[test]
    #[should_panic(expected = "left part of its output unwritten")]
    fn an_output_left_short_is_refused() {
        filled::<f32>(3, |out| out.push_slice(&[1.0, 2.0]));
    }

    #[test]
    #[should_panic(expected = "left part of its output unwritten")]
    fn a_block_left_short_is_refused() {
        filled::<f32>(8, |out| out.par_blocks(4, |_, block| block.push_slice(&[0.0; 3])));
    }

    #[test]
    #[should_panic(expected = "wrote past the end of its output")]
    fn writing_past_the_end_is_refused() {
        filled::<f32>(1, |out| out.push_slice(&[1.0, 2.0]));
    }

    #[test]
    fn an_output_over_a_slice_overwrites_it() {
        let mut values = [0u16; 4];
        let mut out = Out::over(&mut values);
        out.push_slice(&[7, 8]);
        assert!(!out.is_full());
        out.push_slice(&[9, 10]);
        assert!(out.is_full());
        assert_eq!(values, [7, 8, 9, 10]);
    }
}
