//! 2-d convolutions of f16 and bf16 Flex tensors that the AMX tiles do not take
//! (`tile_conv` takes bf16 with groups of 1 where the CPU has them): widened to f32 with the vectorized
//! conversions, convolved by Flex's own f32 kernels (f32 accumulation, the bias added in
//! f32), and rounded once. Flex's own f16 convolution accumulates in f16 on a scalar GEMM
//! (4-5x its f32 time, one rounding per multiply-add); its bf16 convolution widens whole
//! operands one element at a time and then runs the f32 one.
//!
//! A few samples of the batch at a time: widening whole operands would put an f32 copy of
//! the activations (and Flex's f32 unfolded input, which grows with the batch) at the
//! step's peak, above what the half step saves. Each slice is widened, convolved and
//! rounded into its place in the output; weight gradients are summed over the slices in
//! f32 and rounded once.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, FloatTensorOps, ModuleOps};
use burn::tensor::{DType, Shape, Slice, bf16, f16};

use super::tile_conv;
use crate::kernels::cpu::{Half, convert, reduce};
use crate::kernels::{Conv2dArgs, Conv2dGradArgs, count};

/// Input elements (of the widest operand per sample) widened at a time: a few samples of
/// a small CNN, one of a large one.
const SLICE_ELEMENTS: usize = 1 << 16;

/// Samples per slice of a weight gradient, at least. Burn's weight-gradient composition
/// convolves with the batch as input channels, and Flex takes its direct small-channel path
/// at 4 input channels or fewer: slices of 4 samples made a small CNN's step 2x slower.
const WEIGHT_GRAD_MIN_SAMPLES: usize = 8;

/// Whether every tensor has `dtype`.
fn all_of(tensors: &[&FlexTensor], dtype: DType) -> bool {
    tensors.iter().all(|t| t.dtype() == dtype)
}

/// The half type all of `tensors` share, if it is f16 or bf16.
fn half_dtype(tensors: &[&FlexTensor]) -> Option<DType> {
    [DType::F16, DType::BF16].into_iter().find(|d| all_of(tensors, *d))
}

/// Samples per slice for operands of `per_sample` elements per sample.
fn slice_len(batch: usize, per_sample: usize) -> usize {
    (SLICE_ELEMENTS / per_sample.max(1)).clamp(1, batch.max(1))
}

/// Elements per sample of a `[batch, ...]` shape.
fn per_sample(shape: &Shape) -> usize {
    shape.num_elements().checked_div(shape[0]).unwrap_or(0)
}

/// Samples `range` of a contiguous `[batch, ...]` half tensor, widened to a new f32 tensor
/// (exact).
fn widen_samples<T: Half>(t: &FlexTensor, range: core::ops::Range<usize>) -> FlexTensor {
    let mut dims = t.layout().shape().to_vec();
    let per = per_sample(t.layout().shape());
    dims[0] = range.len();
    let values = &t.as_slice::<T>().expect("contiguous half")[range.start * per..range.end * per];
    let mut out = FlexTensor::empty(Shape::from(dims), DType::F32);
    convert::widen_into(values, out.storage_mut::<f32>());
    out
}

/// A whole tensor widened to a contiguous f32 tensor (exact).
fn widen_all<T: Half>(t: &FlexTensor) -> FlexTensor {
    let batch = t.layout().shape()[0];
    widen_samples::<T>(&t.to_contiguous(), 0..batch)
}

/// An f32 tensor rounded to the half type `T`, to nearest even.
fn narrow<T: Half>(t: &FlexTensor) -> FlexTensor {
    let t = t.to_contiguous();
    let mut out = FlexTensor::empty(t.layout().shape().clone(), T::dtype());
    convert::narrow_into(t.as_slice::<f32>().expect("contiguous f32"), out.storage_mut::<T>());
    out
}

