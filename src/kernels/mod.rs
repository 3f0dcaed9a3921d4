//! Host kernels: a faster path for the ops autocast runs in half precision, for inner
//! backends that keep their tensors in host memory.
//!
//! Flex computes a bf16 product by converting both operands to f32 and back, its f16
//! product of one row accumulates in f16, and its half element-wise loops are scalar, so
//! on a CPU every half precision ran slower than f32. [`HostKernels`] is the extension
//! point: a backend implements the ops it can do better, and declines the rest by handing
//! its inputs back, which `Mixed` then forwards to the inner backend as usual.
//!
//! - `flex`: the kernels for Flex's tensors (gemmkit's native half GEMM, f32 accumulation,
//!   runtime ISA dispatch: `vdpbf16ps` where the CPU has avx512_bf16, a widening path
//!   elsewhere);
//! - `autodiff`: the same ops for `Autodiff<B>` over a backend that has them, recorded with
//!   backward passes that use the same kernels, so `Mixed<Autodiff<Flex>>` trains on them;
//!   `Autodiff<Mixed<Flex>>` reaches them through `Mixed<Flex>`, backward included.
//!
//! Only half-precision inputs ever take this path: 32-true stays bit-identical to the
//! bare backend. `MIXED_HOST_KERNELS=0` in the environment, or [`set_host_kernels`],
//! turns it off (for comparison and debugging).

mod attention;
#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod elementwise;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod flex_conv;
#[cfg(feature = "flex")]
mod gemm;
#[cfg(feature = "flex")]
mod lanes;
#[cfg(feature = "flex")]
mod layer_norm;
#[cfg(feature = "flex")]
mod softmax;

#[cfg(feature = "flex")]
use core::any::TypeId;
use core::cell::Cell;
#[cfg(feature = "flex")]
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicU8, Ordering};

use burn::tensor::backend::Backend;
use burn::tensor::ops::{AttentionModuleOptions, BoolTensor, ConvOptions, FloatTensor};
use burn::tensor::{DType, FloatDType, TensorMetadata};

/// The environment variable that turns the host fast path off when set to `0`.
pub const HOST_KERNELS_ENV: &str = "MIXED_HOST_KERNELS";
/// The environment variable that, set to `0`, keeps the host fast path but runs its
/// element-wise loops without AVX-512 (as on a CPU without it), and set to `avx512`, with
/// AVX-512 but without its bf16 conversion instruction (read once per process).
pub const HOST_LANES_ENV: &str = "MIXED_HOST_LANES";

