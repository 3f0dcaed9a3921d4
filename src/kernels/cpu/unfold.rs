//! A 2-d convolution as a product: one sample's input unfolded into a matrix of its
//! receptive fields (a row per input channel and kernel tap, a column per output pixel),
//! and a gradient of that matrix folded back onto the input (the sums of every tap that
//! read a pixel). With the unfolded matrix `U` (`[channels * kh * kw, out_h * out_w]`),
//! the convolution is `W U` for the weight as `[out_channels, channels * kh * kw]`.

/// The sizes of one sample's 2-d convolution (groups of 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conv2dGeometry {
    /// Input channels.
    pub channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride, zero padding (each side) and dilation, per axis.
    pub stride: [usize; 2],
    /// Zeros added before and after each axis.
    pub padding: [usize; 2],
    /// Distance between kernel taps, per axis.
    pub dilation: [usize; 2],
}

impl Conv2dGeometry {
    /// Output height and width (0 where the dilated kernel is larger than the padded input).
    pub(crate) fn output(&self) -> [usize; 2] {
        core::array::from_fn(|a| {
            let span = self.dilation[a] * (self.kernel[a] - 1) + 1;
            (self.input[a] + 2 * self.padding[a]).checked_sub(span).map_or(0, |room| room / self.stride[a] + 1)
        })
    }

    /// Rows of the unfolded matrix: one per input channel and kernel tap.
    pub(crate) fn rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Columns of the unfolded matrix: one per output pixel.
    pub(crate) fn cols(&self) -> usize {
        let [h, w] = self.output();
        h * w
    }

    /// Values of one sample's input.
    pub(crate) fn input_len(&self) -> usize {
        self.channels * self.input[0] * self.input[1]
    }

    /// The outputs `o` along `axis` whose tap `tap` reads inside the input, as a range, and
    /// the input index tap `tap` of output `o` reads, `o * stride + tap * dilation -
    /// padding` (valid inside the range).
    fn reach(&self, axis: usize, tap: usize) -> (core::ops::Range<usize>, impl Fn(usize) -> usize) {
        let (stride, size, out) = (self.stride[axis], self.input[axis], self.output()[axis]);
        let shift = tap * self.dilation[axis];
        let pad = self.padding[axis];
        // o * stride + shift >= pad, and o * stride + shift - pad < size.
        let first = pad.saturating_sub(shift).div_ceil(stride);
        let end = (size + pad).checked_sub(shift).map_or(0, |room| room.div_ceil(stride)).min(out);
        (first.min(end)..end, move |o: usize| o * stride + shift - pad)
    }
}

/// Writes `x`'s unfolded matrix (`[rows, cols]`, row-major) into `cols` (zeros where a tap
/// reads the padding).
///
/// # Panics
/// When `x` is not one sample's input or `cols` not the matrix's size.
pub(crate) fn unfold<T: Copy + Default>(x: &[T], g: &Conv2dGeometry, cols: &mut [T]) {
    assert_eq!(x.len(), g.input_len(), "one sample's input");
    assert_eq!(cols.len(), g.rows() * g.cols(), "the unfolded matrix");
    let ([out_h, out_w], [h, w]) = (g.output(), g.input);
    let mut rows = cols.chunks_exact_mut(out_h * out_w);
    for c in 0..g.channels {
        let plane = &x[c * h * w..][..h * w];
        for i in 0..g.kernel[0] {
            let (oh_range, row_of) = g.reach(0, i);
            for j in 0..g.kernel[1] {
                let (ow_range, col_of) = g.reach(1, j);
                let row = rows.next().expect("one row per channel and tap");
                if g.stride == [1, 1] && out_w == w && !oh_range.is_empty() && !ow_range.is_empty() {
                    // Each output row reads the next input row at the same shift: the rows
                    // of the tap's range are one run of the plane (a copy instead of one per
                    // row, each a few dozen values), with the columns outside the range
                    // then zeroed (they read the neighbouring rows).
                    let (first, last) = (oh_range.start * w + ow_range.start, (oh_range.end - 1) * w + ow_range.end);
                    let src = row_of(oh_range.start) * w + col_of(ow_range.start);
                    row[first..last].copy_from_slice(&plane[src..src + last - first]);
                    row[..oh_range.start * w + ow_range.start].fill(T::default());
                    row[last..].fill(T::default());
                    for oh in oh_range.start..oh_range.end - 1 {
                        row[oh * w + ow_range.end..(oh + 1) * w + ow_range.start].fill(T::default());
                    }
                    continue;
                }
                for (oh, dst) in row.chunks_exact_mut(out_w).enumerate() {
                    if !oh_range.contains(&oh) || ow_range.is_empty() {
                        dst.fill(T::default());
                        continue;
                    }
                    let src = &plane[row_of(oh) * w..][..w];
                    dst[..ow_range.start].fill(T::default());
                    dst[ow_range.end..].fill(T::default());
                    if g.stride[1] == 1 {
                        let first = col_of(ow_range.start);
                        dst[ow_range.clone()].copy_from_slice(&src[first..first + ow_range.len()]);
                    } else {
                        ow_range.clone().for_each(|ow| dst[ow] = src[col_of(ow)]);
                    }
                }
            }
        }
    }
}

