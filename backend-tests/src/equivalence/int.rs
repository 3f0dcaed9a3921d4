//! Int tensor ops: creation, arithmetic, bitwise ops, reductions, comparisons, sorting,
//! layout and indexing, and casts (to other int dtypes and to float).

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, FloatDType, IndexingUpdateOp, Int, Scalar, Tensor, TensorData};

use crate::support::{Outputs, bare_supports, bool_tensor, equivalent, int_tensor, rng_lock, supported_float_dtypes, supported_int_dtypes};

/// Every int op family in one test: int tensors feed indices, masks and casts, so their
/// forwarding matters as much as the float ops'.
pub fn int_ops<B: Backend>(device: &B::Device) {
    // Flex 0.21 leaves `int_argtopk` unimplemented (it panics); other backends run it.
    let argtopk = bare_supports::<B, _>(device, "int argtopk", || int_tensor::<B, 2>(device, [2, 3], 0, -5, 5).argtopk(1, 1).into_data());
    equivalent!("int_ops", device, int_ops_run::<B>(argtopk));
}

fn int_ops_run<B: Backend>(device: &B::Device, out: &mut Outputs, argtopk: bool) {
    creation::<B>(device, out);
    arithmetic::<B>(device, out);
    reductions::<B>(device, out);
    comparisons_and_sorting::<B>(device, out, argtopk);
    layout_and_indexing::<B>(device, out);
    casts::<B>(device, out);
}

fn creation<B: Backend>(device: &B::Device, out: &mut Outputs) {
    out.push("int zeros", Tensor::<B, 2, Int>::zeros([3, 4], device));
    out.push("int ones", Tensor::<B, 2, Int>::ones([3, 4], device));
    out.push("int full", Tensor::<B, 2, Int>::full([3, 4], -7, device));
    out.push("int from_ints", Tensor::<B, 1, Int>::from_ints([3, -1, 4, 1, -5], device));
    out.push("arange", Tensor::<B, 1, Int>::arange(-3..9, device));
    out.push("arange_step", Tensor::<B, 1, Int>::arange_step(0..20, 3, device));
    // `empty` leaves the values unspecified: only its metadata can be compared.
    let empty = Tensor::<B, 2, Int>::empty([2, 7], device);
    out.push_data("int empty dims", TensorData::new(empty.dims().map(|d| d as i64).to_vec(), [2]));
    out.push("cartesian_grid", Tensor::<B, 2, Int>::cartesian_grid::<_, 3>([2, 3], device));
    let _rng = rng_lock();
    B::seed(device, 90);
    out.push("int random", Tensor::<B, 2, Int>::random([4, 5], Distribution::Uniform(-5.0, 5.0), device));
}

fn arithmetic<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let a = int_tensor::<B, 2>(device, [4, 5], 81, -20, 20);
    let b = int_tensor::<B, 2>(device, [4, 5], 82, -20, 20);
    // Strictly positive divisors: division by zero is undefined behaviour in some kernels.
    let divisor = int_tensor::<B, 2>(device, [4, 5], 83, 1, 6);
    let small = int_tensor::<B, 2>(device, [4, 5], 84, -3, 4);
    let exponent = int_tensor::<B, 2>(device, [4, 5], 85, 0, 4);

    out.push("int add", a.clone().add(b.clone()));
    out.push("int sub", a.clone().sub(b.clone()));
    out.push("int mul", a.clone().mul(b.clone()));
    out.push("int div", a.clone().div(divisor.clone()));
    out.push("int remainder", a.clone().remainder(divisor.clone()));
    out.push("int add_scalar", a.clone().add_scalar(5));
    out.push("int sub_scalar", a.clone().sub_scalar(3));
    out.push("int mul_scalar", a.clone().mul_scalar(-2));
    out.push("int div_scalar", a.clone().div_scalar(3));
    out.push("int remainder_scalar", a.clone().remainder_scalar(4));
    out.push("int operators", (a.clone() + 1) * 3 - b.clone());
    out.push("int broadcast add", a.clone() + b.clone().slice([0..1, 0..5]));
    out.push("int neg", -a.clone());
    out.push("int abs", a.clone().abs());
    out.push("int sign", a.clone().sign());
    out.push("int powi", small.clone().powi(exponent.clone()));
    out.push("int powi_scalar", small.clone().powi_scalar(3));
    let powi = B::int_powi_scalar_impl(small.clone().into_primitive(), Scalar::from(2i64));
    out.push("int_powi_scalar_impl", Tensor::<B, 2, Int>::from_primitive(powi));
    out.push("int clamp", a.clone().clamp(-5, 5));
    out.push("int clamp_min", a.clone().clamp_min(0));
    out.push("int clamp_max", a.clone().clamp_max(2));
    out.push("int max_pair", a.clone().max_pair(b.clone()));
    out.push("int min_pair", a.clone().min_pair(b.clone()));
    let lhs = int_tensor::<B, 2>(device, [3, 4], 86, -4, 5);
    let rhs = int_tensor::<B, 2>(device, [4, 2], 87, -4, 5);
    out.push("int matmul", lhs.matmul(rhs));

    let bits = int_tensor::<B, 2>(device, [4, 5], 88, 0, 256);
    let other = int_tensor::<B, 2>(device, [4, 5], 89, 0, 256);
    let shifts = int_tensor::<B, 2>(device, [4, 5], 90, 0, 5);
    out.push("bitwise_and", bits.clone().bitwise_and(other.clone()));
    out.push("bitwise_or", bits.clone().bitwise_or(other.clone()));
    out.push("bitwise_xor", bits.clone().bitwise_xor(other));
    out.push("bitwise_not", bits.clone().bitwise_not());
    out.push("bitwise_and_scalar", bits.clone().bitwise_and_scalar(0x5a.elem()));
    out.push("bitwise_or_scalar", bits.clone().bitwise_or_scalar(0x0f.elem()));
    out.push("bitwise_xor_scalar", bits.clone().bitwise_xor_scalar(0xff.elem()));
    out.push("bitwise_left_shift", bits.clone().bitwise_left_shift(shifts.clone()));
    out.push("bitwise_right_shift", bits.clone().bitwise_right_shift(shifts));
    out.push("bitwise_left_shift_scalar", bits.clone().bitwise_left_shift_scalar(3.elem()));
    out.push("bitwise_right_shift_scalar", bits.bitwise_right_shift_scalar(2.elem()));
}

