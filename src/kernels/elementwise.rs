//! Element-wise half-precision kernels on host slices, across threads for large tensors:
//! conversions between f32 and the half types (vectorized: F16C for f16 through the `half`
//! crate, integer rounding for bf16), ops that are exact on the 16-bit encoding (relu
//! and its backward), which need no conversion at all, and ops computed in f32 between an
//! exact widening and one rounding (gelu and its backward), a block at a time in registers
//! and cache-sized buffers instead of one element at a time.
//!
//! Flex converts one element at a time (in software for f16, and bf16 casts through f64);
//! these loops compute the same values, rounded to nearest even.
//!
//! Outputs are uninitialized buffers (`MaybeUninit`) that every kernel writes completely:
//! zeroing a new output first cost as much as the op itself (relu on 2048 x 256 bf16:
//! 0.090 ms with a zeroed output, 0.031 ms without, Flex's f32 relu 0.044 ms).

use core::mem::MaybeUninit;

use rayon::prelude::*;

use super::BinaryOp;
use super::gemm::{Half, with_lanes};

/// The smallest share of work one thread takes.
const BLOCK: usize = 1024;
/// Below this many elements one thread does it all.
const PARALLEL_FROM: usize = 1 << 15;

/// How many elements of `len` each thread takes.
fn chunk_len(len: usize) -> usize {
    if len >= PARALLEL_FROM { len.div_ceil(rayon::current_num_threads()).max(BLOCK) } else { len.max(1) }
}

/// Rows of `n` elements each thread takes: an equal share, at least about 2^14 elements
/// (row kernels: softmax, layer norm).
pub(crate) fn rows_per_task(rows: usize, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    rows.div_ceil(threads).max((1 << 14) / n.max(1)).max(1)
}

fn blocks<'a, T: Send + 'a, U: Sync + 'a>(
    out: &'a mut [MaybeUninit<T>],
    inputs: &'a [&'a [U]],
    f: impl Fn(&mut [MaybeUninit<T>], &[&[U]], usize) + Sync + Send,
) {
    let chunk = chunk_len(out.len());
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, out)| f(out, inputs, i * chunk));
}

/// `data[i] = f(data[i])` on the raw 16-bit patterns, in place (a buffer nothing else
/// shares: no allocation, one pass, as Flex's f32 ops run on a unique tensor).
pub(crate) fn map_bits_in_place<T: Half>(data: &mut [T], f: impl Fn(u16) -> u16 + Sync + Send) {
    let chunk = chunk_len(data.len());
    data.par_chunks_mut(chunk).for_each(|block| {
        let block: &mut [u16] = bytemuck::cast_slice_mut(block);
        block.iter_mut().for_each(|x| *x = f(*x));
    });
}

/// `out[i] = f(input[i])` on the raw 16-bit patterns (ops exact on the encoding, such as
/// relu: no conversion at all).
pub(crate) fn map_bits<T: Half>(input: &[T], out: &mut [MaybeUninit<T>], f: impl Fn(u16) -> u16 + Sync + Send) {
    let inputs = [input];
    blocks(out, &inputs, |out, inputs, start| {
        let input: &[u16] = bytemuck::cast_slice(&inputs[0][start..start + out.len()]);
        out.iter_mut().zip(input).for_each(|(o, x)| {
            o.write(bytemuck::cast(f(*x)));
        });
    });
}

/// `out[i] = f(a[i], b[i])` on the raw 16-bit patterns.
pub(crate) fn zip_bits<T: Half>(a: &[T], b: &[T], out: &mut [MaybeUninit<T>], f: impl Fn(u16, u16) -> u16 + Sync + Send) {
    let inputs = [a, b];
    blocks(out, &inputs, |out, inputs, start| {
        let a: &[u16] = bytemuck::cast_slice(&inputs[0][start..start + out.len()]);
        let b: &[u16] = bytemuck::cast_slice(&inputs[1][start..start + out.len()]);
        out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (x, y))| {
            o.write(bytemuck::cast(f(*x, *y)));
        });
    });
}

/// Elements converted at a time through a buffer on the stack (small enough for L1).
const F32_BLOCK: usize = 256;

/// `dst[i] = src[i]` into uninitialized memory.
#[inline]
pub(crate) fn write<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| {
        d.write(*s);
    });
}

/// `out[i] = widen(input[i])`.
pub(crate) fn widen<T: Half>(input: &[T], out: &mut [MaybeUninit<f32>]) {
    let inputs = [input];
    blocks(out, &inputs, |out, inputs, start| {
        let input = &inputs[0][start..start + out.len()];
        with_lanes!(super::lanes::widen(input, out));
        let mut buf = [0f32; F32_BLOCK];
        for (out, input) in out.chunks_mut(F32_BLOCK).zip(input.chunks(F32_BLOCK)) {
            let buf = &mut buf[..out.len()];
            T::widen_slice(input, buf);
            write(out, buf);
        }
    });
}