/// Half-precision ops a backend can run faster than its own kernels.
///
/// Every method hands its inputs back (`Err`) when it does not take the case (a dtype, a
/// shape or a layout it does not handle); the caller then runs the inner backend's op. The
/// defaults decline everything.
pub trait HostKernels: Backend {
    /// `lhs @ rhs` for f16/bf16 operands of equal batch shape, accumulated in f32 and
    /// rounded once.
    fn half_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Err((lhs, rhs))
    }

    /// `x @ weight + bias` for f16/bf16 operands, the bias added to the f32 accumulator:
    /// one rounding, as PyTorch's `addmm`.
    fn half_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> Result<FloatTensor<Self>, LinearArgs<Self>> {
        Err((x, weight, bias))
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

    /// `grad` where `output > 0`, else 0 (relu's backward), for f16/bf16 tensors.
    fn half_relu_backward(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Err((output, grad))
    }

    /// The gelu of an f16/bf16 tensor (the exact, erf form), computed in f32 and rounded
    /// once, bit-identical to the inner backend's where it does the same.
    fn half_gelu(tensor: FloatTensor<Self>) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        Err(tensor)
    }

    /// `grad * gelu'(x)` (gelu's backward) for f16/bf16 tensors, computed in f32 and
    /// rounded once.
    fn half_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Err((x, grad))
    }

    /// A 2-d convolution of half-precision operands, accumulated in f32 (bias included)
    /// and rounded once. (Flex takes f16 only: see `flex_conv`.)
    fn half_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> Result<FloatTensor<Self>, Conv2dArgs<Self>> {
        Err((x, weight, bias, options))
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

    /// A cast between f32 and f16/bf16 (either way), rounding to nearest even.
    fn half_cast(tensor: FloatTensor<Self>, dtype: FloatDType) -> Result<FloatTensor<Self>, CastArgs<Self>> {
        Err((tensor, dtype))
    }

    /// The softmax over the last dimension of an f32 tensor, computed in f32 and rounded once
    /// to `dtype` (f16 or bf16): attention's probabilities, ready for the second product. A
    /// row whose every score is `-inf` gives zeros.
    fn half_softmax(scores: FloatTensor<Self>, dtype: FloatDType) -> Result<FloatTensor<Self>, CastArgs<Self>> {
        Err((scores, dtype))
    }

    /// [`HostKernels::half_softmax`]'s backward over the last dimension, in f32, from the
    /// f16/bf16 probabilities `p` and their gradient `g` (same dtype and shape): `q * (g -
    /// sum(g * q))` with `q = p / sum(p)`, the rounded row renormalized; an f32 result.
    fn half_softmax_backward(p: FloatTensor<Self>, g: FloatTensor<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Err((p, g))
    }

    /// Layer normalization over the last dimension of an f16/bf16 tensor, with `gamma`
    /// (and `beta`) of its dtype and length: computed in f32 and rounded once.
    fn half_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        epsilon: f64,
    ) -> Result<FloatTensor<Self>, LayerNormArgs<Self>> {
        Err((x, gamma, beta, epsilon))
    }

    /// [`HostKernels::half_layer_norm`]'s backward from `(x, gamma, output_grad, epsilon)`:
    /// the gradients of the input, the scale and the shift, each computed in f32 and rounded
    /// once to the input's dtype.
    fn half_layer_norm_backward(args: LayerNormGradArgs<Self>) -> Result<[FloatTensor<Self>; 3], LayerNormGradArgs<Self>> {
        Err(args)
    }

    /// `lhs + rhs` or `lhs * rhs` for f16/bf16 tensors of one dtype, of one shape or one
    /// repeated over the other's leading dimensions (a bias, a per-feature scale): in f32
    /// between exact widening and one rounding, as the inner backend computes it.
    fn half_binary(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, _op: BinaryOp) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Err((lhs, rhs))
    }
}

/// The element-wise binary ops with host kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
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

/// The inputs of a layer normalization, handed back when declined.
pub type LayerNormArgs<B> = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>, f64);
/// The inputs of a layer normalization's backward: `(x, gamma, output_grad, epsilon)`.
pub type LayerNormGradArgs<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64);

/// The inputs of a matmul, handed back when declined.
pub type MatmulArgs<B> = (FloatTensor<B>, FloatTensor<B>);
/// The inputs of a linear layer, handed back when declined.
pub type LinearArgs<B> = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>);

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

static SWITCH: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    /// A scoped override on this thread ([`with_host_kernels`]); `UNSET` defers to the
    /// process-wide switch.
    static THREAD_SWITCH: Cell<u8> = const { Cell::new(UNSET) };
}

/// Turns the host fast path on or off for the whole process (overrides the environment).
pub fn set_host_kernels(enabled: bool) {
    SWITCH.store(if enabled { ON } else { OFF }, Ordering::Relaxed);
}

/// Runs `f` with the host fast path on or off on this thread only, whatever the process
/// setting (e.g. to compare both paths side by side in one process).
pub fn with_host_kernels<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_SWITCH.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(THREAD_SWITCH.with(|s| s.replace(if enabled { ON } else { OFF })));
    f()
}

/// Whether the host fast path is on for this thread: [`with_host_kernels`], else
/// [`set_host_kernels`], else `MIXED_HOST_KERNELS` (`0` turns it off), else on.
pub fn host_kernels_enabled() -> bool {
    match THREAD_SWITCH.with(Cell::get) {
        ON => return true,
        OFF => return false,
        _ => {}
    }
    match SWITCH.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let enabled = std::env::var(HOST_KERNELS_ENV).map_or(true, |v| v.trim() != "0");
            // A racing `set_host_kernels` wins: only replace the unset state.
            let _ = SWITCH.compare_exchange(UNSET, if enabled { ON } else { OFF }, Ordering::Relaxed, Ordering::Relaxed);
            host_kernels_enabled()
        }
    }
}

