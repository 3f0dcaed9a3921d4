//! Host kernels for Flex: its tensors are host buffers with a strided layout, read and
//! written in place (no `TensorData` round trip).
//!
//! Cases the kernels do not take (another dtype, negative strides, batch dimensions that do
//! not broadcast, a linear layer's input whose leading dimensions do not collapse to one
//! stride) are handed back to Flex, which then computes them as it always does.

mod conv;
mod pool;
mod products;
mod tile_conv;

use burn::backend::Flex;
use burn::backend::flex::ops::unary::erf_f32;
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::ops::ModuleOps;
use burn::tensor::{Bytes, DType, FloatDType, Shape, bf16, f16};

use crate::kernels::cpu::{self, Half, Out, convert, elementwise, layer_norm as norm, softmax};
use crate::kernels::{
    AvgPool2dArgs, AvgPool2dGradArgs, BinaryArgs, BinaryOp, CastArgs, Conv2dArgs, Conv2dGradArgs, HostKernels, LayerNormArgs,
    LayerNormGradArgs, LinearArgs, TensorPair, count,
};
use products::{linear, matmul, sum_to_last};

impl HostKernels for Flex {
    fn half_matmul((lhs, rhs): TensorPair<Flex>) -> Result<FlexTensor, TensorPair<Flex>> {
        match (lhs.dtype(), rhs.dtype()) {
            (DType::BF16, DType::BF16) => matmul::<bf16>(lhs, rhs),
            (DType::F16, DType::F16) => matmul::<f16>(lhs, rhs),
            _ => Err((lhs, rhs)),
        }
    }

    fn half_linear((x, weight, bias): LinearArgs<Flex>) -> Result<FlexTensor, LinearArgs<Flex>> {
        let same = |t: &FlexTensor| t.dtype() == x.dtype();
        if !same(&weight) || !bias.as_ref().is_none_or(same) {
            return Err((x, weight, bias));
        }
        match x.dtype() {
            DType::BF16 => linear::<bf16>(x, weight, bias),
            DType::F16 => linear::<f16>(x, weight, bias),
            _ => Err((x, weight, bias)),
        }
    }

    fn half_sum_to_last(tensor: FlexTensor) -> Result<FlexTensor, FlexTensor> {
        match tensor.dtype() {
            DType::BF16 => Ok(sum_to_last::<bf16>(tensor)),
            DType::F16 => Ok(sum_to_last::<f16>(tensor)),
            _ => Err(tensor),
        }
    }

    // Flex's relu is `max(x, 0)` in f32 between exact conversions, and its backward
    // `if out > 0 { g } else { 0 }`; both are decided by the encoding alone (sign bit,
    // zero, NaN), so they run on the 16-bit patterns with the same results.
    fn half_relu(tensor: FlexTensor) -> Result<FlexTensor, FlexTensor> {
        let out = match tensor.dtype() {
            DType::BF16 => unary_bits::<bf16>(tensor, |x| relu_bits(x, 0x7f80)),
            DType::F16 => unary_bits::<f16>(tensor, |x| relu_bits(x, 0x7c00)),
            _ => Err(tensor),
        };
        out.inspect(|_| count(|c| &mut c.relu))
    }

    fn half_relu_backward((output, grad): TensorPair<Flex>) -> Result<FlexTensor, TensorPair<Flex>> {
        let result = match (output.dtype(), grad.dtype()) {
            (DType::BF16, DType::BF16) => binary_bits::<bf16>(&output, &grad, |o, g| relu_grad_bits(o, g, 0x7f80)),
            (DType::F16, DType::F16) => binary_bits::<f16>(&output, &grad, |o, g| relu_grad_bits(o, g, 0x7c00)),
            _ => None,
        };
        result.inspect(|_| count(|c| &mut c.relu_backward)).ok_or((output, grad))
    }

