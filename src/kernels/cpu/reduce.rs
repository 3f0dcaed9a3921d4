//! Reductions of half-precision values on host slices, accumulated in f32 and rounded once:
//! column sums (a linear layer's bias gradient) and per-channel sums (a convolution's).

use gemmkit::Scalar;
use rayon::prelude::*;

use super::convert::Half;
use super::simd;
use super::threads::splits;

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
    let threads = if splits(rows * cols) { rayon::current_num_threads().clamp(1, rows) } else { 1 };
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
    if simd::add_rows(rows, cols, acc) {
        return;
    }
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
            acc[i % channels] += lane_sum(&block);
        }
    }
    let mut out = vec![<T as Scalar>::ZERO; channels];
    T::narrow_slice(&acc, &mut out);
    out
}

/// The sum of `values` in f32 over 16 interleaved partial sums (then added in order): one
/// running sum waits on each add's latency, 16 go at the vector units' rate.
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in chunks.by_ref() {
        lanes.iter_mut().zip(chunk).for_each(|(l, v)| *l += v);
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}
