//! 2-d average pooling: windows, strides and padding (with and without counting it),
//! floor and ceil mode (the kernels take floor mode only; ceil mode must go to Flex).

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::avg_pool2d;
use proptest::prelude::*;

use crate::layout::{Layout, inputs, operand};
use crate::oracle::{Case, Ctx, Observed};

#[derive(Clone, Debug)]
pub struct AvgPool2d {
    pub batch: usize,
    pub channels: usize,
    pub size: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub count_include_pad: bool,
    pub ceil_mode: bool,
    pub x_layout: Layout,
    pub tracked: bool,
    pub seed: u64,
}

impl Case for AvgPool2d {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed> {
        let [h, w] = self.size;
        let x = operand::<B, 4>(
            ctx,
            [self.batch, self.channels, h, w],
            self.x_layout,
            &|n| inputs(n, self.seed, 1.0, false),
            self.tracked,
            false,
            device,
        );
        let out = avg_pool2d(x.view, self.kernel, self.stride, self.padding, self.count_include_pad, self.ceil_mode);
        let mut observed = vec![Observed::new("output", out.clone())];
        if self.tracked {
            let grads = ctx.backward(out, self.seed + 1);
            observed.push(Observed::grad("x gradient", &x.leaf, &grads));
        }
        observed
    }
}

/// Small poolings (an empty batch included), padding up to half the window (larger padding is an error in PyTorch,
/// and Flex's divisor there is its own): a 2 x 2 stride-2 pool in one case of three.
pub fn avg_pool2d_case() -> impl Strategy<Value = AvgPool2d> {
    let pair = |range: core::ops::RangeInclusive<usize>| [range.clone(), range];
    let window = prop_oneof![
        1 => Just(([2, 2], [2, 2], [0, 0])),
        2 => (pair(1..=3), pair(1..=3), pair(0..=1)).prop_map(|(k, s, p)| (k, s, p)),
    ];
    let layouts = prop::sample::select(vec![Layout::Contiguous, Layout::Contiguous, Layout::Offset, Layout::Transposed]);
    (0..=3usize, 1..=4usize, pair(1..=9), window, any::<bool>(), prop::bool::weighted(0.15), layouts, any::<bool>(), any::<u64>())
        .prop_map(|(batch, channels, size, (kernel, stride, padding), count_include_pad, ceil_mode, x_layout, tracked, seed)| AvgPool2d {
            batch,
            channels,
            size,
            kernel,
            stride,
            padding,
            count_include_pad,
            ceil_mode,
            x_layout,
            tracked,
            seed: seed >> 8,
        })
        .prop_filter("padding at most half the window, and an output", |c| {
            (0..2).all(|d| 2 * c.padding[d] <= c.kernel[d] && c.size[d] + 2 * c.padding[d] >= c.kernel[d])
        })
}
