//! Host kernels for `Autodiff<B>` over a backend that has them: the forward pass runs the
//! inner kernel, and the recorded backward computes the gradients with the same kernels
//! (the weight- and input-gradient products dominate a training step), falling back to
//! the inner backend's generic ops for a case the kernels decline.
//!
//! The node is only recorded once the inner kernel has taken the forward case, so a
//! declined case leaves nothing behind and goes through `Autodiff`'s own op.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{FloatDType, TensorMetadata};

use super::{
    AvgPool2dArgs, BinaryArgs, BinaryOp, CastArgs, Composed, Conv2dArgs, HostKernels, LayerNormArgs, LayerNormGradArgs, LinearArgs,
    TensorPair,
};
use spatial::{HalfAvgPool2d, HalfConv2d};

mod spatial;
use burn::tensor::Shape;
use burn::tensor::backend::Backend;

/// Swaps the last two dimensions (a view on host backends).
fn transpose_last<B: HostKernels>(t: FloatTensor<B>) -> FloatTensor<B> {
    let rank = t.shape().num_dims();
    B::float_swap_dims(t, rank - 2, rank - 1)
}

/// A cast on the kernels, or on the inner backend when they decline.
fn cast_or_inner<B: HostKernels>(tensor: FloatTensor<B>, dtype: FloatDType) -> FloatTensor<B> {
    B::half_cast((tensor, dtype)).unwrap_or_else(|(tensor, dtype)| B::float_cast(tensor, dtype))
}

/// `lhs @ rhs` on the kernels, or on the inner backend when they decline.
fn matmul_or_inner<B: HostKernels>(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> FloatTensor<B> {
    B::half_matmul((lhs, rhs)).unwrap_or_else(|(lhs, rhs)| B::float_matmul(lhs, rhs))
}

#[derive(Debug)]
struct HalfMatmul;

impl<B: HostKernels> Backward<B, 2> for HalfMatmul {
    /// The operands kept for each other's gradient, and their shapes: an operand whose
    /// batch dimension of 1 was broadcast gets its gradient summed over that dimension.
    type State = (Option<NodeId>, Option<NodeId>, [Shape; 2]);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_lhs, node_rhs] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (lhs, rhs, [lhs_shape, rhs_shape]) = ops.state;
        let lhs = lhs.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id));
        let rhs = rhs.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id));
        if let (Some(node), Some(rhs)) = (node_lhs, rhs) {
            grads.register::<B>(node.id, matmul_lhs_grad::<B>(grad.clone(), rhs, &lhs_shape));
        }
        if let (Some(node), Some(lhs)) = (node_rhs, lhs) {
            grads.register::<B>(node.id, matmul_rhs_grad::<B>(lhs, grad, &rhs_shape));
        }
    }
}

/// The batch dimensions where an operand of `shape` has 1 and the output more: the
/// operand was repeated there, and its gradient is the sum over them.
fn broadcast_batch_dims(shape: &Shape, output: &Shape) -> Vec<usize> {
    (0..shape.num_dims().saturating_sub(2)).filter(|&d| shape[d] == 1 && output[d] != 1).collect()
}

/// `lhs`'s gradient, `grad @ rhs^T`, summed down to `shape`.
fn matmul_lhs_grad<B: HostKernels>(grad: FloatTensor<B>, rhs: FloatTensor<B>, shape: &Shape) -> FloatTensor<B> {
    let summed = broadcast_batch_dims(shape, &grad.shape());
    match summed.is_empty() {
        true => matmul_or_inner::<B>(grad, transpose_last::<B>(rhs)),
        false => summed_product::<B>(grad, transpose_last::<B>(rhs), &summed, shape),
    }
}

/// `rhs`'s gradient, `lhs^T @ grad`, summed down to `shape`. When `rhs` repeats over every
/// batch dimension and `lhs` over none (`[b, m, k] @ [1, k, n]`: a weight), the sum of the
/// per-batch products is one product of the batches stacked as rows, on the kernel.
fn matmul_rhs_grad<B: HostKernels>(lhs: FloatTensor<B>, grad: FloatTensor<B>, shape: &Shape) -> FloatTensor<B> {
    let (lhs_shape, grad_shape) = (lhs.shape(), grad.shape());
    let summed = broadcast_batch_dims(shape, &grad_shape);
    if summed.is_empty() {
        return matmul_or_inner::<B>(transpose_last::<B>(lhs), grad);
    }
    let rank = grad_shape.num_dims();
    if summed.len() == rank - 2 && lhs_shape[..rank - 2] == grad_shape[..rank - 2] {
        let rows = grad_shape[..rank - 1].iter().product::<usize>();
        let (k, n) = (lhs_shape[rank - 1], grad_shape[rank - 1]);
        let stacked = B::float_reshape(lhs, Shape::new([rows, k]));
        let product = matmul_or_inner::<B>(B::float_swap_dims(stacked, 0, 1), B::float_reshape(grad, Shape::new([rows, n])));
        return B::float_reshape(product, shape.clone());
    }
    summed_product::<B>(transpose_last::<B>(lhs), grad, &summed, shape)
}