/// The gradient of the input from the gradient of its unfolded matrix (`[rows, cols]`,
/// row-major): every pixel gets the sum of the values of the taps that read it (zeros
/// where none did). Summed in f32.
///
/// # Panics
/// When `cols` is not the matrix's size or `dx` not one sample's input.
pub(crate) fn fold(cols: &[f32], g: &Conv2dGeometry, dx: &mut [f32]) {
    assert_eq!(cols.len(), g.rows() * g.cols(), "the unfolded matrix");
    assert_eq!(dx.len(), g.input_len(), "one sample's input");
    dx.fill(0.0);
    let ([out_h, out_w], [h, w]) = (g.output(), g.input);
    let mut rows = cols.chunks_exact(out_h * out_w);
    for c in 0..g.channels {
        let plane = &mut dx[c * h * w..][..h * w];
        for i in 0..g.kernel[0] {
            let (oh_range, row_of) = g.reach(0, i);
            for j in 0..g.kernel[1] {
                let (ow_range, col_of) = g.reach(1, j);
                let row = rows.next().expect("one row per channel and tap");
                for oh in oh_range.clone() {
                    let src = &row[oh * out_w..][..out_w];
                    let dst = &mut plane[row_of(oh) * w..][..w];
                    if g.stride[1] == 1 && !ow_range.is_empty() {
                        let first = col_of(ow_range.start);
                        let dst = &mut dst[first..first + ow_range.len()];
                        dst.iter_mut().zip(&src[ow_range.clone()]).for_each(|(d, v)| *d += v);
                    } else {
                        ow_range.clone().for_each(|ow| dst[col_of(ow)] += src[ow]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every geometry of small sizes, strides, paddings and dilations (outputs not empty),
    /// "same" ones included (stride 1, output as wide as the input: one run per tap).
    fn geometries() -> Vec<Conv2dGeometry> {
        let mut all = Vec::new();
        for (channels, input, kernel) in [(1, [5, 6], [3, 3]), (2, [4, 7], [2, 3]), (3, [3, 3], [1, 1]), (1, [6, 5], [3, 2])] {
            for stride in [[1, 1], [2, 1], [1, 3]] {
                for padding in [[0, 0], [1, 2], [1, 1], [2, 2]] {
                    for dilation in [[1, 1], [2, 1], [1, 2]] {
                        let g = Conv2dGeometry { channels, input, kernel, stride, padding, dilation };
                        if g.cols() > 0 {
                            all.push(g);
                        }
                    }
                }
            }
        }
        all
    }

    /// The input pixel output pixel `(oh, ow)`'s tap `(i, j)` reads, if not padding.
    fn source(g: &Conv2dGeometry, oh: usize, ow: usize, i: usize, j: usize) -> Option<(usize, usize)> {
        let h = (oh * g.stride[0] + i * g.dilation[0]).checked_sub(g.padding[0]).filter(|&h| h < g.input[0])?;
        let w = (ow * g.stride[1] + j * g.dilation[1]).checked_sub(g.padding[1]).filter(|&w| w < g.input[1])?;
        Some((h, w))
    }

    #[test]
    fn unfolded_values_are_the_taps_inputs() {
        for g in geometries() {
            let x: Vec<f32> = (0..g.input_len()).map(|v| v as f32 + 1.0).collect();
            let mut cols = vec![f32::NAN; g.rows() * g.cols()];
            unfold(&x, &g, &mut cols);
            let [out_h, out_w] = g.output();
            let [kh, kw] = g.kernel;
            for (c, i, j, oh, ow) in (0..g.channels).flat_map(|c| {
                (0..kh).flat_map(move |i| {
                    (0..kw).flat_map(move |j| (0..out_h).flat_map(move |oh| (0..out_w).map(move |ow| (c, i, j, oh, ow))))
                })
            }) {
                let want = source(&g, oh, ow, i, j).map_or(0.0, |(h, w)| x[(c * g.input[0] + h) * g.input[1] + w]);
                let got = cols[((c * kh + i) * kw + j) * g.cols() + oh * out_w + ow];
                assert_eq!(got, want, "{g:?}: channel {c}, tap ({i}, {j}), output ({oh}, {ow})");
            }
        }
    }

    #[test]
    fn folding_sums_what_each_pixel_was_read_for() {
        for g in geometries() {
            // Column values that identify their row and column: every pixel's sum is
            // checked against the taps that read it.
            let cols: Vec<f32> = (0..g.rows() * g.cols()).map(|v| (v % 97) as f32 * 0.5 + 1.0).collect();
            let mut dx = vec![f32::NAN; g.input_len()];
            fold(&cols, &g, &mut dx);
            let mut want = vec![0.0f32; g.input_len()];
            let [out_h, out_w] = g.output();
            let [kh, kw] = g.kernel;
            for c in 0..g.channels {
                for (i, j) in (0..kh).flat_map(|i| (0..kw).map(move |j| (i, j))) {
                    for (oh, ow) in (0..out_h).flat_map(|oh| (0..out_w).map(move |ow| (oh, ow))) {
                        if let Some((h, w)) = source(&g, oh, ow, i, j) {
                            want[(c * g.input[0] + h) * g.input[1] + w] += cols[((c * kh + i) * kw + j) * g.cols() + oh * out_w + ow];
                        }
                    }
                }
            }
            assert_eq!(dx, want, "{g:?}");
        }
    }
}
