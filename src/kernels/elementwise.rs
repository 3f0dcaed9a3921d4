//! Element-wise half-precision kernels on host slices: blocks are widened to f32 with the
//! `half` crate's slice conversions (SIMD where the CPU has it), computed in f32 in
//! registers, and narrowed back once, across threads for large tensors.
//!
//! Each op computes exactly what Flex computes per element (the same f32 function between
//! an exact widening and one round-to-nearest narrowing), so results are bit-identical to
//! Flex's; only the loop around it differs (Flex converts one element at a time, in
//! software for f16).

use rayon::prelude::*;

use super::gemm::Half;

/// Elements converted per block: small enough for the stack, large enough to amortise.
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

/// `out[i] = narrow(f(widen(input[i])))`.
pub(crate) fn map<T: Half>(input: &[T], out: &mut [T], f: impl Fn(f32) -> f32 + Sync + Send) {
    let inputs = [input];
    blocks(out, &inputs, |out, inputs, start| {
        let mut buf = [0f32; BLOCK];
        for (j, out) in out.chunks_mut(BLOCK).enumerate() {
            let at = start + j * BLOCK;
            let buf = &mut buf[..out.len()];
            T::widen_slice(&inputs[0][at..at + out.len()], buf);
            buf.iter_mut().for_each(|v| *v = f(*v));
            T::narrow_slice(buf, out);
        }
    });
}

/// `out[i] = narrow(f(widen(a[i]), widen(b[i])))`.
pub(crate) fn zip<T: Half>(a: &[T], b: &[T], out: &mut [T], f: impl Fn(f32, f32) -> f32 + Sync + Send) {
    let inputs = [a, b];
    blocks(out, &inputs, |out, inputs, start| {
        let (mut x, mut y) = ([0f32; BLOCK], [0f32; BLOCK]);
        for (j, out) in out.chunks_mut(BLOCK).enumerate() {
            let at = start + j * BLOCK;
            let (x, y) = (&mut x[..out.len()], &mut y[..out.len()]);
            T::widen_slice(&inputs[0][at..at + out.len()], x);
            T::widen_slice(&inputs[1][at..at + out.len()], y);
            x.iter_mut().zip(y.iter()).for_each(|(x, y)| *x = f(*x, *y));
            T::narrow_slice(x, out);
        }
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
