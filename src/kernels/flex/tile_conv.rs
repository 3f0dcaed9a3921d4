//! 2-d convolutions of bf16 and f16 Flex tensors on AMX tiles (groups of 1): each sample's
//! input unfolded (`cpu::unfold`) and multiplied by the weight on the tiles (f16 split into
//! bf16 pairs: `tile_pack`), f32 sums rounded once. Per sample, with `W` the weight as `[out_channels, channels * kh * kw]` and `U`
//! the unfolded input (`[channels * kh * kw, out_h * out_w]`):
//! - forward: `y = W U + bias` (rows of `y` are output channels: NCHW as it is stored);
//! - input gradient: with a stride of 1, the convolution of `dy` with the weight flipped
//!   and transposed (as the forward, no fold); otherwise `dU = W^T dy` in f32, folded back
//!   onto the input, rounded once;
//! - weight gradient: `dW^T = sum over samples of U dy^T` in f32, rounded once.
//!
//! Samples run in parallel; only a thread's own sample is unfolded at a time, so the
//! unfolded matrices never add more than one sample's per thread to the step's memory.
//!
//! An f16 convolution whose operands hold an infinity or NaN (which the split does not
//! multiply exactly) is declined after the fact: the caller runs it on its other path.

use std::cell::RefCell;

use burn::backend::flex::FlexTensor;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape, bf16, f16};
use rayon::prelude::*;

use crate::kernels::count;
use crate::kernels::cpu::gemm::View;
use crate::kernels::cpu::scratch::{self, with_scratch};
use crate::kernels::cpu::tile_gemm::{self, Bias, TileOutput};
use crate::kernels::cpu::tile_pack::{Finite, TileInput};
use crate::kernels::cpu::unfold::{self, Conv2dGeometry};
use crate::kernels::cpu::{self, Half, Out, convert};

/// An element type the convolutions on tiles take: bf16, and f16 (split).
trait TileHalf: TileInput + TileOutput + Half {}

impl<T: TileInput + TileOutput + Half> TileHalf for T {}

/// A convolution the tiles take: its batch, output channels and per-sample geometry.
struct Conv {
    batch: usize,
    out_channels: usize,
    geometry: Conv2dGeometry,
}

impl Conv {
    /// `None` unless the tiles are here, `x` (`[batch, channels, h, w]`) and `weight`
    /// (`[out_channels, channels, kh, kw]`) are of `dtype` (bf16 or f16) with matching
    /// channels, the groups are 1 and nothing is empty (a kernel of size 0 included: Flex
    /// has its say there).
    fn of(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>, dtype: DType) -> Option<Self> {
        let (xs, ws) = (x.layout().shape(), weight.layout().shape());
        let takes = tile_gemm::available()
            && x.dtype() == dtype
            && weight.dtype() == dtype
            && xs.num_dims() == 4
            && ws.num_dims() == 4
            && options.groups == 1
            && xs[1] == ws[1]
            && ws[2] * ws[3] > 0
            && options.stride.iter().chain(&options.dilation).all(|&s| s > 0);
        if !takes {
            return None;
        }
        let geometry = Conv2dGeometry {
            channels: xs[1],
            input: [xs[2], xs[3]],
            kernel: [ws[2], ws[3]],
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
        };
        let conv = Self { batch: xs[0], out_channels: ws[0], geometry };
        (conv.batch * conv.out_channels * geometry.rows() * geometry.cols() > 0).then_some(conv)
    }

    /// [`Conv::of`], for a gradient `grad` of the output: of `dtype`, of the output's shape.
    fn of_grad(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>, dtype: DType) -> Option<Self> {
        let conv = Self::of(x, weight, options, dtype)?;
        let [out_h, out_w] = conv.geometry.output();
        let fits = grad.dtype() == dtype && grad.layout().shape().as_slice() == [conv.batch, conv.out_channels, out_h, out_w];
        fits.then_some(conv)
    }

    /// The weight as the row-major `[out_channels, rows]` matrix.
    fn weight(&self) -> View {
        let rows = self.geometry.rows();
        View { offset: 0, rows: self.out_channels, cols: rows, rs: rows as isize, cs: 1 }
    }

    /// Sample `b` of an output-shaped tensor as the row-major `[out_channels, cols]` matrix.
    fn output_of(&self, b: usize) -> View {
        let cols = self.geometry.cols();
        View { offset: b * self.out_channels * cols, rows: self.out_channels, cols, rs: cols as isize, cs: 1 }
    }