/// `out[i] = narrow(input[i])`.
pub(crate) fn narrow<T: Half>(input: &[f32], out: &mut [MaybeUninit<T>]) {
    let inputs = [input];
    blocks(out, &inputs, |out, inputs, start| {
        let input = &inputs[0][start..start + out.len()];
        with_lanes!(super::lanes::narrow(input, out));
        let mut buf = [T::zeroed(); F32_BLOCK];
        for (out, input) in out.chunks_mut(F32_BLOCK).zip(input.chunks(F32_BLOCK)) {
            let buf = &mut buf[..out.len()];
            T::narrow_slice(input, buf);
            write(out, buf);
        }
    });
}

/// An initialized slice seen as one to overwrite (for outputs that already exist).
///
/// # Safety
/// Everything written through the result must be an initialized `T` (`MaybeUninit::write`,
/// never `MaybeUninit::uninit()`): the slice is read as `T`s afterwards.
pub(crate) unsafe fn overwrite<T: Copy>(out: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout; the caller writes only initialized `T`s,
    // so the slice stays initialized (a `T: Copy` has no drop to skip).
    unsafe { &mut *(out as *mut [T] as *mut [MaybeUninit<T>]) }
}

/// [`widen`] into an existing slice.
pub(crate) fn widen_into<T: Half>(input: &[T], out: &mut [f32]) {
    // SAFETY: `widen` writes f32 values, with `MaybeUninit::write` or stores of values.
    widen(input, unsafe { overwrite(out) })
}

/// [`narrow`] into an existing slice.
pub(crate) fn narrow_into<T: Half>(input: &[f32], out: &mut [T]) {
    // SAFETY: `narrow` writes rounded values, with `MaybeUninit::write` or stores of values.
    narrow(input, unsafe { overwrite(out) })
}

/// `out[i] = narrow(f(widen(input[i])))`: `f` computes in f32 on exact values and the
/// result is rounded once, as Flex's half ops do one element at a time.
pub(crate) fn map_f32<T: Half>(input: &[T], out: &mut [MaybeUninit<T>], f: impl Fn(f32) -> f32 + Sync + Send) {
    let inputs = [input];
    blocks(out, &inputs, |out, inputs, start| {
        let input = &inputs[0][start..start + out.len()];
        let (mut x, mut h) = ([0f32; F32_BLOCK], [T::zeroed(); F32_BLOCK]);
        for (out, input) in out.chunks_mut(F32_BLOCK).zip(input.chunks(F32_BLOCK)) {
            let (x, h) = (&mut x[..out.len()], &mut h[..out.len()]);
            T::widen_slice(input, x);
            x.iter_mut().for_each(|v| *v = f(*v));
            T::narrow_slice(x, h);
            write(out, h);
        }
    });
}

/// `out[i] = narrow(f(widen(a[i]), widen(b[i % b.len()])))`: `b` as long as `a`, or
/// repeating over it (a bias or a per-feature scale over the leading dimensions).
pub(crate) fn zip_f32<T: Half>(a: &[T], b: &[T], out: &mut [MaybeUninit<T>], f: impl Fn(f32, f32) -> f32 + Sync + Send) {
    let inputs = [a, b];
    blocks(out, &inputs, |out, inputs, start| {
        let (a, b) = (&inputs[0][start..start + out.len()], inputs[1]);
        let (mut x, mut y, mut h) = ([0f32; F32_BLOCK], [0f32; F32_BLOCK], [T::zeroed(); F32_BLOCK]);
        let mut at = start % b.len();
        for (out, a) in out.chunks_mut(F32_BLOCK).zip(a.chunks(F32_BLOCK)) {
            let n = out.len();
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
            write(out, h);
        }
    });
}

/// `out[i] = op(a[i], b[i % b.len()])`, or `op(b[i % b.len()], a[i])` with `swap` (the
/// operands' order kept for NaN payloads): one fused pass where the CPU has the lanes,
/// the block loop of [`zip_f32`] elsewhere. The same values either way.
pub(crate) fn binary<T: Half>(a: &[T], b: &[T], out: &mut [MaybeUninit<T>], op: BinaryOp, swap: bool) {
    #[cfg(target_arch = "x86_64")]
    if super::lanes::available() {
        use super::lanes::{Add, Mul, zip};
        let inputs = [a, b];
        blocks(out, &inputs, |out, inputs, start| {
            let (a, b) = (&inputs[0][start..start + out.len()], inputs[1]);
            // SAFETY: the CPU has AVX-512F/BW/VL (checked above); `a` covers `out`, and `b`
            // is not empty (callers pass shapes with elements, or an empty output).
            unsafe {
                match op {
                    BinaryOp::Add => zip(a, b, start, out, Add, swap),
                    BinaryOp::Mul => zip(a, b, start, out, Mul, swap),
                }
            }
        });
        return;
    }
    match swap {
        false => zip_f32(a, b, out, move |u, v| op.apply(u, v)),
        true => zip_f32(a, b, out, move |u, v| op.apply(v, u)),
    }
}
