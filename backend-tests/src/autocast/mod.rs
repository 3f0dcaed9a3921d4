//! Autocast tests: the policy table applied by `Mixed<B>`, the scoped context, promotion of
//! mixed dtypes, unsupported dtypes, and gradients under mixed precision.
//!
//! The controls are computed on the bare backend with the casts written out by hand, so
//! "bitwise equal to the control" means `Mixed` inserted exactly the casts the policy
//! names, no more and no fewer.

pub mod context;
pub mod gradients;
pub mod ops;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor, TensorData, TensorPrimitive};

/// Half dtypes the backend can compute in on `device` (what autocast can target).
pub fn half_dtypes<B: Backend>(device: &B::Device) -> Vec<FloatDType> {
    [FloatDType::F16, FloatDType::BF16].into_iter().filter(|d| B::supports_dtype(device, DType::from(*d))).collect()
}

/// Values in [0.05, 0.95): inside the domain of every op tested (log, acos...).
pub fn sample<const D: usize>(shape: [usize; D], seed: u64) -> TensorData {
    crate::support::uniform(shape, seed, 0.05, 0.95)
}

/// A tensor from [`sample`], cast to `dtype`.
pub fn input<B: Backend, const D: usize>(shape: [usize; D], seed: u64, dtype: FloatDType, device: &B::Device) -> Tensor<B, D> {
    Tensor::<B, D>::from_data(sample(shape, seed), device).cast(dtype)
}

/// Calls the backend's `layer_norm` (eps 1e-5) directly: it is what burn-nn's `LayerNorm`
/// reaches, and what the policy runs in f32.
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, gamma: Tensor<B, 1>, beta: Tensor<B, 1>) -> Tensor<B, D> {
    let out = B::layer_norm(x.into_primitive().tensor(), gamma.into_primitive().tensor(), Some(beta.into_primitive().tensor()), 1e-5);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[macro_export]
macro_rules! autocast_tests {
    () => {
        #[test]
        fn autocast_lower_precision_ops() {
            $crate::autocast::ops::lower_precision_ops::<B>(&device());
        }
        #[test]
        fn autocast_float32_ops() {
            $crate::autocast::ops::float32_ops::<B>(&device());
        }
        #[test]
        fn autocast_promote_ops() {
            $crate::autocast::ops::promote_ops::<B>(&device());
        }
        #[test]
        fn autocast_nested_and_disabled_regions() {
            $crate::autocast::context::nested_and_disabled_regions::<B>(&device());
        }
        #[test]
        fn autocast_region_restored_after_panic() {
            $crate::autocast::context::restored_after_panic::<B>(&device());
        }
        #[test]
        fn autocast_threads_have_their_own_context() {
            $crate::autocast::context::threads_have_their_own_context::<B>(&device());
        }
        #[test]
        fn autocast_unsupported_dtype_is_an_error() {
            $crate::autocast::context::unsupported_dtype_is_an_error::<B>(&device());
        }
        #[test]
        fn autocast_mlp_gradients() {
            $crate::autocast::gradients::mlp_gradients::<B>(&device());
        }
        #[test]
        fn autocast_autodiff_outside_mixed() {
            $crate::autocast::gradients::autodiff_outside_mixed::<B>(&device());
        }
        #[test]
        fn autocast_transformer_block_gradients() {
            $crate::autocast::gradients::transformer_block_gradients::<B>(&device());
        }
        #[test]
        fn autocast_cast_cache_reuses_parameter_casts() {
            $crate::autocast::gradients::cast_cache_reuses_parameter_casts::<B>(&device());
        }
        #[test]
        fn autocast_cnn_gradients() {
            $crate::autocast::gradients::cnn_gradients::<B>(&device());
        }
    };
}
