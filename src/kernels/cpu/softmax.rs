//! Attention's softmax on host slices: each row's softmax computed in f32 and rounded once
//! to the half dtype the second product takes, and its backward from those half
//! probabilities. Rows are split across threads.
//!
//! Why one kernel: as separate f32 ops (maximum, subtract, exp, sum, divide, cast) the
//! softmax made six passes over the `[batch, heads, seq, seq]` scores, and autodiff kept
//! the f32 exponentials for the backward beside the half probabilities for the product (6
//! bytes a score). The node over this kernel keeps only the half probabilities (2 bytes):
//! its backward reads `p` rounded to the half dtype, an error of the same size as the
//! rounding of `g`, the half gradient the second product hands back. The rounded row no
//! longer sums to one, so the backward renormalizes it first, `q = p / sum(p)`, and
//! computes `q * (g - sum(g * q))`: each row of the score gradient then sums to zero as
//! the exact one does. (From `p` itself, a row with equal keys got a query gradient of
//! one rounding's size where the exact one is 0: found by the fast path's property tests.)

use super::convert::Half;
use super::simd::{self, Out, row_normalizer};
use super::threads::rows_per_task;

/// Writes the softmax of every `n`-long row of `scores` (f32), rounded once. A row whose
/// every score is `-inf` gives zeros.
pub(crate) fn forward<T: Half>(scores: &[f32], n: usize, out: &mut Out<'_, T>) {
    assert!(scores.len() == out.len() && n > 0 && out.len().is_multiple_of(n), "one probability per score, whole rows");
    let band = rows_per_task(out.len() / n, n) * n;
    out.par_blocks(band, |start, out| {
        let mut row = vec![0f32; n];
        rows(&scores[start..start + out.len()], n, &mut row, out);
    });
}

fn rows<T: Half>(scores: &[f32], n: usize, row: &mut [f32], out: &mut Out<'_, T>) {
    if simd::softmax_rows(scores, n, row, out) {
        return;
    }
    let mut rounded = vec![T::zeroed(); n];
    for x in scores.chunks_exact(n) {
        let max = x.iter().copied().fold(f32::MIN, f32::max);
        row.iter_mut().zip(x).for_each(|(e, x)| *e = (x - max).exp());
        let sum = row.iter().sum::<f32>().max(f32::MIN_POSITIVE);
        row.iter_mut().for_each(|e| *e /= sum);
        T::narrow_slice(row, &mut rounded);
        out.push_slice(&rounded);
    }
}

/// Writes softmax's backward for every `n`-long row, in f32: `q * (g - sum(g * q))` for
/// the renormalized probabilities `q = p / sum(p)`.
pub(crate) fn backward<T: Half>(p: &[T], g: &[T], n: usize, out: &mut Out<'_, f32>) {
    assert!(
        p.len() == out.len() && g.len() == out.len() && n > 0 && out.len().is_multiple_of(n),
        "one gradient per probability, whole rows"
    );
    let band = rows_per_task(out.len() / n, n) * n;
    out.par_blocks(band, |start, out| {
        let range = start..start + out.len();
        grad_rows(&p[range.clone()], &g[range], n, out)
    });
}

fn grad_rows<T: Half>(p: &[T], g: &[T], n: usize, out: &mut Out<'_, f32>) {
    if simd::softmax_grad_rows(p, g, n, out) {
        return;
    }
    let (mut pf, mut gf) = (vec![0f32; n], vec![0f32; n]);
    for (p, g) in p.chunks_exact(n).zip(g.chunks_exact(n)) {
        T::widen_slice(p, &mut pf);
        T::widen_slice(g, &mut gf);
        let scale = row_normalizer(pf.iter().sum());
        let dot = pf.iter().zip(&gf).map(|(p, g)| p * g).sum::<f32>() * scale;
        out.push_zip(&pf, &gf, |p, g| p * scale * (g - dot));
    }
}