/// How many times each host kernel ran on this thread (forward and backward passes alike)
/// since the last [`reset_host_kernel_calls`]: to check that a model takes the fast path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostKernelCalls {
    pub matmul: u64,
    pub linear: u64,
    pub sum_to_last: u64,
    pub relu: u64,
    pub relu_backward: u64,
    pub gelu: u64,
    pub gelu_backward: u64,
    pub conv2d: u64,
    pub conv2d_backward: u64,
    pub cast: u64,
    /// Element-wise add and mul.
    pub binary: u64,
    /// Attention's softmax (f32 scores to half probabilities).
    pub softmax: u64,
    pub softmax_backward: u64,
    pub layer_norm: u64,
    pub layer_norm_backward: u64,
}

thread_local! {
    static CALLS: Cell<HostKernelCalls> = const {
        Cell::new(HostKernelCalls {
            matmul: 0, linear: 0, sum_to_last: 0, relu: 0, relu_backward: 0, gelu: 0, gelu_backward: 0, conv2d: 0,
            conv2d_backward: 0, cast: 0, binary: 0, softmax: 0, softmax_backward: 0,
            layer_norm: 0, layer_norm_backward: 0,
        })
    };
}

/// This thread's kernel call counts.
pub fn host_kernel_calls() -> HostKernelCalls {
    CALLS.with(Cell::get)
}

pub fn reset_host_kernel_calls() {
    CALLS.with(|c| c.set(HostKernelCalls::default()));
}

/// Counts one run of a kernel (called by the backend implementations when they take a
/// case).
#[cfg(feature = "flex")]
fn count(which: impl FnOnce(&mut HostKernelCalls) -> &mut u64) {
    CALLS.with(|c| {
        let mut calls = c.get();
        *which(&mut calls) += 1;
        c.set(calls);
    });
}

/// Whether `tensor` is f16 or bf16: the only inputs the fast path considers, checked
/// before anything else so that other dtypes cost one comparison.
#[inline]
fn is_half<B: Backend>(tensor: &FloatTensor<B>) -> bool {
    matches!(tensor.dtype(), DType::F16 | DType::BF16)
}

/// Moves `value` into type `U` when `T` and `U` are the same type.
#[cfg(feature = "flex")]
fn same_type<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    if TypeId::of::<T>() != TypeId::of::<U>() {
        return Err(value);
    }
    let value = ManuallyDrop::new(value);
    // SAFETY: `T` and `U` are the same type (equal `TypeId`s), so this is a move of a `T`
    // into a `T`; `ManuallyDrop` keeps the original from being dropped twice.
    Ok(unsafe { core::ptr::read(&*value as *const T as *const U) })
}

/// Runs `$method` of the first backend in the list that `$B` is, on `$args` (moved into
/// that backend's types and back), or hands `$args` back when `$B` has no host kernels.
macro_rules! dispatch {
    ($B:ty, $args:expr, $method:ident, [$($K:ty),* $(,)?]) => {{
        #[allow(unused_mut)]
        let mut args = $args;
        $(
            match same_type::<_, _>(args) {
                Ok(native) => {
                    let result = <$K>::$method(native);
                    return match result {
                        Ok(out) => Ok(same_type(out).unwrap_or_else(|_| unreachable!("same backend"))),
                        Err(back) => Err(same_type(back).unwrap_or_else(|_| unreachable!("same backend"))),
                    };
                }
                Err(unchanged) => args = unchanged,
            }
        )*
        Err(args)
    }};
}

/// The backends compiled in that have host kernels.
macro_rules! host_backends {
    ($B:ty, $args:expr, $method:ident) => {{
        #[cfg(feature = "flex")]
        {
            dispatch!($B, $args, $method, [burn::backend::Flex, burn::backend::Autodiff<burn::backend::Flex>])
        }
        #[cfg(not(feature = "flex"))]
        {
            dispatch!($B, $args, $method, [])
        }
    }};
}

/// What is built from the kernels: the tuple-taking forms that [`dispatch!`] calls, and a
/// linear layer's gradients (used by `Mixed`'s hooks and by the autodiff nodes alike).
#[cfg(feature = "flex")]
pub(crate) trait Composed: HostKernels {
    fn matmul_tupled(args: MatmulArgs<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Self::half_matmul(args.0, args.1)
    }

    fn linear_tupled(args: LinearArgs<Self>) -> Result<FloatTensor<Self>, LinearArgs<Self>> {
        Self::half_linear(args.0, args.1, args.2)
    }

    fn relu_backward_tupled(args: MatmulArgs<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Self::half_relu_backward(args.0, args.1)
    }

