//! Module ops: convolutions (plain, transposed, deformable), pooling (with indices too),
//! interpolation, grid sampling, embedding, linear, attention, layer norm, CTC loss and
//! the real FFT.

use burn::nn::LayerNormConfig;
use burn::tensor::backend::Backend;
use burn::tensor::module::{
    adaptive_avg_pool1d, adaptive_avg_pool2d, attention, avg_pool1d, avg_pool2d, conv_transpose1d, conv_transpose2d, conv_transpose3d,
    conv1d, conv2d, conv3d, ctc_loss, deform_conv2d, embedding, interpolate, linear, max_pool1d, max_pool1d_with_indices, max_pool2d,
    max_pool2d_with_indices, unfold4d,
};
use burn::tensor::ops::{
    AttentionModuleOptions, ConvOptions, ConvTransposeOptions, DeformConvOptions, GridSampleOptions, GridSamplePaddingMode,
    InterpolateMode, InterpolateOptions, UnfoldOptions,
};
use burn::tensor::signal::{irfft, rfft};
use burn::tensor::{Int, Tensor, TensorData};

use crate::support::{Outputs, bare_supports, bool_tensor, equivalent, float_primitive, float_tensor, from_float_primitive, int_tensor};

/// Convolutions of every rank and kind, with and without bias, stride, dilation, groups.
pub fn module_conv<B: Backend>(device: &B::Device) {
    equivalent!("module_conv", device, conv::<B>());
}