/// `a @ b` summed over the batch dimensions `summed`, computed in f32 from the exactly
/// widened operands and rounded once to their dtype, as `shape`: each gradient value is
/// one rounding from its exact sum (rounding each batch's product first and their sum
/// again erred by several roundings where the batches' terms cancel). An empty operand
/// gives zeros (and keeps Flex's product away from an empty broadcast batch).
fn summed_product<B: HostKernels>(a: FloatTensor<B>, b: FloatTensor<B>, summed: &[usize], shape: &Shape) -> FloatTensor<B> {
    let dtype = FloatDType::from(a.dtype());
    if a.shape().num_elements() == 0 || b.shape().num_elements() == 0 {
        return B::float_zeros(shape.clone(), &B::float_device(&a), dtype);
    }
    let product = B::float_matmul(cast_or_inner::<B>(a, FloatDType::F32), cast_or_inner::<B>(b, FloatDType::F32));
    let sum = summed.iter().fold(product, |t, &d| B::float_sum_dim(t, d));
    cast_or_inner::<B>(sum, dtype)
}

/// The gradients of `x @ weight (+ bias)` for the output gradient `grad`.
struct LinearGrads<B: HostKernels> {
    x: Option<FloatTensor<B>>,
    weight: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
}

impl<B: HostKernels> LinearGrads<B> {
    fn x(&self) -> Option<FloatTensor<B>> {
        let args = (self.weight.clone()?, self.grad.clone());
        Some(B::linear_x_grad(args).unwrap_or_else(|(weight, grad)| B::linear_x_backward(weight, grad)))
    }

    fn weight(&self) -> Option<FloatTensor<B>> {
        let args = (self.x.clone()?, self.grad.clone());
        Some(B::linear_weight_grad(args).unwrap_or_else(|(x, grad)| B::linear_weight_backward(x, grad)))
    }

    fn bias(self) -> FloatTensor<B> {
        B::half_sum_to_last(self.grad).unwrap_or_else(B::linear_bias_backward)
    }
}

/// A linear layer's node: parents `[x, weight]` or `[x, weight, bias]`.
#[derive(Debug)]
struct HalfLinear;

/// The backward of a linear node (either arity).
fn linear_backward<B: HostKernels, const N: usize>(
    ops: Ops<(Option<NodeId>, Option<NodeId>), N>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
) {
    let (x, weight) = ops.state;
    let g = LinearGrads::<B> {
        x: x.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id)),
        weight: weight.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id)),
        grad: grads.consume::<B>(&ops.node),
    };
    let mut parents = ops.parents.into_iter();
    let (node_x, node_weight, node_bias) = (parents.next().flatten(), parents.next().flatten(), parents.next().flatten());
    if let (Some(node), Some(grad)) = (node_x, g.x()) {
        grads.register::<B>(node.id, grad);
    }
    if let (Some(node), Some(grad)) = (node_weight, g.weight()) {
        grads.register::<B>(node.id, grad);
    }
    if let Some(node) = node_bias {
        grads.register::<B>(node.id, g.bias());
    }
}

impl<B: HostKernels, const N: usize> Backward<B, N> for HalfLinear {
    type State = (Option<NodeId>, Option<NodeId>);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        linear_backward::<B, N>(ops, grads, checkpointer)
    }
}

