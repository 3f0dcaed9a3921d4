//! Row ops: attention (its two products and the softmax kernel between them, with masks,
//! bias, causal masking, scale and softcap) and layer norm over the last dimension.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor, TensorData, TensorPrimitive};
use proptest::prelude::*;

use crate::layout::{Layout, array, at_rank, inputs, layout, operand, tracked};
use crate::oracle::{Case, Ctx, Observed};

/// `attention(q, k, v)` on `[batch, heads, seq, head_dim]` inputs.
#[derive(Clone, Debug)]
pub struct Attention {
    pub batch: usize,
    pub heads: usize,
    pub q_len: usize,
    pub k_len: usize,
    pub head_dim: usize,
    pub value_dim: usize,
    /// Each score masked with this probability (in 1/8ths): rows may be masked whole.
    pub mask_eighths: Option<u8>,
    pub bias: bool,
    pub causal: bool,
    pub scale: Option<f64>,
    pub softcap: Option<f64>,
    pub tracked: [bool; 3],
    pub seed: u64,
}

impl Case for Attention {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let seed = self.seed;
        let (b, h) = (self.batch, self.heads);
        // Queries and keys in {-1, -1/2, 0, 1/2, 1}: every score `q . k` (at most 33 terms)
        // is a multiple of 1/4 below 2^6 in magnitude, exact in both half dtypes. The
        // design rounds the first product to the half dtype (as PyTorch's autocast does);
        // with exact scores, what is measured is the rest: the softmax kernel, the
        // probabilities' one rounding and the second product.
        let halves = |n: usize, i: u64| inputs(n, seed + i, 1.0, false).into_iter().map(|x| (x * 2.0).round() / 2.0).collect();
        let input = |shape: [usize; 4], tracked: bool, values: &dyn Fn(usize) -> Vec<f64>| {
            operand::<B, 4>(ctx, shape, Layout::Contiguous, values, tracked, false, device)
        };
        let q = input([b, h, self.q_len, self.head_dim], self.tracked[0], &|n| halves(n, 0));
        let k = input([b, h, self.k_len, self.head_dim], self.tracked[1], &|n| halves(n, 1));
        let v = input([b, h, self.k_len, self.value_dim], self.tracked[2], &|n| inputs(n, seed + 2, 2.0, false));
        let scores = [b, h, self.q_len, self.k_len];
        let mask = self.mask_eighths.map(|eighths| {
            let draws = inputs(scores.iter().product(), seed + 3, 1.0, false);
            let masked: Vec<bool> = draws.iter().map(|d| (d + 1.0) * 4.0 < f64::from(eighths)).collect();
            Tensor::<B, 4, Bool>::from_data(TensorData::new(masked, scores), device)
        });
        let bias = self.bias.then(|| ctx.input::<B, 4>(&inputs(scores.iter().product(), seed + 4, 1.0, false), scores, device));
        let options = AttentionModuleOptions { scale: self.scale, softcap: self.softcap, is_causal: self.causal };
        let out = attention(q.view, k.view, v.view, mask, bias, options);
        let bounds = self.term_bounds(seed);
        // Each result sums terms that cancel; the design rounds some terms to the half
        // dtype, so the allowance is in roundings at the terms' magnitude (bounds derived
        // in `term_bounds`). The output: each probability rounded (at most one rounding at
        // the values' magnitude in all), then the output itself.
        let mut observed = vec![Observed::new("output", out.clone()).within(2.0).at_scale(bounds.values)];
        if self.tracked.contains(&true) {
            let grads = ctx.backward(out, seed + 5);
            // The query and key gradients sum `dS * k` and `dS * q`, with the score gradient
            // `dS` rounded to the half dtype for the first product's backward (as PyTorch's
            // autocast does), from `dP` rounded by the second product's: a rounding of each
            // at the terms' magnitude, and the result's own.
            observed.push(Observed::grad("q gradient", &q.leaf, &grads).within(4.0).at_scale(bounds.query_grad));
            observed.push(Observed::grad("k gradient", &k.leaf, &grads).within(4.0).at_scale(bounds.key_grad));
            // The value gradient sums `p * dO` with each probability rounded.
            observed.push(Observed::grad("v gradient", &v.leaf, &grads).within(2.0).at_scale(bounds.value_grad));
        }
        observed
    }
}

/// Bounds on the magnitude of the terms each attention result sums (the scale its
/// roundings are measured at).
struct TermBounds {
    /// The output sums `p_j v_j` with `sum p_j <= 1`: at most the largest value.
    values: f64,
    /// `dQ_i = scale sum_j dS_ij k_j` with `|dS_ij| <= 2 p_ij max|dP|`.
    query_grad: f64,
    /// `dK_j = scale sum_i dS_ij q_i`: as `dQ`, over at most `q_len` rows.
    key_grad: f64,
    /// `dV_j = sum_i p_ij dO_i`: at most `q_len` times the largest output gradient.
    value_grad: f64,
}

impl Attention {
    /// The bounds for this case's inputs and output gradient (the probe `Ctx::backward`
    /// draws from `seed + 5`): `max|dP|` over every `dP_ij = dO_i . v_j`, in f64.
    fn term_bounds(&self, seed: u64) -> TermBounds {
        let (bh, dv) = (self.batch * self.heads, self.value_dim);
        let largest = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let v = inputs(bh * self.k_len * dv, seed + 2, 2.0, false);
        let probe = crate::kernels_support::values(bh * self.q_len * dv, seed + 5, burn::tensor::FloatDType::F32);
        let mut dp_max = 0.0f64;
        for g in 0..bh {
            for i in 0..self.q_len {
                for j in 0..self.k_len {
                    let dot: f64 = (0..dv).map(|d| probe[(g * self.q_len + i) * dv + d] * v[(g * self.k_len + j) * dv + d]).sum();
                    dp_max = dp_max.max(dot.abs());
                }
            }
        }
        let scale = self.scale.unwrap_or(1.0 / (self.head_dim as f64).sqrt());
        // Queries and keys are at most 1 in magnitude.
        let query_grad = 2.0 * scale * dp_max;
        TermBounds {
            values: largest(&v),
            query_grad,
            key_grad: query_grad * self.q_len as f64,
            value_grad: largest(&probe) * self.q_len as f64,
        }
    }
}

