//! `PrecisionModule`: a model bound to its precision, as `MixedPrecision::setup` returns it
//! (the counterpart of the module Lightning Fabric's `setup` wraps).
//!
//! It is a Burn module in its own right (records, devices, `valid()`, display), delegating
//! everything to the user's model, and it carries the [`PrecisionRegion`] that the model's
//! work runs under: its `TrainStep` and `InferenceStep` (in `crate::train`) enter the region
//! on the thread that calls them, and a hand-written loop enters it with [`enter`] or
//! [`run`]. Records and checkpoints are the user's model's own.
//!
//! [`enter`]: PrecisionModule::enter
//! [`run`]: PrecisionModule::run

use core::fmt;

use burn::module::{AutodiffModule, Devices, HasAutodiffModule, Module, ModuleMapper, ModuleVisitor};
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::precision::Precision;
use crate::region::{PrecisionRegion, RegionError, RegionGuard};

/// The user's model and the precision region its work runs in.
///
/// There is deliberately no `Deref` to the model: a forward pass called on the bare model
/// would run outside the region, in full precision and unscaled, without a word. Reach the
/// model through [`PrecisionModule::run`] (or inside [`PrecisionModule::enter`]), or
/// through burn-train, which calls the step traits.
#[derive(Clone, Debug)]
pub struct PrecisionModule<M> {
    module: M,
    region: PrecisionRegion,
}

impl<M> PrecisionModule<M> {
    pub(crate) fn new(module: M, region: PrecisionRegion) -> Self {
        Self { module, region }
    }

    /// The user's model. Calling it directly runs *outside* the precision region; use it
    /// to read parameters, or inside [`PrecisionModule::enter`].
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The user's model, unwrapped (e.g. to save or hand it to code that knows nothing of
    /// precisions). Its parameters keep the dtype the precision gave them.
    pub fn into_module(self) -> M {
        self.module
    }

    /// The same region around a changed model (e.g. one reloaded from a record).
    pub fn map_module(self, f: impl FnOnce(M) -> M) -> Self {
        Self { module: f(self.module), region: self.region }
    }

    /// The region this model's work runs under.
    pub fn region(&self) -> &PrecisionRegion {
        &self.region
    }

    /// The precision in force (the requested one, or its allowed fallback).
    pub fn precision(&self) -> Precision {
        self.region.precision()
    }

    /// Enters the model's precision region on this thread until the guard is dropped:
    /// `let _region = model.enter()?;` in a hand-written loop, around the forward pass and
    /// `loss.backward()`, as `with torch.autocast(...)` in PyTorch.
    pub fn enter(&self) -> Result<RegionGuard, RegionError> {
        self.region.enter()
    }

    /// Runs `f` on the model inside its precision region.
    ///
    /// ```
    /// use burn::backend::{Autodiff, Flex};
    /// use burn::nn::LinearConfig;
    /// use burn::optim::{GradientsParams, Optimizer, SgdConfig};
    /// use burn::tensor::{DType, Tensor};
    /// use burn_mixed::{Mixed, MixedPrecision, Precision};
    ///
    /// type B = Mixed<Autodiff<Flex>>;
    /// let device = Default::default();
    /// let prepared = MixedPrecision::new(Precision::MixedBf16)
    ///     .setup::<B, _, _>(&device, LinearConfig::new(4, 2).init::<B>(&device), SgdConfig::new().init())?;
    /// let (mut model, mut optimizer) = (prepared.model, prepared.optimizer);
    ///
    /// let x = Tensor::<B, 2>::ones([3, 4], &device);
    /// let (output_dtype, grads) = model.run(|net| {
    ///     let y = net.forward(x);
    ///     (y.dtype(), GradientsParams::from_grads(y.sum().backward(), net))
    /// })?;
    /// assert_eq!(output_dtype, DType::BF16); // the linear layer ran in bf16
    /// model = optimizer.step(0.1, model, grads);
    /// assert_eq!(model.module().weight.val().dtype(), DType::F32); // f32 master weights
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run<R>(&self, f: impl FnOnce(&M) -> R) -> Result<R, RegionError> {
        self.region.run(|| f(&self.module))
    }

    /// `run` for the step traits, which have no error channel.
    pub(crate) fn run_or_panic<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        self.region.run_or_panic(|| f(&self.module))
    }
}

impl<B: Backend, M: Module<B>> Module<B> for PrecisionModule<M> {
    type Record = M::Record;

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        self.module.collect_devices(devices)
    }

    fn fork(self, device: &B::Device) -> Self {
        self.map_module(|m| m.fork(device))
    }

    fn to_device(self, device: &B::Device) -> Self {
        self.map_module(|m| m.to_device(device))
    }

    fn no_grad(self) -> Self {
        self.map_module(Module::no_grad)
    }

    fn num_params(&self) -> usize {
        self.module.num_params()
    }

    fn visit<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        self.module.visit(visitor)
    }

    fn map<P: ModuleMapper<B>>(self, mapper: &mut P) -> Self {
        self.map_module(|m| m.map(mapper))
    }

    fn load_record(self, record: Self::Record) -> Self {
        self.map_module(|m| m.load_record(record))
    }

    fn into_record(self) -> Self::Record {
        self.module.into_record()
    }
}

/// `valid()` keeps the region (scaler included, so that `from_inner` gives back the same
/// training region): validation runs under the training precision, as burn-train expects.
impl<B: AutodiffBackend, M: AutodiffModule<B>> AutodiffModule<B> for PrecisionModule<M> {
    type InnerModule = PrecisionModule<M::InnerModule>;

    fn valid(&self) -> Self::InnerModule {
        PrecisionModule::new(self.module.valid(), self.region.clone())
    }

    fn from_inner(inner: Self::InnerModule) -> Self {
        PrecisionModule::new(M::from_inner(inner.module), inner.region)
    }
}

impl<B: AutodiffBackend, M: HasAutodiffModule<B>> HasAutodiffModule<B> for PrecisionModule<M> {
    type TrainModule = PrecisionModule<M::TrainModule>;
}

impl<M: fmt::Display> fmt::Display for PrecisionModule<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\nprecision: {}", self.module, self.region.precision())
    }
}
