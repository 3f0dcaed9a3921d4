//! Quantized tensors, where the backend supports them: dynamic and explicit quantization,
//! the stored bytes, dequantization, and a few ops on quantized tensors.
//!
//! Backends differ in what they quantize, so each op is first tried on the *bare* backend
//! (catching its panic); an op the bare backend cannot run is skipped, with the reason
//! printed, and every op it can run must give the same bytes through `Mixed`.

use burn::tensor::backend::Backend;
use burn::tensor::quantization::{Calibration, QTensorPrimitive, QuantScheme, compute_q_params, compute_range};
use burn::tensor::{Int, Tensor, TensorData};
use burn_mixed::Mixed;

use crate::support::{Outputs, equivalent, float_tensor, probe};

/// The quantized ops compared, by name.
const QUANT_OPS: [&str; 15] = [
    "quantize_dynamic (stored bytes)",
    "dequantize",
    "quantize with explicit params (stored bytes)",
    "reshape then dequantize",
    "transpose then dequantize",
    "slice then dequantize",
    "add",
    "mul_scalar",
    "matmul float x quantized",
    "permute and flip then dequantize",
    "select then dequantize",
    "cat then dequantize",
    "argmax",
    "sum",
    "to_device then dequantize",
];

/// The backend's own default scheme: Burn's `QuantScheme::default()` packs values into
/// u32 words, which some backends do not store.
fn scheme<B: Backend>() -> QuantScheme {
    <B::QuantizedTensorPrimitive as QTensorPrimitive>::default_scheme()
}

/// Runs quantized op number `op` (an index into [`QUANT_OPS`]) and returns its data.
fn quant_op<B: Backend>(op: usize, device: &B::Device) -> TensorData {
    let scheme = scheme::<B>();
    let x = float_tensor::<B, 2>(device, [4, 8], 191, -2.0, 2.0);
    let q = x.clone().quantize_dynamic(&scheme);
    match op {
        0 => q.into_data(),
        1 => q.dequantize().into_data(),
        2 => {
            let range = compute_range(&scheme, &x, &Calibration::MinMax);
            let qparams = compute_q_params(&scheme, range);
            x.quantize(&scheme, qparams).into_data()
        }
        3 => q.reshape([8, 4]).dequantize().into_data(),
        4 => q.transpose().dequantize().into_data(),
        5 => q.slice([1..3, 2..6]).dequantize().into_data(),
        6 => {
            let other = float_tensor::<B, 2>(device, [4, 8], 192, -2.0, 2.0).quantize_dynamic(&scheme);
            q.add(other).dequantize().into_data()
        }
        7 => q.mul_scalar(0.5).dequantize().into_data(),
        8 => {
            let lhs = float_tensor::<B, 2>(device, [3, 4], 193, -1.0, 1.0);
            lhs.matmul(q).dequantize().into_data()
        }
        9 => q.permute([1, 0]).flip([0]).dequantize().into_data(),
        10 => {
            let picks = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![3i64, 0, 3], [3]), device);
            q.select(0, picks).dequantize().into_data()
        }
        11 => Tensor::cat(vec![q.clone(), q], 1).dequantize().into_data(),
        12 => q.argmax(1).into_data(),
        13 => q.sum().into_data(),
        14 => q.to_device(device).dequantize().into_data(),
        _ => unreachable!("no quantized op number {op}"),
    }
}

fn quantized_run<B: Backend>(device: &B::Device, out: &mut Outputs, ops: &[usize]) {
    for &op in ops {
        out.push_data(QUANT_OPS[op], quant_op::<B>(op, device));
    }
}

/// Quantization round trips and quantized ops, skipped where the bare backend panics.
pub fn quantized<B: Backend>(device: &B::Device) {
    let mut supported = Vec::new();
    for (op, name) in QUANT_OPS.iter().enumerate() {
        match probe(|| quant_op::<B>(op, device)) {
            Ok(_) => supported.push(op),
            Err(reason) => {
                println!("quantized on {}: skipping `{name}`: the bare backend panics with {:?}: {reason}", B::name(device), scheme::<B>())
            }
        }
    }
    if supported.is_empty() {
        println!("quantized on {}: skipped, no quantized op runs on the bare backend", B::name(device));
        return;
    }
    assert_eq!(scheme::<B>(), scheme::<Mixed<B>>(), "Mixed must report its inner backend's scheme");
    equivalent!("quantized", device, quantized_run::<B>(&supported));
}
