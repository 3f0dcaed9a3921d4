//! Layer normalization's backward on host slices, for half-precision tensors: every row in
//! f32 from the exactly widened input, output gradient and scale, each gradient rounded
//! once to the half dtype.
//!
//! Why: Burn's autodiff has no layer-norm node, so under `Mixed<Autodiff<Flex>>` in a
//! `-true` precision it decomposed the op into eight half-precision ops (means, centring,
//! square root, division, scale and shift), each recorded with what its backward needs and
//! each rounded to 8 or 11 bits, on Flex's scalar half loops: in the transformer block's
//! 16-true step, layer norm's forward took a fifth of the time, and its backward ran
//! through the same loops. One node keeps the input and the scale and computes, per row,
//! with `x^ = (x - mean) / sqrt(var + eps)` and `h = g * gamma`:
//!
//! - `dx = (h - mean(h) - x^ * mean(h * x^)) / sqrt(var + eps)`,
//! - `dgamma = sum over rows of g * x^`, `dbeta = sum over rows of g`.

use rayon::prelude::*;

use super::convert::Half;
use super::threads::rows_per_task;

/// The gradients of layer normalization over the last dimension (`n` long) for the input
/// `x`, the scale `gamma` and the shift, from the output gradient `g`: `(dx, dgamma,
/// dbeta)`. The column sums are accumulated in f32 per band of rows and the bands added in
/// order, so a given thread count always gives the same result.
pub(crate) fn backward<T: Half>(x: &[T], gamma: &[T], g: &[T], n: usize, epsilon: f64, dx: &mut [T]) -> (Vec<T>, Vec<T>) {
    assert!(n > 0 && gamma.len() == n && x.len() == g.len() && x.len() == dx.len() && x.len().is_multiple_of(n), "whole rows");
    let mut scale = vec![0f32; n];
    T::widen_slice(gamma, &mut scale);
    let band = rows_per_task(x.len() / n, n) * n;
    let sums: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(band)
        .zip(x.par_chunks(band).zip(g.par_chunks(band)))
        .map(|(dx, (x, g))| rows(x, g, &scale, n, epsilon as f32, dx))
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0f32; n], vec![0f32; n]);
    for (dg, db) in &sums {
        dgamma.iter_mut().zip(dg).for_each(|(a, v)| *a += v);
        dbeta.iter_mut().zip(db).for_each(|(a, v)| *a += v);
    }
    let round = |v: &[f32]| {
        let mut out = vec![T::zeroed(); n];
        T::narrow_slice(v, &mut out);
        out
    };
    (round(&dgamma), round(&dbeta))
}

/// One band of rows: writes `dx`, returns the band's f32 sums for `dgamma` and `dbeta`.
fn rows<T: Half>(x: &[T], g: &[T], gamma: &[f32], n: usize, epsilon: f32, dx: &mut [T]) -> (Vec<f32>, Vec<f32>) {
    let (mut dgamma, mut dbeta) = (vec![0f32; n], vec![0f32; n]);
    let (mut xh, mut h) = (vec![0f32; n], vec![0f32; n]);
    let inv_n = 1.0 / n as f32;
    for ((x, g), dx) in x.chunks_exact(n).zip(g.chunks_exact(n)).zip(dx.chunks_exact_mut(n)) {
        T::widen_slice(x, &mut xh);
        T::widen_slice(g, &mut h);
        let mean = xh.iter().sum::<f32>() * inv_n;
        let var = xh.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_n;
        let rstd = 1.0 / (var + epsilon).sqrt();
        xh.iter_mut().for_each(|v| *v = (*v - mean) * rstd);
        // `h` holds g until it is summed into dgamma and dbeta, then g * gamma.
        dgamma.iter_mut().zip(h.iter().zip(&xh)).for_each(|(a, (g, xh))| *a += g * xh);
        dbeta.iter_mut().zip(&h).for_each(|(a, g)| *a += g);
        h.iter_mut().zip(gamma).for_each(|(v, s)| *v *= s);
        let mean_h = h.iter().sum::<f32>() * inv_n;
        let mean_hx = h.iter().zip(&xh).map(|(h, xh)| h * xh).sum::<f32>() * inv_n;
        h.iter_mut().zip(&xh).for_each(|(v, xh)| *v = (*v - mean_h - xh * mean_hx) * rstd);
        T::narrow_slice(&h, dx);
    }
    (dgamma, dbeta)
}
