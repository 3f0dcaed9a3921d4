//! Matmul (2-d, batched, broadcast batches, every layout) and linear (with and without
//! bias, inputs of rank 1 to 4, under autocast or on half tensors).

use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::linear;
use burn_mixed::autocast::autocast;
use proptest::prelude::*;

use crate::layout::{Layout, array, at_rank, dim, inner, inputs, layout, operand, tracked};
use crate::oracle::{Case, Ctx, Observed};

/// `lhs @ rhs` with batch dimensions that may broadcast on either side.
#[derive(Clone, Debug)]
pub struct Matmul {
    pub lhs_batch: Vec<usize>,
    pub rhs_batch: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub layouts: [Layout; 2],
    pub tracked: [bool; 2],
    pub seed: u64,
}

impl Matmul {
    fn run_rank<B: AutodiffBackend, const D: usize>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let shape = |batch: &[usize], r: usize, c: usize| array::<D>(&[batch, &[r, c]].concat());
        let seed = self.seed;
        let a = operand::<B, D>(
            ctx,
            shape(&self.lhs_batch, self.m, self.k),
            self.layouts[0],
            &|n| inputs(n, seed, 1.0, false),
            self.tracked[0],
            false,
            device,
        );
        let b = operand::<B, D>(
            ctx,
            shape(&self.rhs_batch, self.k, self.n),
            self.layouts[1],
            &|n| inputs(n, seed + 1, 1.0, false),
            self.tracked[1],
            false,
            device,
        );
        let out = a.view.matmul(b.view);
        let mut observed = vec![Observed::new("output", out.clone())];
        if self.tracked.contains(&true) {
            let grads = ctx.backward(out, seed + 2);
            // A gradient summed over broadcast batches: under `Autodiff<Mixed<Flex>>` Burn's
            // backward rounds each batch's product and then their sum (on either path),
            // so one rounding per batch summed, measured normwise (the terms cancel).
            let summed = |own: &[usize], other: &[usize]| own.iter().zip(other).filter(|(a, b)| a < b).map(|(_, b)| *b).product::<usize>();
            let allowance = |g: Observed, count: usize| if count > 1 { g.within(1.0 + count as f64).normwise() } else { g };
            observed.push(allowance(Observed::grad("lhs gradient", &a.leaf, &grads), summed(&self.lhs_batch, &self.rhs_batch)));
            observed.push(allowance(Observed::grad("rhs gradient", &b.leaf, &grads), summed(&self.rhs_batch, &self.lhs_batch)));
        }
        observed
    }
}

impl Case for Matmul {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        at_rank!(self, B, ctx, device, self.lhs_batch.len() + 2, [2, 3, 4])
    }
}

/// Batch dimensions of both operands: each equal, or 1 on one side (broadcast). An empty
/// batch dimension is never broadcast: Flex 0.21's own matmul, the oracle, dies of a
/// segmentation fault on `[0, m, k] @ [1, k, n]` (in f32 as in the half dtypes).
fn batches(count: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    let one = (prop_oneof![6 => 1..=3usize, 1 => Just(0), 1 => Just(5)], 0..3u8).prop_map(|(size, side)| match side {
        _ if size == 0 => (0, 0),
        0 => (size, size),
        1 => (1, size),
        _ => (size, 1),
    });
    prop::collection::vec(one, count).prop_map(|dims| dims.into_iter().unzip())
}

pub fn matmul() -> impl Strategy<Value = Matmul> {
    (2..=4usize)
        .prop_flat_map(|rank| (batches(rank - 2), dim(), inner(), dim(), [layout(rank), layout(rank)], tracked::<2>(), any::<u64>()))
        .prop_map(|((lhs_batch, rhs_batch), m, k, n, layouts, tracked, seed)| Matmul {
            lhs_batch,
            rhs_batch,
            m,
            k,
            n,
            layouts,
            tracked,
            seed: seed >> 8,
        })
        .prop_filter("a few hundred thousand elements at most", |c| {
            let batch: usize = c.lhs_batch.iter().zip(&c.rhs_batch).map(|(a, b)| a.max(b)).product();
            batch * (c.m * c.k + c.k * c.n) <= 200_000 && batch * c.m * c.n <= 60_000
        })
}

