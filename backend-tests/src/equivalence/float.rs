//! Float tensor ops, part one: creation (seeded random included), arithmetic, unary math,
//! and dtypes (casts, and a few ops run in every float dtype the backend supports).

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, FloatDType, IntDType, Scalar, Tensor, TensorData};

use crate::support::{
    Outputs, equivalent, float_primitive, float_tensor, from_float_primitive, int_tensor, rng_lock, supported_float_dtypes,
    supported_int_dtypes,
};

/// Records `$x.clone().$op()` under the op's name, for each listed no-argument op.
macro_rules! record_each {
    ($out:ident, $x:expr, [$($op:ident),* $(,)?]) => {
        $( $out.push(stringify!($op), $x.clone().$op()); )*
    };
}

/// zeros / ones / full / eye / from_data in every supported dtype, `empty`'s metadata,
/// and seeded random draws from every distribution.
pub fn float_creation<B: Backend>(device: &B::Device) {
    equivalent!("float_creation", device, creation::<B>());
}

fn creation<B: Backend>(device: &B::Device, out: &mut Outputs) {
    out.push("zeros", Tensor::<B, 2>::zeros([4, 5], device));
    out.push("ones", Tensor::<B, 2>::ones([4, 5], device));
    out.push("full", Tensor::<B, 2>::full([4, 5], 2.5, device));
    out.push("eye", Tensor::<B, 2>::eye(4, device));
    out.push("from_floats", Tensor::<B, 1>::from_floats([1.0, -2.0, 3.5], device));
    let x = float_tensor::<B, 2>(device, [4, 5], 1, -2.0, 2.0);
    out.push("from_data", x.clone());
    out.push("zeros_like", x.zeros_like());
    out.push("ones_like", x.ones_like());
    out.push("full_like", x.full_like(-0.75));
    out.push("to_device (same device)", x.clone().to_device(device));
    out.push("detach (no autodiff)", x.clone().detach());
    out.push("set_require_grad (no autodiff)", x.clone().set_require_grad(true));
    assert_eq!(x.device(), *device, "tensors report the device they were made on");
    // `empty` leaves the values unspecified: only its metadata can be compared.
    let empty = Tensor::<B, 3>::empty([2, 3, 4], device);
    out.push_value("empty dtype is the default float dtype", (empty.dtype() == x.dtype()) as i64);
    out.push_data("empty dims", TensorData::new(empty.dims().map(|d| d as i64).to_vec(), [3]));

    for dtype in supported_float_dtypes::<B>(device) {
        let options = (device, DType::from(dtype));
        out.push(format!("zeros {dtype:?}"), Tensor::<B, 2>::zeros([3, 2], options));
        out.push(format!("ones {dtype:?}"), Tensor::<B, 2>::ones([3, 2], options));
        out.push(format!("full {dtype:?}"), Tensor::<B, 2>::full([3, 2], 0.1, options));
        let data = crate::support::uniform([3, 2], 5, -1.0, 1.0);
        out.push(format!("from_data {dtype:?}"), Tensor::<B, 2>::from_data(data, options));
    }

    // The seed and the draws that follow it must not interleave with another thread's.
    let _rng = rng_lock();
    let distributions =
        [Distribution::Default, Distribution::Uniform(-3.0, 2.0), Distribution::Normal(0.5, 2.0), Distribution::Bernoulli(0.3)];
    for (i, distribution) in distributions.into_iter().enumerate() {
        B::seed(device, 40 + i as u64);
        out.push(format!("random {distribution:?}"), Tensor::<B, 2>::random([8, 8], distribution, device));
    }
    B::seed(device, 7);
    out.push("first draw after seed", Tensor::<B, 1>::random([16], Distribution::Default, device));
    out.push("second draw after seed", Tensor::<B, 1>::random([16], Distribution::Default, device));
    out.push("random_like", x.random_like(Distribution::Uniform(0.0, 1.0)));
    B::seed(device, 8);
    out.push("int random", Tensor::<B, 2, burn::tensor::Int>::random([4, 5], Distribution::Uniform(0.0, 10.0), device));
}

/// Tensor-tensor, broadcast and tensor-scalar arithmetic, powers and matmul.
pub fn float_arithmetic<B: Backend>(device: &B::Device) {
    equivalent!("float_arithmetic", device, arithmetic::<B>());
}

