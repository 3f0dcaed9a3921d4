//! Element-wise ops: add and mul under every broadcast, relu and gelu, and the casts
//! between f32 and the half dtypes, on sizes around the lane width and the thread split,
//! with special values.

use burn::tensor::activation::{gelu, relu};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{FloatDType, Tensor};
use proptest::prelude::*;

use crate::layout::{Layout, array, at_rank, inputs, operand, tracked};
use crate::oracle::{Case, Ctx, Observed};

/// Sizes of one dimension of an element-wise op: the lane width's neighbours, and sizes
/// past the thread split (2^15 elements) when the others are small.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 1..=5usize, 1 => Just(0), 3 => prop::sample::select(vec![15, 16, 17, 31, 33, 127]), 1 => prop::sample::select(vec![1024, 16_385, 32_769])]
}

fn small_enough(dims: &[usize]) -> bool {
    dims.iter().product::<usize>() <= 70_000
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Mul,
}

/// `lhs + rhs` or `lhs * rhs`, each dimension equal or broadcast from either side.
#[derive(Clone, Debug)]
pub struct Binary {
    pub op: BinaryOp,
    pub lhs: Vec<usize>,
    pub rhs: Vec<usize>,
    pub layouts: [Layout; 2],
    pub specials: bool,
    pub tracked: [bool; 2],
    pub seed: u64,
}

impl Binary {
    fn run_rank<B: AutodiffBackend, const D: usize>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let (seed, specials) = (self.seed, self.specials);
        let a = operand::<B, D>(
            ctx,
            array::<D>(&self.lhs),
            self.layouts[0],
            &|n| inputs(n, seed, 2.0, specials),
            self.tracked[0],
            false,
            device,
        );
        let b = operand::<B, D>(
            ctx,
            array::<D>(&self.rhs),
            self.layouts[1],
            &|n| inputs(n, seed + 1, 2.0, specials),
            self.tracked[1],
            false,
            device,
        );
        let out = match self.op {
            BinaryOp::Add => a.view + b.view,
            BinaryOp::Mul => a.view * b.view,
        };
        let mut observed = vec![Observed::new("output", out.clone()).exact()];
        if self.tracked.contains(&true) {
            let grads = ctx.backward(out, seed + 2);
            observed.push(Observed::grad("lhs gradient", &a.leaf, &grads));
            observed.push(Observed::grad("rhs gradient", &b.leaf, &grads));
        }
        observed
    }
}

impl Case for Binary {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        at_rank!(self, B, ctx, device, self.lhs.len(), [1, 2, 3, 4])
    }
}

pub fn binary() -> impl Strategy<Value = Binary> {
    let op = prop::sample::select(vec![BinaryOp::Add, BinaryOp::Mul]);
    let one = (size(), 0..4u8).prop_map(|(size, side)| match side {
        0 | 1 => (size, size),
        2 => (1, size),
        _ => (size, 1),
    });
    let layouts = prop::sample::select(vec![Layout::Contiguous, Layout::Contiguous, Layout::Contiguous, Layout::Offset, Layout::Flipped]);
    (op, prop::collection::vec(one, 1..=4), [layouts.clone(), layouts], any::<bool>(), tracked::<2>(), any::<u64>())
        .prop_map(|(op, dims, layouts, specials, tracked, seed)| {
            let (lhs, rhs) = dims.into_iter().unzip();
            Binary { op, lhs, rhs, layouts, specials, tracked, seed: seed >> 8 }
        })
        .prop_filter("at most 70,000 elements", |c| small_enough(&c.lhs.iter().zip(&c.rhs).map(|(a, b)| *a.max(b)).collect::<Vec<_>>()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Relu,
    Gelu,
}

/// `relu(x)` or `gelu(x)`; with `shared`, the input is also held elsewhere and read back
/// after the backward pass (relu may run in place only on a tensor nothing else holds).
#[derive(Clone, Debug)]
pub struct Unary {
    pub op: UnaryOp,
    pub shape: Vec<usize>,
    pub layout: Layout,
    pub specials: bool,
    pub tracked: bool,
    pub shared: bool,
    pub seed: u64,
}

impl Unary {
    fn run_rank<B: AutodiffBackend, const D: usize>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let (seed, specials) = (self.seed, self.specials);
        let x =
            operand::<B, D>(ctx, array::<D>(&self.shape), self.layout, &|n| inputs(n, seed, 4.0, specials), self.tracked, false, device);
        let kept = self.shared.then(|| x.view.clone());
        let out = match self.op {
            UnaryOp::Relu => relu(x.view),
            UnaryOp::Gelu => gelu(x.view),
        };
        // Flex computes both in f32 between exact conversions: the same values.
        let mut observed = vec![Observed::new("output", out.clone()).exact()];
        if self.tracked {
            let grads = ctx.backward(out, seed + 1);
            let grad = Observed::grad("x gradient", &x.leaf, &grads);
            observed.push(if self.op == UnaryOp::Relu { grad.exact() } else { grad });
        }
        if let Some(kept) = kept {
            observed.push(Observed::new("input, read after", kept).exact());
        }
        observed
    }
}

impl Case for Unary {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        at_rank!(self, B, ctx, device, self.shape.len(), [1, 2, 3])
    }
}

