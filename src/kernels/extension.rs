//! The extension point: the ops a backend's own kernels can take over from `Mixed`'s inner
//! backend, and the argument types they take and hand back.

use burn::tensor::FloatDType;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor};

/// Half-precision ops a backend can run faster than its own kernels.
///
/// Every method takes its inputs as one value (a tensor, or a tuple in the order the
/// method's documentation and its argument type give) and hands that value back (`Err`)
/// when it does not take the case (a dtype, a shape or a layout it does not handle); the
/// caller then runs the inner backend's op. The defaults decline everything.
///
/// Sealed: implemented for the backends whose kernels burn-mixed ships (Flex, and
/// `Autodiff` over a backend that has them), the ones its dispatch registry reaches
/// (`kernels::dispatch`). An implementation elsewhere would never be called, so none can be
/// written; other crates may call the methods, e.g. to test a kernel on its own.
pub trait HostKernels: Backend + sealed::Sealed {
    /// `lhs @ rhs` from `(lhs, rhs)`, f16/bf16 operands whose batch dimensions broadcast,
    /// accumulated in f32 and rounded once.
    fn half_matmul(args: TensorPair<Self>) -> Result<FloatTensor<Self>, TensorPair<Self>> {
        Err(args)
    }

    /// `x @ weight + bias` from `(x, weight, bias)`, f16/bf16 operands, the bias added to
    /// the f32 accumulator: one rounding, as PyTorch's `addmm`.
    fn half_linear(args: LinearArgs<Self>) -> Result<FloatTensor<Self>, LinearArgs<Self>> {
        Err(args)
    }

    /// The sum over every dimension but the last of an f16/bf16 tensor, accumulated in f32
    /// (a linear layer's bias gradient).
    fn half_sum_to_last(tensor: FloatTensor<Self>) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        Err(tensor)
    }

    /// `max(x, 0)` of an f16/bf16 tensor, bit-identical to the inner backend's.
    fn half_relu(tensor: FloatTensor<Self>) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        Err(tensor)
    }

    /// `grad` where `output > 0`, else 0 (relu's backward), from `(output, grad)`, f16/bf16
    /// tensors.
    fn half_relu_backward(args: TensorPair<Self>) -> Result<FloatTensor<Self>, TensorPair<Self>> {
        Err(args)
    }

    /// The gelu of an f16/bf16 tensor (the exact, erf form), computed in f32 and rounded
    /// once, bit-identical to the inner backend's where it does the same.
    fn half_gelu(tensor: FloatTensor<Self>) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        Err(tensor)
    }

    /// `grad * gelu'(x)` (gelu's backward) from `(x, grad)`, f16/bf16 tensors, computed in
    /// f32 and rounded once.
    fn half_gelu_backward(args: TensorPair<Self>) -> Result<FloatTensor<Self>, TensorPair<Self>> {
        Err(args)
    }

    /// A 2-d convolution from `(x, weight, bias, options)`, half-precision operands,
    /// accumulated in f32 (bias included) and rounded once.
    fn half_conv2d(args: Conv2dArgs<Self>) -> Result<FloatTensor<Self>, Conv2dArgs<Self>> {
        Err(args)
    }

    /// A 2-d convolution's input gradient (half precision), accumulated in f32.
    fn half_conv2d_x_backward(args: Conv2dGradArgs<Self>) -> Result<FloatTensor<Self>, Conv2dGradArgs<Self>> {
        Err(args)
    }

    /// A 2-d convolution's weight gradient (half precision), accumulated in f32.
    fn half_conv2d_weight_backward(args: Conv2dGradArgs<Self>) -> Result<FloatTensor<Self>, Conv2dGradArgs<Self>> {
        Err(args)
    }

    /// A convolution's bias gradient: the sum of an f16/bf16 `[batch, channels, ...]`
    /// gradient over every dimension but the channels, accumulated in f32.
    fn half_sum_to_channels(grad: FloatTensor<Self>) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        Err(grad)
    }

    /// 2-d average pooling from `(x, kernel_size, stride, padding, count_include_pad,
    /// ceil_mode)` of an f16/bf16 `[batch, channels, h, w]` tensor: each window's sum in
    /// f32, divided, rounded once.
    fn half_avg_pool2d(args: AvgPool2dArgs<Self>) -> Result<FloatTensor<Self>, AvgPool2dArgs<Self>> {
        Err(args)
    }

    /// [`HostKernels::half_avg_pool2d`]'s input gradient from `(x, output_grad,
    /// kernel_size, stride, padding, count_include_pad, ceil_mode)`, summed in f32 and
    /// rounded once.
    fn half_avg_pool2d_backward(args: AvgPool2dGradArgs<Self>) -> Result<FloatTensor<Self>, AvgPool2dGradArgs<Self>> {
        Err(args)
    }

    /// A cast from `(tensor, dtype)` between f32 and f16/bf16 (either way), rounding to
    /// nearest even.
    fn half_cast(args: CastArgs<Self>) -> Result<FloatTensor<Self>, CastArgs<Self>> {
        Err(args)
    }

    /// The softmax over the last dimension of `scores` from `(scores, dtype)`, an f32
    /// tensor, computed in f32 and rounded once to `dtype` (f16 or bf16): attention's probabilities, ready for the second product. A
    /// row whose every score is `-inf` gives zeros.
    fn half_softmax(args: CastArgs<Self>) -> Result<FloatTensor<Self>, CastArgs<Self>> {
        Err(args)
    }

    /// [`HostKernels::half_softmax`]'s backward over the last dimension, in f32, from the
    /// f16/bf16 probabilities and their gradient `(p, g)` (same dtype and shape): `q * (g -
    /// sum(g * q))` with `q = p / sum(p)`, the rounded row renormalized; an f32 result.
    fn half_softmax_backward(args: TensorPair<Self>) -> Result<FloatTensor<Self>, TensorPair<Self>> {
        Err(args)
    }

    /// Layer normalization over the last dimension from `(x, gamma, beta, epsilon)`: an
    /// f16/bf16 tensor, with `gamma` (and `beta`) of its dtype and length, computed in f32
    /// and rounded once.
    fn half_layer_norm(args: LayerNormArgs<Self>) -> Result<FloatTensor<Self>, LayerNormArgs<Self>> {
        Err(args)
    }

    /// [`HostKernels::half_layer_norm`]'s backward from `(x, gamma, output_grad, epsilon)`:
    /// the gradients of the input, the scale and the shift, each computed in f32 and rounded
    /// once to the input's dtype.
    fn half_layer_norm_backward(args: LayerNormGradArgs<Self>) -> Result<[FloatTensor<Self>; 3], LayerNormGradArgs<Self>> {
        Err(args)
    }

    /// `lhs + rhs` or `lhs * rhs` from `(lhs, rhs, op)`, f16/bf16 tensors of one dtype, of
    /// one shape or one repeated over the other's leading dimensions (a bias, a per-feature scale): in f32
    /// between exact widening and one rounding, as the inner backend computes it.
    fn half_binary(args: BinaryArgs<Self>) -> Result<FloatTensor<Self>, BinaryArgs<Self>> {
        Err(args)
    }
}

