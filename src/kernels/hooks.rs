//! `Mixed`'s hooks: where the forwarding tables (`=> name` lines in `ops/`) offer an op to
//! the host kernels. Each hook checks the cheap conditions first (a half-precision input,
//! the switch), then dispatches to the backend's kernel, and hands its arguments back for
//! the inner backend's op when any of that says no.

use burn::tensor::backend::Backend;
use burn::tensor::ops::{AttentionModuleOptions, BoolTensor, ConvOptions, FloatTensor};
use burn::tensor::{DType, FloatDType, TensorMetadata};

use super::attention::{scores_in_f32, softmax_then_cast};
use super::dispatch::{has_host_kernels, host_kernel};
use super::host_kernels_enabled;
use super::{
    AvgPool2dArgs, AvgPool2dGradArgs, BinaryArgs, BinaryOp, CastArgs, Conv2dArgs, Conv2dGradArgs, ConvBiasGradArgs, LayerNormArgs,
    LinearArgs, TensorPair,
};

/// Whether `tensor` is f16 or bf16: the only inputs the fast path considers, checked
/// before anything else so that other dtypes cost one comparison.
#[inline]
fn is_half<B: Backend>(tensor: &FloatTensor<B>) -> bool {
    matches!(tensor.dtype(), DType::F16 | DType::BF16)
}

