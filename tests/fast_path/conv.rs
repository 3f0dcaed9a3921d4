//! 2-d convolutions: stride, padding, dilation, groups, with and without bias, and batches
//! that the fast path splits into several slices.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use proptest::prelude::*;

use crate::layout::{Layout, inputs, operand, tracked};
use crate::oracle::{Case, Ctx, Observed};

#[derive(Clone, Debug)]
pub struct Conv2d {
    pub batch: usize,
    pub groups: usize,
    pub in_per_group: usize,
    pub out_per_group: usize,
    pub size: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub bias: bool,
    pub x_layout: Layout,
    pub tracked: [bool; 3],
    pub seed: u64,
}

impl Case for Conv2d {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let seed = self.seed;
        let (c_in, c_out) = (self.groups * self.in_per_group, self.groups * self.out_per_group);
        let [h, w] = self.size;
        let [kh, kw] = self.kernel;
        let x =
            operand::<B, 4>(ctx, [self.batch, c_in, h, w], self.x_layout, &|n| inputs(n, seed, 1.0, false), self.tracked[0], false, device);
        let weight = operand::<B, 4>(
            ctx,
            [c_out, self.in_per_group, kh, kw],
            Layout::Contiguous,
            &|n| inputs(n, seed + 1, 1.0, false),
            self.tracked[1],
            false,
            device,
        );
        let bias = self.bias.then(|| {
            operand::<B, 1>(ctx, [c_out], Layout::Contiguous, &|n| inputs(n, seed + 2, 1.0, false), self.tracked[2], false, device)
        });
        let options = ConvOptions::new(self.stride, self.padding, self.dilation, self.groups);
        let out = conv2d(x.view, weight.view, bias.as_ref().map(|b| b.view.clone()), options);
        let mut observed = vec![Observed::new("output", out.clone())];
        if self.tracked.contains(&true) {
            let grads = ctx.backward(out, seed + 3);
            observed.push(Observed::grad("x gradient", &x.leaf, &grads));
            observed.push(Observed::grad("weight gradient", &weight.leaf, &grads));
            if let Some(bias) = &bias {
                observed.push(Observed::grad("bias gradient", &bias.leaf, &grads));
            }
        }
        observed
    }
}

/// Small convolutions mostly; one in six has 4 x 64 x 64 inputs per sample and a batch of
/// 9 to 17, which the fast path widens a few samples at a time (several slices, forward
/// and backward).
pub fn conv2d_case() -> impl Strategy<Value = Conv2d> {
    let pair = |range: core::ops::RangeInclusive<usize>| [range.clone(), range];
    let small = (1..=5usize, 1..=3usize, 1..=3usize, 1..=3usize, pair(1..=9), pair(1..=3))
        .prop_map(|(batch, groups, in_per_group, out_per_group, size, kernel)| (batch, groups, in_per_group, out_per_group, size, kernel));
    let sliced = (9..=17usize, pair(1..=3)).prop_map(|(batch, kernel)| (batch, 1, 4, 2, [64, 64], kernel));
    let shape = prop_oneof![5 => small, 1 => sliced];
    let layouts = prop::sample::select(vec![Layout::Contiguous, Layout::Contiguous, Layout::Offset, Layout::Transposed]);
    (shape, pair(1..=3), pair(0..=2), pair(1..=2), any::<bool>(), layouts, tracked::<3>(), any::<u64>())
        .prop_map(
            |((batch, groups, in_per_group, out_per_group, size, kernel), stride, padding, dilation, bias, x_layout, tracked, seed)| {
                Conv2d {
                    batch,
                    groups,
                    in_per_group,
                    out_per_group,
                    size,
                    kernel,
                    stride,
                    padding,
                    dilation,
                    bias,
                    x_layout,
                    tracked,
                    seed: seed >> 8,
                }
            },
        )
        .prop_filter("an output of at least one element per dimension", |c| {
            (0..2).all(|d| c.size[d] + 2 * c.padding[d] > c.dilation[d] * (c.kernel[d] - 1))
        })
}
