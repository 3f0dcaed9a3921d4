//! Named regression tests: the defects the properties found (and the two reported with the
//! issue that asked for them), each as its minimal case through the same oracle, plus a
//! direct assertion of what went wrong.

use burn::backend::{Autodiff, Flex};
use burn::tensor::module::linear;
use burn::tensor::{DType, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::kernels::HostKernelCalls;

use crate::kernels_support::HALVES;
use crate::layout::Layout;
use crate::oracle::{Case, Tally, check};
use crate::products::{Linear, Matmul};

fn passes<C: Case>(case: C, taken: fn(&HostKernelCalls) -> u64) {
    let mut tally = Tally::default();
    if let Err(e) = check(&case, taken, &mut tally) {
        panic!("{case:?}: {e}");
    }
    assert!(tally.taken > 0, "{case:?}: the fast path did not take it");
}

fn matmul(lhs_batch: &[usize], rhs_batch: &[usize], (m, k, n): (usize, usize, usize), tracked: [bool; 2]) -> Matmul {
    Matmul { lhs_batch: lhs_batch.to_vec(), rhs_batch: rhs_batch.to_vec(), m, k, n, layouts: [Layout::Contiguous; 2], tracked, seed: 7 }
}

/// A batch dimension of 1 broadcast over the other operand's: its gradient is summed over
/// that dimension (it came back with the output's batch size).
#[test]
fn broadcast_batch_gradients_keep_the_operands_shape() {
    let taken = |c: &HostKernelCalls| c.matmul;
    passes(matmul(&[3], &[1], (7, 16, 5), [true, true]), taken);
    passes(matmul(&[1], &[3], (7, 16, 5), [true, false]), taken);
    passes(matmul(&[2, 4], &[1, 1], (3, 6, 5), [false, true]), taken);
    passes(matmul(&[2, 1], &[1, 3], (4, 5, 6), [true, true]), taken);
    // Directly: the gradient of `b: [1, 16, 5]` under `a: [3, 7, 16]`.
    let device = Default::default();
    for dtype in HALVES {
        let a = Tensor::<Mixed<Autodiff<Flex>>, 3>::ones([3, 7, 16], &device).cast(dtype).require_grad();
        let b = Tensor::<Mixed<Autodiff<Flex>>, 3>::ones([1, 16, 5], &device).cast(dtype).require_grad();
        let grads = a.clone().matmul(b.clone()).cast(FloatDType::F32).sum().backward();
        let (ga, gb) = (a.grad(&grads).expect("a gradient"), b.grad(&grads).expect("b gradient"));
        assert_eq!((ga.dims(), gb.dims()), ([3, 7, 16], [1, 16, 5]), "{dtype:?}");
        assert_eq!(gb.dtype(), DType::from(dtype));
        // Each entry of b meets 3 batches x 7 rows of ones.
        let values = gb.cast(FloatDType::F32).into_data().to_vec::<f32>().expect("f32");
        assert!(values.iter().all(|&v| v == 21.0), "{dtype:?}: {values:?}");
    }
}

fn empty_input_linear(leading: &[usize], bias: bool, autocast: bool) -> Linear {
    Linear {
        leading: leading.to_vec(),
        d_in: 0,
        d_out: 7,
        bias,
        layouts: [Layout::Contiguous; 2],
        tracked: [true, true, bias],
        autocast,
        seed: 11,
    }
}

/// A linear layer with no input features: zero gradients of the right shapes (its
/// backward reshaped the output gradient to zero rows and panicked inside Flex).
#[test]
fn linear_without_input_features_has_zero_gradients() {
    for (leading, bias, autocast) in [(&[16][..], true, false), (&[16], false, false), (&[2, 8], true, false), (&[16], true, true)] {
        passes(empty_input_linear(leading, bias, autocast), |c| c.linear);
    }
    let device = Default::default();
    for dtype in HALVES {
        let x = Tensor::<Mixed<Autodiff<Flex>>, 2>::zeros([16, 0], &device).cast(dtype).require_grad();
        let w = Tensor::<Mixed<Autodiff<Flex>>, 2>::zeros([0, 7], &device).cast(dtype).require_grad();
        let grads = linear(x.clone(), w.clone(), None).cast(FloatDType::F32).sum().backward();
        assert_eq!(x.grad(&grads).map(|g| g.dims()), Some([16, 0]), "{dtype:?}");
        assert_eq!(w.grad(&grads).map(|g| g.dims()), Some([0, 7]), "{dtype:?}");
    }
}

/// Widening a signalling NaN gives a quiet NaN with its sign and payload, as Flex's casts
/// and IEEE 754's conversions do (bf16's widening is a shift, which kept it signalling).
#[test]
fn signalling_nans_widen_to_quiet_nans() {
    use burn::tensor::{TensorData, bf16, f16};
    use burn_mixed::kernels::with_host_kernels;
    let device = Default::default();
    let widened = |data: TensorData, dtype: DType| {
        let x = Tensor::<Mixed<Flex>, 1>::from_data(data, (&device, dtype));
        let bits =
            |t: Tensor<Mixed<Flex>, 1>| t.into_data().to_vec::<f32>().expect("f32").into_iter().map(f32::to_bits).collect::<Vec<_>>();
        (bits(x.clone().cast(FloatDType::F32)), bits(with_host_kernels(false, || x.cast(FloatDType::F32))))
    };
    // 40 values: the lanes' full group of 16, then a masked tail.
    let signalling: [u16; 4] = [0x7f81, 0xff81, 0x7fa0, 0x7f80 | 0x3f];
    let pattern = |i: usize| if i.is_multiple_of(3) { signalling[i / 3 % 4] } else { 0x3f80 + i as u16 };
    let bf16s: Vec<bf16> = (0..40).map(|i| bf16::from_bits(pattern(i))).collect();
    let (fast, flex) = widened(TensorData::new(bf16s.clone(), [40]), DType::BF16);
    assert_eq!(fast, flex, "bf16 -> f32: as Flex");
    for (i, (x, got)) in bf16s.iter().zip(&fast).enumerate() {
        let bits = u32::from(x.to_bits()) << 16;
        let want = if x.is_nan() { bits | 0x0040_0000 } else { bits };
        assert_eq!(*got, want, "#{i}: {:#06x}", x.to_bits());
    }
    let f16s: Vec<f16> = (0..40usize)
        .map(|i| f16::from_bits(if i.is_multiple_of(3) { [0x7c01, 0xfc01, 0x7d00, 0x7dff][i / 3 % 4] } else { 0x3c00 + i as u16 }))
        .collect();
    let (fast, flex) = widened(TensorData::new(f16s.clone(), [40]), DType::F16);
    assert_eq!(fast, flex, "f16 -> f32: as Flex");
    assert!(fast.iter().zip(&f16s).filter(|(_, x)| x.is_nan()).all(|(bits, _)| bits & 0x0040_0000 != 0), "quiet");
}

/// f32 values just above a tie round up, on every layout. The fast path declined strided
/// views and handed them to Flex, whose cast goes through `half`'s f64-to-bf16 conversion:
/// it drops the low 32 bits of the f64 first, so `0xc0088004` (-2.1328135) came back as
/// -2.125 instead of -2.140625.
#[test]
fn casts_round_near_ties_correctly_on_every_layout() {
    use crate::elementwise::Cast;
    use burn::tensor::TensorData;
    for layout in [Layout::Contiguous, Layout::Stepped, Layout::Offset, Layout::Flipped] {
        passes(Cast { to_half: true, len: 32_767, layout, specials: false, tracked: false, seed: 12_047_247_138_474_409 }, |c| c.cast);
    }
    let device = Default::default();
    // Every other element is the near-tie value: a strided view.
    let bits: Vec<f32> = (0..64usize).map(|i| if i.is_multiple_of(2) { f32::from_bits(0xc008_8004) } else { 1.0 }).collect();
    let x = Tensor::<Mixed<Flex>, 1>::from_data(TensorData::new(bits, [64]), &device);
    let strided = x.slice([burn::tensor::Slice::new(0, None, 2)]);
    let rounded = strided.cast(FloatDType::BF16).into_data().to_vec::<burn::tensor::bf16>().expect("bf16");
    assert!(rounded.iter().all(|v| v.to_bits() == 0xc009), "{:#06x}", rounded[0].to_bits());
}

/// Softmax's backward renormalizes the rounded probabilities: every row of the score
/// gradient sums to zero, as the exact one does (from the rounded probabilities
/// themselves, whose sum is not one, a row summed to `(1 - sum(p)) * sum(g * p)`, an
/// error of a rounding's size in every query and key gradient; the attention property's
/// minimal case had a query gradient of 9.8e-4 where the exact one is 0).
#[test]
fn softmax_backward_rows_sum_to_zero() {
    use burn::tensor::TensorPrimitive;
    use burn_mixed::kernels::HostKernels;
    let device = Default::default();
    for dtype in HALVES {
        for n in [2, 3, 17, 64] {
            let rows = 9;
            let scores = Tensor::<Flex, 2>::from_data(
                burn::tensor::TensorData::new(
                    crate::layout::inputs(rows * n, n as u64, 4.0, false).into_iter().map(|v| v as f32).collect::<Vec<_>>(),
                    [rows, n],
                ),
                &device,
            );
            let p = <Flex as HostKernels>::half_softmax((scores.into_primitive().tensor(), dtype))
                .unwrap_or_else(|_| panic!("the kernel takes f32 scores"));
            let g = Tensor::<Flex, 2>::from_data(
                burn::tensor::TensorData::new(
                    crate::layout::inputs(rows * n, 99, 1.0, false).into_iter().map(|v| v as f32).collect::<Vec<_>>(),
                    [rows, n],
                ),
                &device,
            )
            .cast(dtype);
            let out = <Flex as HostKernels>::half_softmax_backward((p, g.into_primitive().tensor()))
                .unwrap_or_else(|_| panic!("the kernel takes half rows"));
            let values = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(out)).into_data().to_vec::<f32>().expect("f32");
            // f32's own rounding of `n` terms of at most max|g| (the gradients are below 1):
            // the unnormalized rows were off by about 2^-9 |sum(g * p)|.
            let bound = 4.0 * n as f32 * f32::EPSILON;
            for row in values.chunks(n) {
                let sum = row.iter().sum::<f32>();
                assert!(sum.abs() <= bound, "{dtype:?}, n = {n}: a row sums to {sum:e} (bound {bound:e})");
            }
        }
    }
}

