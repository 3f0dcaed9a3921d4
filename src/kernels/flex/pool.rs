//! 2-d average pooling of f16/bf16 Flex tensors (`cpu::pool`): floor mode, padding at most
//! half the window. Flex widens the whole tensor to f32, pools it on its generic 3-d loops,
//! and rounds back, which took a seventh of a small CNN's bf16 step for a 2 x 2 pool's
//! backward.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, bf16, f16};

use crate::kernels::cpu::pool::{self, AvgPool2d};
use crate::kernels::cpu::{Half, Out};
use crate::kernels::{AvgPool2dArgs, AvgPool2dGradArgs, count};

/// The pooling of a contiguous `[batch, channels, h, w]` tensor, its planes and dtype, where
/// the kernels take it.
fn pooling(
    x: &FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    count_include_pad: bool,
    ceil_mode: bool,
) -> Option<(AvgPool2d, usize)> {
    let shape = x.layout().shape();
    let fits = shape.num_dims() == 4
        && !ceil_mode
        && (0..2).all(|a| kernel[a] > 0 && stride[a] > 0 && 2 * padding[a] <= kernel[a])
        && matches!(x.dtype(), DType::F16 | DType::BF16);
    if !fits {
        return None;
    }
    let p = AvgPool2d { input: [shape[2], shape[3]], kernel, stride, padding, count_include_pad };
    let planes = shape[0] * shape[1];
    let [out_h, out_w] = p.output();
    (planes * out_h * out_w > 0).then_some((p, planes))
}

/// A new `[batch, channels, h, w]` tensor of `dtype` written by `fill`.
fn planes_of<T: Half>(batch: usize, channels: usize, [h, w]: [usize; 2], fill: impl FnOnce(&mut Out<'_, T>)) -> FlexTensor {
    super::filled_shape::<T>(Shape::new([batch, channels, h, w]), T::dtype(), fill)
}

pub(super) fn avg_pool2d(
    (x, kernel, stride, padding, count_include_pad, ceil_mode): AvgPool2dArgs<Flex>,
) -> Result<FlexTensor, AvgPool2dArgs<Flex>> {
    let Some((p, planes)) = pooling(&x, kernel, stride, padding, count_include_pad, ceil_mode) else {
        return Err((x, kernel, stride, padding, count_include_pad, ceil_mode));
    };
    let c = x.to_contiguous();
    let (batch, channels) = (c.layout().shape()[0], c.layout().shape()[1]);
    fn run<T: Half>(c: &FlexTensor, planes: usize, p: &AvgPool2d, batch: usize, channels: usize) -> FlexTensor {
        let values = c.as_slice::<T>().expect("contiguous");
        planes_of::<T>(batch, channels, p.output(), |out| pool::forward(values, planes, p, out))
    }
    let out = match c.dtype() {
        DType::BF16 => run::<bf16>(&c, planes, &p, batch, channels),
        _ => run::<f16>(&c, planes, &p, batch, channels),
    };
    count(|c| &mut c.avg_pool2d);
    Ok(out)
}

pub(super) fn avg_pool2d_backward(args: AvgPool2dGradArgs<Flex>) -> Result<FlexTensor, AvgPool2dGradArgs<Flex>> {
    let (x, grad, kernel, stride, padding, count_include_pad, ceil_mode) = args;
    let Some((p, planes)) = pooling(&x, kernel, stride, padding, count_include_pad, ceil_mode) else {
        return Err((x, grad, kernel, stride, padding, count_include_pad, ceil_mode));
    };
    let shape = x.layout().shape();
    let (batch, channels) = (shape[0], shape[1]);
    let [out_h, out_w] = p.output();
    if grad.dtype() != x.dtype() || grad.layout().shape().as_slice() != [batch, channels, out_h, out_w] {
        return Err((x, grad, kernel, stride, padding, count_include_pad, ceil_mode));
    }
    let g = grad.to_contiguous();
    fn run<T: Half>(g: &FlexTensor, planes: usize, p: &AvgPool2d, batch: usize, channels: usize) -> FlexTensor {
        let values = g.as_slice::<T>().expect("contiguous");
        planes_of::<T>(batch, channels, p.input, |out| pool::backward(values, planes, p, out))
    }
    let out = match g.dtype() {
        DType::BF16 => run::<bf16>(&g, planes, &p, batch, channels),
        _ => run::<f16>(&g, planes, &p, batch, channels),
    };
    count(|c| &mut c.avg_pool2d);
    Ok(out)
}