fn arithmetic<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let x = float_tensor::<B, 2>(device, [4, 5], 1, -2.0, 2.0);
    let y = float_tensor::<B, 2>(device, [4, 5], 2, -2.0, 2.0);
    let pos = float_tensor::<B, 2>(device, [4, 5], 3, 0.5, 2.0);
    let row = float_tensor::<B, 2>(device, [1, 5], 4, 0.5, 2.0);
    let col = float_tensor::<B, 2>(device, [4, 1], 5, 0.5, 2.0);

    out.push("add", x.clone().add(y.clone()));
    out.push("sub", x.clone().sub(y.clone()));
    out.push("mul", x.clone().mul(y.clone()));
    out.push("div", x.clone().div(pos.clone()));
    out.push("remainder", x.clone().remainder(pos.clone()));
    out.push("fmod", x.clone().fmod(pos.clone()));
    out.push("add row broadcast", x.clone() + row.clone());
    out.push("sub column broadcast", x.clone() - col.clone());
    out.push("mul row broadcast", x.clone() * row.clone());
    out.push("div column broadcast", x.clone() / col.clone());
    out.push("add_scalar", x.clone().add_scalar(1.25));
    out.push("sub_scalar", x.clone().sub_scalar(0.3));
    out.push("mul_scalar", x.clone().mul_scalar(-3.0));
    out.push("div_scalar", x.clone().div_scalar(7.0));
    out.push("remainder_scalar", x.clone().remainder_scalar(0.7));
    out.push("fmod_scalar", x.clone().fmod_scalar(0.7));
    out.push("scalar operators", (x.clone() + 2.0) * 0.5 - 1.0);
    out.push("neg", -x.clone());
    out.push("max_pair", x.clone().max_pair(y.clone()));
    out.push("min_pair", x.clone().min_pair(y.clone()));
    out.push("atan2", x.clone().atan2(y.clone()));
    out.push("powf", pos.clone().powf(y.clone()));
    out.push("powf broadcast", pos.clone().powf(row.clone()));
    out.push("powf_scalar", pos.clone().powf_scalar(1.7));
    out.push("powi (float exponents)", x.clone().powi(y.clone().round()));
    out.push("powi_scalar", x.clone().powi_scalar(3));
    out.push("powi_scalar negative", pos.clone().powi_scalar(-2));
    let exponents = int_tensor::<B, 2>(device, [4, 5], 6, -2, 4);
    let powi = B::float_powi(float_primitive(pos.clone()), exponents.into_primitive());
    out.push("float_powi (int exponents)", from_float_primitive::<B, 2>(powi));
    // The `_impl` variants are what the default `powi_scalar` / `powf_scalar` fall back on;
    // a backend may override either level, so both are called directly.
    let powi = B::float_powi_scalar_impl(float_primitive(x.clone()), Scalar::from(3i64));
    out.push("float_powi_scalar_impl", from_float_primitive::<B, 2>(powi));
    let powf = B::float_powf_scalar_impl(float_primitive(pos.clone()), Scalar::from(0.75f64));
    out.push("float_powf_scalar_impl", from_float_primitive::<B, 2>(powf));
    out.push("square", x.clone().square());
    let a = float_tensor::<B, 3>(device, [4, 3, 2], 7, -1.0, 1.0);
    let b = float_tensor::<B, 3>(device, [4, 3, 2], 8, -1.0, 1.0);
    out.push("cross", a.cross(b, 1));

    let w = float_tensor::<B, 2>(device, [5, 3], 9, -1.0, 1.0);
    out.push("matmul", x.clone().matmul(w.clone()));
    let lhs = float_tensor::<B, 3>(device, [2, 4, 5], 10, -1.0, 1.0);
    let rhs = float_tensor::<B, 3>(device, [2, 5, 3], 11, -1.0, 1.0);
    out.push("batched matmul", lhs.clone().matmul(rhs));
    out.push("broadcast matmul", lhs.matmul(w.clone().unsqueeze::<3>()));
    let v = float_tensor::<B, 1>(device, [5], 12, -1.0, 1.0);
    let u = float_tensor::<B, 1>(device, [5], 13, -1.0, 1.0);
    out.push("dot", v.dot(u));
    let big_a = float_tensor::<B, 2>(device, [16, 32], 14, -1.0, 1.0);
    let big_b = float_tensor::<B, 2>(device, [32, 24], 15, -1.0, 1.0);
    out.push("matmul 16x32x24", big_a.matmul(big_b));
}

/// Every unary float op, on inputs inside its domain, plus NaN, infinities and signed
/// zeros through the ops that must propagate them.
pub fn float_unary_math<B: Backend>(device: &B::Device) {
    equivalent!("float_unary_math", device, unary::<B>());
}

