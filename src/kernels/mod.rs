//! Host kernels: a faster path for the ops autocast runs in half precision, for inner
//! backends that keep their tensors in host memory.
//!
//! Flex computes a bf16 product by converting both operands to f32 and back, its f16
//! product of one row accumulates in f16, and its half element-wise loops are scalar, so
//! on a CPU every half precision ran slower than f32. The kernels replace those ops where
//! they can, and hand every other case back to the inner backend.
//!
//! In layers, each using only the ones below it:
//!
//! - `hooks`: where `Mixed`'s forwarding tables offer an op (a half-precision input and the
//!   switch on), and `attention` (written out on `Mixed` so that its parts meet the policy);
//! - `switch`: the process-wide and per-thread switch, and the kernels' call counters;
//! - `dispatch`: the one registry of backends with host kernels, and the move from
//!   `Mixed<B>`'s generic `B` to the backend's own implementation;
//! - `extension`: the extension point, [`HostKernels`] (sealed), with `composed` (kernels
//!   built from its methods);
//! - `autodiff`: the same ops for `Autodiff<B>` over a backend that has them, recorded with
//!   backward passes on the same kernels;
//! - `flex`: the adapters from Flex's tensors to the CPU loops (element-wise ops, products,
//!   convolutions);
//! - `cpu`: the loops on host slices, by concern, with the AVX-512 intrinsics and the
//!   kernels' only unchecked code in `cpu::simd`, behind safe functions.
//!
//! Only half-precision inputs ever take this path: 32-true stays bit-identical to the
//! bare backend. `MIXED_HOST_KERNELS=0` in the environment, or [`set_host_kernels`],
//! turns it off (for comparison and debugging).

// A kernel that declines a case hands its inputs back in `Err`, so that the inner backend
// can run the op on them: the error variants are as large as the inputs by design.
#![allow(clippy::result_large_err)]

mod attention;
#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod composed;
#[cfg(feature = "flex")]
mod cpu;
pub(crate) mod dispatch;
mod extension;
#[cfg(feature = "flex")]
mod flex;
mod hooks;
mod switch;

#[cfg(feature = "flex")]
pub(crate) use composed::Composed;
#[cfg(feature = "flex")]
pub use cpu::{AWAKE_FOR, HostIsa, HostPoolError, host_isa, join_host_pool};
pub use extension::{
    AvgPool2dArgs, AvgPool2dGradArgs, BinaryArgs, BinaryOp, CastArgs, Conv2dArgs, Conv2dGradArgs, ConvBiasGradArgs, HostKernels,
    LayerNormArgs, LayerNormGradArgs, LinearArgs, TensorPair,
};
pub(crate) use hooks::*;
pub use switch::{
    HOST_KERNELS_ENV, HOST_LANES_ENV, HostKernelCalls, host_kernel_calls, host_kernels_enabled, reset_host_kernel_calls, set_host_kernels,
    with_host_kernels,
};
#[cfg(feature = "flex")]
pub(crate) use switch::{count, warn_if_bf16_is_slow};
