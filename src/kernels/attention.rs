//! Attention written out as its parts on `Mixed<B>`, for backends with host kernels.
//!
//! Fused into one op, attention reaches the inner backend whole, and `Autodiff<Flex>`
//! decomposes it below `Mixed` in the inputs' half precision: scores, their maxima and the
//! shifted scores all rounded to 8 (bf16) or 11 (f16) bits, on Flex's scalar half loops.
//! Here the two products run in half precision on the host GEMM (f32 accumulation) and
//! everything between them (scaling, softcap, masks, bias, softmax) in f32, as PyTorch's
//! autocast does with the parts of an attention it runs in separate kernels. The probabilities
//! are rounded once, to the inputs' dtype, for the second product; the output has that dtype.

use burn::tensor::backend::{Backend, get_device_settings};
use burn::tensor::ops::{BoolTensor, FloatTensor};

use super::hooks::AttentionArgs;
use burn::tensor::{FloatDType, Shape, TensorMetadata};

/// `softmax(q @ k^T * scale (+ masks, bias)) @ v` for `[batch, heads, seq, head_dim]`
/// inputs in f16 or bf16, with the scores in f32.
/// `softmax` turns the f32 scores into probabilities of the given half dtype (a host
/// kernel, or [`softmax_then_cast`]).
pub(crate) fn scores_in_f32<B: Backend>(
    (query, key, value, mask, attn_bias, options): AttentionArgs<B>,
    softmax: impl FnOnce(FloatTensor<B>, FloatDType) -> FloatTensor<B>,
) -> FloatTensor<B> {
    let half = FloatDType::from(query.dtype());
    let head_dim = query.shape()[3];
    let scale = options.scale.unwrap_or_else(|| 1.0 / (head_dim as f64).sqrt());

    let scores = B::float_matmul(query, B::float_transpose(key));
    let mut scores = B::float_mul_scalar(B::float_cast(scores, FloatDType::F32), scale.into());
    if let Some(softcap) = options.softcap {
        assert!(softcap > 0.0, "attention softcap must be positive, got {softcap}");
        // Before the masks: tanh would turn their -inf into a finite score.
        scores = B::float_mul_scalar(B::float_tanh(B::float_div_scalar(scores, softcap.into())), softcap.into());
    }
    if let Some(mask) = mask {
        scores = B::float_mask_fill(scores, mask, f32::NEG_INFINITY.into());
    }
    if options.is_causal {
        let future = future_positions::<B>(&scores);
        scores = B::float_mask_fill(scores, future, f32::NEG_INFINITY.into());
    }
    if let Some(bias) = attn_bias {
        scores = B::float_add(scores, B::float_cast(bias, FloatDType::F32));
    }
    B::float_matmul(softmax(scores, half), value)
}

/// The softmax of f32 scores in f32 ([`masked_softmax`]), then cast to `half`.
pub(crate) fn softmax_then_cast<B: Backend>(scores: FloatTensor<B>, half: FloatDType) -> FloatTensor<B> {
    B::float_cast(masked_softmax::<B>(scores), half)
}

/// Softmax over the last dimension that gives 0 (not NaN) for a row whose every score is
/// -inf: the row maximum is clamped to the lowest finite f32 (so that -inf - max is -inf,
/// not NaN) and the row sum to the smallest positive normal (so that 0 / sum is 0).
fn masked_softmax<B: Backend>(scores: FloatTensor<B>) -> FloatTensor<B> {
    let last = scores.shape().num_dims() - 1;
    let max = B::float_clamp_min(B::float_max_dim(scores.clone(), last), f32::MIN.into());
    let exp = B::float_exp(B::float_sub(scores, max));
    let sum = B::float_clamp_min(B::float_sum_dim(exp.clone(), last), f32::MIN_POSITIVE.into());
    B::float_div(exp, sum)
}

/// The causal mask of `[batch, heads, q, k]` scores: true where key position `j` lies in
/// query position `i`'s future, `j > i + (k - q)` (aligned at the last positions, so that
/// queries that continue a longer key sequence see all of it).
fn future_positions<B: Backend>(scores: &FloatTensor<B>) -> BoolTensor<B> {
    let shape = scores.shape();
    let (q, k) = (shape[2], shape[3]);
    let device = B::float_device(scores);
    let settings = get_device_settings::<B>(&device);
    let rows = B::int_reshape(B::int_arange(0..q as i64, &device, settings.int_dtype), Shape::new([q, 1]));
    let cols = B::int_reshape(B::int_arange(0..k as i64, &device, settings.int_dtype), Shape::new([1, k]));
    let last_visible = B::int_add_scalar(rows, (k as i64 - q as i64).into());
    let future = B::int_lower(last_visible, cols, settings.bool_dtype);
    B::bool_expand(B::bool_reshape(future, Shape::new([1, 1, q, k])), shape)
}
