//! 2-d convolutions of f16 Flex tensors: widened to f32 with the vectorized conversions,
//! convolved by Flex's own f32 kernels (f32 accumulation, the bias added in f32), and
//! rounded once. Flex's own f16 convolution accumulates in f16 on a scalar GEMM: 4-5x its
//! f32 time, and one rounding per multiply-add.
//!
//! bf16 convolutions are Flex's own, which already convolves bf16 this way (with scalar
//! conversions); only their bias gradient is computed here.
//! Measured in one run of `benches/step.rs` (the CNN row), taking bf16 here too made the
//! step about 10% faster but raised its peak memory from 0.67 to 0.94 of f32's: Burn's
//! weight-gradient composition transposes its operands and Flex's f32 convolution then
//! copies the transposed f32 views, where on the bf16 path the copy is made in bf16 before
//! widening. Memory is what mixed precision promises first, so bf16 keeps Flex's path.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{DType, Shape, bf16, f16};

use super::gemm::{self, Half};
use super::{Conv2dArgs, Conv2dGradArgs, count, elementwise};

/// Whether every tensor has `dtype`.
fn all_of(tensors: &[&FlexTensor], dtype: DType) -> bool {
    tensors.iter().all(|t| t.dtype() == dtype)
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
    if all_of(&operands, DType::BF16) {
        // Flex's own bf16 convolution, taken here so that the autodiff node that records it
        // is this module's: its input and weight gradients then decline to Flex's bf16 ops
        // too, but its bias gradient is the f32 channel sum below, where Burn's default
        // transposes the gradient and copies it element by element in bf16 (a tenth of a
        // small CNN's step).
        return Ok(<Flex as ModuleOps<Flex>>::conv2d(x, weight, bias, options));
    }
    if !all_of(&operands, DType::F16) {
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
    if !all_of(&[&x, &weight, &grad], DType::F16) {
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
        out.storage_mut::<T>().copy_from_slice(&gemm::channel_sums(values, batch, channels, inner));
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
