//! Conversions between f32 and the half types: the [`Half`] trait the loops are generic
//! over, and whole-slice widening and narrowing across threads.
//!
//! The portable loops: bf16 is the top half of an f32, so widening is a shift, and
//! narrowing rounds the low half to nearest even with integer arithmetic (branch-free, so
//! the compiler vectorizes both; the `half` crate converts bf16 one element at a time). f16
//! goes through the `half` crate, which uses the CPU's F16C conversions where present.
//! Where the CPU has AVX-512, `simd`'s loops do both, with the same results.

use burn::tensor::{bf16, f16};
use half::slice::HalfFloatSliceExt;

use super::simd::{self, Lanes, Out};
use super::threads::chunk_len;

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

impl Half for bf16 {
    fn widen_slice(src: &[Self], dst: &mut [f32]) {
        if simd::widen(src, &mut Out::over(dst)) {
            return;
        }
        for (d, s) in dst.iter_mut().zip(src) {
            let bits = u32::from(s.to_bits()) << 16;
            let quiet = if bits & 0x7fff_ffff > 0x7f80_0000 { bits | 0x0040_0000 } else { bits };
            *d = f32::from_bits(quiet);
        }
    }

    fn narrow_slice(src: &[f32], dst: &mut [Self]) {
        if simd::narrow(src, &mut Out::over(dst)) {
            return;
        }
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
        if simd::widen(src, &mut Out::over(dst)) {
            return;
        }
        src.convert_to_f32_slice(dst)
    }

    fn narrow_slice(src: &[f32], dst: &mut [Self]) {
        if simd::narrow(src, &mut Out::over(dst)) {
            return;
        }
        dst.convert_from_f32_slice(src)
    }
}

/// Elements converted at a time through a buffer on the stack (small enough for L1).
pub(crate) const F32_BLOCK: usize = 256;

/// Writes `widen(input[i])` into `out`, across threads.
pub(crate) fn widen<T: Half>(input: &[T], out: &mut Out<'_, f32>) {
    out.par_blocks(chunk_len(input.len()), |start, out| {
        let input = &input[start..start + out.len()];
        if simd::widen(input, out) {
            return;
        }
        let mut buf = [0f32; F32_BLOCK];
        for input in input.chunks(F32_BLOCK) {
            let buf = &mut buf[..input.len()];
            T::widen_slice(input, buf);
            out.push_slice(buf);
        }
    });
}

/// Writes `narrow(input[i])` into `out`, across threads.
pub(crate) fn narrow<T: Half>(input: &[f32], out: &mut Out<'_, T>) {
    out.par_blocks(chunk_len(input.len()), |start, out| {
        let input = &input[start..start + out.len()];
        if simd::narrow(input, out) {
            return;
        }
        let mut buf = [T::zeroed(); F32_BLOCK];
        for input in input.chunks(F32_BLOCK) {
            let buf = &mut buf[..input.len()];
            T::narrow_slice(input, buf);
            out.push_slice(buf);
        }
    });
}

/// [`widen`] into an existing slice.
pub(crate) fn widen_into<T: Half>(input: &[T], out: &mut [f32]) {
    widen(input, &mut Out::over(out))
}

/// [`narrow`] into an existing slice.
pub(crate) fn narrow_into<T: Half>(input: &[f32], out: &mut [T]) {
    narrow(input, &mut Out::over(out))
}