/// `Mixed`'s hooks (the `=> name` lines of the forwarding tables): each offers its
/// arguments to the host kernel of `B` when the checked tensor is f16 or bf16 and the fast
/// path is on, and hands them back otherwise, or when `B` has no such kernel or declines.
macro_rules! hooks {
    ($(
        $(#[$doc:meta])*
        fn $name:ident($($arg:ident: $ty:ty),+) -> Result<_, $args:ty> if half($checked:ident) => $method:ident;
    )*) => {$(
        $(#[$doc])*
        #[inline]
        pub(crate) fn $name<B: Backend>($($arg: $ty),+) -> Result<FloatTensor<B>, $args> {
            if !is_half::<B>(&$checked) || !host_kernels_enabled() {
                return Err(($($arg),+));
            }
            let args: $args = ($($arg),+);
            host_kernel!(B, args, $method)
        }
    )*};
}

hooks! {
    /// `float_matmul`.
    fn matmul(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> Result<_, TensorPair<B>> if half(lhs) => half_matmul;
    /// `linear`.
    fn linear(x: FloatTensor<B>, weight: FloatTensor<B>, bias: Option<FloatTensor<B>>) -> Result<_, LinearArgs<B>>
        if half(x) => half_linear;
    /// `linear_x_backward` (reached under `Autodiff<Mixed<B>>`).
    fn linear_x_backward(weight: FloatTensor<B>, grad: FloatTensor<B>) -> Result<_, TensorPair<B>> if half(grad) => linear_x_grad;
    /// `linear_weight_backward` (reached under `Autodiff<Mixed<B>>`).
    fn linear_weight_backward(x: FloatTensor<B>, grad: FloatTensor<B>) -> Result<_, TensorPair<B>>
        if half(grad) => linear_weight_grad;
    /// `linear_bias_backward` (reached under `Autodiff<Mixed<B>>`).
    fn sum_to_last(tensor: FloatTensor<B>) -> Result<_, FloatTensor<B>> if half(tensor) => half_sum_to_last;
    /// `layer_norm` (in the `-true` precisions: under autocast the policy runs it in f32).
    fn layer_norm(tensor: FloatTensor<B>, gamma: FloatTensor<B>, beta: Option<FloatTensor<B>>, epsilon: f64)
        -> Result<_, LayerNormArgs<B>> if half(tensor) => half_layer_norm;
    /// `relu`.
    fn relu(tensor: FloatTensor<B>) -> Result<_, FloatTensor<B>> if half(tensor) => half_relu;
    /// `relu_backward` (reached under `Autodiff<Mixed<B>>`).
    fn relu_backward(output: FloatTensor<B>, grad: FloatTensor<B>) -> Result<_, TensorPair<B>> if half(grad) => half_relu_backward;
    /// `gelu`.
    fn gelu(tensor: FloatTensor<B>) -> Result<_, FloatTensor<B>> if half(tensor) => half_gelu;
    /// `gelu_backward` (reached under `Autodiff<Mixed<B>>`).
    fn gelu_backward(x: FloatTensor<B>, grad: FloatTensor<B>) -> Result<_, TensorPair<B>> if half(grad) => half_gelu_backward;
    /// `conv2d`.
    fn conv2d(x: FloatTensor<B>, weight: FloatTensor<B>, bias: Option<FloatTensor<B>>, options: ConvOptions<2>)
        -> Result<_, Conv2dArgs<B>> if half(x) => half_conv2d;
    /// `conv2d_x_backward` (reached under `Autodiff<Mixed<B>>`).
    fn conv2d_x_backward(x: FloatTensor<B>, weight: FloatTensor<B>, output_grad: FloatTensor<B>, options: ConvOptions<2>)
        -> Result<_, Conv2dGradArgs<B>> if half(output_grad) => half_conv2d_x_backward;
    /// `conv2d_weight_backward` (reached under `Autodiff<Mixed<B>>`).
    fn conv2d_weight_backward(x: FloatTensor<B>, weight: FloatTensor<B>, output_grad: FloatTensor<B>, options: ConvOptions<2>)
        -> Result<_, Conv2dGradArgs<B>> if half(output_grad) => half_conv2d_weight_backward;
    /// `conv2d_bias_backward` (reached under `Autodiff<Mixed<B>>`).
    fn conv2d_bias_backward(x: FloatTensor<B>, bias: FloatTensor<B>, output_grad: FloatTensor<B>)
        -> Result<_, ConvBiasGradArgs<B>> if half(output_grad) => conv_bias_grad;
    /// `avg_pool2d`.
    fn avg_pool2d(x: FloatTensor<B>, kernel_size: [usize; 2], stride: [usize; 2], padding: [usize; 2], count_include_pad: bool, ceil_mode: bool)
        -> Result<_, AvgPool2dArgs<B>> if half(x) => half_avg_pool2d;
    /// `avg_pool2d_backward` (reached under `Autodiff<Mixed<B>>`).
    fn avg_pool2d_backward(
        x: FloatTensor<B>, grad: FloatTensor<B>, kernel_size: [usize; 2], stride: [usize; 2], padding: [usize; 2], count_include_pad: bool,
        ceil_mode: bool
    ) -> Result<_, AvgPool2dGradArgs<B>> if half(grad) => half_avg_pool2d_backward;
}

/// `Mixed`'s hook for `float_cast`, and the cast autocast inserts.
#[inline]
pub(crate) fn float_cast<B: Backend>(tensor: FloatTensor<B>, dtype: FloatDType) -> Result<FloatTensor<B>, CastArgs<B>> {
    let half_target = matches!(dtype, FloatDType::F16 | FloatDType::BF16);
    let takes = match tensor.dtype() {
        DType::F32 => half_target,
        DType::F16 | DType::BF16 => dtype == FloatDType::F32,
        _ => false,
    };
    if !takes || !host_kernels_enabled() {
        return Err((tensor, dtype));
    }
    let args: CastArgs<B> = (tensor, dtype);
    host_kernel!(B, args, half_cast)
}

/// `float_add` and `float_mul`: the op is the kernel's third argument, not the hook's.
#[inline]
fn binary<B: Backend>(lhs: FloatTensor<B>, rhs: FloatTensor<B>, op: BinaryOp) -> Result<FloatTensor<B>, TensorPair<B>> {
    if !is_half::<B>(&lhs) || !host_kernels_enabled() {
        return Err((lhs, rhs));
    }
    let args: BinaryArgs<B> = (lhs, rhs, op);
    let result: Result<FloatTensor<B>, BinaryArgs<B>> = host_kernel!(B, args, half_binary);
    result.map_err(|(lhs, rhs, _)| (lhs, rhs))
}

/// `float_add`.
#[inline]
pub(crate) fn add<B: Backend>(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> Result<FloatTensor<B>, TensorPair<B>> {
    binary::<B>(lhs, rhs, BinaryOp::Add)
}

/// `float_mul`.
#[inline]
pub(crate) fn mul<B: Backend>(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> Result<FloatTensor<B>, TensorPair<B>> {
    binary::<B>(lhs, rhs, BinaryOp::Mul)
}

/// Attention's softmax into half precision (see [`HostKernels::half_softmax`]), on a
/// backend with host kernels. Called from [`attention`] only, whose f32 scores and half
/// `dtype` the kernel takes (it declines anything else itself).
#[inline]
fn softmax_to_half<B: Backend>(scores: FloatTensor<B>, dtype: FloatDType) -> Result<FloatTensor<B>, CastArgs<B>> {
    let args: CastArgs<B> = (scores, dtype);
    host_kernel!(B, args, half_softmax)
}

/// The inputs of `attention`, handed back when declined.
pub(crate) type AttentionArgs<B> =
    (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, Option<BoolTensor<B>>, Option<FloatTensor<B>>, AttentionModuleOptions);

/// `Mixed`'s hook for `attention`: on a backend with host kernels, attention is written out
/// as its parts on `Mixed<B>` itself ([`scores_in_f32`]), so that each part meets
/// the policy and the kernels: the two products in half on the GEMM, the scores and their
/// softmax in f32. Passed to the inner backend whole, `Autodiff<Flex>` would decompose it
/// below `Mixed`, in half precision on Flex's own kernels.
#[inline]
pub(crate) fn attention<B: Backend>(
    query: FloatTensor<B>,
    key: FloatTensor<B>,
    value: FloatTensor<B>,
    mask: Option<BoolTensor<B>>,
    attn_bias: Option<FloatTensor<B>>,
    options: AttentionModuleOptions,
) -> Result<FloatTensor<B>, AttentionArgs<B>> {
    if !is_half::<B>(&query) || !host_kernels_enabled() || !has_host_kernels::<B>() {
        return Err((query, key, value, mask, attn_bias, options));
    }
    let softmax = |scores, half| {
        softmax_to_half::<B>(scores, half).unwrap_or_else(|(scores, half)| softmax_then_cast::<crate::Mixed<B>>(scores, half))
    };
    Ok(scores_in_f32::<crate::Mixed<B>>((query, key, value, mask, attn_bias, options), softmax))
}
