//! The gradients' all-reduce between backward and the optimizer step: the mean over every
//! process, in buckets.
//!
//! Each all-reduce of burn-collective costs a barrier and a round of connections whatever
//! its size, so the gradients travel in buckets of about `bucket_elements` values (as
//! PyTorch DDP's buckets), flattened in the module's parameter order: the same order in
//! every process, whatever its parameter ids. A parameter without a gradient in this
//! process counts as zeros, so every process sends the same layout. Each gradient is
//! divided by the number of processes in f32 first, narrowed to the transfer dtype when one
//! is asked for (so the f16 range goes to the averaged values), summed, and widened back:
//! the optimizer (and the loss scaler's overflow check) always sees f32.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{FloatDType, Tensor};

use burn_mixed::data_parallel::CommDtype;

use crate::cluster::Collective;
use crate::{Device, Inner, Train};

/// How the gradients travel.
#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub dtype: CommDtype,
    pub bucket_elements: usize,
}

/// One parameter's place in the flattened gradients.
struct Slot {
    id: ParamId,
    dims: Vec<usize>,
}

/// Takes every float parameter's gradient out of `grads`, flattened, in module order.
struct Flatten<'a> {
    grads: &'a mut GradientsParams,
    device: &'a Device,
    slots: Vec<Slot>,
    flat: Vec<Tensor<Inner, 1>>,
}

impl ModuleVisitor<Train> for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
        let dims = param.val().dims().to_vec();
        let gradient = self.grads.remove::<Inner, D>(param.id).unwrap_or_else(|| Tensor::zeros(dims.clone(), self.device));
        self.flat.push(gradient.reshape([dims.iter().product::<usize>()]));
        self.slots.push(Slot { id: param.id, dims });
    }
}

/// Puts the reduced gradients back, each under its parameter's id in its own shape.
struct Restore<'a> {
    grads: &'a mut GradientsParams,
    slots: std::vec::IntoIter<Slot>,
    flat: std::vec::IntoIter<Tensor<Inner, 1>>,
}

impl ModuleVisitor<Train> for Restore<'_> {
    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<Train, D>>) {
        let (slot, flat) = (self.slots.next().expect("a slot per parameter"), self.flat.next().expect("a gradient per parameter"));
        let dims: [usize; D] = slot.dims.try_into().expect("the parameter's rank");
        self.grads.register::<Inner, D>(slot.id, flat.reshape(dims));
    }
}

/// Replaces `grads` (this process's gradients of `model`) by their mean over every
/// process, and says how many all-reduces that took; `step` names them in a timeout's
/// message.
pub fn all_reduce_mean<M: AutodiffModule<Train>>(
    collective: &Collective,
    transfer: Transfer,
    model: &M,
    mut grads: GradientsParams,
    device: &Device,
    step: usize,
) -> Result<(GradientsParams, usize), String> {
    let mut flatten = Flatten { grads: &mut grads, device, slots: Vec::new(), flat: Vec::new() };
    model.visit(&mut flatten);
    let (slots, flat) = (flatten.slots, flatten.flat);
    let nodes = collective.nodes as f64;
    let narrow = transfer.dtype.narrow();

    let buckets = buckets(&flat.iter().map(|t| t.dims()[0]).collect::<Vec<_>>(), transfer.bucket_elements);
    let count = buckets.len();
    let mut reduced = Vec::with_capacity(flat.len());
    let mut flat = flat.into_iter();
    for (b, lengths) in buckets.into_iter().enumerate() {
        let parts: Vec<Tensor<Inner, 1>> = flat.by_ref().take(lengths.len()).collect();
        let mut bucket = Tensor::cat(parts, 0).div_scalar(nodes);
        // burn-collective's ring needs at least one element per process: pad a short bucket.
        let elements: usize = lengths.iter().sum();
        if elements < collective.nodes as usize {
            bucket = Tensor::cat(vec![bucket, Tensor::zeros([collective.nodes as usize - elements], device)], 0);
        }
        if let Some(dtype) = narrow {
            bucket = bucket.cast(dtype);
        }
        let mut sum = collective.sum(format!("step {step}'s gradients (bucket {} of {count})", b + 1), bucket)?;
        if narrow.is_some() {
            sum = sum.cast(FloatDType::F32);
        }
        let mut start = 0;
        for length in lengths {
            reduced.push(sum.clone().slice(start..start + length));
            start += length;
        }
    }
    let mut restore = Restore { grads: &mut grads, slots: slots.into_iter(), flat: reduced.into_iter() };
    model.visit(&mut restore);
    Ok((grads, count))
}

/// Groups consecutive gradients of `lengths` into buckets of at least `target` elements
/// (the last may be smaller), never splitting a gradient: the lengths in each bucket.
fn buckets(lengths: &[usize], target: usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut filled = usize::MAX;
    for &length in lengths {
        if filled >= target.max(1) {
            buckets.push(Vec::new());
            filled = 0;
        }
        buckets.last_mut().unwrap().push(length);
        filled += length;
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::buckets;

    #[test]
    fn buckets_close_once_they_reach_the_target_and_keep_every_gradient_whole() {
        assert_eq!(buckets(&[3, 4, 5, 1, 9], 7), vec![vec![3, 4], vec![5, 1, 9]]);
        assert_eq!(buckets(&[10, 2], 4), vec![vec![10], vec![2]]);
        assert_eq!(buckets(&[], 4), Vec::<Vec<usize>>::new());
        assert_eq!(buckets(&[1, 1, 1], 0), vec![vec![1], vec![1], vec![1]]);
    }
}
