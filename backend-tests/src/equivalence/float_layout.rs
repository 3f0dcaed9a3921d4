//! Float tensor ops, part two: reductions, shape and layout ops, indexing (gather, scatter,
//! select, masks), comparisons, and sorting.

use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData, s};

use crate::support::{Outputs, bare_supports, bool_tensor, equivalent, float_tensor, int_tensor};

/// Full and per-dimension reductions, arg-reductions, cumulative ops and statistics.
pub fn float_reductions<B: Backend>(device: &B::Device) {
    equivalent!("float_reductions", device, reductions::<B>());
}

fn reductions<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let x = float_tensor::<B, 2>(device, [4, 5], 41, -2.0, 2.0);
    let cube = float_tensor::<B, 3>(device, [2, 3, 4], 42, -2.0, 2.0);
    // Values near one keep prod and cumprod away from under- and overflow.
    let near_one = float_tensor::<B, 2>(device, [4, 5], 43, 0.8, 1.25);

    out.push("sum", x.clone().sum());
    out.push("mean", x.clone().mean());
    out.push("prod", near_one.clone().prod());
    out.push("max", x.clone().max());
    out.push("min", x.clone().min());
    out.push("max_abs", x.clone().max_abs());
    for dim in 0..2 {
        out.push(format!("sum_dim {dim}"), x.clone().sum_dim(dim));
        out.push(format!("mean_dim {dim}"), x.clone().mean_dim(dim));
        out.push(format!("prod_dim {dim}"), near_one.clone().prod_dim(dim));
        out.push(format!("max_dim {dim}"), x.clone().max_dim(dim));
        out.push(format!("min_dim {dim}"), x.clone().min_dim(dim));
        out.push(format!("max_abs_dim {dim}"), x.clone().max_abs_dim(dim));
        out.push(format!("argmax {dim}"), x.clone().argmax(dim));
        out.push(format!("argmin {dim}"), x.clone().argmin(dim));
        let (values, indices) = x.clone().max_dim_with_indices(dim);
        out.push(format!("max_dim_with_indices {dim} values"), values);
        out.push(format!("max_dim_with_indices {dim} indices"), indices);
        let (values, indices) = x.clone().min_dim_with_indices(dim);
        out.push(format!("min_dim_with_indices {dim} values"), values);
        out.push(format!("min_dim_with_indices {dim} indices"), indices);
        out.push(format!("cumsum {dim}"), x.clone().cumsum(dim));
        out.push(format!("cumprod {dim}"), near_one.clone().cumprod(dim));
        out.push(format!("cummin {dim}"), x.clone().cummin(dim));
        out.push(format!("cummax {dim}"), x.clone().cummax(dim));
        out.push(format!("var {dim}"), x.clone().var(dim));
        out.push(format!("var_bias {dim}"), x.clone().var_bias(dim));
        out.push(format!("median {dim}"), x.clone().median(dim));
        out.push(format!("any_dim {dim}"), x.clone().greater_elem(1.5).float().any_dim(dim));
        out.push(format!("all_dim {dim}"), x.clone().greater_elem(-1.5).float().all_dim(dim));
    }
    out.push("sum_dims", cube.clone().sum_dims(&[0, 2]));
    out.push("mean_dims", cube.clone().mean_dims(&[1, 2]));
    out.push("sum_dim 3d", cube.clone().sum_dim(1));
    out.push("mean_dim 3d", cube.clone().mean_dim(2));
    out.push("cumsum 3d", cube.clone().cumsum(2));
    out.push("argmax 3d", cube.clone().argmax(1));
    out.push("any", x.clone().any());
    out.push("all", x.clone().all());
    out.push("all (zeros)", x.clone().zeros_like().all());
    let (var, mean) = x.var_mean(1);
    out.push("var_mean var", var);
    out.push("var_mean mean", mean);
}

/// Reshapes, permutations, slicing, concatenation, expansion, padding and unfolding.
pub fn float_shape_ops<B: Backend>(device: &B::Device) {
    equivalent!("float_shape_ops", device, shape_ops::<B>());
}

