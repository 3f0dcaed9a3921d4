//! 2-d average pooling of half-precision planes, in f32 between exact widening and one
//! rounding: the forward (each window's mean) and its gradient (each output's gradient
//! shared out over its window).

use super::convert::Half;
use super::{Out, convert};

/// One plane's average pooling (floor mode: windows start inside the padded input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AvgPool2d {
    /// Input height and width.
    pub input: [usize; 2],
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Steps between windows.
    pub stride: [usize; 2],
    /// Zeros added before and after each axis.
    pub padding: [usize; 2],
    /// Whether the padding's zeros count in each window's divisor.
    pub count_include_pad: bool,
}

impl AvgPool2d {
    /// Output height and width (0 where the window is larger than the padded input).
    pub(crate) fn output(&self) -> [usize; 2] {
        core::array::from_fn(|a| {
            (self.input[a] + 2 * self.padding[a]).checked_sub(self.kernel[a]).map_or(0, |room| room / self.stride[a] + 1)
        })
    }

    /// The input indices window `o` covers along `axis` (clipped to the input).
    fn window(&self, axis: usize, o: usize) -> core::ops::Range<usize> {
        let start = o * self.stride[axis];
        let (first, end) = (start.saturating_sub(self.padding[axis]), (start + self.kernel[axis]).saturating_sub(self.padding[axis]));
        first..end.min(self.input[axis])
    }

    /// What window `(oh, ow)`'s sum is divided by.
    fn divisor(&self, rows: &core::ops::Range<usize>, cols: &core::ops::Range<usize>) -> f32 {
        if self.count_include_pad { (self.kernel[0] * self.kernel[1]) as f32 } else { (rows.len() * cols.len()) as f32 }
    }

    fn input_len(&self) -> usize {
        self.input[0] * self.input[1]
    }

    fn output_len(&self) -> usize {
        let [h, w] = self.output();
        h * w
    }
}

/// The pooled planes of `x` (`planes` planes of `p.input`), written next in `out`.
pub(crate) fn forward<T: Half>(x: &[T], planes: usize, p: &AvgPool2d, out: &mut Out<'_, T>) {
    let (input_len, output_len) = (p.input_len(), p.output_len());
    assert!(x.len() == planes * input_len && out.len() == planes * output_len, "{planes} planes in and out");
    let [out_h, out_w] = p.output();
    out.par_blocks(output_len, |start, out| {
        let plane = &x[start / output_len.max(1) * input_len..][..input_len];
        let mut wide = vec![0f32; input_len];
        T::widen_slice(plane, &mut wide);
        let mut means = Vec::with_capacity(output_len);
        for oh in 0..out_h {
            let rows = p.window(0, oh);
            for ow in 0..out_w {
                let cols = p.window(1, ow);
                let sum: f32 = rows.clone().map(|h| wide[h * p.input[1]..][cols.clone()].iter().sum::<f32>()).sum();
                means.push(sum / p.divisor(&rows, &cols));
            }
        }
        convert::narrow(&means, out);
    });
}