/// Records `op` with `parents` for an output computed by a kernel. `state` gets the first
/// two parents, checkpointed, each only when the other needs a gradient (each one's
/// gradient needs the other: matmul's operands, linear's input and weight).
fn record<B, C, O, const N: usize>(
    op: O,
    parents: [&FloatTensor<Autodiff<B, C>>; N],
    state: impl FnOnce(Option<NodeId>, Option<NodeId>) -> O::State,
    out: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: HostKernels,
    C: CheckpointStrategy,
    O: Backward<B, N>,
{
    let (first, second) = (parents[0], parents[1]);
    match op.prepare::<C>(parents.map(|p| p.node.clone())).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let first_state = second.is_tracked().then(|| prep.checkpoint(first));
            let second_state = first.is_tracked().then(|| prep.checkpoint(second));
            prep.finish(state(first_state, second_state), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// Records `op` over `parents` for an output computed by a kernel, keeping `state` for the
/// backward when a parent is tracked.
fn track<B, C, O, const N: usize>(
    op: O,
    parents: [&FloatTensor<Autodiff<B, C>>; N],
    state: <O as Backward<B, N>>::State,
    out: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: HostKernels,
    C: CheckpointStrategy,
    O: Backward<B, N>,
{
    match op.prepare::<C>(parents.map(|p| p.node.clone())).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// [`track`] over `[first, second]` and an optional third parent (a bias, a shift).
fn track_optional_third<B, C, O, S>(
    op: O,
    [first, second]: [&FloatTensor<Autodiff<B, C>>; 2],
    third: Option<&FloatTensor<Autodiff<B, C>>>,
    state: S,
    out: FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: HostKernels,
    C: CheckpointStrategy,
    O: Backward<B, 2, State = S> + Backward<B, 3, State = S>,
{
    match third {
        Some(third) => track::<B, C, O, 3>(op, [first, second, third], state, out),
        None => track::<B, C, O, 2>(op, [first, second], state, out),
    }
}

/// relu's and gelu's backward on the host kernels (Burn's where they decline).
#[derive(Debug)]
enum HalfActivation {
    /// State: the output, whose sign decides which gradients pass.
    Relu,
    /// State: the input, of which gelu's derivative is a function.
    Gelu,
}

impl<B: HostKernels> Backward<B, 1> for HalfActivation {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let saved = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| match self {
            HalfActivation::Relu => B::half_relu_backward((saved, grad)).unwrap_or_else(|(output, grad)| B::relu_backward(output, grad)),
            HalfActivation::Gelu => B::half_gelu_backward((saved, grad)).unwrap_or_else(|(x, grad)| B::gelu_backward(x, grad)),
        });
    }
}

#[derive(Debug)]
struct HalfCast;

impl<B: HostKernels> Backward<B, 1> for HalfCast {
    /// The input's dtype, which the gradient is cast back to.
    type State = FloatDType;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let dtype = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| cast_or_inner::<B>(grad, dtype));
    }
}

/// `lhs op rhs` on the kernels, or on the inner backend when they decline.
fn binary_or_inner<B: HostKernels>(lhs: FloatTensor<B>, rhs: FloatTensor<B>, op: BinaryOp) -> FloatTensor<B> {
    B::half_binary((lhs, rhs, op)).unwrap_or_else(|(lhs, rhs, op)| match op {
        BinaryOp::Add => B::float_add(lhs, rhs),
        BinaryOp::Mul => B::float_mul(lhs, rhs),
    })
}

/// A gradient of the output's shape summed down to `shape`, which repeats over the output's
/// leading dimensions (the only broadcast the kernels take): a column sum, in f32 for a
/// half gradient.
fn reduce_to<B: HostKernels>(grad: FloatTensor<B>, shape: &Shape) -> FloatTensor<B> {
    if grad.shape() == *shape {
        return grad;
    }
    let columns = shape.num_elements();
    let rows = grad.shape().num_elements().checked_div(columns).unwrap_or(0);
    let flat = B::float_reshape(grad, Shape::new([rows, columns]));
    let sums = B::half_sum_to_last(flat).unwrap_or_else(|flat| B::float_sum_dim(flat, 0));
    B::float_reshape(sums, shape.clone())
}

#[derive(Debug)]
struct HalfBinary;

impl<B: HostKernels> Backward<B, 2> for HalfBinary {
    /// Under mul each input (kept when the other needs a gradient: it is the other's
    /// factor; under add neither, so the gradient passes through), and both shapes (a broadcast input's gradient is summed down to its shape).
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>, Shape, Shape);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_lhs, node_rhs] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (lhs, rhs, lhs_shape, rhs_shape) = ops.state;
        let gradient = |grad: FloatTensor<B>, factor: Option<FloatTensor<B>>, shape: &Shape| match factor {
            // A repeated factor's gradient sums products of the gradient and the other
            // input: each product in f32 from exact widening, the sum rounded once
            // (rounding the products first erred by several roundings where they cancel).
            Some(factor) if grad.shape() != *shape => {
                let dtype = FloatDType::from(grad.dtype());
                let wide = |t| cast_or_inner::<B>(t, FloatDType::F32);
                cast_or_inner::<B>(reduce_to::<B>(B::float_mul(wide(grad), wide(factor)), shape), dtype)
            }
            Some(factor) => binary_or_inner::<B>(grad, factor, BinaryOp::Mul),
            None => reduce_to::<B>(grad, shape),
        };
        if let Some(node) = node_lhs {
            grads.register::<B>(node.id, gradient(grad.clone(), rhs, &lhs_shape));
        }
        if let Some(node) = node_rhs {
            grads.register::<B>(node.id, gradient(grad, lhs, &rhs_shape));
        }
    }
}