fn shape_ops<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let x = float_tensor::<B, 2>(device, [4, 5], 51, -2.0, 2.0);
    let y = float_tensor::<B, 2>(device, [4, 5], 52, -2.0, 2.0);
    let cube = float_tensor::<B, 3>(device, [2, 3, 4], 53, -2.0, 2.0);

    out.push("reshape", x.clone().reshape([5, 4]));
    out.push("reshape inferred", cube.clone().reshape([-1, 4]));
    out.push("flatten", cube.clone().flatten::<2>(1, 2));
    out.push("unsqueeze_dim", x.clone().unsqueeze_dim::<3>(1));
    out.push("squeeze_dim", x.clone().unsqueeze_dim::<3>(0).squeeze_dim::<2>(0));
    out.push("transpose", x.clone().transpose());
    out.push("transpose then add", x.clone().transpose() + y.clone().transpose());
    out.push("swap_dims", cube.clone().swap_dims(0, 2));
    out.push("permute", cube.clone().permute([2, 0, 1]));
    out.push("movedim", cube.clone().movedim(0, 2));
    out.push("flip", x.clone().flip([0, 1]));
    out.push("flip one axis", cube.clone().flip([1]));
    out.push("slice", x.clone().slice([1..3, 0..4]));
    out.push("slice with step", x.clone().slice(s![..;2, 1..;2]));
    out.push("slice negative step", x.clone().slice(s![.., ..;-1]));
    let patch = float_tensor::<B, 2>(device, [2, 3], 54, 5.0, 6.0);
    out.push("slice_assign", x.clone().slice_assign([1..3, 2..5], patch));
    out.push("slice_fill", x.clone().slice_fill([0..2, 1..3], -9.0));
    out.push("slice_dim", cube.clone().slice_dim(2, 1..3));
    out.push("narrow", x.clone().narrow(1, 1, 3));
    for (i, chunk) in x.clone().chunk(3, 1).into_iter().enumerate() {
        out.push(format!("chunk {i}"), chunk);
    }
    for (i, part) in x.clone().split(3, 0).into_iter().enumerate() {
        out.push(format!("split {i}"), part);
    }
    let row = float_tensor::<B, 2>(device, [1, 5], 55, -1.0, 1.0);
    out.push("expand", row.clone().expand([4, 5]));
    out.push("expand new dim", row.expand([3, 4, 5]));
    out.push("repeat", x.clone().repeat(&[2, 3]));
    out.push("repeat_dim", x.clone().repeat_dim(0, 3));
    out.push("cat dim 0", Tensor::cat(vec![x.clone(), y.clone()], 0));
    out.push("cat dim 1", Tensor::cat(vec![x.clone(), y.clone(), x.clone()], 1));
    out.push("stack dim 0", Tensor::stack::<3>(vec![x.clone(), y.clone()], 0));
    out.push("stack dim 2", Tensor::stack::<3>(vec![x.clone(), y.clone()], 2));
    out.push("unfold", x.clone().unfold::<3, _>(1, 2, 1));
    out.push("unfold step 2", cube.clone().unfold::<4, _>(2, 2, 2));
    out.push("roll_dim", x.clone().roll_dim(2, 1));
    out.push("roll", x.clone().roll(&[1, -2], &[0, 1]));
    out.push("pad constant", x.clone().pad([(1, 2), (0, 1)], 0.5));
    out.push("triu", x.clone().triu(0));
    out.push("tril", x.clone().tril(-1));
    let iterated: Vec<_> = cube.iter_dim(1).collect();
    out.push("iter_dim then cat", Tensor::cat(iterated, 0));
}

/// gather / scatter / select / select_assign / take / mask_where / mask_fill / one_hot.
pub fn float_indexing<B: Backend>(device: &B::Device) {
    equivalent!("float_indexing", device, indexing::<B>());
}

fn indexing<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let x = float_tensor::<B, 2>(device, [4, 5], 61, -2.0, 2.0);
    let values = float_tensor::<B, 2>(device, [4, 5], 62, -2.0, 2.0);
    let mask = bool_tensor::<B, 2>(device, [4, 5], 63);

    let rows = int_tensor::<B, 2>(device, [4, 5], 64, 0, 4);
    let cols = int_tensor::<B, 2>(device, [4, 3], 65, 0, 5);
    out.push("gather dim 0", x.clone().gather(0, rows.clone()));
    out.push("gather dim 1", x.clone().gather(1, cols.clone()));
    // Indices repeat, so `Add` accumulates several values into one slot.
    out.push("scatter add dim 0", x.clone().scatter(0, rows, values.clone(), IndexingUpdateOp::Add));
    let partial = float_tensor::<B, 2>(device, [4, 3], 66, -2.0, 2.0);
    out.push("scatter add dim 1", x.clone().scatter(1, cols, partial, IndexingUpdateOp::Add));

    let picks = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![3i64, 0, 3, 1], [4]), device);
    out.push("select dim 0", x.clone().select(0, picks.clone()));
    out.push("select dim 1", x.clone().select(1, picks.clone()));
    let rows_in = float_tensor::<B, 2>(device, [4, 5], 67, -1.0, 1.0);
    out.push("select_assign add", x.clone().select_assign(0, picks.clone(), rows_in, IndexingUpdateOp::Add));
    let take_indices = int_tensor::<B, 2>(device, [2, 3], 68, 0, 5);
    out.push("take", x.clone().take::<2, 3>(1, take_indices));

    out.push("mask_where", x.clone().mask_where(mask.clone(), values.clone()));
    out.push("mask_fill", x.clone().mask_fill(mask.clone(), -7.5));
    out.push("mask_fill broadcast row", x.clone().mask_fill(mask.slice([0..1, 0..5]), 3.0));

    // Rows (0, 1) and (3, 4) of a [4, 5] tensor are addressed by pairs of coordinates.
    let pairs = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![0i64, 1, 3, 4, 0, 1], [3, 2]), device);
    out.push("gather_nd", x.clone().gather_nd::<2, 1>(pairs.clone()));
    let updates = float_tensor::<B, 1>(device, [3], 70, -1.0, 1.0);
    out.push("scatter_nd add", x.clone().scatter_nd(pairs, updates, IndexingUpdateOp::Add));
    let labels = int_tensor::<B, 1>(device, [6], 69, 0, 4);
    out.push("one_hot", labels.float().one_hot::<2>(4));
}