/// The gradient of `planes` input planes from the pooled planes' gradient `grad`, written
/// next in `out`: each input element gets the sum, over the windows holding it, of the
/// window's gradient over its divisor.
pub(crate) fn backward<T: Half>(grad: &[T], planes: usize, p: &AvgPool2d, out: &mut Out<'_, T>) {
    let (input_len, output_len) = (p.input_len(), p.output_len());
    assert!(grad.len() == planes * output_len && out.len() == planes * input_len, "{planes} planes in and out");
    let [out_h, out_w] = p.output();
    out.par_blocks(input_len, |start, out| {
        let g = &grad[start / input_len.max(1) * output_len..][..output_len];
        let mut wide = vec![0f32; output_len];
        T::widen_slice(g, &mut wide);
        let mut dx = vec![0f32; input_len];
        for oh in 0..out_h {
            let rows = p.window(0, oh);
            for ow in 0..out_w {
                let cols = p.window(1, ow);
                let share = wide[oh * out_w + ow] / p.divisor(&rows, &cols);
                rows.clone().for_each(|h| dx[h * p.input[1]..][cols.clone()].iter_mut().for_each(|d| *d += share));
            }
        }
        convert::narrow(&dx, out);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::bf16;

    /// The pooling by definition, in f64, over the padded input.
    fn reference(x: &[f64], p: &AvgPool2d) -> Vec<f64> {
        let [out_h, out_w] = p.output();
        let mut out = Vec::new();
        for (oh, ow) in (0..out_h).flat_map(|oh| (0..out_w).map(move |ow| (oh, ow))) {
            let (mut sum, mut valid) = (0.0, 0usize);
            for (i, j) in (0..p.kernel[0]).flat_map(|i| (0..p.kernel[1]).map(move |j| (i, j))) {
                let h = (oh * p.stride[0] + i).checked_sub(p.padding[0]).filter(|&h| h < p.input[0]);
                let w = (ow * p.stride[1] + j).checked_sub(p.padding[1]).filter(|&w| w < p.input[1]);
                if let (Some(h), Some(w)) = (h, w) {
                    sum += x[h * p.input[1] + w];
                    valid += 1;
                }
            }
            let divisor = if p.count_include_pad { p.kernel[0] * p.kernel[1] } else { valid };
            out.push(sum / divisor as f64);
        }
        out
    }

    fn pools() -> Vec<AvgPool2d> {
        let mut all = Vec::new();
        for (input, kernel) in [([4, 4], [2, 2]), ([5, 7], [3, 2]), ([3, 3], [3, 3]), ([6, 5], [1, 1])] {
            for stride in [[1, 1], [2, 2], [2, 1]] {
                for padding in [[0, 0], [1, 1], [0, 1]] {
                    for count_include_pad in [true, false] {
                        let p = AvgPool2d { input, kernel, stride, padding, count_include_pad };
                        if padding.iter().zip(&kernel).all(|(p, k)| 2 * p <= *k) && p.output_len() > 0 {
                            all.push(p);
                        }
                    }
                }
            }
        }
        all
    }

    /// Quarters: every sum is exact, so each mean is the exact value rounded once.
    fn quarters(len: usize) -> Vec<bf16> {
        (0..len).map(|i| bf16::from_f32(((i * 7) % 13) as f32 / 4.0 - 1.5)).collect()
    }

    #[test]
    fn pooled_means_are_rounded_once() {
        for p in pools() {
            let planes = 3;
            let x = quarters(planes * p.input_len());
            let out = crate::kernels::cpu::filled::<bf16>(planes * p.output_len(), |o| forward(&x, planes, &p, o));
            for (plane, got) in out.chunks(p.output_len()).enumerate() {
                let wide: Vec<f64> = x[plane * p.input_len()..][..p.input_len()].iter().map(|v| v.to_f64()).collect();
                let want: Vec<bf16> = reference(&wide, &p).into_iter().map(bf16::from_f64).collect();
                assert_eq!(got, &want[..], "{p:?}, plane {plane}");
            }
        }
    }

    #[test]
    fn gradients_are_the_shares_of_each_window() {
        for p in pools() {
            let planes = 2;
            let g = quarters(planes * p.output_len());
            let dx = crate::kernels::cpu::filled::<bf16>(planes * p.input_len(), |o| backward(&g, planes, &p, o));
            // The gradient of sum(out * g) by x: pooling is linear, so it is the pooling of
            // each unit input, dotted with g.
            for plane in 0..planes {
                let gp: Vec<f64> = g[plane * p.output_len()..][..p.output_len()].iter().map(|v| v.to_f64()).collect();
                for e in 0..p.input_len() {
                    let unit: Vec<f64> = (0..p.input_len()).map(|i| if i == e { 1.0 } else { 0.0 }).collect();
                    let want: f64 = reference(&unit, &p).iter().zip(&gp).map(|(a, b)| a * b).sum();
                    let got = dx[plane * p.input_len() + e].to_f64();
                    // One rounding at the result's magnitude, or at the smallest share's (a quarter
                    // over at most 9) where the shares cancel.
                    let ulp = bf16::from_f64(want).to_f64().abs().max(1.0 / 64.0) * 2f64.powi(-8);
                    assert!((got - want).abs() <= ulp, "{p:?}, plane {plane}, element {e}: {got} against {want}");
                }
            }
        }
    }
}
