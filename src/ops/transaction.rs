//! `TransactionOps` for `Mixed<B>`: the transaction is re-labelled and run by `B`, so
//! backends that batch reads (one sync for many tensors) keep doing so.

use burn::tensor::backend::Backend;
use burn::tensor::backend::ExecutionError;
use burn::tensor::ops::{TransactionOps, TransactionPrimitive, TransactionPrimitiveData};

use crate::Mixed;

impl<B: Backend> TransactionOps<Self> for Mixed<B> {
    async fn tr_execute(transaction: TransactionPrimitive<Self>) -> Result<TransactionPrimitiveData, ExecutionError> {
        B::tr_execute(TransactionPrimitive::new(
            transaction.read_floats,
            transaction.read_qfloats,
            transaction.read_ints,
            transaction.read_bools,
        ))
        .await
    }
}