    fn half_gelu(tensor: FlexTensor) -> Result<FlexTensor, FlexTensor> {
        let out = match tensor.dtype() {
            DType::BF16 => unary_f32::<bf16>(&tensor, gelu),
            DType::F16 => unary_f32::<f16>(&tensor, gelu),
            _ => None,
        };
        out.inspect(|_| count(|c| &mut c.gelu)).ok_or(tensor)
    }

    fn half_gelu_backward((x, grad): TensorPair<Flex>) -> Result<FlexTensor, TensorPair<Flex>> {
        let result = match (x.dtype(), grad.dtype()) {
            (DType::BF16, DType::BF16) => zipped::<bf16>(&x, &grad, |x, g, out| elementwise::gelu_grad(x, g, out, gelu_grad)),
            (DType::F16, DType::F16) => zipped::<f16>(&x, &grad, |x, g, out| elementwise::gelu_grad(x, g, out, gelu_grad)),
            _ => None,
        };
        result.inspect(|_| count(|c| &mut c.gelu_backward)).ok_or((x, grad))
    }

    fn half_avg_pool2d(args: AvgPool2dArgs<Flex>) -> Result<FlexTensor, AvgPool2dArgs<Flex>> {
        pool::avg_pool2d(args)
    }

    fn half_avg_pool2d_backward(args: AvgPool2dGradArgs<Flex>) -> Result<FlexTensor, AvgPool2dGradArgs<Flex>> {
        pool::avg_pool2d_backward(args)
    }

    fn half_conv2d((x, weight, bias, options): Conv2dArgs<Flex>) -> Result<FlexTensor, Conv2dArgs<Flex>> {
        conv::conv2d(x, weight, bias, options)
    }

    fn half_conv2d_x_backward(args: Conv2dGradArgs<Flex>) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
        conv::conv2d_x_backward(args)
    }

    fn half_conv2d_weight_backward(args: Conv2dGradArgs<Flex>) -> Result<FlexTensor, Conv2dGradArgs<Flex>> {
        conv::conv2d_weight_backward(args)
    }

    fn half_sum_to_channels(grad: FlexTensor) -> Result<FlexTensor, FlexTensor> {
        conv::sum_to_channels(grad)
    }

    fn half_binary((lhs, rhs, op): BinaryArgs<Flex>) -> Result<FlexTensor, BinaryArgs<Flex>> {
        let result = match (lhs.dtype(), rhs.dtype()) {
            (DType::BF16, DType::BF16) => broadcast_f32::<bf16>(&lhs, &rhs, op),
            (DType::F16, DType::F16) => broadcast_f32::<f16>(&lhs, &rhs, op),
            _ => None,
        };
        result.inspect(|_| count(|c| &mut c.binary)).ok_or((lhs, rhs, op))
    }

    fn half_softmax((scores, dtype): CastArgs<Flex>) -> Result<FlexTensor, CastArgs<Flex>> {
        let out = match (scores.dtype(), dtype) {
            (DType::F32, FloatDType::BF16) => softmax_rows::<bf16>(&scores),
            (DType::F32, FloatDType::F16) => softmax_rows::<f16>(&scores),
            _ => None,
        };
        out.inspect(|_| count(|c| &mut c.softmax)).ok_or((scores, dtype))
    }

    fn half_softmax_backward((p, g): TensorPair<Flex>) -> Result<FlexTensor, TensorPair<Flex>> {
        let result = match (p.dtype(), g.dtype()) {
            (DType::BF16, DType::BF16) => softmax_grad_rows::<bf16>(&p, &g),
            (DType::F16, DType::F16) => softmax_grad_rows::<f16>(&p, &g),
            _ => None,
        };
        result.inspect(|_| count(|c| &mut c.softmax_backward)).ok_or((p, g))
    }

    fn half_layer_norm((x, gamma, beta, epsilon): LayerNormArgs<Flex>) -> Result<FlexTensor, LayerNormArgs<Flex>> {
        let out = match x.dtype() {
            DType::BF16 => layer_norm_rows::<bf16>(&x, &gamma, beta.as_ref(), epsilon),
            DType::F16 => layer_norm_rows::<f16>(&x, &gamma, beta.as_ref(), epsilon),
            _ => None,
        };
        out.inspect(|_| count(|c| &mut c.layer_norm)).ok_or((x, gamma, beta, epsilon))
    }

    fn half_layer_norm_backward(args: LayerNormGradArgs<Flex>) -> Result<[FlexTensor; 3], LayerNormGradArgs<Flex>> {
        let (x, gamma, grad, epsilon) = &args;
        let result = match x.dtype() {
            DType::BF16 => layer_norm_grads::<bf16>(x, gamma, grad, *epsilon),
            DType::F16 => layer_norm_grads::<f16>(x, gamma, grad, *epsilon),
            _ => None,
        };
        result.inspect(|_| count(|c| &mut c.layer_norm_backward)).ok_or(args)
    }

    // Every layout: contiguous elements are read in place, any other view is copied first
    // (Flex's own cast copies it too). Flex's narrowing goes through f64 with `half`'s
    // f64-to-bf16 conversion, which drops the low 32 bits of the f64 before rounding and
    // so misrounds f32 values just above a tie; these loops round every value correctly,
    // and a declined view would get Flex's.
    fn half_cast((tensor, dtype): CastArgs<Flex>) -> Result<FlexTensor, CastArgs<Flex>> {
        let cast = |t: &FlexTensor| match (t.dtype(), dtype) {
            (DType::F32, FloatDType::BF16) => narrowed::<bf16>(t),
            (DType::F32, FloatDType::F16) => narrowed::<f16>(t),
            (DType::BF16, FloatDType::F32) => widened::<bf16>(t),
            (DType::F16, FloatDType::F32) => widened::<f16>(t),
            _ => None,
        };
        let takes = matches!(
            (tensor.dtype(), dtype),
            (DType::F32, FloatDType::BF16 | FloatDType::F16) | (DType::BF16 | DType::F16, FloatDType::F32)
        );
        let out = if takes { cast(&tensor).or_else(|| cast(&tensor.to_contiguous())) } else { None };
        out.inspect(|_| count(|c| &mut c.cast)).ok_or((tensor, dtype))
    }
}