    /// Sample `b` of `x` (contiguous), unfolded into `buf` (16-bit values of either half
    /// type), and its view there.
    fn unfold_into<'a, T: TileHalf>(&self, x: &[T], b: usize, buf: &'a mut Vec<bf16>) -> (&'a [T], View) {
        let g = &self.geometry;
        let cols: &mut [T] = bytemuck::cast_slice_mut(scratch::prefix(buf, g.rows() * g.cols(), bf16::ZERO));
        unfold::unfold(&x[b * g.input_len()..][..g.input_len()], g, cols);
        (cols, View { offset: 0, rows: g.rows(), cols: g.cols(), rs: g.cols() as isize, cs: 1 })
    }

    /// `W U + bias` for every sample of `x` (contiguous), written in `out` (NCHW), samples
    /// across threads.
    fn forward<T: TileHalf>(&self, x: &[T], weight: &[T], bias: Bias<'_>, out: &mut Out<'_, T>, finite: &Finite) {
        let sample = self.out_channels * self.geometry.cols();
        out.par_blocks(sample, |start, out| {
            with_scratch(&UNFOLDED, |buf| {
                let (cols, u) = self.unfold_into(x, start / sample, buf);
                finite.record(tile_gemm::product(weight, self.weight(), cols, u, bias, out, false));
            })
        });
    }

    /// For a stride of 1: the input gradient as a convolution of the output gradient (its
    /// input) with [`Conv::flipped`] weights (`None` where that needs negative padding:
    /// more padding than the dilated kernel spans). Its output is the input's size; it
    /// needs no fold, and each sum is the input gradient's exact products added in f32.
    fn transposed(&self) -> Option<Conv> {
        let g = &self.geometry;
        if g.stride != [1, 1] {
            return None;
        }
        let padding = [0, 1].map(|a| (g.dilation[a] * (g.kernel[a] - 1)).checked_sub(g.padding[a]));
        let padding = [padding[0]?, padding[1]?];
        let geometry = Conv2dGeometry { channels: self.out_channels, input: g.output(), padding, ..*g };
        Some(Conv { batch: self.batch, out_channels: g.channels, geometry })
    }

    /// The weight (`[out_channels, channels, kh, kw]`) as `[channels, out_channels, kh, kw]`,
    /// each tap at the opposite corner.
    fn flipped<T: Copy>(&self, w: &[T]) -> Vec<T> {
        let ([kh, kw], channels) = (self.geometry.kernel, self.geometry.channels);
        let tap = |c: usize, o: usize, i: usize, j: usize| w[((o * channels + c) * kh + kh - 1 - i) * kw + kw - 1 - j];
        (0..channels)
            .flat_map(|c| (0..self.out_channels).flat_map(move |o| (0..kh).flat_map(move |i| (0..kw).map(move |j| tap(c, o, i, j)))))
            .collect()
    }
}

thread_local! {
    /// Each thread's buffers (`scratch`): a sample's unfolded input, the gradient of it,
    /// and the sample's input gradient before rounding.
    static UNFOLDED: RefCell<Vec<bf16>> = const { RefCell::new(Vec::new()) };
    static UNFOLDED_GRAD: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static INPUT_GRAD: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `$run::<bf16>(..)` or `$run::<f16>(..)` as `$dtype` says; `None` for any other dtype.
macro_rules! for_half {
    ($dtype:expr, $run:ident($($arg:expr),*)) => {
        match $dtype {
            DType::BF16 => $run::<bf16>($($arg),*),
            DType::F16 => $run::<f16>($($arg),*),
            _ => None,
        }
    };
}

pub(super) fn conv2d(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>, options: &ConvOptions<2>) -> Option<FlexTensor> {
    for_half!(x.dtype(), conv2d_of(x, weight, bias, options))
}

pub(super) fn conv2d_x_backward(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>) -> Option<FlexTensor> {
    for_half!(x.dtype(), conv2d_x_backward_of(x, weight, grad, options))
}

pub(super) fn conv2d_weight_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    for_half!(x.dtype(), conv2d_weight_backward_of(x, weight, grad, options))
}

fn conv2d_of<T: TileHalf>(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>, options: &ConvOptions<2>) -> Option<FlexTensor> {
    let dtype = T::dtype();
    let conv = Conv::of(x, weight, options, dtype)?;
    if bias.is_some_and(|b| b.dtype() != dtype || b.layout().shape().num_elements() != conv.out_channels) {
        return None;
    }
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let bias: Option<Vec<f32>> = bias.map(|b| cpu::filled(conv.out_channels, |out| convert::widen(b.to_contiguous().storage::<T>(), out)));
    let [out_h, out_w] = conv.geometry.output();
    let shape = Shape::new([conv.batch, conv.out_channels, out_h, out_w]);
    let bias = bias.as_deref().map_or(Bias::None, Bias::Rows);
    let finite = Finite::new();
    let out = super::filled_shape::<T>(shape, dtype, |out| conv.forward(x.storage(), weight.storage(), bias, out, &finite));
    if !finite.all() {
        return None;
    }
    count(|c| &mut c.conv2d);
    count(|c| &mut c.tile_convs);
    Some(out)
}