/// Runs `op` on consecutive slices of the batch (`op` gets a sample range and returns that
/// range's f32 result, `[samples, ...]`) and rounds each into its place in one half output.
fn per_slice<T: Half>(batch: usize, slice: usize, mut op: impl FnMut(core::ops::Range<usize>) -> FlexTensor) -> FlexTensor {
    let mut out: Option<FlexTensor> = None;
    let mut start = 0;
    while start < batch {
        let range = start..(start + slice).min(batch);
        let part = op(range.clone()).to_contiguous();
        let part_shape = part.layout().shape().clone();
        let per = per_sample(&part_shape);
        let out = out.get_or_insert_with(|| {
            let mut dims = part_shape.to_vec();
            dims[0] = batch;
            FlexTensor::empty(Shape::from(dims), T::dtype())
        });
        let target = &mut out.storage_mut::<T>()[range.start * per..range.end * per];
        convert::narrow_into(part.as_slice::<f32>().expect("contiguous f32"), target);
        start = range.end;
    }
    out.expect("a non-empty batch")
}

pub(super) fn conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: ConvOptions<2>,
) -> Result<FlexTensor, Conv2dArgs<Flex>> {
    if let Some(out) = tile_conv::conv2d(&x, &weight, bias.as_ref(), &options) {
        return Ok(out);
    }
    let operands: Vec<&FlexTensor> = [Some(&x), Some(&weight), bias.as_ref()].into_iter().flatten().collect();
    let batch = x.layout().shape()[0];
    let (Some(dtype), true) = (half_dtype(&operands), batch > 0) else {
        return Err((x, weight, bias, options));
    };
    fn run<T: Half>(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>, options: &ConvOptions<2>) -> FlexTensor {
        let x = x.to_contiguous();
        let (weight, bias) = (widen_all::<T>(weight), bias.map(widen_all::<T>));
        let batch = x.layout().shape()[0];
        per_slice::<T>(batch, slice_len(batch, per_sample(x.layout().shape())), |range| {
            <Flex as ModuleOps<Flex>>::conv2d(widen_samples::<T>(&x, range), weight.clone(), bias.clone(), options.clone())
        })
    }
    let out = match dtype {
        DType::BF16 => run::<bf16>(&x, &weight, bias.as_ref(), &options),
        _ => run::<f16>(&x, &weight, bias.as_ref(), &options),
    };
    count(|c| &mut c.conv2d);
    Ok(out)
}

/// A view of samples `range` of `t` (no copy).
fn samples(t: &FlexTensor, range: core::ops::Range<usize>) -> FlexTensor {
    let dims = t.layout().shape().num_dims();
    let mut slices = vec![Slice::new(range.start as isize, Some(range.end as isize), 1)];
    slices.extend((1..dims).map(|_| Slice::full()));
    <Flex as FloatTensorOps<Flex>>::float_slice(t.clone(), &slices)
}

pub(super) fn conv2d_x_backward(args: Conv2dGradArgs<Flex>) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
    let (x, weight, grad, options) = args;
    if let Some(out) = tile_conv::conv2d_x_backward(&x, &weight, &grad, &options) {
        return Ok(out);
    }
    let batch = x.layout().shape()[0];
    let (Some(dtype), true) = (half_dtype(&[&x, &weight, &grad]), batch > 0) else {
        return Err((x, weight, grad, options));
    };
    // Burn's composition reads only the input's shape: a view of each slice, never widened.
    fn run<T: Half>(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
        let (weight, grad) = (widen_all::<T>(weight), grad.to_contiguous());
        let batch = x.layout().shape()[0];
        let widest = per_sample(x.layout().shape()).max(per_sample(grad.layout().shape()));
        per_slice::<T>(batch, slice_len(batch, widest), |range| {
            let g = widen_samples::<T>(&grad, range.clone());
            <Flex as ModuleOps<Flex>>::conv2d_x_backward(samples(x, range), weight.clone(), g, options.clone())
        })
    }
    let out = match dtype {
        DType::BF16 => run::<bf16>(&x, &weight, &grad, &options),
        _ => run::<f16>(&x, &weight, &grad, &options),
    };
    count(|c| &mut c.conv2d_backward);
    Ok(out)
}