/// The gradient of a factor repeated over the other's rows sums products: in f32, rounded
/// once (rounding each product first was several roundings off where they cancel).
#[test]
fn repeated_factor_gradient_rounds_once() {
    use crate::elementwise::{Binary, BinaryOp};
    let case = Binary {
        op: BinaryOp::Mul,
        lhs: vec![1, 1],
        rhs: vec![3, 3],
        layouts: [Layout::Contiguous; 2],
        specials: false,
        tracked: [true, false],
        seed: 60_300_525_557_308_853,
    };
    passes(case, |c| c.binary);
}

/// A product whose empty batch dimension is broadcast: Flex's own matmul dies of a
/// segmentation fault on it (`[0, m, k] @ [1, k, n]`, every dtype), so the oracle cannot
/// run; the fast path computes it, forward and backward, and so does a linear layer with
/// an empty leading dimension (Burn broadcasts its weight that way).
#[test]
fn empty_broadcast_batches_stay_off_flex() {
    let device = Default::default();
    type A = Mixed<Autodiff<Flex>>;
    for dtype in HALVES {
        let a = Tensor::<A, 3>::ones([0, 3, 2], &device).cast(dtype).require_grad();
        let b = Tensor::<A, 3>::ones([1, 2, 4], &device).cast(dtype).require_grad();
        let out = a.clone().matmul(b.clone());
        assert_eq!(out.dims(), [0, 3, 4]);
        let grads = out.cast(FloatDType::F32).sum().backward();
        assert_eq!(a.grad(&grads).map(|g| g.dims()), Some([0, 3, 2]), "{dtype:?}");
        let gb = b.grad(&grads).expect("b gradient");
        assert_eq!((gb.dims(), gb.dtype()), ([1, 2, 4], DType::from(dtype)));
        assert_eq!(gb.cast(FloatDType::F32).into_data().to_vec::<f32>().expect("f32"), vec![0.0; 8], "{dtype:?}: nothing summed");

        let x = Tensor::<A, 3>::ones([0, 5, 3], &device).cast(dtype).require_grad();
        let w = Tensor::<A, 2>::ones([3, 4], &device).cast(dtype).require_grad();
        let grads = linear(x.clone(), w.clone(), None).cast(FloatDType::F32).sum().backward();
        assert_eq!(x.grad(&grads).map(|g| g.dims()), Some([0, 5, 3]), "{dtype:?}");
        assert_eq!(w.grad(&grads).map(|g| g.dims()), Some([3, 4]), "{dtype:?}");
    }
}
