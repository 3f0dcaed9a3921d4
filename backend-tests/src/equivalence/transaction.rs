//! Transactions: one batched read of float, int and bool tensors returns the same data
//! through `Mixed` as through `B`, in registration order, and the same data as reading
//! each tensor on its own.

use burn::tensor::backend::Backend;
use burn::tensor::{Transaction, activation};
use burn_mixed::Mixed;

use crate::support::{Outputs, assert_bitwise_eq, bare_supports, bool_tensor, equivalent, float_tensor, int_tensor, to_mixed};

/// Batched reads through `Transaction`, compared across backends and with direct reads.
pub fn transactions<B: Backend>(device: &B::Device) {
    // CubeCL backends (Wgpu) 0.21 panic on a transaction with nothing registered.
    let empty = bare_supports::<B, _>(device, "empty transaction", || Transaction::<B>::default().execute());
    equivalent!("transactions", device, transactions_run::<B>(empty));
    moved_tensors_read_the_same::<B>(device);
}

fn transactions_run<B: Backend>(device: &B::Device, out: &mut Outputs, empty: bool) {
    let x = float_tensor::<B, 2>(device, [4, 5], 201, -2.0, 2.0);
    // A pending computation, so the transaction has work to flush, not only buffers to copy.
    let y = activation::softmax(x.clone().matmul(x.clone().transpose()), 1);
    let n = int_tensor::<B, 3>(device, [2, 3, 4], 202, -50, 50);
    let p = bool_tensor::<B, 2>(device, [3, 3], 203);
    let tensors = (x.clone(), y.clone(), n.clone(), p.clone());

    let read = Transaction::default().register(x).register(y).register(n).register(p).register(tensors.0.clone().argmax(1)).execute();
    assert_eq!(read.len(), 5, "one TensorData per registered tensor");
    let labels = ["float", "pending float", "int", "bool", "argmax"];
    for (label, data) in labels.iter().zip(&read) {
        out.push_data(format!("transaction {label}"), data.clone());
    }

    // Within one backend a transaction must agree with plain reads.
    let (x, y, n, p) = tensors;
    assert_bitwise_eq("transaction vs into_data: float", read[0].clone(), x.into_data());
    assert_bitwise_eq("transaction vs into_data: pending float", read[1].clone(), y.into_data());
    assert_bitwise_eq("transaction vs into_data: int", read[2].clone(), n.into_data());
    assert_bitwise_eq("transaction vs into_data: bool", read[3].clone(), p.into_data());

    if empty {
        let read = Transaction::<B>::default().execute();
        out.push_value("empty transaction length", read.len() as i64);
    }
}

/// Tensors made on `B` and moved to `Mixed<B>` with [`to_mixed`] read back unchanged
/// through a `Mixed` transaction.
fn moved_tensors_read_the_same<B: Backend>(device: &B::Device) {
    let x = float_tensor::<B, 3>(device, [2, 3, 4], 204, -1.0, 1.0);
    let n = int_tensor::<B, 2>(device, [3, 4], 205, -9, 9);
    let p = bool_tensor::<B, 2>(device, [2, 5], 206);
    let read = Transaction::<Mixed<B>>::default()
        .register(to_mixed(x.clone()))
        .register(to_mixed(n.clone()))
        .register(to_mixed(p.clone()))
        .execute();
    let mut read = read.into_iter();
    assert_bitwise_eq("moved float", read.next().unwrap(), x.into_data());
    assert_bitwise_eq("moved int", read.next().unwrap(), n.into_data());
    assert_bitwise_eq("moved bool", read.next().unwrap(), p.into_data());
    assert!(read.next().is_none(), "three registered, three read");
}
