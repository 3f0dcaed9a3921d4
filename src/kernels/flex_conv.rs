//! 2-d convolutions of f16 Flex tensors: widened to f32 with the vectorized conversions,
//! convolved by Flex's own f32 kernels (f32 accumulation, the bias added in f32), and
//! rounded once. Flex's own f16 convolution accumulates in f16 on a scalar GEMM: 4-5x its
//! f32 time, and one rounding per multiply-add.
//!
//! bf16 is left to Flex, which already convolves bf16 this way (with scalar conversions).
//! Measured in one run of `benches/step.rs` (the CNN row), taking bf16 here too made the
//! step about 10% faster but raised its peak memory from 0.67 to 0.94 of f32's: Burn's
//! weight-gradient composition transposes its operands and Flex's f32 convolution then
//! copies the transposed f32 views, where on the bf16 path the copy is made in bf16 before
//! widening. Memory is what mixed precision promises first, so bf16 keeps Flex's path.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{DType, Shape, f16};

use super::gemm;
use super::{Conv2dArgs, Conv2dGradArgs, count, elementwise};

/// Whether every tensor is f16 (the only dtype these kernels take; see the module doc).
fn all_f16(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F16)
}

/// An f16 tensor widened to a contiguous f32 tensor (exact).
fn to_f32(t: &FlexTensor) -> FlexTensor {
    let t = t.to_contiguous();
    let mut out = FlexTensor::empty(t.layout().shape().clone(), DType::F32);
    elementwise::widen(t.as_slice::<f16>().expect("contiguous f16"), out.storage_mut::<f32>());
    out
}

/// An f32 tensor rounded to f16, to nearest even.
fn to_f16(t: &FlexTensor) -> FlexTensor {
    let t = t.to_contiguous();
    let mut out = FlexTensor::empty(t.layout().shape().clone(), DType::F16);
    elementwise::narrow(t.as_slice::<f32>().expect("contiguous f32"), out.storage_mut::<f16>());
    out
}

pub(super) fn conv2d(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, options: ConvOptions<2>) -> Result<FlexTensor, Conv2dArgs<Flex>> {
    let operands: Vec<&FlexTensor> = [Some(&x), Some(&weight), bias.as_ref()].into_iter().flatten().collect();
    if !all_f16(&operands) {
        return Err((x, weight, bias, options));
    }
    let out = <Flex as ModuleOps<Flex>>::conv2d(to_f32(&x), to_f32(&weight), bias.as_ref().map(to_f32), options);
    count(|c| &mut c.conv2d);
    Ok(to_f16(&out))
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
    if !all_f16(&[&x, &weight, &grad]) {
        return Err((x, weight, grad, options));
    }
    let x32 = if widen_x { to_f32(&x) } else { x };
    let out = f32_op(x32, to_f32(&weight), to_f32(&grad), options);
    count(|c| &mut c.conv2d_backward);
    Ok(to_f16(&out))
}

pub(super) fn conv2d_x_backward(args: Conv2dGradArgs<Flex>) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
    gradient(args, false, <Flex as ModuleOps<Flex>>::conv2d_x_backward)
}

pub(super) fn conv2d_weight_backward(args: Conv2dGradArgs<Flex>) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
    gradient(args, true, <Flex as ModuleOps<Flex>>::conv2d_weight_backward)
}

/// The sum of a `[batch, channels, ...]` f16 gradient over all but the channels.
pub(super) fn sum_to_channels(grad: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    let shape = grad.layout().shape().clone();
    if !all_f16(&[&grad]) || shape.num_dims() < 2 {
        return Err(grad);
    }
    let (batch, channels) = (shape[0], shape[1]);
    let inner = shape.num_elements().checked_div(batch * channels).unwrap_or(0);
    let grad = grad.to_contiguous();
    let values = grad.as_slice::<f16>().expect("contiguous f16");
    let mut out = FlexTensor::empty(Shape::new([channels]), DType::F16);
    out.storage_mut::<f16>().copy_from_slice(&gemm::channel_sums(values, batch, channels, inner));
    count(|c| &mut c.sum_to_last);
    Ok(out)
}