/// A new contiguous tensor of `like`'s shape and `dtype`, written by `fill` (which must
/// write every element: `cpu::filled` checks).
fn filled<E: burn::tensor::Element + bytemuck::Pod>(like: &FlexTensor, dtype: DType, fill: impl FnOnce(&mut Out<'_, E>)) -> FlexTensor {
    filled_shape(like.layout().shape().clone(), dtype, fill)
}

/// A new contiguous tensor of `shape` and `dtype`, written by `fill` (as [`filled`]).
fn filled_shape<E: burn::tensor::Element + bytemuck::Pod>(shape: Shape, dtype: DType, fill: impl FnOnce(&mut Out<'_, E>)) -> FlexTensor {
    let data = cpu::filled(shape.num_elements(), fill);
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), dtype)
}

/// Whether the 16-bit pattern `x` is greater than zero: sign clear, not zero, not NaN
/// (`inf_bits`: the format's infinity; anything above it is NaN).
#[inline]
fn positive(x: u16, inf_bits: u16) -> bool {
    x & 0x8000 == 0 && x != 0 && x <= inf_bits
}

/// `max(x, 0)` on the encoding: `x` when positive, else +0 (negatives, zeros and NaN).
#[inline]
fn relu_bits(x: u16, inf_bits: u16) -> u16 {
    if positive(x, inf_bits) { x } else { 0 }
}

/// `g` where the relu output `out` is positive, else +0.
#[inline]
fn relu_grad_bits(out: u16, g: u16, inf_bits: u16) -> u16 {
    if positive(out, inf_bits) { g } else { 0 }
}

