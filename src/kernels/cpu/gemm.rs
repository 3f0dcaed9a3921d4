//! Products on host slices on gemmkit's GEMM (f32 accumulation, one rounding of the
//! output, runtime ISA dispatch), one matrix or a batch: f16 and bf16 operands, and the f32
//! copies bf16 products take on CPUs without bf16 instructions.
//!
//! Why gemmkit (measured on this project's CPU, 2 threads, 2048 x 256 x 256: the `kernels`
//! bench, figures in docs/results.md): its bf16 path uses the CPU's bf16 dot-product
//! instruction and runs at about 1.7x its own f32 rate, where Flex's bf16 product converts
//! both operands to f32 and runs slower than f32; its f16 path widens to f32 in registers
//! and accumulates in f32 (the `gemm` crate that Flex uses for f16 accumulates a one-row
//! product in f16); and it fuses the bias into the product's store.

use gemmkit::{Bias, MatMut, MatRef, Parallelism, Scalar};
use rayon::prelude::*;

/// A strided matrix inside a slice: element (i, j) is at `offset + i * rs + j * cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

impl View {
    /// The view's elements from its offset on, as gemmkit's checked views take them.
    fn of<'a, T>(&self, data: &'a [T]) -> MatRef<'a, T> {
        MatRef::new(&data[self.offset..], self.rows, self.cols, self.rs, self.cs)
    }
}

/// Below this many multiply-adds per matrix, a batch of products runs one matrix per
/// thread instead of each product across threads (attention's per-head products are
/// too small to split).
pub(crate) const SPLIT_EACH_FROM: usize = 1 << 20;

/// `out[b] = lhs[b] @ rhs[b] (+ bias)` for one matrix per entry of `offsets`, which holds
/// each batch entry's start in `lhs_data` and `rhs_data` relative to the views' offsets;
/// `out` is row-major and contiguous.
pub(crate) fn gemm<T: gemmkit::FusedScalar + gemmkit::GemmScalar + Copy + Send + Sync>(
    lhs_data: &[T],
    lhs: View,
    rhs_data: &[T],
    rhs: View,
    offsets: &[(usize, usize)],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let (m, n) = (lhs.rows, rhs.cols);
    if m * n == 0 {
        return;
    }
    let one = |(lhs_off, rhs_off): (usize, usize), out: &mut [T], parallelism: Parallelism| {
        if lhs.cols == 0 {
            // gemmkit leaves C alone for an empty product; the sum of nothing is zero.
            out.fill(<T as Scalar>::ZERO);
            if let Some(bias) = bias {
                out.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(bias));
            }
            return;
        }
        let lhs_b = View { offset: lhs.offset + lhs_off, ..lhs };
        let rhs_b = View { offset: rhs.offset + rhs_off, ..rhs };
        gemmkit::gemm_fused(
            <T as Scalar>::ONE,
            lhs_b.of(lhs_data),
            rhs_b.of(rhs_data),
            <T as Scalar>::ZERO,
            MatMut::from_row_major(out, m, n),
            bias.map(Bias::PerCol),
            None,
            parallelism,
        );
    };
    if offsets.len() > 1 && m * n * lhs.cols < SPLIT_EACH_FROM {
        out.par_chunks_exact_mut(m * n).zip(offsets).for_each(|(out, &offset)| one(offset, out, Parallelism::Serial));
    } else {
        out.chunks_exact_mut(m * n).zip(offsets).for_each(|(out, &offset)| one(offset, out, Parallelism::Rayon(0)));
    }
}
