//! Products of Flex tensors on the GEMM: batched matmul with broadcast batch dimensions,
//! a linear layer (bias fused into the product's store), and a linear layer's bias
//! gradient (column sums), reading Flex's strided layouts in place where they are views
//! of one matrix.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, bf16, f16};

use crate::kernels::HostIsa;
use crate::kernels::cpu::gemm::{self, View};
use crate::kernels::cpu::tile_gemm;
use crate::kernels::cpu::{self, Half, convert, reduce};
use crate::kernels::{LinearArgs, TensorPair, count};

/// `dims` of a layout as one dimension: their element count and the stride between
/// consecutive elements, when they are laid out as one (dimensions of size 1 never
/// matter). `None` when they are not.
fn collapse(shape: &[usize], strides: &[isize]) -> Option<(usize, usize)> {
    let mut stride = None;
    let mut expected = 0;
    for (&size, &s) in shape.iter().zip(strides).rev() {
        if size == 1 {
            continue;
        }
        let s = usize::try_from(s).ok()?;
        match stride {
            None => stride = Some(s),
            Some(_) if s != expected => return None,
            Some(_) => {}
        }
        expected = s * size;
    }
    Some((shape.iter().product(), stride.unwrap_or(0)))
}

/// The last two dimensions of a tensor of rank >= 2 as a matrix view (`None` for negative
/// strides: flipped tensors go to Flex).
fn last_matrix(t: &FlexTensor) -> Option<View> {
    let layout = t.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    let rank = shape.num_dims();
    if rank < 2 || strides.iter().any(|&s| s < 0) {
        return None;
    }
    Some(View { offset: layout.start_offset(), rows: shape[rank - 2], cols: shape[rank - 1], rs: strides[rank - 2], cs: strides[rank - 1] })
}

/// A product's batch dimensions, and each batch entry's matrix offsets in the two operands.
type Batches = (Vec<usize>, Vec<(usize, usize)>);

/// The batch dimensions of a product's operands (all but the last two), broadcast as Burn
/// does (a dimension of size 1 repeats): the output's batch dimensions and, for each batch
/// entry in row-major order, where its matrix starts in each operand. `None` when the
/// ranks differ or two sizes are neither equal nor 1.
fn batch_offsets(lhs: &FlexTensor, rhs: &FlexTensor) -> Option<Batches> {
    let (l, r) = (lhs.layout(), rhs.layout());
    let rank = l.shape().num_dims();
    if rank != r.shape().num_dims() || rank < 2 {
        return None;
    }
    let mut dims = Vec::with_capacity(rank - 2);
    let mut steps = Vec::with_capacity(rank - 2);
    for d in 0..rank - 2 {
        let (ls, rs) = (l.shape()[d], r.shape()[d]);
        let size = match (ls, rs) {
            _ if ls == rs => ls,
            (1, _) => rs,
            (_, 1) => ls,
            _ => return None,
        };
        // A repeated dimension stays on the same matrix: stride 0.
        let step = |s: usize, stride: isize| if s == 1 { 0 } else { stride as usize };
        dims.push(size);
        steps.push((step(ls, l.strides()[d]), step(rs, r.strides()[d])));
    }
    let mut offsets = vec![(0, 0)];
    for (&size, &(ls, rs)) in dims.iter().zip(&steps) {
        offsets = offsets.iter().flat_map(|&(lo, ro)| (0..size).map(move |i| (lo + i * ls, ro + i * rs))).collect();
    }
    Some((dims, offsets))
}

/// A tensor of rank >= 1 as one matrix: every dimension but the last collapsed into rows.
fn rows_by_last(t: &FlexTensor) -> Option<View> {
    let layout = t.layout();
    let (shape, strides) = (layout.shape(), layout.strides());
    let rank = shape.num_dims();
    if rank == 0 || strides[rank - 1] < 0 {
        return None;
    }
    let (rows, rs) = collapse(&shape[..rank - 1], &strides[..rank - 1])?;
    Some(View { offset: layout.start_offset(), rows, cols: shape[rank - 1], rs: rs as isize, cs: strides[rank - 1] })
}