pub fn unary() -> impl Strategy<Value = Unary> {
    let op = prop::sample::select(vec![UnaryOp::Relu, UnaryOp::Gelu]);
    let layout = prop::sample::select(vec![Layout::Contiguous, Layout::Contiguous, Layout::Offset, Layout::Flipped]);
    (op, prop::collection::vec(size(), 1..=3), layout, any::<bool>(), any::<bool>(), any::<bool>(), any::<u64>())
        .prop_map(|(op, shape, layout, specials, tracked, shared, seed)| Unary {
            op,
            shape,
            layout,
            specials,
            tracked,
            shared,
            seed: seed >> 8,
        })
        .prop_filter("at most 70,000 elements", |c| small_enough(&c.shape))
}

/// A cast from f32 to the half dtype (values not representable in it: every rounding
/// case) or from the half dtype to f32.
#[derive(Clone, Debug)]
pub struct Cast {
    pub to_half: bool,
    pub len: usize,
    pub layout: Layout,
    pub specials: bool,
    pub tracked: bool,
    pub seed: u64,
}

impl Case for Cast {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let (seed, specials) = (self.seed, self.specials);
        // Values with more bits than the half dtype keeps: the cast rounds them.
        let raw = |n| inputs(n, seed, 3.0, specials).into_iter().map(|v| (v as f32) as f64).collect();
        let (x, out): (_, Tensor<B, 1>) = if self.to_half {
            let unrounded = Ctx { half: FloatDType::F32, ..ctx };
            let x = operand::<B, 1>(unrounded, [self.len], self.layout, &raw, self.tracked, true, device);
            let target = if ctx.is_reference() { FloatDType::F64 } else { ctx.half };
            (x.leaf, x.view.cast(target))
        } else {
            let x = operand::<B, 1>(ctx, [self.len], self.layout, &raw, self.tracked, false, device);
            (x.leaf, x.view.cast(ctx.wide()))
        };
        // Widening is exact (bit for bit as Flex); narrowing is checked against the
        // correctly rounded value, not against Flex: Flex casts through f64 with `half`'s
        // f64-to-bf16 conversion, which drops the low 32 bits of the f64 before rounding
        // and so misrounds f32 values just above a tie (found here; see `regressions`).
        let output = Observed::new("output", out.clone());
        let mut observed = vec![if self.to_half { output.correctly_rounded() } else { output.exact() }];
        if self.tracked {
            let grads = ctx.backward(out, seed + 1);
            observed.push(Observed::grad("x gradient", &x, &grads).exact());
        }
        observed
    }
}

pub fn cast() -> impl Strategy<Value = Cast> {
    let len = prop_oneof![
        4 => prop::sample::select(vec![0, 1, 15, 16, 17, 31, 32, 33, 255, 1023, 1024, 1025]),
        2 => prop::sample::select(vec![32_767, 32_768, 32_769, 65_537]),
        2 => 1..=300usize
    ];
    let layout = prop::sample::select(vec![Layout::Contiguous, Layout::Contiguous, Layout::Offset, Layout::Stepped, Layout::Flipped]);
    (any::<bool>(), len, layout, any::<bool>(), any::<bool>(), any::<u64>())
        .prop_map(|(to_half, len, layout, specials, tracked, seed)| Cast { to_half, len, layout, specials, tracked, seed: seed >> 8 })
}