/// Comparisons with tensors and scalars, closeness, and sorting / top-k.
pub fn float_compare_sort<B: Backend>(device: &B::Device) {
    // Flex 0.21 leaves `float_argtopk` unimplemented (it panics); other backends run it.
    let argtopk =
        bare_supports::<B, _>(device, "float argtopk", || float_tensor::<B, 2>(device, [2, 3], 0, -1.0, 1.0).argtopk(1, 1).into_data());
    equivalent!("float_compare_sort", device, compare_sort::<B>(argtopk));
}

fn compare_sort<B: Backend>(device: &B::Device, out: &mut Outputs, argtopk: bool) {
    // Rounded to a coarse grid so that ties and equalities actually occur.
    let x = float_tensor::<B, 2>(device, [4, 5], 71, -2.0, 2.0).mul_scalar(2.0).round();
    let y = float_tensor::<B, 2>(device, [4, 5], 72, -2.0, 2.0).mul_scalar(2.0).round();
    let smooth = float_tensor::<B, 2>(device, [4, 5], 73, -2.0, 2.0);

    out.push("equal", x.clone().equal(y.clone()));
    out.push("not_equal", x.clone().not_equal(y.clone()));
    out.push("greater", x.clone().greater(y.clone()));
    out.push("greater_equal", x.clone().greater_equal(y.clone()));
    out.push("lower", x.clone().lower(y.clone()));
    out.push("lower_equal", x.clone().lower_equal(y.clone()));
    out.push("equal_elem", x.clone().equal_elem(1.0));
    out.push("not_equal_elem", x.clone().not_equal_elem(0.0));
    out.push("greater_elem", x.clone().greater_elem(0.5));
    out.push("greater_equal_elem", x.clone().greater_equal_elem(1.0));
    out.push("lower_elem", x.clone().lower_elem(-0.5));
    out.push("lower_equal_elem", x.clone().lower_equal_elem(-1.0));
    let nudged = smooth.clone().add_scalar(1e-7);
    out.push("is_close", smooth.clone().is_close(nudged.clone(), None, None));
    out.push_value("all_close", smooth.clone().all_close(nudged, None, None) as i64);

    for dim in 0..2 {
        out.push(format!("sort {dim}"), smooth.clone().sort(dim));
        out.push(format!("sort_descending {dim}"), smooth.clone().sort_descending(dim));
        let (values, indices) = smooth.clone().sort_with_indices(dim);
        out.push(format!("sort_with_indices {dim} values"), values);
        out.push(format!("sort_with_indices {dim} indices"), indices);
        let (values, indices) = smooth.clone().sort_descending_with_indices(dim);
        out.push(format!("sort_descending_with_indices {dim} values"), values);
        out.push(format!("sort_descending_with_indices {dim} indices"), indices);
        out.push(format!("argsort {dim}"), smooth.clone().argsort(dim));
        out.push(format!("argsort_descending {dim}"), smooth.clone().argsort_descending(dim));
        out.push(format!("topk {dim}"), smooth.clone().topk(2, dim));
        if argtopk {
            out.push(format!("argtopk {dim}"), smooth.clone().argtopk(2, dim));
        }
        let (values, indices) = smooth.clone().topk_with_indices(3, dim);
        out.push(format!("topk_with_indices {dim} values"), values);
        out.push(format!("topk_with_indices {dim} indices"), indices);
    }
    // With ties the order among equal keys is whatever the kernel does; both must agree.
    out.push("sort with ties", x.clone().sort(1));
    out.push("argsort with ties", x.argsort(1));
}