/// The product (one matrix per entry of `offsets`, as `gemm::gemm`) as a new tensor of
/// `shape`: bf16 and f16 on AMX tiles where they take it (its output written without
/// zeroing it first), bf16 on f32 copies of the operands below AVX512-BF16, the rest on
/// gemmkit.
fn product<T: Half>(
    lhs: &FlexTensor,
    l: View,
    rhs: &FlexTensor,
    r: View,
    offsets: &[(usize, usize)],
    bias: Option<&[T]>,
    shape: Shape,
) -> FlexTensor {
    if lhs.dtype() == DType::BF16 && tile_gemm::accepts(&l, &r) {
        let bias = bias.map(bytemuck::cast_slice::<T, bf16>);
        count(|c| &mut c.tile_products);
        return super::filled_shape::<bf16>(shape, DType::BF16, |out| {
            tile_gemm::gemm::<bf16>(lhs.storage(), l, rhs.storage(), r, offsets, bias, out);
        });
    }
    if lhs.dtype() == DType::F16 && tile_gemm::accepts(&l, &r) {
        // Split into bf16 pairs on the tiles; an operand with an infinity or NaN (which the
        // split does not multiply exactly) goes to gemmkit below.
        let bias = bias.map(bytemuck::cast_slice::<T, f16>);
        let mut finite = false;
        let out = super::filled_shape::<f16>(shape.clone(), DType::F16, |out| {
            finite = tile_gemm::gemm::<f16>(lhs.storage(), l, rhs.storage(), r, offsets, bias, out);
        });
        if finite {
            count(|c| &mut c.tile_products);
            return out;
        }
    }
    if lhs.dtype() == DType::BF16 && cpu::host_isa() < HostIsa::Avx512Bf16 {
        // Without bf16 instructions gemmkit's bf16 kernels widen as they pack, and a
        // weight gradient's transposed operand made them 1.7x slower than f32
        // (`MIXED_HOST_LANES=0 GEMMKIT_REQUIRE_ISA=fma`): widen once, multiply in f32,
        // round once.
        let wide = |values: &[T]| cpu::filled::<f32>(values.len(), |out| convert::widen(values, out));
        let (lhs32, rhs32) = (wide(lhs.storage()), wide(rhs.storage()));
        let bias32 = bias.map(wide);
        let mut out32 = vec![0f32; shape.num_elements()];
        gemm::gemm::<f32>(&lhs32, l, &rhs32, r, offsets, bias32.as_deref(), &mut out32);
        return super::filled_shape::<T>(shape, lhs.dtype(), |out| convert::narrow(&out32, out));
    }
    let mut out = FlexTensor::empty(shape, lhs.dtype());
    gemm::gemm::<T>(lhs.storage(), l, rhs.storage(), r, offsets, bias, out.storage_mut());
    out
}

pub(super) fn matmul<T: Half>(lhs: FlexTensor, rhs: FlexTensor) -> Result<FlexTensor, TensorPair<Flex>> {
    let (Some(l), Some(r), Some((mut dims, offsets))) = (last_matrix(&lhs), last_matrix(&rhs), batch_offsets(&lhs, &rhs)) else {
        return Err((lhs, rhs));
    };
    if l.cols != r.rows {
        // Flex reports the mismatch in its own words.
        return Err((lhs, rhs));
    }
    dims.extend([l.rows, r.cols]);
    let out = product::<T>(&lhs, l, &rhs, r, &offsets, None, Shape::from(dims));
    count(|c| &mut c.matmul);
    Ok(out)
}

pub(super) fn linear<T: Half>(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> Result<FlexTensor, LinearArgs<Flex>> {
    let w_shape = weight.layout().shape();
    let n = (w_shape.num_dims() == 2).then(|| w_shape[1]);
    let bias_ok = bias.as_ref().is_none_or(|b| b.layout().shape().num_dims() == 1 && Some(b.layout().shape()[0]) == n);
    let (Some(xv), Some(wv), true) = (rows_by_last(&x), last_matrix(&weight), n.is_some() && bias_ok) else {
        return Err((x, weight, bias));
    };
    if xv.cols != wv.rows {
        return Err((x, weight, bias));
    }
    let bias = bias.map(|b| b.to_contiguous());
    let bias_values = bias.as_ref().and_then(|b| b.as_slice::<T>());
    let mut dims = x.layout().shape().to_vec();
    *dims.last_mut().expect("rank >= 1") = wv.cols;
    let out = product::<T>(&x, xv, &weight, wv, &[(0, 0)], bias_values, Shape::from(dims));
    count(|c| &mut c.linear);
    Ok(out)
}

pub(super) fn sum_to_last<T: Half>(tensor: FlexTensor) -> FlexTensor {
    let tensor = tensor.to_contiguous();
    let shape = tensor.layout().shape().clone();
    let cols = shape.num_dims().checked_sub(1).map_or(1, |last| shape[last]);
    let rows = shape.num_elements().checked_div(cols).unwrap_or(0);
    let values = tensor.as_slice::<T>().expect("contiguous after to_contiguous");
    let sums = reduce::column_sums(values, rows, cols);
    let mut out = FlexTensor::empty(Shape::from(vec![cols]), tensor.dtype());
    out.storage_mut::<T>().copy_from_slice(&sums);
    count(|c| &mut c.sum_to_last);
    out
}
