//! How a case lays out an operand in memory, and the shared pieces of the strategies: the
//! sizes every op draws from and input values with special values mixed in.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{FloatDType, Slice, Tensor};
use proptest::prelude::*;

use crate::kernels_support::values;
use crate::oracle::Ctx;

/// The memory layout of an operand of a given logical shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Contiguous,
    /// Stored with its last two dimensions swapped, then swapped back (a view).
    Transposed,
    /// Stored with its first and second-to-last dimensions swapped (a view whose batch
    /// stride is smaller than its row stride).
    LeadingSwapped,
    /// A block inside a larger tensor: offset start, rows of a longer stride.
    Offset,
    /// Every other row of a tensor twice as tall (step 2).
    Stepped,
    /// Its last dimension reversed (negative stride).
    Flipped,
}

/// The layouts an operand of rank `rank` can take.
pub fn layout(rank: usize) -> impl Strategy<Value = Layout> {
    let mut options = vec![Layout::Contiguous, Layout::Contiguous, Layout::Offset, Layout::Stepped, Layout::Flipped];
    if rank >= 2 {
        options.push(Layout::Transposed);
    }
    if rank >= 3 {
        options.push(Layout::LeadingSwapped);
    }
    prop::sample::select(options)
}

/// Input values in [-1, 1) from `seed`, `scale`d, with a special value at every seventh
/// position when `specials` (zeros of both signs, infinities, NaN, the largest and
/// subnormal values of both half formats).
pub fn inputs(len: usize, seed: u64, scale: f64, specials: bool) -> Vec<f64> {
    const SPECIAL: [f64; 12] =
        [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 65504.0, 70000.0, 3.0e38, 1.0e-40, -6.0e-8, 1.0e-5, -300.0];
    let mut v: Vec<f64> = values(len, seed, FloatDType::F32).into_iter().map(|x| x * scale).collect();
    if specials {
        for (i, x) in v.iter_mut().enumerate().skip(3).step_by(7) {
            *x = SPECIAL[(i / 7 + seed as usize) % SPECIAL.len()];
        }
    }
    v
}

/// A leaf of the stored shape `layout` needs, and the view of logical shape `shape` the
/// op gets. With `wide`, the leaf is an f32 tensor (a parameter autocast will cast).
pub struct Operand<B: AutodiffBackend, const D: usize> {
    pub leaf: Tensor<B, D>,
    pub view: Tensor<B, D>,
}

#[allow(clippy::too_many_arguments)]
pub fn operand<B: AutodiffBackend, const D: usize>(
    ctx: Ctx,
    shape: [usize; D],
    layout: Layout,
    values: &dyn Fn(usize) -> Vec<f64>,
    tracked: bool,
    wide: bool,
    device: &B::Device,
) -> Operand<B, D> {
    let (row, col) = (D.saturating_sub(2), D - 1);
    // An empty operand has no layout to speak of, and Flex 0.21 turns a slice to nothing
    // into an f32 tensor whatever the dtype (which breaks the f64 reference).
    let layout = if shape.contains(&0) { Layout::Contiguous } else { layout };
    let mut stored = shape;
    match layout {
        Layout::Transposed => stored.swap(row, col),
        Layout::LeadingSwapped => stored.swap(0, row),
        Layout::Offset => {
            stored[col] += 2;
            stored[row] += 1;
        }
        Layout::Stepped => stored[row] *= 2,
        Layout::Contiguous | Layout::Flipped => {}
    }
    let data = values(stored.iter().product());
    let leaf = if wide { ctx.wide_input::<B, D>(&data, stored, device) } else { ctx.input::<B, D>(&data, stored, device) };
    let leaf = if tracked { leaf.require_grad() } else { leaf };
    let view = match layout {
        Layout::Contiguous => leaf.clone(),
        Layout::Transposed => leaf.clone().swap_dims(row, col),
        Layout::LeadingSwapped => leaf.clone().swap_dims(0, row),
        Layout::Offset => {
            let mut slices = vec![Slice::full(); D];
            slices[row] = Slice::new(1, Some(1 + shape[row] as isize), 1);
            // (At rank 1 `row` is `col`: the column slice wins, inside the 3 extra.)
            slices[col] = Slice::new(2, Some(2 + shape[col] as isize), 1);
            leaf.clone().slice(&slices)
        }
        Layout::Stepped => {
            let mut slices = vec![Slice::full(); D];
            slices[row] = Slice::new(0, None, 2);
            leaf.clone().slice(&slices)
        }
        Layout::Flipped => leaf.clone().flip([col as isize]),
    };
    Operand { leaf, view }
}

/// A size of a row or column: small ones, primes, powers of two and their neighbours, and 0.
pub fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![5 => 1..=8usize, 1 => Just(0), 3 => prop::sample::select(vec![13, 16, 17, 31, 32, 33, 64])]
}

/// A product's inner size: up to 4096.
pub fn inner() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 1..=8usize, 1 => Just(0), 4 => prop::sample::select(vec![16, 17, 31, 64, 127, 256, 257, 1031, 4096])]
}

/// Whether each of `n` inputs is tracked by autodiff (any subset, none included).
pub fn tracked<const N: usize>() -> impl Strategy<Value = [bool; N]> {
    prop::array::uniform(any::<bool>())
}

/// `$case.run_rank::<$B, D>($ctx, $device)` for `D` the rank `$rank`, one of those listed
/// (a case's tensors have a rank fixed at compile time; the strategies draw it).
macro_rules! at_rank {
    ($case:expr, $B:ty, $ctx:expr, $device:expr, $rank:expr, [$($d:literal),+]) => {
        match $rank {
            $($d => $case.run_rank::<$B, $d>($ctx, $device),)+
            rank => unreachable!("rank {rank} is never drawn"),
        }
    };
}
pub(crate) use at_rank;

/// A shape as a fixed-rank array (the caller dispatches on the rank).
pub fn array<const D: usize>(dims: &[usize]) -> [usize; D] {
    core::array::from_fn(|i| dims[i])
}
