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

/// `narrow(f(widen(a[i]), widen(b[(start + i) % b.len()])))` for one thread's block: `a`
/// is the block's part of the first operand, and `b` as long as the whole first operand or
/// repeating over it (a bias or a per-feature scale over the leading dimensions), from
/// position `start % b.len()`.
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
/// loops, the block loop of [`zip_f32_block`] elsewhere. The same values either way.
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

/// Writes `g[i] * gelu'(x[i])` (gelu's backward): one fused pass where the CPU has the
/// AVX-512 loops (erf from our own fits, within about 1e-7), `scalar` on the block loop of
/// [`zip_f32_block`] elsewhere. Either is within one rounding of the half dtype.
pub(crate) fn gelu_grad<T: Half>(x: &[T], g: &[T], out: &mut Out<'_, T>, scalar: impl Fn(f32, f32) -> f32 + Sync + Send) {
    out.par_blocks(chunk_len(x.len()), |start, out| {
        let range = start..start + out.len();
        if !simd::gelu_grad(&x[range.clone()], &g[range.clone()], out) {
            zip_f32_block(&x[range.clone()], &g[range], 0, out, &scalar);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{bf16, f16};

    /// `erf(z)` in f64 for `z >= 0`, from its series of positive terms, `2 / sqrt(pi)
    /// e^(-z^2) sum 2^n z^(2n+1) / (1 3 5 ... (2n+1))` (no cancellation; within 1e-15).
    fn erf(z: f64) -> f64 {
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term > 1e-17 * sum || n < 2.0 * z * z {
            n += 1.0;
            term *= 2.0 * z * z / (2.0 * n + 1.0);
            sum += term;
        }
        2.0 / core::f64::consts::PI.sqrt() * (-z * z).exp() * sum
    }

    /// Gelu's derivative `Phi(x) + x phi(x)` in f64.
    fn derivative(x: f64) -> f64 {
        let e = erf(x.abs() / core::f64::consts::SQRT_2);
        let cdf = if x < 0.0 { 0.5 * (1.0 - e) } else { 0.5 * (1.0 + e) };
        cdf + x * (-0.5 * x * x).exp() / (2.0 * core::f64::consts::PI).sqrt()
    }

    /// `values` rounded to `T`, and back in f64.
    fn rounded<T: Half>(values: &[f32]) -> (Vec<T>, Vec<f64>) {
        let mut half = vec![T::zeroed(); values.len()];
        T::narrow_slice(values, &mut half);
        (half.clone(), wide(&half))
    }

    fn wide<T: Half>(values: &[T]) -> Vec<f64> {
        let mut wide = vec![0f32; values.len()];
        T::widen_slice(values, &mut wide);
        wide.into_iter().map(f64::from).collect()
    }

    fn check<T: Half>(name: &str, epsilon: f64) {
        let scalar = |x: f32, g: f32| g * derivative(f64::from(x)) as f32;
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 / 160.0).chain([-30.0, 30.0, 1e-6, -1e-6]).collect();
        let gs: Vec<f32> = (0..xs.len()).map(|i| 1.0 - (i % 7) as f32 / 8.0).collect();
        let ((x, xw), (g, gw)) = (rounded::<T>(&xs), rounded::<T>(&gs));
        let out = wide(&super::super::filled::<T>(x.len(), |o| gelu_grad(&x, &g, o, scalar)));
        for ((got, xv), gv) in out.iter().zip(&xw).zip(&gw) {
            let want = gv * derivative(*xv);
            // One rounding of the half dtype at the value, or at 1/1024 where the derivative
            // crosses zero (near x = -0.75).
            let allowed = want.abs().max(1.0 / 1024.0) * epsilon;
            assert!((got - want).abs() <= allowed, "{name}: x {xv}, g {gv}: {got} against {want}");
        }
        let (specials, _) = rounded::<T>(&[f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        let (ones, _) = rounded::<T>(&[1.0; 3]);
        let out = wide(&super::super::filled::<T>(3, |o| gelu_grad(&specials, &ones, o, scalar)));
        assert!(out.iter().all(|v| v.is_nan()), "{name}: {out:?}: inf * 0 and NaN give NaN, as the scalar formula");
    }

    #[test]
    fn gelu_gradients_are_within_one_rounding() {
        check::<bf16>("bf16", 2f64.powi(-8));
        check::<f16>("f16", 2f64.powi(-11));
    }
}