#[derive(Debug)]
struct HalfSoftmax;

impl<B: HostKernels> Backward<B, 1> for HalfSoftmax {
    /// The half probabilities, all the backward needs (2 bytes a score, where the f32 ops
    /// kept their f32 exponentials too).
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let p = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |g| {
            B::half_softmax_backward((p, g)).unwrap_or_else(|(p, g)| {
                // The same formula on the inner backend's ops, in f32 (a row masked whole
                // sums to 0, and its zeros stay zeros: the sum is clamped above 0).
                let (p, g) = (cast_or_inner::<B>(p, FloatDType::F32), cast_or_inner::<B>(g, FloatDType::F32));
                let last = p.shape().num_dims() - 1;
                let total = B::float_clamp_min(B::float_sum_dim(p.clone(), last), f32::MIN_POSITIVE.into());
                let q = B::float_div(p, total);
                let dot = B::float_sum_dim(B::float_mul(g.clone(), q.clone()), last);
                B::float_mul(q, B::float_sub(g, dot))
            })
        });
    }
}

/// A layer norm's node: parents `[x, gamma]` or `[x, gamma, beta]`.
#[derive(Debug)]
struct HalfLayerNorm;

/// What a layer norm's backward needs: its input, scale and epsilon.
type NormState<B> = (FloatTensor<B>, FloatTensor<B>, f64);

/// The backward of a layer-norm node (either arity).
fn layer_norm_backward<B: HostKernels, const N: usize>(ops: Ops<NormState<B>, N>, grads: &mut Gradients) {
    let (x, gamma, epsilon) = ops.state;
    let grad = grads.consume::<B>(&ops.node);
    let [dx, dgamma, dbeta] = B::half_layer_norm_backward((x, gamma, grad, epsilon)).unwrap_or_else(layer_norm_grads_inner::<B>);
    for (node, grad) in ops.parents.into_iter().zip([dx, dgamma, dbeta]) {
        if let Some(node) = node {
            grads.register::<B>(node.id, grad);
        }
    }
}

/// Layer norm's gradients on the inner backend's ops, in f32, for a backend whose kernels
/// took the forward but decline the backward: the same formulas as `layer_norm::backward`.
pub(super) fn layer_norm_grads_inner<B: Backend>((x, gamma, grad, epsilon): LayerNormGradArgs<B>) -> [FloatTensor<B>; 3] {
    let dtype = FloatDType::from(x.dtype());
    let shape = x.shape();
    let (rank, n) = (shape.num_dims(), shape[shape.num_dims() - 1]);
    let last = rank - 1;
    let wide = |t: FloatTensor<B>| B::float_cast(t, FloatDType::F32);
    let (x, g) = (wide(x), wide(grad));
    let gamma = B::float_reshape(wide(gamma), Shape::from((0..rank).map(|d| if d == last { n } else { 1 }).collect::<Vec<_>>()));
    let centered = B::float_sub(x.clone(), B::float_mean_dim(x, last));
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), last);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
    let x_hat = B::float_mul(centered, rstd.clone());
    let h = B::float_mul(g.clone(), gamma);
    let mean_h = B::float_mean_dim(h.clone(), last);
    let mean_hx = B::float_mean_dim(B::float_mul(h.clone(), x_hat.clone()), last);
    let dx = B::float_mul(B::float_sub(B::float_sub(h, mean_h), B::float_mul(x_hat.clone(), mean_hx)), rstd);
    let rows = shape.num_elements() / n.max(1);
    let column_sum = |t: FloatTensor<B>| B::float_reshape(B::float_sum_dim(B::float_reshape(t, Shape::new([rows, n])), 0), Shape::new([n]));
    let dgamma = column_sum(B::float_mul(g.clone(), x_hat));
    [dx, dgamma, column_sum(g)].map(|t| B::float_cast(t, dtype))
}

