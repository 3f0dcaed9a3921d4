//! Each op of the policy table, run by `Mixed<B>` inside an autocast region, against a
//! control on bare `B` whose inputs were cast by hand to the dtype the policy names.

use burn::tensor::activation::{log_softmax, prelu, softmax, softmin};
use burn::tensor::backend::Backend;
use burn::tensor::module::{
    attention, conv_transpose1d, conv_transpose2d, conv_transpose3d, conv1d, conv2d, conv3d, ctc_loss, deform_conv2d, interpolate, linear,
};
use burn::tensor::ops::{
    AttentionModuleOptions, ConvOptions, ConvTransposeOptions, DeformConvOptions, InterpolateMode, InterpolateOptions,
};
use burn::tensor::{FloatDType, IndexingUpdateOp, Int, Tensor, TensorData, s};
use burn_mixed::Mixed;
use burn_mixed::autocast::{AutocastGuard, widest};

use super::{half_dtypes, input, layer_norm};
use crate::support::{assert_bitwise_eq, supported_float_dtypes};

/// Runs `$body` on `Mixed<B>` (inputs `$x` built in their dtype, autocast region `$region`
/// if `Some`) and on bare `B` (inputs additionally cast to `$control`), and requires the
/// two results to be identical.
///
/// The question here is which casts the policy inserts, so both sides run the bare
/// backend's kernels: `Mixed`'s host fast path (other kernels, same casts) is off on this
/// thread. Its accuracy is tested against f64 in the crate's `tests/kernels.rs`.
macro_rules! check {
    ($name:expr, $device:expr, region: $region:expr, control: $control:expr,
     [$($x:ident : $shape:expr => $dtype:expr),+ $(,)?], $body:expr) => {{
        let region: Option<FloatDType> = $region;
        let mut seed = 0u64;
        let got = burn_mixed::kernels::with_host_kernels(false, || {
            $(seed += 1; let $x: Tensor<Mixed<B>, _> = input($shape, seed, $dtype, $device);)+
            let _region = region.map(|d| {
                AutocastGuard::enable::<Mixed<B>>($device, d).expect("dtype checked as supported")
            });
            $body.into_data()
        });
        let mut seed = 0u64;
        let want = {
            $(seed += 1; let $x: Tensor<B, _> = input($shape, seed, $dtype, $device).cast($control);)+
            $body.into_data()
        };
        assert_bitwise_eq(&format!("{} (region {:?})", $name, region), got, want);
    }};
}

