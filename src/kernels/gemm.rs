//! Half-precision products and reductions on host slices: gemmkit's GEMM (f32
//! accumulation, one rounding of the output, runtime ISA dispatch) and an f32-accumulated
//! column sum.
//!
//! Why gemmkit (measured on this project's CPU, 2 threads, 2048 x 256 x 256, see the
//! `kernels` bench and the README): its bf16 path uses the CPU's bf16 dot-product
//! instruction and runs at about 1.7x its own f32 rate, where Flex's bf16 product converts
//! both operands to f32 and runs slower than f32; its f16 path widens to f32 in registers
//! and accumulates in f32 (the `gemm` crate that Flex uses for f16 accumulates a one-row
//! product in f16); and it fuses the bias into the product's store.

use burn::tensor::{bf16, f16};
use gemmkit::{Bias, MatMut, MatRef, Parallelism, Scalar};
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use super::elementwise::overwrite;
#[cfg(target_arch = "x86_64")]
pub(crate) use super::lanes::Lanes;

/// The two half element types, as the kernels need them.
///
/// Widening is exact, and a signalling NaN comes out quiet with its sign and payload
/// (IEEE 754's rule for conversions, what x86's f16 conversion instruction and Flex's own
/// casts do): bf16's widening, a shift, sets the quiet bit where the value is NaN.
pub(crate) trait Half:
    gemmkit::FusedScalar + gemmkit::GemmScalar + burn::tensor::Element + bytemuck::Pod + Copy + Send + Sync + Lanes
{
    /// Widens to f32 (exact: every half value is an f32).
    fn widen_slice(src: &[Self], dst: &mut [f32]);
    /// Narrows from f32, rounding to nearest, ties to even.
    fn narrow_slice(src: &[f32], dst: &mut [Self]);
}

/// Off x86-64 there are no fused loops: every half type qualifies.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) trait Lanes {}
#[cfg(not(target_arch = "x86_64"))]
impl<T> Lanes for T {}

/// Runs `$call`, one of the fused AVX-512 loops of `lanes`, and returns its result, where
/// the CPU has them; falls through to the portable code that follows elsewhere.
macro_rules! with_lanes {
    ($call:expr) => {
        #[cfg(target_arch = "x86_64")]
        if super::lanes::available() {
            // SAFETY: the CPU has AVX-512F/BW/VL (checked just above).
            #[allow(unused_unsafe)]
            return unsafe { $call };
        }
    };
}
pub(crate) use with_lanes;

// `overwrite` in the lanes calls below: `lanes::widen` and `lanes::narrow` write only
// converted values (masked stores of registers) into the slice they are given.
//
// The portable loops: bf16 is the top half of an f32, so widening is a shift, and
// narrowing rounds the low half to nearest even with integer arithmetic (branch-free, so
// the compiler vectorizes both; the `half` crate converts bf16 one element at a time). f16
// goes through the `half` crate, which uses the CPU's F16C conversions where present.
impl Half for bf16 {
    fn widen_slice(src: &[Self], dst: &mut [f32]) {
        with_lanes!(super::lanes::widen(src, overwrite(dst)));
        for (d, s) in dst.iter_mut().zip(src) {
            let bits = u32::from(s.to_bits()) << 16;
            let quiet = if bits & 0x7fff_ffff > 0x7f80_0000 { bits | 0x0040_0000 } else { bits };
            *d = f32::from_bits(quiet);
        }
    }

    fn narrow_slice(src: &[f32], dst: &mut [Self]) {
        with_lanes!(super::lanes::narrow(src, overwrite(dst)));
        for (d, s) in dst.iter_mut().zip(src) {
            let bits = s.to_bits();
            let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
            // NaN keeps its sign and top payload bits, made quiet (as `bf16::from_f32`).
            let nan = ((bits >> 16) as u16) | 0x0040;
            *d = bf16::from_bits(if bits & 0x7fff_ffff > 0x7f80_0000 { nan } else { rounded });
        }
    }
}

impl Half for f16 {
    fn widen_slice(src: &[Self], dst: &mut [f32]) {
        with_lanes!(super::lanes::widen(src, overwrite(dst)));
        src.convert_to_f32_slice(dst)
    }

    fn narrow_slice(src: &[f32], dst: &mut [Self]) {
        with_lanes!(super::lanes::narrow(src, overwrite(dst)));
        dst.convert_from_f32_slice(src)
    }
}

/// A strided matrix inside a slice: element (i, j) is at `offset + i * rs + j * cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