/// `f` on every 16-bit pattern of a contiguous half tensor, in place when nothing else
/// shares its buffer and the tensor covers all of it (the tensor handed back for any
/// other layout).
fn unary_bits<T: Half>(mut x: FlexTensor, f: impl Fn(u16) -> u16 + Sync + Send) -> Result<FlexTensor, FlexTensor> {
    let whole = x.layout().is_contiguous() && x.layout().start_offset() == 0 && x.storage::<T>().len() == x.layout().num_elements();
    if x.is_unique() && whole {
        elementwise::map_bits_in_place(x.storage_mut::<T>(), f);
        return Ok(x);
    }
    let Some(input) = x.as_slice::<T>() else { return Err(x) };
    Ok(filled::<T>(&x, x.dtype(), |out| elementwise::map_bits(input, out, f)))
}

/// `f` on every pair of 16-bit patterns of two contiguous half tensors of one shape.
fn binary_bits<T: Half>(a: &FlexTensor, b: &FlexTensor, f: impl Fn(u16, u16) -> u16 + Sync + Send) -> Option<FlexTensor> {
    zipped::<T>(a, b, |x, y, out| elementwise::zip_bits(x, y, out, f))
}

/// A new half tensor from two contiguous half tensors of one shape, element by element
/// (`kernel` writes the output from both inputs' elements).
fn zipped<T: Half>(a: &FlexTensor, b: &FlexTensor, kernel: impl FnOnce(&[T], &[T], &mut Out<'_, T>)) -> Option<FlexTensor> {
    if a.layout().shape() != b.layout().shape() {
        return None;
    }
    let (x, y) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
    Some(filled::<T>(a, a.dtype(), |out| kernel(x, y, out)))
}

/// Whether `small` repeats over `big`'s leading dimensions: equal ranks, and `small` is
/// `big`'s trailing dimensions after leading 1s (`[1, n]` over `[m, n]`, `[1, 1, n]` over
/// `[b, m, n]`, `[1, m, n]` over `[b, m, n]`).
fn repeats_over(small: &Shape, big: &Shape) -> bool {
    let (small, big) = (small.to_vec(), big.to_vec());
    let lead = small.iter().take_while(|&&d| d == 1).count();
    small.len() == big.len() && small[lead..] == big[lead..] && small.iter().product::<usize>() > 0
}

/// `op` on two contiguous half tensors of one shape, or with one repeating over the other
/// (see [`repeats_over`]); `None` for other broadcasts and layouts.
fn broadcast_f32<T: Half>(a: &FlexTensor, b: &FlexTensor, op: BinaryOp) -> Option<FlexTensor> {
    let (sa, sb) = (a.layout().shape(), b.layout().shape());
    let (x, y) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
    if sa == sb || repeats_over(sb, sa) {
        return Some(filled::<T>(a, a.dtype(), |out| elementwise::binary(x, y, out, op, false)));
    }
    if repeats_over(sa, sb) {
        return Some(filled::<T>(b, b.dtype(), |out| elementwise::binary(y, x, out, op, true)));
    }
    None
}

// Gelu in its exact form, `x * Phi(x)` with `Phi(x) = (1 + erf(x / sqrt 2)) / 2`, and its
// derivative `Phi(x) + x * phi(x)`, evaluated in f32 with Flex's own erf and in the same
// order of operations as Flex's f32 loops: a half result is then the same f32 value rounded
// once, bit-identical to Flex's half gelu.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x / core::f32::consts::SQRT_2))
}

fn gelu_grad(x: f32, g: f32) -> f32 {
    let inv_sqrt_2pi = 1.0 / (2.0 * core::f32::consts::PI).sqrt();
    let cdf = 0.5 * (1.0 + erf_f32(x / core::f32::consts::SQRT_2));
    let pdf = inv_sqrt_2pi * (-0.5 * x * x).exp();
    g * (cdf + x * pdf)
}