pub fn attention_case() -> impl Strategy<Value = Attention> {
    let seq = prop_oneof![3 => 1..=9usize, 1 => prop::sample::select(vec![16, 17, 33, 64])];
    let head = prop_oneof![3 => 1..=8usize, 1 => prop::sample::select(vec![16, 32, 33])];
    let mask = prop_oneof![2 => Just(None), 1 => (1..=7u8).prop_map(Some)];
    let scale = prop_oneof![3 => Just(None), 1 => (1..=20u32).prop_map(|s| Some(f64::from(s) / 10.0))];
    let softcap = prop_oneof![4 => Just(None), 1 => (1..=50u32).prop_map(|s| Some(f64::from(s) / 10.0))];
    (
        ((1..=2usize, 1..=3usize, seq.clone(), seq), (head.clone(), head)),
        (mask, any::<bool>(), any::<bool>(), scale, softcap),
        (tracked::<3>(), any::<u64>()),
    )
        .prop_map(
            |(((batch, heads, q_len, k_len), (head_dim, value_dim)), (mask_eighths, bias, causal, scale, softcap), (tracked, seed))| {
                Attention {
                    batch,
                    heads,
                    q_len,
                    k_len,
                    head_dim,
                    value_dim,
                    mask_eighths,
                    bias,
                    causal,
                    scale,
                    softcap,
                    tracked,
                    seed: seed >> 8,
                }
            },
        )
}

/// `layer_norm(x, gamma, beta)` over the last dimension, as Burn's `LayerNorm` calls it.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub leading: Vec<usize>,
    pub n: usize,
    pub beta: bool,
    pub epsilon: f64,
    /// Each row's offset from zero, in units of its spread (centring matters).
    pub offset: f64,
    pub layout: Layout,
    pub tracked: [bool; 3],
    pub seed: u64,
}

impl LayerNorm {
    fn run_rank<B: AutodiffBackend, const D: usize>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let (seed, offset) = (self.seed, self.offset);
        let x_values = |n: usize| inputs(n, seed, 1.0, false).into_iter().map(|v| v + offset).collect();
        let x = operand::<B, D>(
            ctx,
            array::<D>(&[&self.leading[..], &[self.n]].concat()),
            self.layout,
            &x_values,
            self.tracked[0],
            false,
            device,
        );
        let gamma = operand::<B, 1>(
            ctx,
            [self.n],
            Layout::Contiguous,
            &|n| inputs(n, seed + 1, 0.5, false).into_iter().map(|v| v + 1.0).collect(),
            self.tracked[1],
            false,
            device,
        );
        let beta = self.beta.then(|| {
            operand::<B, 1>(ctx, [self.n], Layout::Contiguous, &|n| inputs(n, seed + 2, 1.0, false), self.tracked[2], false, device)
        });
        let primitive = |t: Tensor<B, D>| t.into_primitive().tensor();
        let out = B::layer_norm(
            primitive(x.view),
            gamma.view.into_primitive().tensor(),
            beta.as_ref().map(|b| b.view.clone().into_primitive().tensor()),
            self.epsilon,
        );
        let out = Tensor::<B, D>::from_primitive(TensorPrimitive::Float(out));
        // Flex's own layer norm for half tensors: its f32 one, rounded once.
        let mut observed = vec![Observed::new("output", out.clone())];
        if self.tracked.contains(&true) {
            let grads = ctx.backward(out, seed + 3);
            observed.push(Observed::grad("x gradient", &x.leaf, &grads));
            observed.push(Observed::grad("gamma gradient", &gamma.leaf, &grads));
            if let Some(beta) = &beta {
                observed.push(Observed::grad("beta gradient", &beta.leaf, &grads));
            }
        }
        observed
    }
}

impl Case for LayerNorm {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        at_rank!(self, B, ctx, device, self.leading.len() + 1, [1, 2, 3])
    }
}

pub fn layer_norm() -> impl Strategy<Value = LayerNorm> {
    let leading = prop::collection::vec(prop_oneof![4 => 1..=5usize, 1 => Just(0), 1 => Just(17)], 0..=2);
    let n = prop_oneof![4 => 1..=9usize, 3 => prop::sample::select(vec![16, 17, 31, 64, 127, 256, 1031])];
    let epsilon = prop::sample::select(vec![1e-5, 1e-6, 1e-3, 0.1]);
    let offset = prop::sample::select(vec![0.0, 0.5, -3.0, 20.0]);
    (leading, n, any::<bool>(), epsilon, offset, tracked::<3>(), any::<u64>())
        .prop_flat_map(|(leading, n, beta, epsilon, offset, tracked, seed)| {
            let rank = leading.len() + 1;
            (Just((leading, n, beta, epsilon, offset, tracked, seed)), layout(rank))
        })
        .prop_map(|((leading, n, beta, epsilon, offset, tracked, seed), layout)| LayerNorm {
            leading,
            n,
            beta,
            epsilon,
            offset,
            layout,
            tracked,
            seed: seed >> 8,
        })
}
