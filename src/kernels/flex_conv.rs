//! 2-d convolutions of half-precision Flex tensors: widened to f32 with the vectorized
//! conversions, convolved by Flex's own f32 kernels (f32 accumulation, the bias added in
//! f32), and rounded once. Flex's bf16 convolution does the same with scalar conversions,
//! so results are bit-identical to it at a lower cost; its f16 convolution accumulates in
//! f16 on a scalar GEMM, which this replaces by f32 accumulation (one rounding).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{DType, Shape, bf16, f16};

use super::gemm::{self, Half};
use super::{Conv2dArgs, Conv2dGradArgs, count, elementwise};

/// Whether every tensor is f16, or every one bf16.
fn same_half(tensors: &[&FlexTensor]) -> bool {
    let dtype = tensors[0].dtype();
    matches!(dtype, DType::F16 | DType::BF16) && tensors.iter().all(|t| t.dtype() == dtype)
}

/// A half tensor widened to a contiguous f32 tensor (exact).
fn to_f32(t: &FlexTensor) -> FlexTensor {
    fn widen<T: Half>(t: &FlexTensor) -> FlexTensor {
        let t = t.to_contiguous();
        let input = t.as_slice::<T>().expect("contiguous");
        let mut out = FlexTensor::empty(t.layout().shape().clone(), DType::F32);
        elementwise::widen(input, out.storage_mut::<f32>());
        out
    }
    if t.dtype() == DType::BF16 { widen::<bf16>(t) } else { widen::<f16>(t) }
}

/// An f32 tensor rounded to `dtype` (f16 or bf16), to nearest even.
fn to_half(t: &FlexTensor, dtype: DType) -> FlexTensor {
    fn narrow<T: Half>(t: &FlexTensor) -> FlexTensor {
        let t = t.to_contiguous();
        let input = t.as_slice::<f32>().expect("contiguous");
        let mut out = FlexTensor::empty(t.layout().shape().clone(), T::dtype());
        elementwise::narrow(input, out.storage_mut::<T>());
        out
    }
    if dtype == DType::BF16 { narrow::<bf16>(t) } else { narrow::<f16>(t) }
}

pub(super) fn conv2d(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, options: ConvOptions<2>) -> Result<FlexTensor, Conv2dArgs<Flex>> {
    let operands: Vec<&FlexTensor> = [Some(&x), Some(&weight), bias.as_ref()].into_iter().flatten().collect();
    if !same_half(&operands) {
        return Err((x, weight, bias, options));
    }
    let out = <Flex as ModuleOps<Flex>>::conv2d(to_f32(&x), to_f32(&weight), bias.as_ref().map(to_f32), options);
    count(|c| &mut c.conv2d);
    Ok(to_half(&out, x.dtype()))
}

/// One of a convolution's input or weight gradients, computed by `f32_op` in f32.
/// `widen_x`: whether the op reads the input's values (the weight gradient) or only its
/// shape (the input gradient: Burn's composition reads `x.shape()` alone), which then saves
/// an f32 copy of the activations at the step's peak.
fn gradient(
    args: Conv2dGradArgs<Flex>,
    widen_x: bool,
    f32_op: fn(FlexTensor, FlexTensor, FlexTensor, ConvOptions<2>) -> FlexTensor,
) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
    let (x, weight, grad, options) = args;
    if !same_half(&[&x, &weight, &grad]) {
        return Err((x, weight, grad, options));
    }
    let x32 = if widen_x { to_f32(&x) } else { x };
    let out = f32_op(x32, to_f32(&weight), to_f32(&grad), options);
    count(|c| &mut c.conv2d_backward);
    Ok(to_half(&out, grad.dtype()))
}

pub(super) fn conv2d_x_backward(args: Conv2dGradArgs<Flex>) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
    gradient(args, false, <Flex as ModuleOps<Flex>>::conv2d_x_backward)
}

pub(super) fn conv2d_weight_backward(args: Conv2dGradArgs<Flex>) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
    gradient(args, true, <Flex as ModuleOps<Flex>>::conv2d_weight_backward)
}

/// The sum of a `[batch, channels, ...]` half gradient over all but the channels.
pub(super) fn sum_to_channels(grad: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    let shape = grad.layout().shape().clone();
    if !same_half(&[&grad]) || shape.num_dims() < 2 {
        return Err(grad);
    }
    let (batch, channels) = (shape[0], shape[1]);
    let inner = shape.num_elements().checked_div(batch * channels).unwrap_or(0);
    fn sums<T: Half>(grad: &FlexTensor, batch: usize, channels: usize, inner: usize) -> FlexTensor {
        let grad = grad.to_contiguous();
        let values = grad.as_slice::<T>().expect("contiguous");
        let mut out = FlexTensor::empty(Shape::new([channels]), T::dtype());
        out.storage_mut::<T>().copy_from_slice(&gemm::channel_sums(values, batch, channels, inner));
        out
    }
    count(|c| &mut c.sum_to_last);
    Ok(if grad.dtype() == DType::BF16 { sums::<bf16>(&grad, batch, channels, inner) } else { sums::<f16>(&grad, batch, channels, inner) })
}