fn conv<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let x1 = float_tensor::<B, 3>(device, [2, 4, 9], 121, -1.0, 1.0);
    let w1 = float_tensor::<B, 3>(device, [6, 4, 3], 122, -0.5, 0.5);
    let w1_grouped = float_tensor::<B, 3>(device, [6, 2, 3], 123, -0.5, 0.5);
    let b6 = float_tensor::<B, 1>(device, [6], 124, -0.5, 0.5);
    out.push("conv1d", conv1d(x1.clone(), w1.clone(), Some(b6.clone()), ConvOptions::new([1], [1], [1], 1)));
    out.push("conv1d no bias, stride 2, dilation 2", conv1d(x1.clone(), w1, None, ConvOptions::new([2], [0], [2], 1)));
    out.push("conv1d groups 2", conv1d(x1, w1_grouped, Some(b6.clone()), ConvOptions::new([1], [1], [1], 2)));

    let x2 = float_tensor::<B, 4>(device, [2, 3, 8, 8], 125, -1.0, 1.0);
    let w2 = float_tensor::<B, 4>(device, [6, 3, 3, 3], 126, -0.5, 0.5);
    out.push("conv2d", conv2d(x2.clone(), w2.clone(), Some(b6.clone()), ConvOptions::new([1, 1], [1, 1], [1, 1], 1)));
    out.push("conv2d no bias, stride 2, dilation 2", conv2d(x2.clone(), w2, None, ConvOptions::new([2, 2], [0, 1], [2, 2], 1)));
    let x2g = float_tensor::<B, 4>(device, [2, 4, 6, 6], 127, -1.0, 1.0);
    let w2g = float_tensor::<B, 4>(device, [6, 2, 3, 3], 128, -0.5, 0.5);
    out.push("conv2d groups 2", conv2d(x2g, w2g, Some(b6.clone()), ConvOptions::new([1, 1], [1, 1], [1, 1], 2)));

    let x3 = float_tensor::<B, 5>(device, [1, 2, 4, 5, 5], 129, -1.0, 1.0);
    let w3 = float_tensor::<B, 5>(device, [3, 2, 3, 3, 3], 130, -0.5, 0.5);
    let b3 = float_tensor::<B, 1>(device, [3], 131, -0.5, 0.5);
    out.push("conv3d", conv3d(x3.clone(), w3.clone(), Some(b3.clone()), ConvOptions::new([1, 1, 1], [1, 1, 1], [1, 1, 1], 1)));
    out.push("conv3d stride 2", conv3d(x3, w3, None, ConvOptions::new([2, 2, 2], [0, 0, 0], [1, 1, 1], 1)));

    let xt1 = float_tensor::<B, 3>(device, [2, 3, 6], 132, -1.0, 1.0);
    let wt1 = float_tensor::<B, 3>(device, [3, 4, 3], 133, -0.5, 0.5);
    let b4 = float_tensor::<B, 1>(device, [4], 134, -0.5, 0.5);
    out.push(
        "conv_transpose1d",
        conv_transpose1d(xt1.clone(), wt1.clone(), Some(b4.clone()), ConvTransposeOptions::new([1], [0], [0], [1], 1)),
    );
    out.push(
        "conv_transpose1d stride 2, padding_out 1",
        conv_transpose1d(xt1, wt1, None, ConvTransposeOptions::new([2], [1], [1], [1], 1)),
    );
    let xt2 = float_tensor::<B, 4>(device, [2, 3, 5, 5], 135, -1.0, 1.0);
    let wt2 = float_tensor::<B, 4>(device, [3, 4, 3, 3], 136, -0.5, 0.5);
    out.push(
        "conv_transpose2d",
        conv_transpose2d(xt2.clone(), wt2.clone(), Some(b4.clone()), ConvTransposeOptions::new([1, 1], [1, 1], [0, 0], [1, 1], 1)),
    );
    out.push(
        "conv_transpose2d stride 2, dilation 2",
        conv_transpose2d(xt2, wt2, None, ConvTransposeOptions::new([2, 2], [0, 0], [1, 1], [2, 2], 1)),
    );
    let xt3 = float_tensor::<B, 5>(device, [1, 2, 3, 3, 3], 137, -1.0, 1.0);
    let wt3 = float_tensor::<B, 5>(device, [2, 2, 2, 2, 2], 138, -0.5, 0.5);
    out.push(
        "conv_transpose3d",
        conv_transpose3d(xt3, wt3, None, ConvTransposeOptions::new([2, 2, 2], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1)),
    );

    let xd = float_tensor::<B, 4>(device, [1, 2, 5, 5], 139, -1.0, 1.0);
    let wd = float_tensor::<B, 4>(device, [3, 2, 3, 3], 140, -0.5, 0.5);
    let offset = float_tensor::<B, 4>(device, [1, 18, 3, 3], 141, -1.0, 1.0);
    let mask = float_tensor::<B, 4>(device, [1, 9, 3, 3], 142, 0.0, 1.0);
    out.push(
        "deform_conv2d",
        deform_conv2d(xd.clone(), offset.clone(), wd.clone(), Some(mask), Some(b3), DeformConvOptions::new([1, 1], [0, 0], [1, 1], 1, 1)),
    );
    out.push(
        "deform_conv2d no mask, no bias",
        deform_conv2d(xd, offset, wd, None, None, DeformConvOptions::new([1, 1], [0, 0], [1, 1], 1, 1)),
    );
    let xu = float_tensor::<B, 4>(device, [2, 3, 6, 6], 143, -1.0, 1.0);
    out.push("unfold4d", unfold4d(xu.clone(), [2, 2], UnfoldOptions::new([1, 1], [0, 0], [1, 1])));
    out.push("unfold4d stride 2, padding 1", unfold4d(xu, [3, 3], UnfoldOptions::new([2, 2], [1, 1], [1, 1])));
}

/// Average, max (with indices) and adaptive pooling; interpolation and grid sampling.
pub fn module_pool_interpolate<B: Backend>(device: &B::Device) {
    // NdArray 0.21 implements grid_sample_2d for bilinear mode only (other modes panic).
    let grid_options: Vec<_> = grid_sample_options()
        .into_iter()
        .filter(|options| {
            bare_supports::<B, _>(device, &format!("grid_sample_2d {options:?}"), || grid_sample::<B>(device, options.clone()).into_data())
        })
        .collect();
    equivalent!("module_pool_interpolate", device, pool::<B>(&grid_options));
}

fn grid_sample_options() -> Vec<GridSampleOptions> {
    vec![
        GridSampleOptions::new(InterpolateMode::Bilinear),
        GridSampleOptions::new(InterpolateMode::Bilinear).with_padding_mode(GridSamplePaddingMode::Border).with_align_corners(true),
        GridSampleOptions::new(InterpolateMode::Nearest),
    ]
}

