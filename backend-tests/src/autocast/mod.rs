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
use burn::tensor::{DType, FloatDType, Tensor, TensorData};

/// Half dtypes the backend can compute in on `device` (what autocast can target).
pub fn half_dtypes<B: Backend>(device: &B::Device) -> Vec<FloatDType> {
    [FloatDType::F16, FloatDType::BF16]
        .into_iter()
        .filter(|d| B::supports_dtype(device, DType::from(*d)))
        .collect()
}

/// Every float dtype the backend supports on `device`.
pub fn float_dtypes<B: Backend>(device: &B::Device) -> Vec<FloatDType> {
    [FloatDType::F64, FloatDType::F32, FloatDType::F16, FloatDType::BF16]
        .into_iter()
        .filter(|d| B::supports_dtype(device, DType::from(*d)))
        .collect()
}

/// Deterministic values in [0.05, 0.95): inside the domain of every op tested (log, acos...).
pub fn sample<const D: usize>(shape: [usize; D], seed: u64) -> TensorData {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            0.05 + 0.9 * ((state >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect();
    TensorData::new(values, shape)
}

/// A tensor from [`sample`], cast to `dtype`.
pub fn input<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    dtype: FloatDType,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::<B, D>::from_data(sample(shape, seed), device).cast(dtype)
}

/// Same dtype, same shape, same bytes; `what` names the op in the failure message.
pub fn assert_identical(what: &str, got: TensorData, want: TensorData) {
    assert_eq!(got.dtype, want.dtype, "{what}: dtype");
    assert_eq!(got.shape, want.shape, "{what}: shape");
    assert!(got.as_bytes() == want.as_bytes(), "{what}: values differ from the hand-cast control");
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
        fn autocast_cnn_gradients() {
            $crate::autocast::gradients::cnn_gradients::<B>(&device());
        }
    };
}
