//! The autocast policy: which precision each op runs in. This file is the one place to
//! read or change it.
//!
//! Three categories, after PyTorch's autocast lists, adapted to Burn's op set:
//!
//! - **lower precision**: ops dominated by multiply-accumulate, where f16/bf16 doubles
//!   throughput and halves the memory of saved activations, and whose kernels accumulate in
//!   f32 anyway. Inputs are cast to the region's dtype.
//! - **float32**: ops whose range or accumulated rounding error would ruin a half result
//!   (exponentials and logs, powers, reductions, normalisations, losses, and the
//!   accumulating scatters). Inputs are cast to f32.
//! - **promote**: every other op with two or more float inputs. Burn's backends panic (or
//!   read garbage) on mixed dtypes, so these run in the widest dtype among their inputs,
//!   inside and outside autocast regions.
//!
//! An f64 input is never narrowed: an op that sees one runs in f64.
//! Ops not named here run in the dtype they are given.

use core::sync::atomic::{AtomicU8, Ordering};

/// How an op's float inputs are cast under autocast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CastPolicy {
    /// Cast inputs to the autocast dtype (f16 or bf16).
    LowerPrecision,
    /// Cast inputs to f32.
    Float32,
    /// Cast inputs to the widest float dtype among them.
    Promote,
}

macro_rules! autocast_policy {
    ($( $policy:ident: [$($op:ident),* $(,)?] ),* $(,)?) => {
        /// An op (or family of ops) that `Mixed` intercepts, named as in the policy table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Op { $($(#[doc = concat!("`", stringify!($op), "`: ", stringify!($policy), " in the default table.")] $op,)*)* }

        impl Op {
            /// Every intercepted op, in table order.
            pub const ALL: &'static [Op] = &[$($(Op::$op,)*)*];

            /// The policy the table gives this op.
            pub const fn default_policy(self) -> CastPolicy {
                match self { $($(Op::$op => CastPolicy::$policy,)*)* }
            }

            /// The op's name as written in the table.
            pub const fn name(self) -> &'static str {
                match self { $($(Op::$op => stringify!($op),)*)* }
            }
        }
    };
}

autocast_policy! {
    LowerPrecision: [
        Matmul, Linear, Conv, ConvTranspose, DeformConv, Attention, Prelu,
    ],
    Float32: [
        Exp, Log, Log1p, Pow, Recip, Tan, Cosh, Sinh, Acos, Asin, Erf,
        Sum, Mean, Prod, Cumsum, Cumprod,
        Softmax, LogSoftmax, Softmin, LayerNorm, Interpolate, CtcLoss,
        ScatterAdd, SelectAdd,
    ],
    Promote: [
        Add, Sub, Mul, Div, Remainder, Atan2, Cross, Compare,
        MaskWhere, SliceAssign, ScatterNd, Cat, GridSample, Irfft,
        // Backward kernels, reached when a user writes `Autodiff<Mixed<B>>`.
        LinearBackward, ConvBackward, PoolBackward, EmbeddingBackward, ActivationBackward,
    ],
}

/// Run-time overrides, one slot per op: 0 means "use the table", otherwise a policy + 1.
/// Atomics keep the hot path to one relaxed load.
static OVERRIDES: [AtomicU8; Op::ALL.len()] = [const { AtomicU8::new(0) }; Op::ALL.len()];

/// Process-wide view of the policy: the table plus run-time overrides.
///
/// ```
/// use burn_mixed::autocast::{AutocastPolicy, CastPolicy, Op};
/// // Keep matmul in f32 (e.g. a model whose logits overflow f16):
/// AutocastPolicy::set(Op::Matmul, CastPolicy::Float32);
/// assert_eq!(AutocastPolicy::get(Op::Matmul), CastPolicy::Float32);
/// AutocastPolicy::reset(Op::Matmul);
/// assert_eq!(AutocastPolicy::get(Op::Matmul), CastPolicy::LowerPrecision);
/// ```
pub struct AutocastPolicy;

impl AutocastPolicy {
    /// The policy in force for `op`.
    #[inline]
    pub fn get(op: Op) -> CastPolicy {
        match OVERRIDES[op as usize].load(Ordering::Relaxed) {
            1 => CastPolicy::LowerPrecision,
            2 => CastPolicy::Float32,
            3 => CastPolicy::Promote,
            _ => op.default_policy(),
        }
    }

    /// Overrides the policy of `op` for the whole process, from the next op on.
    pub fn set(op: Op, policy: CastPolicy) {
        let code = match policy {
            CastPolicy::LowerPrecision => 1,
            CastPolicy::Float32 => 2,
            CastPolicy::Promote => 3,
        };
        OVERRIDES[op as usize].store(code, Ordering::Relaxed);
    }

    /// Restores the table's policy for `op`.
    pub fn reset(op: Op) {
        OVERRIDES[op as usize].store(0, Ordering::Relaxed);
    }

    /// Restores the table's policy for every op.
    pub fn reset_all() {
        for slot in &OVERRIDES {
            slot.store(0, Ordering::Relaxed);
        }
    }
}
