//! The mechanism behind the forwarding hook: pick one target dtype for an op's float
//! inputs from the policy and the context, then cast the inputs that differ.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{FloatDType, TensorMetadata};

use super::context::active_dtype;
use super::policy::{AutocastPolicy, CastPolicy, Op};

/// Rank used to find the widest dtype; f16 and bf16 share a rank (neither holds the other).
fn rank(dtype: FloatDType) -> u8 {
    match dtype {
        FloatDType::F16 | FloatDType::BF16 => 0,
        FloatDType::F32 | FloatDType::Flex32 => 1,
        FloatDType::F64 => 2,
    }
}

/// The narrowest dtype that holds both: f16 with bf16 gives f32.
pub fn widest(a: FloatDType, b: FloatDType) -> FloatDType {
    match rank(a).cmp(&rank(b)) {
        core::cmp::Ordering::Greater => a,
        core::cmp::Ordering::Less => b,
        core::cmp::Ordering::Equal if a == b => a,
        core::cmp::Ordering::Equal if rank(a) == 2 => a,
        core::cmp::Ordering::Equal => FloatDType::F32,
    }
}

#[inline]
fn dtype_of<B: Backend>(t: &FloatTensor<B>) -> FloatDType {
    FloatDType::from(t.dtype())
}

/// The dtype `op` must run in, or `None` when the inputs go through untouched.
#[inline]
pub(crate) fn target_dtype<B: Backend>(op: Op, inputs: &[Option<&FloatTensor<B>>]) -> Option<FloatDType> {
    target_dtype_iter::<B, _>(op, inputs.iter().flatten().copied())
}

/// [`target_dtype`] over any number of inputs (`cat`).
#[inline]
pub(crate) fn target_dtype_iter<'a, B: Backend, I>(op: Op, inputs: I) -> Option<FloatDType>
where
    I: IntoIterator<Item = &'a FloatTensor<B>>,
{
    let mut inputs = inputs.into_iter();
    let first = inputs.next()?;
    let (widest_dtype, uniform) = inputs.fold((dtype_of::<B>(first), true), |(w, uniform), t| {
        let d = dtype_of::<B>(t);
        (widest(w, d), uniform && d == w)
    });
    if let Some(autocast_dtype) = active_dtype() {
        // f64 inputs mean the caller asked for f64: never narrow them.
        let keep_f64 = widest_dtype == FloatDType::F64;
        match AutocastPolicy::get(op) {
            CastPolicy::LowerPrecision if !keep_f64 => return Some(autocast_dtype),
            CastPolicy::Float32 if !keep_f64 => return Some(FloatDType::F32),
            _ => {}
        }
    }
    (!uniform).then_some(widest_dtype)
}

/// Casts `tensor` to `target` unless it already has that dtype.
#[inline]
pub(crate) fn to_dtype<B: Backend>(tensor: FloatTensor<B>, target: Option<FloatDType>) -> FloatTensor<B> {
    match target {
        Some(dtype) if dtype_of::<B>(&tensor) != dtype => super::cache::cast::<B>(tensor, dtype),
        _ => tensor,
    }
}