    fn gelu_backward_tupled(args: MatmulArgs<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Self::half_gelu_backward(args.0, args.1)
    }

    fn conv2d_tupled(args: Conv2dArgs<Self>) -> Result<FloatTensor<Self>, Conv2dArgs<Self>> {
        Self::half_conv2d(args.0, args.1, args.2, args.3)
    }

    /// A convolution's bias gradient from `(x, bias, output_grad)`.
    fn conv_bias_grad(
        args: (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>),
    ) -> Result<FloatTensor<Self>, (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>)> {
        let (x, bias, grad) = args;
        Self::half_sum_to_channels(grad).map_err(|grad| (x, bias, grad))
    }

    fn cast_tupled(args: CastArgs<Self>) -> Result<FloatTensor<Self>, CastArgs<Self>> {
        Self::half_cast(args.0, args.1)
    }

    fn softmax_tupled(args: CastArgs<Self>) -> Result<FloatTensor<Self>, CastArgs<Self>> {
        Self::half_softmax(args.0, args.1)
    }

    fn layer_norm_tupled(args: LayerNormArgs<Self>) -> Result<FloatTensor<Self>, LayerNormArgs<Self>> {
        Self::half_layer_norm(args.0, args.1, args.2, args.3)
    }

    fn add_tupled(args: MatmulArgs<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Self::half_binary(args.0, args.1, BinaryOp::Add)
    }

    fn mul_tupled(args: MatmulArgs<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        Self::half_binary(args.0, args.1, BinaryOp::Mul)
    }

    /// A linear layer's input gradient from `(weight, output_grad)`: `grad @ weight^T`.
    fn linear_x_grad(args: MatmulArgs<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        let (weight, grad) = args;
        match Self::half_linear(grad, Self::float_swap_dims(weight, 0, 1), None) {
            Ok(out) => Ok(out),
            Err((grad, weight_t, _)) => Err((Self::float_swap_dims(weight_t, 0, 1), grad)),
        }
    }

    /// A linear layer's weight gradient from `(x, output_grad)`: `x^T @ grad`, summed over
    /// every leading dimension (both flattened to rows), `[in, out]`.
    fn linear_weight_grad(args: MatmulArgs<Self>) -> Result<FloatTensor<Self>, MatmulArgs<Self>> {
        let (x, grad) = args;
        let (x_shape, g_shape) = (x.shape(), grad.shape());
        let (k, n) = (x_shape[x_shape.num_dims() - 1], g_shape[g_shape.num_dims() - 1]);
        // The leading dimensions' product, not `elements / k`: with `k = 0` there are
        // still rows (of nothing), and the gradient keeps its own.
        let rows = x_shape.as_slice()[..x_shape.num_dims() - 1].iter().product();
        let x2d = Self::float_reshape(x.clone(), burn::tensor::Shape::new([rows, k]));
        let g2d = Self::float_reshape(grad.clone(), burn::tensor::Shape::new([rows, n]));
        Self::half_matmul(Self::float_swap_dims(x2d, 0, 1), g2d).map_err(|_| (x, grad))
    }
}

#[cfg(feature = "flex")]
impl<K: HostKernels> Composed for K {}

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
            host_backends!(B, args, $method)
        }
    )*};
}