fn grid_sample<B: Backend>(device: &B::Device, options: GridSampleOptions) -> Tensor<B, 4> {
    let x = float_tensor::<B, 4>(device, [1, 2, 4, 5], 155, -1.0, 1.0);
    let grid = float_tensor::<B, 4>(device, [1, 3, 4, 2], 154, -1.2, 1.2);
    x.grid_sample_2d(grid, options)
}

fn pool<B: Backend>(device: &B::Device, out: &mut Outputs, grid_options: &[GridSampleOptions]) {
    let x1 = float_tensor::<B, 3>(device, [2, 3, 9], 151, -1.0, 1.0);
    out.push("avg_pool1d", avg_pool1d(x1.clone(), 3, 2, 1, true, false));
    out.push("avg_pool1d exclude pad, ceil", avg_pool1d(x1.clone(), 3, 2, 1, false, true));
    out.push("max_pool1d", max_pool1d(x1.clone(), 3, 2, 1, 1, false));
    out.push("max_pool1d dilation 2, ceil", max_pool1d(x1.clone(), 2, 2, 0, 2, true));
    let (values, indices) = max_pool1d_with_indices(x1.clone(), 3, 1, 1, 1, false);
    out.push("max_pool1d_with_indices values", values);
    out.push("max_pool1d_with_indices indices", indices);
    out.push("adaptive_avg_pool1d", adaptive_avg_pool1d(x1.clone(), 4));
    out.push("adaptive_avg_pool1d to 1", adaptive_avg_pool1d(x1, 1));

    let x2 = float_tensor::<B, 4>(device, [2, 3, 8, 8], 152, -1.0, 1.0);
    out.push("avg_pool2d", avg_pool2d(x2.clone(), [2, 2], [2, 2], [0, 0], true, false));
    out.push("avg_pool2d exclude pad", avg_pool2d(x2.clone(), [3, 3], [1, 1], [1, 1], false, false));
    out.push("avg_pool2d ceil", avg_pool2d(x2.clone(), [3, 3], [2, 2], [1, 1], true, true));
    out.push("max_pool2d", max_pool2d(x2.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false));
    out.push("max_pool2d padded, dilated", max_pool2d(x2.clone(), [3, 3], [1, 2], [1, 1], [2, 1], false));
    let (values, indices) = max_pool2d_with_indices(x2.clone(), [3, 3], [2, 2], [1, 1], [1, 1], false);
    out.push("max_pool2d_with_indices values", values);
    out.push("max_pool2d_with_indices indices", indices);
    out.push("adaptive_avg_pool2d", adaptive_avg_pool2d(x2.clone(), [3, 3]));
    out.push("adaptive_avg_pool2d to 1x1", adaptive_avg_pool2d(x2.clone(), [1, 1]));

    let small = float_tensor::<B, 4>(device, [1, 2, 4, 5], 153, -1.0, 1.0);
    for mode in [InterpolateMode::Nearest, InterpolateMode::Bilinear, InterpolateMode::Bicubic] {
        for align_corners in [true, false] {
            let options = InterpolateOptions { mode: mode.clone(), align_corners };
            let label = format!("interpolate {mode:?} align_corners={align_corners}");
            out.push(format!("{label} up"), interpolate(small.clone(), [7, 9], options.clone()));
            out.push(format!("{label} down"), interpolate(x2.clone(), [5, 3], options));
        }
    }

    for options in grid_options {
        out.push(format!("grid_sample_2d {options:?}"), grid_sample::<B>(device, options.clone()));
    }
}

/// Embedding, linear, attention, layer norm, CTC loss and the real FFT.
pub fn module_layers<B: Backend>(device: &B::Device) {
    // NdArray 0.21 has no rfft / irfft (they panic with `todo!`).
    let fft = bare_supports::<B, _>(device, "rfft / irfft", || {
        let (re, im) = rfft(float_tensor::<B, 2>(device, [1, 4], 0, -1.0, 1.0), 1, None);
        irfft(re, im, 1, Some(4)).into_data()
    });
    equivalent!("module_layers", device, layers::<B>(fft));
}