fn index<B: Backend, const D: usize>(values: Vec<i64>, shape: [usize; D], device: &B::Device) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Lower-precision ops: f32 inputs are cast to the region's dtype, the output stays in it.
pub fn lower_precision_ops<B: Backend>(device: &B::Device) {
    let f32 = FloatDType::F32;
    for half in half_dtypes::<B>(device) {
        let r = Some(half);
        check!("matmul", device, region: r, control: half, [a: [4, 8] => f32, b: [8, 3] => f32], a.matmul(b));
        check!("batched matmul", device, region: r, control: half,
            [a: [2, 4, 8] => f32, b: [2, 8, 3] => f32], a.matmul(b));
        check!("linear", device, region: r, control: half,
            [x: [4, 8] => f32, w: [8, 3] => f32, bias: [3] => f32], linear(x, w, Some(bias)));
        check!("conv1d", device, region: r, control: half,
            [x: [2, 3, 10] => f32, w: [4, 3, 3] => f32, bias: [4] => f32],
            conv1d(x, w, Some(bias), ConvOptions::new([1], [1], [1], 1)));
        check!("conv2d", device, region: r, control: half,
            [x: [2, 3, 6, 6] => f32, w: [4, 3, 3, 3] => f32, bias: [4] => f32],
            conv2d(x, w, Some(bias), ConvOptions::new([1, 1], [1, 1], [1, 1], 1)));
        check!("conv3d", device, region: r, control: half,
            [x: [1, 2, 4, 4, 4] => f32, w: [3, 2, 3, 3, 3] => f32, bias: [3] => f32],
            conv3d(x, w, Some(bias), ConvOptions::new([1, 1, 1], [1, 1, 1], [1, 1, 1], 1)));
        check!("conv_transpose1d", device, region: r, control: half,
            [x: [2, 3, 6] => f32, w: [3, 4, 3] => f32, bias: [4] => f32],
            conv_transpose1d(x, w, Some(bias), ConvTransposeOptions::new([1], [0], [0], [1], 1)));
        check!("conv_transpose2d", device, region: r, control: half,
            [x: [1, 3, 5, 5] => f32, w: [3, 2, 3, 3] => f32, bias: [2] => f32],
            conv_transpose2d(x, w, Some(bias), ConvTransposeOptions::new([1, 1], [0, 0], [0, 0], [1, 1], 1)));
        check!("conv_transpose3d", device, region: r, control: half,
            [x: [1, 2, 3, 3, 3] => f32, w: [2, 2, 2, 2, 2] => f32, bias: [2] => f32],
            conv_transpose3d(x, w, Some(bias), ConvTransposeOptions::new([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1)));
        // Offsets of up to one pixel and a mask, so the bilinear sampling path is exercised.
        check!("deform_conv2d", device, region: r, control: half,
            [x: [1, 2, 5, 5] => f32, offset: [1, 18, 3, 3] => f32, w: [3, 2, 3, 3] => f32,
             mask: [1, 9, 3, 3] => f32, bias: [3] => f32],
            deform_conv2d(x, offset, w, Some(mask), Some(bias), DeformConvOptions::new([1, 1], [0, 0], [1, 1], 1, 1)));
        check!("attention", device, region: r, control: half,
            [q: [1, 2, 4, 8] => f32, k: [1, 2, 4, 8] => f32, v: [1, 2, 4, 8] => f32],
            attention(q, k, v, None, None, AttentionModuleOptions::default()));
        check!("prelu", device, region: r, control: half, [x: [4, 6] => f32, alpha: [6] => f32], prelu(x, alpha));
        // f64 is never narrowed: an f64 matmul stays f64 inside a half region.
        if supported_float_dtypes::<B>(device).contains(&FloatDType::F64) {
            let f64 = FloatDType::F64;
            check!("f64 matmul", device, region: r, control: f64, [a: [4, 8] => f64, b: [8, 3] => f64], a.matmul(b));
        }
    }
}

/// Float32 ops: half inputs are cast to f32 and the output is f32.
pub fn float32_ops<B: Backend>(device: &B::Device) {
    let f32 = FloatDType::F32;
    for half in half_dtypes::<B>(device) {
        let r = Some(half);
        macro_rules! unary {
            ($($name:literal => |$t:ident| $e:expr),+ $(,)?) => {$(
                check!($name, device, region: r, control: f32, [$t: [4, 5] => half], $e);
            )+};
        }
        unary!(
            "exp" => |t| t.exp(), "log" => |t| t.log(), "log1p" => |t| t.log1p(),
            "recip" => |t| t.recip(), "tan" => |t| t.tan(), "cosh" => |t| t.cosh(),
            "sinh" => |t| t.sinh(), "acos" => |t| t.acos(), "asin" => |t| t.asin(),
            "erf" => |t| t.erf(), "powf_scalar" => |t| t.powf_scalar(1.5),
            "powi_scalar" => |t| t.powi_scalar(3), "sum" => |t| t.sum(),
            "sum_dim" => |t| t.sum_dim(1), "mean" => |t| t.mean(), "mean_dim" => |t| t.mean_dim(0),
            "prod" => |t| t.prod(), "prod_dim" => |t| t.prod_dim(1),
            "cumsum" => |t| t.cumsum(1), "cumprod" => |t| t.cumprod(1),
            "softmax" => |t| softmax(t, 1), "log_softmax" => |t| log_softmax(t, 1),
            "softmin" => |t| softmin(t, 1),
        );
        check!("powf", device, region: r, control: f32, [a: [4, 5] => half, b: [4, 5] => half], a.powf(b));
        check!("layer_norm", device, region: r, control: f32,
            [x: [4, 6] => half, g: [6] => half, b: [6] => half], layer_norm(x, g, b));
        check!("interpolate", device, region: r, control: f32, [x: [1, 2, 4, 4] => half],
            interpolate(x, [8, 8], InterpolateOptions::new(InterpolateMode::Bilinear)));
        check!("scatter_add", device, region: r, control: f32, [x: [3, 4] => half, v: [3, 2] => half], {
            let idx = index(vec![0, 3, 1, 1, 2, 0], [3, 2], &x.device());
            x.scatter(1, idx, v, IndexingUpdateOp::Add)
        });
        // Raw half scores stand in for log-probabilities: a log_softmax in front would
        // already hand the loss f32 values, and the loss's own cast would go untested.
        check!("ctc_loss", device, region: r, control: f32, [log_probs: [6, 2, 4] => half], {
            let d = log_probs.device();
            ctc_loss(log_probs, index(vec![1, 2, 3, 3], [2, 2], &d), index(vec![6, 5], [2], &d), index(vec![2, 1], [2], &d), 0)
        });
        check!("select_add", device, region: r, control: f32, [x: [4, 3] => half, v: [2, 3] => half], {
            let idx = index(vec![2, 2], [2], &x.device());
            x.select_assign(0, idx, v, IndexingUpdateOp::Add)
        });
    }
}

/// Promote ops, outside any region: for every pair of supported float dtypes the op runs
/// in the widest, with no panic, and matches a control that casts both inputs to it.
pub fn promote_ops<B: Backend>(device: &B::Device) {
    let dtypes = supported_float_dtypes::<B>(device);
    for &d1 in &dtypes {
        for &d2 in dtypes.iter().filter(|d| **d != d1) {
            let w = widest(d1, d2);
            let pair = format!("{d1:?}+{d2:?}");
            macro_rules! binary {
                ($($name:literal => |$a:ident, $b:ident| $e:expr),+ $(,)?) => {$(
                    check!(format!("{} {pair}", $name), device, region: None, control: w,
                        [$a: [4, 3] => d1, $b: [4, 3] => d2], $e);
                )+};
            }
            binary!(
                "add" => |a, b| a + b, "sub" => |a, b| a - b, "mul" => |a, b| a * b,
                "div" => |a, b| a / b, "remainder" => |a, b| a.remainder(b),
                "powf" => |a, b| a.powf(b), "atan2" => |a, b| a.atan2(b),
                "max_pair" => |a, b| a.max_pair(b), "min_pair" => |a, b| a.min_pair(b),
                "cross" => |a, b| a.cross(b, 1), "cat" => |a, b| Tensor::cat(vec![a, b], 0),
                "stack" => |a, b| Tensor::stack::<3>(vec![a, b], 0),
                "equal" => |a, b| a.equal(b), "greater" => |a, b| a.greater(b),
                "lower_equal" => |a, b| a.lower_equal(b),
                "mask_where" => |a, b| { let m = a.clone().greater_elem(0.5); a.mask_where(m, b) },
            );
            check!(format!("slice_assign {pair}"), device, region: None, control: w,
                [a: [4, 3] => d1, b: [2, 3] => d2], a.slice_assign(s![1..3, ..], b));
            check!(format!("matmul {pair}"), device, region: None, control: w,
                [a: [4, 3] => d1, b: [3, 2] => d2], a.matmul(b));
        }
    }
}