fn unary<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let x = float_tensor::<B, 2>(device, [4, 5], 21, -2.0, 2.0);
    let pos = float_tensor::<B, 2>(device, [4, 5], 22, 0.1, 3.0);
    let unit = float_tensor::<B, 2>(device, [4, 5], 23, -0.95, 0.95);
    let above_one = float_tensor::<B, 2>(device, [4, 5], 24, 1.1, 4.0);

    record_each!(
        out,
        x,
        [exp, abs, sin, cos, tan, tanh, sinh, cosh, asinh, atan, erf, square, round, floor, ceil, trunc, sign, neg, deg2rad, rad2deg,]
    );
    record_each!(out, pos, [log, log1p, sqrt, recip]);
    out.push("acos", unit.clone().acos());
    out.push("asin", unit.clone().asin());
    out.push("atanh", unit.clone().atanh());
    out.push("acosh", above_one.acosh());
    out.push("clamp", x.clone().clamp(-0.5, 0.75));
    out.push("clamp_min", x.clone().clamp_min(-0.25));
    out.push("clamp_max", x.clone().clamp_max(0.25));
    out.push("powf_scalar 2.5", pos.clone().powf_scalar(2.5));
    out.push("powf_scalar -0.5", pos.clone().powf_scalar(-0.5));
    out.push("powi_scalar 2", x.clone().powi_scalar(2));
    out.push("powi_scalar 3", x.clone().powi_scalar(3));
    out.push("powi_scalar -1", pos.clone().powi_scalar(-1));
    out.push("exp then log", x.clone().exp().log());

    // Halves check the rounding mode (round half to even) along with everything else.
    let halves = Tensor::<B, 1>::from_floats([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.49, -3.51], device);
    record_each!(out, halves, [round, floor, ceil, trunc, sign]);

    let special = Tensor::<B, 1>::from_floats([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-30, 1e30, -1.0], device);
    out.push("is_nan", special.clone().is_nan());
    out.push("is_inf", special.clone().is_inf());
    out.push("is_finite", special.clone().is_finite());
    out.push("contains_nan", special.clone().contains_nan());
    out.push("contains_nan (none)", x.clone().contains_nan());
    record_each!(out, special, [exp, log, sqrt, recip, abs, sign, neg, tanh, round]);
    out.push("special add_scalar", special.clone().add_scalar(1.0));
    out.push("special mul_scalar", special.mul_scalar(0.0));
}

/// Casts between every pair of supported float dtypes, float to int casts, and a few ops
/// run in each supported float dtype (Mixed's dtype hooks must stay inert on uniform
/// inputs outside an autocast region).
pub fn float_dtypes<B: Backend>(device: &B::Device) {
    equivalent!("float_dtypes", device, dtypes::<B>());
}

fn dtypes<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let x = float_tensor::<B, 2>(device, [4, 5], 31, -3.0, 3.0);
    let y = float_tensor::<B, 2>(device, [5, 4], 32, -1.0, 1.0);
    let float_dtypes = supported_float_dtypes::<B>(device);
    assert!(float_dtypes.contains(&FloatDType::F32), "every backend computes in f32");

    for &from in &float_dtypes {
        let source = x.clone().cast(from);
        out.push(format!("cast f32 -> {from:?}"), source.clone());
        for &to in &float_dtypes {
            out.push(format!("cast {from:?} -> {to:?}"), source.clone().cast(to));
        }
        let other = y.clone().cast(from);
        out.push(format!("{from:?} add"), source.clone().add(source.clone()));
        out.push(format!("{from:?} mul_scalar"), source.clone().mul_scalar(0.5));
        out.push(format!("{from:?} matmul"), source.clone().matmul(other));
        out.push(format!("{from:?} exp"), source.clone().exp());
        out.push(format!("{from:?} sum"), source.clone().sum());
        out.push(format!("{from:?} mean_dim"), source.clone().mean_dim(1));
        out.push(format!("{from:?} softmax"), burn::tensor::activation::softmax(source.clone(), 1));
        out.push(format!("{from:?} greater_elem"), source.clone().greater_elem(0.5));
        out.push(format!("{from:?} into int"), source.int());
    }
    for dtype in supported_int_dtypes::<B>(device) {
        if matches!(dtype, IntDType::U8) {
            // Negative floats have no unsigned value; casting them is not an equivalence test.
            continue;
        }
        out.push(format!("float -> {dtype:?}"), x.clone().cast(dtype));
    }
    let doubles = TensorData::new(vec![0.1f64, -2.75, 1e-8, 3.0e5], [2, 2]);
    out.push("f64 data into the default dtype", Tensor::<B, 2>::from_data(doubles, device));
}