fn conv2d_x_backward_of<T: TileHalf>(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let dtype = T::dtype();
    let conv = Conv::of_grad(x, weight, grad, options, dtype)?;
    let (weight, grad) = (weight.to_contiguous(), grad.to_contiguous());
    let (w_values, g_values) = (weight.storage::<T>(), grad.storage::<T>());
    let finite = Finite::new();
    if let Some(transposed) = conv.transposed() {
        let flipped = conv.flipped(w_values);
        let out = super::filled::<T>(x, dtype, |out| transposed.forward(g_values, &flipped, Bias::None, out, &finite));
        if !finite.all() {
            return None;
        }
        count(|c| &mut c.conv2d_backward);
        count(|c| &mut c.tile_convs);
        return Some(out);
    }
    let g = conv.geometry;
    // W^T: the row-major weight read as `[rows, out_channels]`.
    let w_t = View { offset: 0, rows: g.rows(), cols: conv.out_channels, rs: 1, cs: g.rows() as isize };
    let out = super::filled::<T>(x, dtype, |out| {
        out.par_blocks(g.input_len(), |start, out| {
            let b = start / g.input_len();
            with_scratch(&UNFOLDED_GRAD, |d_cols| {
                with_scratch(&INPUT_GRAD, |dx| {
                    let d_cols = scratch::prefix(d_cols, g.rows() * g.cols(), 0.0);
                    let mut d = Out::over(&mut *d_cols);
                    finite.record(tile_gemm::product(w_values, w_t, g_values, conv.output_of(b), Bias::None, &mut d, false));
                    assert!(d.is_full(), "the product wrote the unfolded gradient");
                    let dx = scratch::prefix(dx, g.input_len(), 0.0);
                    unfold::fold(d_cols, &g, dx);
                    convert::narrow(dx, out);
                })
            })
        })
    });
    if !finite.all() {
        return None;
    }
    count(|c| &mut c.conv2d_backward);
    count(|c| &mut c.tile_convs);
    Some(out)
}

fn conv2d_weight_backward_of<T: TileHalf>(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    let dtype = T::dtype();
    let conv = Conv::of_grad(x, weight, grad, options, dtype)?;
    let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
    let (x_values, g_values) = (x.storage::<T>(), grad.storage::<T>());
    let finite = Finite::new();
    let (rows, oc) = (conv.geometry.rows(), conv.out_channels);
    // dW^T = sum over samples of U dy^T, in f32: each thread sums a fixed run of samples in
    // order, and the runs are added in order, so the result does not depend on scheduling.
    let threads = rayon::current_num_threads().clamp(1, conv.batch);
    let per_thread = conv.batch.div_ceil(threads);
    let partial = |run: usize| {
        let mut sum = vec![0.0f32; rows * oc];
        for b in run * per_thread..((run + 1) * per_thread).min(conv.batch) {
            let o = conv.output_of(b);
            // dy^T: sample b's row-major `[out_channels, cols]` read as `[cols, out_channels]`.
            let dy_t = View { offset: o.offset, rows: o.cols, cols: o.rows, rs: 1, cs: o.rs };
            let part = with_scratch(&UNFOLDED, |buf| {
                let (cols, u) = conv.unfold_into(x_values, b, buf);
                cpu::filled::<f32>(rows * oc, |d| finite.record(tile_gemm::product(cols, u, g_values, dy_t, Bias::None, d, false)))
            });
            sum.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
        }
        sum
    };
    let runs: Vec<Vec<f32>> = (0..conv.batch.div_ceil(per_thread)).into_par_iter().map(partial).collect();
    let sums = runs
        .into_iter()
        .reduce(|mut acc, run| {
            acc.iter_mut().zip(&run).for_each(|(a, r)| *a += r);
            acc
        })
        .expect("a non-empty batch");
    // `[rows, out_channels]` to the weight's `[out_channels, rows]`, rounded once.
    let transposed: Vec<f32> = (0..oc).flat_map(|o| (0..rows).map(move |r| (o, r))).map(|(o, r)| sums[r * oc + o]).collect();
    if !finite.all() {
        return None;
    }
    let out = super::filled::<T>(weight, dtype, |out| convert::narrow(&transposed, out));
    count(|c| &mut c.conv2d_backward);
    count(|c| &mut c.tile_convs);
    Some(out)
}
