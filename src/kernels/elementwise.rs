//! Element-wise half-precision kernels on host slices, across threads for large tensors:
//! conversions between f32 and the half types (vectorized: F16C for f16 through the `half`
//! crate, integer rounding for bf16), and ops that are exact on the 16-bit encoding (relu
//! and its backward), which need no conversion at all.
//!
//! Flex converts one element at a time (in software for f16, and bf16 casts through f64);
//! these loops compute the same values, rounded to nearest even.

use rayon::prelude::*;

use super::gemm::Half;

/// The smallest share of work one thread takes.
const BLOCK: usize = 1024;
/// Below this many elements one thread does it all.
const PARALLEL_FROM: usize = 1 << 15;

fn blocks<'a, T: Send + 'a, U: Sync + 'a>(
    out: &'a mut [T],
    inputs: &'a [&'a [U]],
    f: impl Fn(&mut [T], &[&[U]], usize) + Sync + Send,
) {
    let chunk = if out.len() >= PARALLEL_FROM { out.len().div_ceil(rayon::current_num_threads()).max(BLOCK) } else { out.len().max(1) };
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, out)| f(out, inputs, i * chunk));
}

/// `out[i] = f(input[i])` on the raw 16-bit patterns (ops exact on the encoding, such as
/// relu: no conversion at all).
pub(crate) fn map_bits<T: Half>(input: &[T], out: &mut [T], f: impl Fn(u16) -> u16 + Sync + Send) {
    let inputs = [input];
    blocks(out, &inputs, |out, inputs, start| {
        let input: &[u16] = bytemuck::cast_slice(&inputs[0][start..start + out.len()]);
        let out: &mut [u16] = bytemuck::cast_slice_mut(out);
        out.iter_mut().zip(input).for_each(|(o, x)| *o = f(*x));
    });
}

/// `out[i] = f(a[i], b[i])` on the raw 16-bit patterns.
pub(crate) fn zip_bits<T: Half>(a: &[T], b: &[T], out: &mut [T], f: impl Fn(u16, u16) -> u16 + Sync + Send) {
    let inputs = [a, b];
    blocks(out, &inputs, |out, inputs, start| {
        let a: &[u16] = bytemuck::cast_slice(&inputs[0][start..start + out.len()]);
        let b: &[u16] = bytemuck::cast_slice(&inputs[1][start..start + out.len()]);
        let out: &mut [u16] = bytemuck::cast_slice_mut(out);
        out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (x, y))| *o = f(*x, *y));
    });
}

/// `out[i] = widen(input[i])`.
pub(crate) fn widen<T: Half>(input: &[T], out: &mut [f32]) {
    let inputs = [input];
    blocks(out, &inputs, |out, inputs, start| T::widen_slice(&inputs[0][start..start + out.len()], out));
}

/// `out[i] = narrow(input[i])`.
pub(crate) fn narrow<T: Half>(input: &[f32], out: &mut [T]) {
    let inputs = [input];
    blocks(out, &inputs, |out, inputs, start| T::narrow_slice(&inputs[0][start..start + out.len()], out));
}
