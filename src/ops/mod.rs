//! Forwarding of Burn's backend traits, one file per trait.

mod activation;
mod bool_tensor;
#[cfg(feature = "distributed")]
mod distributed;
pub(crate) mod forward;
mod int_tensor;
pub(crate) mod lift;
mod module;
mod qtensor;
mod tensor;
mod transaction;

/// What the forwarding tables name: the trait signatures' types, the macro, the backend.
mod prelude {
    pub(super) use super::forward::forward_to_inner;
    pub(super) use super::lift;
    pub(super) use crate::Mixed;
    pub(super) use burn::tensor::backend::{Backend, ExecutionError};
    pub(super) use burn::tensor::ops::*;
    pub(super) use burn::tensor::quantization::{QuantScheme, QuantizationParametersPrimitive};
    pub(super) use burn::tensor::{
        BoolDType, Distribution, FloatDType, IndexingUpdateOp, IntDType, Scalar, Shape, Slice, TensorData, TensorPrimitive,
    };
    pub(super) use core::ops::Range;
}