hooks! {
    /// `float_add`.
    fn add(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> Result<_, MatmulArgs<B>> if half(lhs) => add_tupled;
    /// `float_mul`.
    fn mul(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> Result<_, MatmulArgs<B>> if half(lhs) => mul_tupled;
    /// `float_matmul`.
    fn matmul(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> Result<_, MatmulArgs<B>> if half(lhs) => matmul_tupled;
    /// `linear`.
    fn linear(x: FloatTensor<B>, weight: FloatTensor<B>, bias: Option<FloatTensor<B>>) -> Result<_, LinearArgs<B>>
        if half(x) => linear_tupled;
    /// `linear_x_backward` (reached under `Autodiff<Mixed<B>>`).
    fn linear_x_backward(weight: FloatTensor<B>, grad: FloatTensor<B>) -> Result<_, MatmulArgs<B>> if half(grad) => linear_x_grad;
    /// `linear_weight_backward` (reached under `Autodiff<Mixed<B>>`).
    fn linear_weight_backward(x: FloatTensor<B>, grad: FloatTensor<B>) -> Result<_, MatmulArgs<B>>
        if half(grad) => linear_weight_grad;
    /// `linear_bias_backward` (reached under `Autodiff<Mixed<B>>`).
    fn sum_to_last(tensor: FloatTensor<B>) -> Result<_, FloatTensor<B>> if half(tensor) => half_sum_to_last;
    /// `layer_norm` (in the `-true` precisions: under autocast the policy runs it in f32).
    fn layer_norm(tensor: FloatTensor<B>, gamma: FloatTensor<B>, beta: Option<FloatTensor<B>>, epsilon: f64)
        -> Result<_, LayerNormArgs<B>> if half(tensor) => layer_norm_tupled;
    /// `relu`.
    fn relu(tensor: FloatTensor<B>) -> Result<_, FloatTensor<B>> if half(tensor) => half_relu;
    /// `relu_backward` (reached under `Autodiff<Mixed<B>>`).
    fn relu_backward(output: FloatTensor<B>, grad: FloatTensor<B>) -> Result<_, MatmulArgs<B>> if half(grad) => relu_backward_tupled;
    /// `gelu`.
    fn gelu(tensor: FloatTensor<B>) -> Result<_, FloatTensor<B>> if half(tensor) => half_gelu;
    /// `gelu_backward` (reached under `Autodiff<Mixed<B>>`).
    fn gelu_backward(x: FloatTensor<B>, grad: FloatTensor<B>) -> Result<_, MatmulArgs<B>> if half(grad) => gelu_backward_tupled;
    /// `conv2d`.
    fn conv2d(x: FloatTensor<B>, weight: FloatTensor<B>, bias: Option<FloatTensor<B>>, options: ConvOptions<2>)
        -> Result<_, Conv2dArgs<B>> if half(x) => conv2d_tupled;
    /// `conv2d_x_backward` (reached under `Autodiff<Mixed<B>>`).
    fn conv2d_x_backward(x: FloatTensor<B>, weight: FloatTensor<B>, output_grad: FloatTensor<B>, options: ConvOptions<2>)
        -> Result<_, Conv2dGradArgs<B>> if half(output_grad) => half_conv2d_x_backward;
    /// `conv2d_weight_backward` (reached under `Autodiff<Mixed<B>>`).
    fn conv2d_weight_backward(x: FloatTensor<B>, weight: FloatTensor<B>, output_grad: FloatTensor<B>, options: ConvOptions<2>)
        -> Result<_, Conv2dGradArgs<B>> if half(output_grad) => half_conv2d_weight_backward;
    /// `conv2d_bias_backward` (reached under `Autodiff<Mixed<B>>`).
    fn conv2d_bias_backward(x: FloatTensor<B>, bias: FloatTensor<B>, output_grad: FloatTensor<B>)
        -> Result<_, (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>)> if half(output_grad) => conv_bias_grad;
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
    host_backends!(B, args, cast_tupled)
}

/// Attention's softmax into half precision (see [`HostKernels::half_softmax`]), on a
/// backend with host kernels. Called from [`attention`] only, whose f32 scores and half
/// `dtype` the kernel takes (it declines anything else itself).
#[inline]
fn softmax_to_half<B: Backend>(scores: FloatTensor<B>, dtype: FloatDType) -> Result<FloatTensor<B>, CastArgs<B>> {
    let args: CastArgs<B> = (scores, dtype);
    host_backends!(B, args, softmax_tupled)
}

/// The inputs of `attention`, handed back when declined.
pub(crate) type AttentionArgs<B> =
    (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, Option<BoolTensor<B>>, Option<FloatTensor<B>>, AttentionModuleOptions);

/// Whether `B` is one of the backends with host kernels.
fn has_host_kernels<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    {
        use burn::backend::{Autodiff, Flex};
        let id = TypeId::of::<B>();
        id == TypeId::of::<Flex>() || id == TypeId::of::<Autodiff<Flex>>()
    }
    #[cfg(not(feature = "flex"))]
    false
}

/// `Mixed`'s hook for `attention`: on a backend with host kernels, attention is written out
/// as its parts on `Mixed<B>` itself ([`attention::scores_in_f32`]), so that each part meets
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
        softmax_to_half::<B>(scores, half).unwrap_or_else(|(scores, half)| attention::softmax_then_cast::<crate::Mixed<B>>(scores, half))
    };
    Ok(attention::scores_in_f32::<crate::Mixed<B>>((query, key, value, mask, attn_bias, options), softmax))
}