impl View {
    /// The view's elements from its offset on, as gemmkit's checked views take them.
    fn of<'a, T>(&self, data: &'a [T]) -> MatRef<'a, T> {
        MatRef::new(&data[self.offset..], self.rows, self.cols, self.rs, self.cs)
    }
}

/// Below this many multiply-adds per matrix, a batch of products runs one matrix per
/// thread instead of each product across threads (attention's per-head products are
/// too small to split).
const SPLIT_EACH_FROM: usize = 1 << 20;

/// `out[b] = lhs[b] @ rhs[b] (+ bias)` for one matrix per entry of `offsets`, which holds
/// each batch entry's start in `lhs_data` and `rhs_data` relative to the views' offsets;
/// `out` is row-major and contiguous.
pub(crate) fn gemm<T: Half>(
    lhs_data: &[T],
    lhs: View,
    rhs_data: &[T],
    rhs: View,
    offsets: &[(usize, usize)],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let (m, n) = (lhs.rows, rhs.cols);
    if m * n == 0 {
        return;
    }
    let one = |(lhs_off, rhs_off): (usize, usize), out: &mut [T], parallelism: Parallelism| {
        if lhs.cols == 0 {
            // gemmkit leaves C alone for an empty product; the sum of nothing is zero.
            out.fill(<T as Scalar>::ZERO);
            if let Some(bias) = bias {
                out.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(bias));
            }
            return;
        }
        let lhs_b = View { offset: lhs.offset + lhs_off, ..lhs };
        let rhs_b = View { offset: rhs.offset + rhs_off, ..rhs };
        gemmkit::gemm_fused(
            <T as Scalar>::ONE,
            lhs_b.of(lhs_data),
            rhs_b.of(rhs_data),
            <T as Scalar>::ZERO,
            MatMut::from_row_major(out, m, n),
            bias.map(Bias::PerCol),
            None,
            parallelism,
        );
    };
    if offsets.len() > 1 && m * n * lhs.cols < SPLIT_EACH_FROM {
        out.par_chunks_exact_mut(m * n).zip(offsets).for_each(|(out, &offset)| one(offset, out, Parallelism::Serial));
    } else {
        out.chunks_exact_mut(m * n).zip(offsets).for_each(|(out, &offset)| one(offset, out, Parallelism::Rayon(0)));
    }
}

/// Column sums of a row-major `rows x cols` matrix, accumulated in f32 and rounded once.
/// Large matrices are split into one band of rows per thread; the bands' f32 sums are
/// added in band order, so a given thread count always gives the same result.
pub(crate) fn column_sums<T: Half>(data: &[T], rows: usize, cols: usize) -> Vec<T> {
    if cols == 0 {
        return Vec::new();
    }
    let band_sums = |band: &[T]| {
        let mut acc = vec![0f32; cols];
        add_rows(band, cols, &mut acc);
        acc
    };
    let threads = if rows * cols >= 1 << 15 { rayon::current_num_threads().clamp(1, rows) } else { 1 };
    let band = rows.div_ceil(threads).max(1) * cols;
    let bands: Vec<Vec<f32>> = data[..rows * cols].par_chunks(band).map(band_sums).collect();
    let mut acc = vec![0f32; cols];
    for sums in &bands {
        acc.iter_mut().zip(sums).for_each(|(a, v)| *a += v);
    }
    let mut out = vec![<T as Scalar>::ZERO; cols];
    T::narrow_slice(&acc, &mut out);
    out
}

/// Adds the widened `cols`-long rows of `rows` into `acc`, one row after another.
fn add_rows<T: Half>(rows: &[T], cols: usize, acc: &mut [f32]) {
    with_lanes!(super::lanes::add_rows(rows, cols, acc));
    let mut row_f32 = vec![0f32; cols];
    for row in rows.chunks_exact(cols) {
        T::widen_slice(row, &mut row_f32);
        acc.iter_mut().zip(&row_f32).for_each(|(a, v)| *a += v);
    }
}

/// Per-channel sums of a contiguous `[batch, channels, inner]` tensor (a convolution's bias
/// gradient), accumulated in f32 and rounded once.
pub(crate) fn channel_sums<T: Half>(data: &[T], batch: usize, channels: usize, inner: usize) -> Vec<T> {
    let mut acc = vec![0f32; channels];
    let mut block = vec![0f32; inner];
    if inner > 0 {
        for (i, plane) in data.chunks_exact(inner).take(batch * channels).enumerate() {
            T::widen_slice(plane, &mut block);
            acc[i % channels] += block.iter().sum::<f32>();
        }
    }
    let mut out = vec![<T as Scalar>::ZERO; channels];
    T::narrow_slice(&acc, &mut out);
    out
}
