//! `PrecisionOptimizer`: any Burn optimizer, stepped outside autocast and, under
//! 16-mixed, behind the loss scaler (unscale, one-sync overflow check, skip or step).

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::LearningRate;
use burn::optim::{GradientsParams, MultiGradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Bool, ElementConversion, Tensor};

use super::{GradScaler, ScalerRecord, Verdict};
use crate::autocast::{clear_cast_cache, no_autocast};
use crate::module::PrecisionModule;

/// Wraps an optimizer for a precision: its step never runs under autocast (its own math,
/// e.g. Muon's matmuls, stays in the parameters' dtype), and with a scaler, gradients are
/// unscaled before the inner optimizer sees them (so gradient clipping sees true values)
/// and a step whose gradients overflowed is skipped, leaving parameters and optimizer
/// state bit-identical.
///
/// It steps the prepared model (`PrecisionModule<M>`) that `MixedPrecision::setup` returns
/// with it, by stepping the inner optimizer on the user's model.
#[derive(Clone, Debug)]
pub struct PrecisionOptimizer<O> {
    inner: O,
    scaler: Option<GradScaler>,
}

impl<O> PrecisionOptimizer<O> {
    /// `scaler`: `Some` for 16-mixed, `None` for every other precision.
    pub fn new(inner: O, scaler: Option<GradScaler>) -> Self {
        Self { inner, scaler }
    }

    /// The loss scaler, if this precision uses one.
    pub fn scaler(&self) -> Option<&GradScaler> {
        self.scaler.as_ref()
    }

    /// The wrapped optimizer.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The step shared by `step` and `step_multi`: outside autocast, and with a scaler,
    /// unscale and check (`unscale` returns whether a gradient overflowed), then skip or
    /// `step`.
    fn guarded_step<M, G>(
        &mut self,
        module: PrecisionModule<M>,
        mut grads: G,
        unscale: impl FnOnce(&M, &mut G, f64) -> bool,
        step: impl FnOnce(&mut O, M, G) -> M,
    ) -> PrecisionModule<M> {
        // The step makes new parameter leaves: casts cached from the old ones are stale.
        clear_cast_cache();
        no_autocast(|| {
            let Some(scaler) = &self.scaler else {
                return module.map_module(|m| step(&mut self.inner, m, grads));
            };
            let found_inf = unscale(module.module(), &mut grads, scaler.unscale_factor());
            match Self::verdict(scaler, found_inf) {
                Verdict::Skip => module,
                Verdict::Step => module.map_module(|m| step(&mut self.inner, m, grads)),
            }
        })
    }

    /// A collapse configured as an error stops training: `Optimizer::step` has no error
    /// channel, and carrying on would only feed NaNs forward.
    fn verdict(scaler: &GradScaler, found_inf: bool) -> Verdict {
        match scaler.report_replica(found_inf) {
            Ok(verdict) => verdict,
            Err(collapse) => panic!("{collapse}"),
        }
    }
}

impl<M, B, O> Optimizer<PrecisionModule<M>, B> for PrecisionOptimizer<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    O: Optimizer<M, B>,
{
    /// The inner optimizer's record and the scaler's state (`None` without a scaler), so
    /// burn-train's checkpointer saves and restores the scale trajectory. Checkpoints of
    /// earlier versions, whose second half was the state as a JSON string, load too.
    type Record = (O::Record, ScalerRecord);

    fn step(&mut self, lr: LearningRate, module: PrecisionModule<M>, grads: GradientsParams) -> PrecisionModule<M> {
        self.guarded_step(
            module,
            grads,
            |module, grads, inv_scale| unscale::<B, M>(module, grads, inv_scale),
            |inner, module, grads| inner.step(lr, module, grads),
        )
    }

    fn step_multi(&mut self, lr: LearningRate, module: PrecisionModule<M>, grads: MultiGradientsParams) -> PrecisionModule<M> {
        self.guarded_step(
            module,
            grads,
            // One check (one sync) per device's gradients.
            |module, grads, inv_scale| grads.grads.iter_mut().fold(false, |found, (g, _)| unscale::<B, M>(module, g, inv_scale) || found),
            |inner, module, grads| inner.step_multi(lr, module, grads),
        )
    }

    fn to_record(&self) -> Self::Record {
        (self.inner.to_record(), ScalerRecord::new(self.scaler.as_ref().map(GradScaler::state)))
    }

    /// A record without scaler state (saved under another precision) leaves the scaler as it
    /// is. `Optimizer::load_record` has no error channel: a state that fails validation (a
    /// checkpoint is outside data) panics with the field and its valid range.
    fn load_record(self, (inner, scaler): Self::Record) -> Self {
        if let (Some(s), Some(state)) = (&self.scaler, scaler.state)
            && let Err(err) = s.load_state(state)
        {
            panic!("cannot restore the GradScaler state from the optimizer record: {err}");
        }
        Self { inner: self.inner.load_record(inner), scaler: self.scaler }
    }
}

/// Multiplies every parameter gradient of `module` in `grads` by `inv_scale` and returns
/// whether any of them holds an inf or NaN, reading one flag from the device.
fn unscale<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &mut GradientsParams, inv_scale: f64) -> bool {
    let mut visitor = Unscale::<B> { grads, inv_scale, flags: Vec::new() };
    module.visit(&mut visitor);
    if visitor.flags.is_empty() {
        return false;
    }
    Tensor::cat(visitor.flags, 0).any().int().into_scalar().elem::<i64>() != 0
}

struct Unscale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    /// Computed in f64 (as PyTorch does) and applied in the gradient's own dtype.
    inv_scale: f64,
    /// One "has a non-finite value" flag per gradient, kept on the device until the end.
    flags: Vec<Tensor<B::InnerBackend, 1, Bool>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unscale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        let grad = grad.mul_scalar(self.inv_scale);
        self.flags.push(grad.clone().is_finite().bool_not().any());
        self.grads.register::<B::InnerBackend, D>(param.id, grad);
    }
}