fn reductions<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let a = int_tensor::<B, 2>(device, [4, 5], 91, -20, 20);
    let small = int_tensor::<B, 2>(device, [4, 5], 92, -3, 4);
    out.push("int sum", a.clone().sum());
    out.push("int mean", a.clone().mean());
    out.push("int prod", small.clone().prod());
    out.push("int max", a.clone().max());
    out.push("int min", a.clone().min());
    out.push("int max_abs", a.clone().max_abs());
    out.push("int any", a.clone().any());
    out.push("int all", a.clone().all());
    for dim in 0..2 {
        out.push(format!("int sum_dim {dim}"), a.clone().sum_dim(dim));
        out.push(format!("int mean_dim {dim}"), a.clone().mean_dim(dim));
        out.push(format!("int prod_dim {dim}"), small.clone().prod_dim(dim));
        out.push(format!("int max_dim {dim}"), a.clone().max_dim(dim));
        out.push(format!("int min_dim {dim}"), a.clone().min_dim(dim));
        out.push(format!("int max_abs_dim {dim}"), a.clone().max_abs_dim(dim));
        out.push(format!("int argmax {dim}"), a.clone().argmax(dim));
        out.push(format!("int argmin {dim}"), a.clone().argmin(dim));
        let (values, indices) = a.clone().max_dim_with_indices(dim);
        out.push(format!("int max_dim_with_indices {dim} values"), values);
        out.push(format!("int max_dim_with_indices {dim} indices"), indices);
        let (values, indices) = a.clone().min_dim_with_indices(dim);
        out.push(format!("int min_dim_with_indices {dim} values"), values);
        out.push(format!("int min_dim_with_indices {dim} indices"), indices);
        out.push(format!("int cumsum {dim}"), a.clone().cumsum(dim));
        out.push(format!("int cumprod {dim}"), small.clone().cumprod(dim));
        out.push(format!("int cummin {dim}"), a.clone().cummin(dim));
        out.push(format!("int cummax {dim}"), a.clone().cummax(dim));
        out.push(format!("int any_dim {dim}"), small.clone().any_dim(dim));
        out.push(format!("int all_dim {dim}"), small.clone().all_dim(dim));
    }
}