/// The element-wise binary ops with host kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `lhs + rhs`.
    Add,
    /// `lhs * rhs`.
    Mul,
}

impl BinaryOp {
    /// The op on f32 values.
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Self::Add => a + b,
            Self::Mul => a * b,
        }
    }
}

/// The inputs of a cast, handed back when declined.
pub type CastArgs<B> = (FloatTensor<B>, FloatDType);

/// The inputs of a 2-d convolution, handed back when declined.
pub type Conv2dArgs<B> = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>, ConvOptions<2>);
/// The inputs of a 2-d convolution's input or weight gradient: `(x, weight, output_grad,
/// options)`, handed back when declined.
pub type Conv2dGradArgs<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, ConvOptions<2>);

/// The inputs of a 2-d average pooling, `(x, kernel_size, stride, padding,
/// count_include_pad, ceil_mode)`, handed back when declined.
pub type AvgPool2dArgs<B> = (FloatTensor<B>, [usize; 2], [usize; 2], [usize; 2], bool, bool);
/// The inputs of a 2-d average pooling's backward, `(x, output_grad, kernel_size, stride,
/// padding, count_include_pad, ceil_mode)`, handed back when declined.
pub type AvgPool2dGradArgs<B> = (FloatTensor<B>, FloatTensor<B>, [usize; 2], [usize; 2], [usize; 2], bool, bool);

/// A convolution's bias-gradient inputs `(x, bias, output_grad)`, handed back when declined.
pub type ConvBiasGradArgs<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

/// The inputs of a layer normalization, handed back when declined.
pub type LayerNormArgs<B> = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>, f64);
/// The inputs of a layer normalization's backward: `(x, gamma, output_grad, epsilon)`.
pub type LayerNormGradArgs<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64);

/// Two tensors, handed back when declined: a product's operands, or an activation's (or
/// softmax's) saved value and its gradient, in the order the method gives.
pub type TensorPair<B> = (FloatTensor<B>, FloatTensor<B>);
/// The inputs of an element-wise add or mul, handed back when declined.
pub type BinaryArgs<B> = (FloatTensor<B>, FloatTensor<B>, BinaryOp);
/// The inputs of a linear layer, handed back when declined.
pub type LinearArgs<B> = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>);

/// Keeps [`HostKernels`] to the backends in the dispatch registry.
mod sealed {
    pub trait Sealed {}

    #[cfg(feature = "flex")]
    impl Sealed for burn::backend::Flex {}
    #[cfg(feature = "flex")]
    impl<B: super::HostKernels, C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy> Sealed for burn::backend::Autodiff<B, C> {}
}
