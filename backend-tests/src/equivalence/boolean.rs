//! Bool tensor ops: logic, reductions, conversions, argwhere, masks and layout.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::support::{Outputs, bool_tensor, bools, equivalent, float_tensor, int_tensor};

/// Every bool op in one test.
pub fn bool_ops<B: Backend>(device: &B::Device) {
    equivalent!("bool_ops", device, bool_ops_run::<B>());
}

fn bool_ops_run<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let p = bool_tensor::<B, 2>(device, [4, 5], 111);
    let q = bool_tensor::<B, 2>(device, [4, 5], 112);

    out.push("bool from_bool", Tensor::<B, 2, Bool>::from_bool(bools([3, 3], 113), device));
    out.push("bool zeros", Tensor::<B, 2, Bool>::zeros([2, 3], device));
    out.push("bool ones", Tensor::<B, 2, Bool>::ones([2, 3], device));
    out.push("bool full", Tensor::<B, 2, Bool>::full([2, 3], true, device));
    // `empty` leaves the values unspecified: only its metadata can be compared.
    let empty = Tensor::<B, 2, Bool>::empty([3, 2], device);
    out.push_data("bool empty dims", TensorData::new(empty.dims().map(|d| d as i64).to_vec(), [2]));
    out.push("triu_mask", Tensor::<B, 2, Bool>::triu_mask([4, 5], 1, device));
    out.push("tril_mask", Tensor::<B, 2, Bool>::tril_mask([4, 5], 0, device));
    out.push("diag_mask", Tensor::<B, 2, Bool>::diag_mask([4, 4], 0, device));

    out.push("bool_not", p.clone().bool_not());
    out.push("bool_and", p.clone().bool_and(q.clone()));
    out.push("bool_or", p.clone().bool_or(q.clone()));
    out.push("bool_xor", p.clone().bool_xor(q.clone()));
    out.push("bool equal", p.clone().equal(q.clone()));
    out.push("bool not_equal", p.clone().not_equal(q.clone()));
    out.push("bool equal_elem", p.clone().equal_elem(true));
    out.push("bool not_equal_elem", p.clone().not_equal_elem(true));
    out.push("bool any", p.clone().any());
    out.push("bool all", p.clone().all());
    out.push("bool all (ones)", Tensor::<B, 2, Bool>::ones([2, 2], device).all());
    out.push("bool any (zeros)", Tensor::<B, 2, Bool>::zeros([2, 2], device).any());
    for dim in 0..2 {
        out.push(format!("bool any_dim {dim}"), p.clone().any_dim(dim));
        out.push(format!("bool all_dim {dim}"), p.clone().all_dim(dim));
    }
    out.push("bool into int", p.clone().int());
    out.push("bool into float", p.clone().float());
    out.push("argwhere", p.clone().argwhere());
    out.push("argwhere (none)", Tensor::<B, 2, Bool>::zeros([2, 3], device).argwhere());
    for (i, coordinates) in p.clone().nonzero().into_iter().enumerate() {
        out.push(format!("nonzero {i}"), coordinates);
    }

    out.push("bool to_device (same device)", p.clone().to_device(device));
    out.push("bool reshape", p.clone().reshape([5, 4]));
    out.push("bool transpose", p.clone().transpose());
    out.push("bool swap_dims", p.clone().unsqueeze_dim::<3>(2).swap_dims(0, 2));
    out.push("bool permute", p.clone().unsqueeze_dim::<3>(0).permute([1, 2, 0]));
    out.push("bool flip", p.clone().flip([0, 1]));
    out.push("bool slice", p.clone().slice([1..3, 2..5]));
    out.push("bool slice_assign", p.clone().slice_assign([0..2, 0..2], q.clone().slice([2..4, 0..2])));
    out.push("bool expand", p.clone().slice([0..1, 0..5]).expand([3, 5]));
    out.push("bool repeat", p.clone().repeat(&[1, 2]));
    out.push("bool cat", Tensor::cat(vec![p.clone(), q.clone()], 0));
    out.push("bool stack", Tensor::stack::<3>(vec![p.clone(), q.clone()], 1));
    out.push("bool unfold", p.clone().unfold::<3, _>(0, 2, 2));
    let indices = int_tensor::<B, 2>(device, [4, 5], 114, 0, 4);
    out.push("bool gather", p.clone().gather(0, indices.clone()));
    out.push("bool scatter or", p.clone().scatter(0, indices, q.clone(), IndexingUpdateOp::Add));
    let picks = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![2i64, 0, 2], [3]), device);
    out.push("bool select", p.clone().select(0, picks.clone()));
    let rows = bool_tensor::<B, 2>(device, [3, 5], 115);
    out.push("bool select_assign or", p.clone().select_assign(0, picks, rows, IndexingUpdateOp::Add));
    let mask = bool_tensor::<B, 2>(device, [4, 5], 116);
    out.push("bool mask_where", p.clone().mask_where(mask.clone(), q.clone()));
    out.push("bool mask_fill", p.mask_fill(mask.clone(), true));

    // Bool tensors as masks over the other kinds.
    let x = float_tensor::<B, 2>(device, [4, 5], 117, -1.0, 1.0);
    out.push("float masked by bool", x.clone().mask_fill(mask.clone().bool_not(), 0.0));
    out.push("float where bool", x.clone().mask_where(mask.clone(), x.clone().neg()));
    let n = int_tensor::<B, 2>(device, [4, 5], 118, -9, 9);
    out.push("int masked by bool", n.mask_fill(mask.bool_and(q), -1));
}