/// Samples `range` of a contiguous `[batch, channels, ...]` half tensor, widened to f32
/// and laid out channels-first (`[channels, samples, ...]`, contiguous), returned as the
/// `[samples, channels, ...]` view of that buffer. Burn's weight-gradient composition
/// (groups of 1) swaps the first two dimensions of its operands before convolving: handed
/// this view, it gets a contiguous tensor back, where Flex would otherwise copy the swapped
/// view element by element (a tenth of a small CNN's step).
fn widen_samples_channels_first<T: Half>(t: &FlexTensor, range: core::ops::Range<usize>) -> FlexTensor {
    let shape = t.layout().shape();
    let (channels, samples) = (shape[1], range.len());
    let plane = per_sample(shape).checked_div(channels).unwrap_or(0);
    let values = t.as_slice::<T>().expect("contiguous half");
    let mut dims = shape.to_vec();
    (dims[0], dims[1]) = (channels, samples);
    let mut out = FlexTensor::empty(Shape::from(dims), DType::F32);
    let target = out.storage_mut::<f32>();
    for (i, sample) in range.enumerate() {
        for c in 0..channels {
            let from = &values[(sample * channels + c) * plane..][..plane];
            let to = &mut target[(c * samples + i) * plane..][..plane];
            T::widen_slice(from, to);
        }
    }
    <Flex as FloatTensorOps<Flex>>::float_swap_dims(out, 0, 1)
}

pub(super) fn conv2d_weight_backward(args: Conv2dGradArgs<Flex>) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
    let (x, weight, grad, options) = args;
    if let Some(out) = tile_conv::conv2d_weight_backward(&x, &weight, &grad, &options) {
        return Ok(out);
    }
    let batch = x.layout().shape()[0];
    let (Some(dtype), true) = (half_dtype(&[&x, &weight, &grad]), batch > 0) else {
        return Err((x, weight, grad, options));
    };
    // The sum over the batch, slice by slice in f32, rounded once.
    fn run<T: Half>(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
        let (x, grad, weight) = (x.to_contiguous(), grad.to_contiguous(), widen_all::<T>(weight));
        let batch = x.layout().shape()[0];
        let widest = per_sample(x.layout().shape()).max(per_sample(grad.layout().shape()));
        let slice = slice_len(batch, widest).max(WEIGHT_GRAD_MIN_SAMPLES).min(batch);
        let widen: fn(&FlexTensor, core::ops::Range<usize>) -> FlexTensor =
            if options.groups == 1 { widen_samples_channels_first::<T> } else { widen_samples::<T> };
        let mut sum: Option<FlexTensor> = None;
        let mut start = 0;
        while start < batch {
            let range = start..(start + slice).min(batch);
            let (xs, gs) = (widen(&x, range.clone()), widen(&grad, range.clone()));
            let part = <Flex as ModuleOps<Flex>>::conv2d_weight_backward(xs, weight.clone(), gs, options.clone());
            sum = Some(match sum {
                None => part,
                Some(acc) => <Flex as FloatTensorOps<Flex>>::float_add(acc, part),
            });
            start = range.end;
        }
        narrow::<T>(&sum.expect("a non-empty batch"))
    }
    let out = match dtype {
        DType::BF16 => run::<bf16>(&x, &weight, &grad, &options),
        _ => run::<f16>(&x, &weight, &grad, &options),
    };
    count(|c| &mut c.conv2d_backward);
    Ok(out)
}

/// The sum of a `[batch, channels, ...]` half gradient over all but the channels,
/// accumulated in f32.
pub(super) fn sum_to_channels(grad: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    let shape = grad.layout().shape().clone();
    if shape.num_dims() < 2 {
        return Err(grad);
    }
    let (batch, channels) = (shape[0], shape[1]);
    let inner = shape.num_elements().checked_div(batch * channels).unwrap_or(0);
    fn sums<T: Half>(grad: &FlexTensor, batch: usize, channels: usize, inner: usize) -> FlexTensor {
        let grad = grad.to_contiguous();
        let values = grad.as_slice::<T>().expect("contiguous");
        let mut out = FlexTensor::empty(Shape::new([channels]), T::dtype());
        out.storage_mut::<T>().copy_from_slice(&reduce::channel_sums(values, batch, channels, inner));
        out
    }
    let out = match grad.dtype() {
        DType::BF16 => sums::<bf16>(&grad, batch, channels, inner),
        DType::F16 => sums::<f16>(&grad, batch, channels, inner),
        _ => return Err(grad),
    };
    count(|c| &mut c.sum_to_last);
    Ok(out)
}