/// `linear(x, weight, bias)` for `x` of rank 1 to 4; under autocast the inputs are f32
/// (a model's parameters) and the layer runs in the half dtype.
#[derive(Clone, Debug)]
pub struct Linear {
    pub leading: Vec<usize>,
    pub d_in: usize,
    pub d_out: usize,
    pub bias: bool,
    pub layouts: [Layout; 2],
    pub tracked: [bool; 3],
    pub autocast: bool,
    pub seed: u64,
}

impl Linear {
    fn run_rank<B: AutodiffBackend, const D: usize>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let seed = self.seed;
        let wide = self.autocast;
        let x = operand::<B, D>(
            ctx,
            array::<D>(&[&self.leading[..], &[self.d_in]].concat()),
            self.layouts[0],
            &|n| inputs(n, seed, 1.0, false),
            self.tracked[0],
            wide,
            device,
        );
        let w = operand::<B, 2>(
            ctx,
            [self.d_in, self.d_out],
            self.layouts[1],
            &|n| inputs(n, seed + 1, 1.0, false),
            self.tracked[1],
            wide,
            device,
        );
        let b = self.bias.then(|| {
            operand::<B, 1>(ctx, [self.d_out], Layout::Contiguous, &|n| inputs(n, seed + 2, 1.0, false), self.tracked[2], wide, device)
        });
        let layer = || linear(x.view.clone(), w.view.clone(), b.as_ref().map(|b| b.view.clone()));
        let out: Tensor<B, D> = match self.autocast && !ctx.is_reference() {
            true => autocast::<B, _>(device, ctx.half, layer).expect("Flex runs both half dtypes"),
            false => layer(),
        };
        let mut observed = vec![Observed::new("output", out.clone())];
        if self.tracked.contains(&true) {
            let grads = ctx.backward(out, seed + 3);
            observed.push(Observed::grad("x gradient", &x.leaf, &grads));
            observed.push(Observed::grad("weight gradient", &w.leaf, &grads));
            if let Some(b) = &b {
                observed.push(Observed::grad("bias gradient", &b.leaf, &grads));
            }
        }
        observed
    }
}

impl Case for Linear {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        at_rank!(self, B, ctx, device, self.leading.len() + 1, [1, 2, 3, 4])
    }
}

pub fn linear_layer() -> impl Strategy<Value = Linear> {
    let leading = prop::collection::vec(prop_oneof![4 => 1..=4usize, 1 => Just(0), 2 => Just(16), 1 => Just(33)], 0..=3);
    let weight_layout = prop::sample::select(vec![Layout::Contiguous, Layout::Contiguous, Layout::Transposed, Layout::Offset]);
    (leading, inner(), dim(), any::<bool>(), weight_layout, tracked::<3>(), any::<bool>(), any::<u64>())
        .prop_flat_map(|(leading, d_in, d_out, bias, w_layout, tracked, autocast, seed)| {
            let x_layout = layout(leading.len() + 1);
            (Just((leading, d_in, d_out, bias, w_layout, tracked, autocast, seed)), x_layout)
        })
        .prop_map(|((leading, d_in, d_out, bias, w_layout, tracked, autocast, seed), x_layout)| Linear {
            leading,
            d_in,
            d_out,
            bias,
            layouts: [x_layout, w_layout],
            tracked,
            autocast,
            seed: seed >> 8,
        })
        // Burn's linear multiplies a 3-d or 4-d input by the weight broadcast to
        // `[1, .., d_in, d_out]`: with an empty leading dimension that is the broadcast
        // Flex's own matmul crashes on (see `batches`).
        .prop_filter("no empty leading dimension above rank 2", |c| c.leading.len() < 2 || !c.leading.contains(&0))
        .prop_filter("a few hundred thousand elements at most", |c| {
            let rows: usize = c.leading.iter().product();
            rows * c.d_in + c.d_in * c.d_out <= 200_000 && rows * c.d_out <= 60_000
        })
}