/// `f` in f32 on every element of a contiguous half tensor, rounded once.
fn unary_f32<T: Half>(x: &FlexTensor, f: impl Fn(f32) -> f32 + Sync + Send) -> Option<FlexTensor> {
    let input = x.as_slice::<T>()?;
    Some(filled::<T>(x, x.dtype(), |out| elementwise::map_f32(input, out, f)))
}

/// The length of the last dimension of a contiguous tensor of rank >= 1 with elements.
fn row_length(x: &FlexTensor) -> Option<usize> {
    x.layout().shape().last().copied().filter(|&n| n > 0)
}

fn softmax_rows<T: Half>(scores: &FlexTensor) -> Option<FlexTensor> {
    let (values, n) = (scores.as_slice::<f32>()?, row_length(scores)?);
    Some(filled::<T>(scores, T::dtype(), |out| softmax::forward(values, n, out)))
}

fn softmax_grad_rows<T: Half>(p: &FlexTensor, g: &FlexTensor) -> Option<FlexTensor> {
    if p.layout().shape() != g.layout().shape() {
        return None;
    }
    let (pv, gv, n) = (p.as_slice::<T>()?, g.as_slice::<T>()?, row_length(p)?);
    Some(filled::<f32>(p, DType::F32, |out| softmax::backward(pv, gv, n, out)))
}

/// Whether `param` fits a layer norm of `x`: `x`'s dtype, one dimension of `x`'s last.
fn fits_rows(x: &FlexTensor, param: &FlexTensor) -> bool {
    param.dtype() == x.dtype() && row_length(x).is_some_and(|n| param.layout().shape().as_slice() == [n])
}

/// Flex's own f32 layer norm between exact widening and one rounding: what Flex does for a
/// half tensor, on the vectorized conversions.
fn layer_norm_rows<T: Half>(x: &FlexTensor, gamma: &FlexTensor, beta: Option<&FlexTensor>, epsilon: f64) -> Option<FlexTensor> {
    if !fits_rows(x, gamma) || !beta.is_none_or(|b| fits_rows(x, b)) {
        return None;
    }
    let wide = |t: &FlexTensor| widened::<T>(&t.to_contiguous());
    let beta = match beta {
        Some(b) => Some(wide(b)?),
        None => None,
    };
    let out = <Flex as ModuleOps<Flex>>::layer_norm(wide(x)?, wide(gamma)?, beta, epsilon);
    let values = out.as_slice::<f32>()?;
    Some(filled::<T>(&out, T::dtype(), |o| convert::narrow(values, o)))
}

/// The gradients of [`layer_norm_rows`]: `[dx, dgamma, dbeta]`.
fn layer_norm_grads<T: Half>(x: &FlexTensor, gamma: &FlexTensor, grad: &FlexTensor, epsilon: f64) -> Option<[FlexTensor; 3]> {
    let n = row_length(x)?;
    if x.layout().shape() != grad.layout().shape() || grad.dtype() != x.dtype() || !fits_rows(x, gamma) {
        return None;
    }
    let (x, gamma, grad) = (x.to_contiguous(), gamma.to_contiguous(), grad.to_contiguous());
    let (xv, gv, dv) = (x.as_slice::<T>()?, gamma.as_slice::<T>()?, grad.as_slice::<T>()?);
    let mut dx = FlexTensor::empty(x.layout().shape().clone(), x.dtype());
    let (dgamma, dbeta) = norm::backward(xv, gv, dv, n, epsilon, dx.storage_mut::<T>());
    let vector = |v: Vec<T>| FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(Shape::from(vec![n])), T::dtype());
    Some([dx, vector(dgamma), vector(dbeta)])
}

fn narrowed<T: Half>(x: &FlexTensor) -> Option<FlexTensor> {
    let input = x.as_slice::<f32>()?;
    Some(filled::<T>(x, T::dtype(), |out| convert::narrow(input, out)))
}

fn widened<T: Half>(x: &FlexTensor) -> Option<FlexTensor> {
    let input = x.as_slice::<T>()?;
    Some(filled::<f32>(x, DType::F32, |out| convert::widen(input, out)))
}