fn comparisons_and_sorting<B: Backend>(device: &B::Device, out: &mut Outputs, argtopk: bool) {
    let a = int_tensor::<B, 2>(device, [4, 5], 93, -3, 4);
    let b = int_tensor::<B, 2>(device, [4, 5], 94, -3, 4);
    out.push("int equal", a.clone().equal(b.clone()));
    out.push("int not_equal", a.clone().not_equal(b.clone()));
    out.push("int greater", a.clone().greater(b.clone()));
    out.push("int greater_equal", a.clone().greater_equal(b.clone()));
    out.push("int lower", a.clone().lower(b.clone()));
    out.push("int lower_equal", a.clone().lower_equal(b));
    out.push("int equal_elem", a.clone().equal_elem(1));
    out.push("int not_equal_elem", a.clone().not_equal_elem(0));
    out.push("int greater_elem", a.clone().greater_elem(1));
    out.push("int greater_equal_elem", a.clone().greater_equal_elem(1));
    out.push("int lower_elem", a.clone().lower_elem(-1));
    out.push("int lower_equal_elem", a.clone().lower_equal_elem(-1));
    for dim in 0..2 {
        out.push(format!("int sort {dim}"), a.clone().sort(dim));
        out.push(format!("int sort_descending {dim}"), a.clone().sort_descending(dim));
        let (values, indices) = a.clone().sort_with_indices(dim);
        out.push(format!("int sort_with_indices {dim} values"), values);
        out.push(format!("int sort_with_indices {dim} indices"), indices);
        out.push(format!("int argsort {dim}"), a.clone().argsort(dim));
        out.push(format!("int topk {dim}"), a.clone().topk(2, dim));
        if argtopk {
            out.push(format!("int argtopk {dim}"), a.clone().argtopk(2, dim));
        }
    }
}

fn layout_and_indexing<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let a = int_tensor::<B, 2>(device, [4, 5], 95, -20, 20);
    let b = int_tensor::<B, 2>(device, [4, 5], 96, -20, 20);
    let mask = bool_tensor::<B, 2>(device, [4, 5], 97);
    out.push("int to_device (same device)", a.clone().to_device(device));
    out.push("int reshape", a.clone().reshape([2, 10]));
    out.push("int transpose", a.clone().transpose());
    out.push("int swap_dims", a.clone().unsqueeze_dim::<3>(0).swap_dims(0, 2));
    out.push("int permute", a.clone().unsqueeze_dim::<3>(1).permute([2, 0, 1]));
    out.push("int flip", a.clone().flip([1]));
    out.push("int slice", a.clone().slice([1..4, 0..2]));
    out.push("int slice_assign", a.clone().slice_assign([0..2, 0..2], b.clone().slice([2..4, 3..5])));
    out.push("int narrow", a.clone().narrow(0, 1, 2));
    out.push("int expand", a.clone().slice([0..1, 0..5]).expand([3, 5]));
    out.push("int repeat", a.clone().repeat(&[2, 1]));
    out.push("int repeat_dim", a.clone().repeat_dim(1, 2));
    out.push("int cat", Tensor::cat(vec![a.clone(), b.clone()], 1));
    out.push("int stack", Tensor::stack::<3>(vec![a.clone(), b.clone()], 0));
    out.push("int unfold", a.clone().unfold::<3, _>(1, 3, 1));
    let indices = int_tensor::<B, 2>(device, [4, 5], 98, 0, 4);
    out.push("int gather", a.clone().gather(0, indices.clone()));
    out.push("int scatter add", a.clone().scatter(0, indices, b.clone(), IndexingUpdateOp::Add));
    let picks = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![4i64, 4, 0], [3]), device);
    out.push("int select", a.clone().select(1, picks.clone()));
    let columns = int_tensor::<B, 2>(device, [4, 3], 99, -5, 5);
    out.push("int select_assign add", a.clone().select_assign(1, picks, columns, IndexingUpdateOp::Add));
    out.push("int mask_where", a.clone().mask_where(mask.clone(), b));
    out.push("int mask_fill", a.clone().mask_fill(mask, 99));
    let labels = int_tensor::<B, 1>(device, [6], 100, 0, 5);
    out.push("int one_hot", labels.one_hot::<2>(5));
    let nd_indices = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![0i64, 1, 3, 4, 2, 2], [3, 2]), device);
    out.push("int gather_nd", a.clone().gather_nd::<2, 1>(nd_indices.clone()));
    let nd_values = int_tensor::<B, 1>(device, [3], 101, -5, 5);
    out.push("int scatter_nd add", a.scatter_nd(nd_indices, nd_values, IndexingUpdateOp::Add));
}

fn casts<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let a = int_tensor::<B, 2>(device, [4, 5], 102, -100, 100);
    out.push("int into float", a.clone().float());
    for dtype in supported_float_dtypes::<B>(device) {
        out.push(format!("int cast {dtype:?}"), a.clone().cast(dtype));
    }
    let non_negative = int_tensor::<B, 2>(device, [4, 5], 103, 0, 100);
    for dtype in supported_int_dtypes::<B>(device) {
        let cast = non_negative.clone().cast(dtype);
        out.push(format!("int cast {dtype:?}"), cast.clone());
        out.push(format!("int {dtype:?} add"), cast.clone().add(cast.clone()));
        out.push(format!("int {dtype:?} sum_dim"), cast.clone().sum_dim(1));
        out.push(format!("int {dtype:?} into f32"), cast.cast(FloatDType::F32));
    }
    out.push("int into bool", a.bool());
}