impl<B: HostKernels, const N: usize> Backward<B, N> for HalfLayerNorm {
    type State = NormState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        layer_norm_backward::<B, N>(ops, grads)
    }
}

impl<B: HostKernels, C: CheckpointStrategy> HostKernels for Autodiff<B, C> {
    fn half_layer_norm((x, gamma, beta, epsilon): LayerNormArgs<Self>) -> Result<FloatTensor<Self>, LayerNormArgs<Self>> {
        let inner_beta = beta.as_ref().map(|b| b.primitive.clone());
        let out = match B::half_layer_norm((x.primitive.clone(), gamma.primitive.clone(), inner_beta, epsilon)) {
            Ok(out) => out,
            Err(_) => return Err((x, gamma, beta, epsilon)),
        };
        let state = (x.primitive.clone(), gamma.primitive.clone(), epsilon);
        Ok(track_optional_third::<B, C, _, _>(HalfLayerNorm, [&x, &gamma], beta.as_ref(), state, out))
    }

    fn half_softmax((scores, dtype): CastArgs<Self>) -> Result<FloatTensor<Self>, CastArgs<Self>> {
        let out = match B::half_softmax((scores.primitive.clone(), dtype)) {
            Ok(out) => out,
            Err(_) => return Err((scores, dtype)),
        };
        Ok(track::<B, C, _, 1>(HalfSoftmax, [&scores], out.clone(), out))
    }

    fn half_binary((lhs, rhs, op): BinaryArgs<Self>) -> Result<FloatTensor<Self>, BinaryArgs<Self>> {
        let out = match B::half_binary((lhs.primitive.clone(), rhs.primitive.clone(), op)) {
            Ok(out) => out,
            Err(_) => return Err((lhs, rhs, op)),
        };
        let factor =
            |t: &FloatTensor<Self>, other: &FloatTensor<Self>| (op == BinaryOp::Mul && other.is_tracked()).then(|| t.primitive.clone());
        let state = (factor(&lhs, &rhs), factor(&rhs, &lhs), lhs.shape(), rhs.shape());
        Ok(track::<B, C, _, 2>(HalfBinary, [&lhs, &rhs], state, out))
    }