fn layers<B: Backend>(device: &B::Device, out: &mut Outputs, fft: bool) {
    let table = float_tensor::<B, 2>(device, [10, 4], 161, -1.0, 1.0);
    let tokens = int_tensor::<B, 2>(device, [2, 3], 162, 0, 10);
    out.push("embedding", embedding(table, tokens));

    let x = float_tensor::<B, 3>(device, [2, 3, 5], 163, -1.0, 1.0);
    let weight = float_tensor::<B, 2>(device, [5, 4], 164, -0.5, 0.5);
    let bias = float_tensor::<B, 1>(device, [4], 165, -0.5, 0.5);
    out.push("linear", linear(x.clone(), weight.clone(), Some(bias.clone())));
    out.push("linear no bias", linear(x, weight.clone(), None));
    let v = float_tensor::<B, 1>(device, [5], 166, -1.0, 1.0);
    out.push("linear 1d input", linear(v, weight, Some(bias)));

    let q = float_tensor::<B, 4>(device, [2, 2, 4, 8], 167, -1.0, 1.0);
    let k = float_tensor::<B, 4>(device, [2, 2, 6, 8], 168, -1.0, 1.0);
    let values = float_tensor::<B, 4>(device, [2, 2, 6, 8], 169, -1.0, 1.0);
    let defaults = AttentionModuleOptions::default();
    out.push("attention", attention(q.clone(), k.clone(), values.clone(), None, None, defaults));
    // A mask row of all `true` would make softmax undefined: keep key 0 always visible.
    let mask = bool_tensor::<B, 4>(device, [2, 2, 4, 6], 170).slice_fill([0..2, 0..2, 0..4, 0..1], false);
    let attn_bias = float_tensor::<B, 4>(device, [2, 2, 4, 6], 171, -0.5, 0.5);
    out.push("attention with mask and bias", attention(q.clone(), k.clone(), values.clone(), Some(mask), Some(attn_bias), defaults));
    let scaled = AttentionModuleOptions { scale: Some(0.2), softcap: Some(5.0), is_causal: false };
    out.push("attention scale, softcap", attention(q.clone(), k, values, None, None, scaled));
    let causal = AttentionModuleOptions { is_causal: true, ..defaults };
    let k_square = float_tensor::<B, 4>(device, [2, 2, 4, 8], 172, -1.0, 1.0);
    let v_square = float_tensor::<B, 4>(device, [2, 2, 4, 8], 173, -1.0, 1.0);
    out.push("attention causal", attention(q, k_square, v_square, None, None, causal));

    let hidden = float_tensor::<B, 3>(device, [2, 3, 8], 174, -2.0, 2.0);
    out.push("layer_norm (burn-nn, default params)", LayerNormConfig::new(8).init::<B>(device).forward(hidden.clone()));
    let gamma = float_tensor::<B, 1>(device, [8], 175, 0.5, 1.5);
    let beta = float_tensor::<B, 1>(device, [8], 176, -0.5, 0.5);
    let normed = B::layer_norm(float_primitive(hidden.clone()), float_primitive(gamma.clone()), Some(float_primitive(beta)), 1e-5);
    out.push("layer_norm with gamma and beta", from_float_primitive::<B, 3>(normed));
    let normed = B::layer_norm(float_primitive(hidden), float_primitive(gamma), None, 1e-3);
    out.push("layer_norm without beta", from_float_primitive::<B, 3>(normed));

    let logits = float_tensor::<B, 3>(device, [6, 2, 4], 177, -2.0, 2.0);
    let log_probs = burn::tensor::activation::log_softmax(logits, 2);
    let targets = int_tensor::<B, 2>(device, [2, 3], 178, 1, 4);
    let input_lengths = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![6i64, 5], [2]), device);
    let target_lengths = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![3i64, 2], [2]), device);
    out.push("ctc_loss", ctc_loss(log_probs, targets, input_lengths, target_lengths, 0));

    if !fft {
        return;
    }
    let signal = float_tensor::<B, 2>(device, [3, 8], 179, -1.0, 1.0);
    let (re, im) = rfft(signal.clone(), 1, None);
    out.push("rfft real", re.clone());
    out.push("rfft imaginary", im.clone());
    out.push("irfft", irfft(re, im, 1, Some(8)));
    let (re, _) = rfft(signal, 1, Some(16));
    out.push("rfft zero-padded to 16", re);
}
