//! Element-wise half-precision loops, across threads for large tensors: ops that are exact
//! on the 16-bit encoding (relu and its backward), which need no conversion at all, and
//! ops computed in f32 between an exact widening and one rounding (gelu and its backward,
//! add and mul), a block at a time in registers and cache-sized buffers instead of one
//! element at a time.
//!
//! Flex converts one element at a time (in software for f16, and bf16 casts through f64);
//! these loops compute the same values, rounded to nearest even.

use rayon::prelude::*;

use super::convert::{F32_BLOCK, Half};
use super::simd::{self, Out};
use super::threads::chunk_len;
use crate::kernels::BinaryOp;

/// `data[i] = f(data[i])` on the raw 16-bit patterns, in place (a buffer nothing else
/// shares: no allocation, one pass, as Flex's f32 ops run on a unique tensor).
pub(crate) fn map_bits_in_place<T: Half>(data: &mut [T], f: impl Fn(u16) -> u16 + Sync + Send) {
    let chunk = chunk_len(data.len());
    data.par_chunks_mut(chunk).for_each(|block| {
        let block: &mut [u16] = bytemuck::cast_slice_mut(block);
        block.iter_mut().for_each(|x| *x = f(*x));
    });
}

/// Writes `f(input[i])` on the raw 16-bit patterns (ops exact on the encoding, such as
/// relu: no conversion at all).
pub(crate) fn map_bits<T: Half>(input: &[T], out: &mut Out<'_, T>, f: impl Fn(u16) -> u16 + Sync + Send) {
    out.par_blocks(chunk_len(input.len()), |start, out| {
        let input: &[u16] = bytemuck::cast_slice(&input[start..start + out.len()]);
        out.push_map(input, |x| bytemuck::cast(f(x)));
    });
}

/// Writes `f(a[i], b[i])` on the raw 16-bit patterns.
pub(crate) fn zip_bits<T: Half>(a: &[T], b: &[T], out: &mut Out<'_, T>, f: impl Fn(u16, u16) -> u16 + Sync + Send) {
    out.par_blocks(chunk_len(a.len()), |start, out| {
        let range = start..start + out.len();
        let (a, b): (&[u16], &[u16]) = (bytemuck::cast_slice(&a[range.clone()]), bytemuck::cast_slice(&b[range]));
        out.push_zip(a, b, |x, y| bytemuck::cast(f(x, y)));
    });
}

/// Writes `narrow(f(widen(input[i])))`: `f` computes in f32 on exact values and the
/// result is rounded once, as Flex's half ops do one element at a time.
pub(crate) fn map_f32<T: Half>(input: &[T], out: &mut Out<'_, T>, f: impl Fn(f32) -> f32 + Sync + Send) {
    out.par_blocks(chunk_len(input.len()), |start, out| {
        let input = &input[start..start + out.len()];
        let (mut x, mut h) = ([0f32; F32_BLOCK], [T::zeroed(); F32_BLOCK]);
        for input in input.chunks(F32_BLOCK) {
            let (x, h) = (&mut x[..input.len()], &mut h[..input.len()]);
            T::widen_slice(input, x);
            x.iter_mut().for_each(|v| *v = f(*v));
            T::narrow_slice(x, h);
            out.push_slice(h);
        }
    });
}

/// Writes `narrow(f(widen(a[i]), widen(b[i % b.len()])))`: `b` as long as `a`, or
/// repeating over it (a bias or a per-feature scale over the leading dimensions).
pub(crate) fn zip_f32<T: Half>(a: &[T], b: &[T], out: &mut Out<'_, T>, f: impl Fn(f32, f32) -> f32 + Sync + Send) {
    out.par_blocks(chunk_len(a.len()), |start, out| zip_f32_block(&a[start..start + out.len()], b, start, out, &f));
}

/// One thread's block of [`zip_f32`]: `a` is the block's part of the first operand, and
/// `b` repeats from position `start % b.len()`.
fn zip_f32_block<T: Half>(a: &[T], b: &[T], start: usize, out: &mut Out<'_, T>, f: &impl Fn(f32, f32) -> f32) {
    let (mut x, mut y, mut h) = ([0f32; F32_BLOCK], [0f32; F32_BLOCK], [T::zeroed(); F32_BLOCK]);
    let mut at = start % b.len();
    for a in a.chunks(F32_BLOCK) {
        let n = a.len();
        let (x, y, h) = (&mut x[..n], &mut y[..n], &mut h[..n]);
        T::widen_slice(a, x);
        let mut done = 0;
        while done < n {
            let take = (b.len() - at).min(n - done);
            T::widen_slice(&b[at..at + take], &mut y[done..done + take]);
            done += take;
            at = (at + take) % b.len();
        }
        x.iter_mut().zip(y.iter()).for_each(|(v, w)| *v = f(*v, *w));
        T::narrow_slice(x, h);
        out.push_slice(h);
    }
}

/// Writes `op(a[i], b[i % b.len()])`, or `op(b[i % b.len()], a[i])` with `swap` (the
/// operands' order kept for NaN payloads): one fused pass where the CPU has the AVX-512
/// loops, the block loop of [`zip_f32`] elsewhere. The same values either way.
pub(crate) fn binary<T: Half>(a: &[T], b: &[T], out: &mut Out<'_, T>, op: BinaryOp, swap: bool) {
    out.par_blocks(chunk_len(a.len()), |start, out| {
        let a = &a[start..start + out.len()];
        if simd::binary(a, b, start, out, op, swap) {
            return;
        }
        match swap {
            false => zip_f32_block(a, b, start, out, &|u, v| op.apply(u, v)),
            true => zip_f32_block(a, b, start, out, &|u, v| op.apply(v, u)),
        }
    });
}