    fn half_relu(tensor: FloatTensor<Self>) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        // The input is handed over, not cloned: relu's backward needs only its output, so
        // an input nothing else holds (a linear layer's output) is overwritten in place.
        let FloatTensor::<Self> { primitive, node, rc } = tensor;
        let out = match B::half_relu(primitive) {
            Ok(out) => out,
            Err(primitive) => return Err(FloatTensor::<Self> { primitive, node, rc }),
        };
        Ok(match HalfActivation::Relu.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(out.clone(), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        })
    }

    fn half_gelu(tensor: FloatTensor<Self>) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        let out = match B::half_gelu(tensor.primitive.clone()) {
            Ok(out) => out,
            Err(_) => return Err(tensor),
        };
        Ok(track::<B, C, _, 1>(HalfActivation::Gelu, [&tensor], tensor.primitive.clone(), out))
    }

    fn half_conv2d((x, weight, bias, options): Conv2dArgs<Self>) -> Result<FloatTensor<Self>, Conv2dArgs<Self>> {
        let inner_bias = bias.as_ref().map(|b| b.primitive.clone());
        let out = match B::half_conv2d((x.primitive.clone(), weight.primitive.clone(), inner_bias.clone(), options.clone())) {
            Ok(out) => out,
            Err(_) => return Err((x, weight, bias, options)),
        };
        let state = (x.primitive.clone(), weight.primitive.clone(), inner_bias, options);
        Ok(track_optional_third::<B, C, _, _>(HalfConv2d, [&x, &weight], bias.as_ref(), state, out))
    }

    fn half_avg_pool2d(
        (x, kernel, stride, padding, count_include_pad, ceil_mode): AvgPool2dArgs<Self>,
    ) -> Result<FloatTensor<Self>, AvgPool2dArgs<Self>> {
        let out = match B::half_avg_pool2d((x.primitive.clone(), kernel, stride, padding, count_include_pad, ceil_mode)) {
            Ok(out) => out,
            Err(_) => return Err((x, kernel, stride, padding, count_include_pad, ceil_mode)),
        };
        let state = (x.primitive.clone(), kernel, stride, padding, count_include_pad, ceil_mode);
        Ok(track::<B, C, _, 1>(HalfAvgPool2d, [&x], state, out))
    }

    fn half_cast((tensor, dtype): CastArgs<Self>) -> Result<FloatTensor<Self>, CastArgs<Self>> {
        let out = match B::half_cast((tensor.primitive.clone(), dtype)) {
            Ok(out) => out,
            Err(_) => return Err((tensor, dtype)),
        };
        Ok(track::<B, C, _, 1>(HalfCast, [&tensor], FloatDType::from(tensor.dtype()), out))
    }

    fn half_matmul((lhs, rhs): TensorPair<Self>) -> Result<FloatTensor<Self>, TensorPair<Self>> {
        match B::half_matmul((lhs.primitive.clone(), rhs.primitive.clone())) {
            Ok(out) => {
                let shapes = [lhs.shape(), rhs.shape()];
                Ok(record::<B, C, _, 2>(HalfMatmul, [&lhs, &rhs], |l, r| (l, r, shapes), out))
            }
            Err(_) => Err((lhs, rhs)),
        }
    }

    fn half_linear((x, weight, bias): LinearArgs<Self>) -> Result<FloatTensor<Self>, LinearArgs<Self>> {
        let inner_bias = bias.as_ref().map(|b| b.primitive.clone());
        let out = match B::half_linear((x.primitive.clone(), weight.primitive.clone(), inner_bias)) {
            Ok(out) => out,
            Err(_) => return Err((x, weight, bias)),
        };
        Ok(match &bias {
            Some(bias) => record::<B, C, _, 3>(HalfLinear, [&x, &weight, bias], |x, w| (x, w), out),
            None => record::<B, C, _, 2>(HalfLinear, [&x, &weight], |x, w| (x, w), out),
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::ops::FloatTensorOps;
    use burn::tensor::{Tensor, TensorData, TensorPrimitive};

    use super::*;

    /// Layer norm's backward on the inner backend's ops (for a backend whose kernels decline
    /// it) and on Flex's kernel: the same formulas in f32, each result rounded once to bf16,
    /// so within one bf16 spacing of each other.
    #[test]
    fn layer_norm_fallback_agrees_with_the_kernel() {
        let device = Default::default();
        let (rows, n) = (6, 24);
        let data = |seed: u64, len: usize| -> Vec<f32> {
            (0..len as u64).map(|i| ((i * 2_654_435_761 + seed) % 1000) as f32 / 250.0 - 2.0).collect()
        };
        let bf16_tensor = |v: Vec<f32>, shape: Vec<usize>| {
            let flat = Tensor::<Flex, 1>::from_data(TensorData::new(v.clone(), [v.len()]), &device).cast(FloatDType::BF16);
            Flex::float_reshape(flat.into_primitive().tensor(), Shape::from(shape))
        };
        let read = |t: FloatTensor<Flex>| -> Vec<f32> {
            Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(t)).cast(FloatDType::F32).into_data().to_vec().expect("f32")
        };
        let args = || {
            let gamma = data(7, n).into_iter().map(|v| 1.0 + v / 4.0).collect();
            (
                bf16_tensor(data(1, rows * n), vec![rows, n]),
                bf16_tensor(gamma, vec![n]),
                bf16_tensor(data(3, rows * n), vec![rows, n]),
                1e-5,
            )
        };
        let kernel = <Flex as HostKernels>::half_layer_norm_backward(args()).unwrap_or_else(|_| panic!("the kernel takes bf16"));
        let fallback = layer_norm_grads_inner::<Flex>(args());
        for (label, (k, f)) in ["dx", "dgamma", "dbeta"].into_iter().zip(kernel.into_iter().zip(fallback)) {
            let (k, f) = (read(k), read(f));
            assert_eq!(k.len(), f.len(), "{label}");
            for (i, (a, b)) in k.iter().zip(&f).enumerate() {
                let spacing = a.abs().max(b.abs()) * 2f32.powi(-7) + 1e-6;
                assert!((a - b).abs() <= spacing, "{label} #{i}: kernel {a} against fallback {b}");
            }
        }
    }
}
