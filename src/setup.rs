//! `MixedPrecision`: the Burn counterpart of Lightning Fabric's `fabric.setup(model,
//! optimizer)` for a chosen [`Precision`].
//!
//! | precision | parameters | ops on the device | optimizer |
//! |---|---|---|---|
//! | `32-true` | f32 | as given (bit-identical to the bare backend) | as given |
//! | `16-mixed` | f32 | autocast to f16 by default | unscaled, skipped on overflow (`GradScaler`) |
//! | `bf16-mixed` | f32 | autocast to bf16 by default | outside autocast, never scaled |
//! | `16-true` / `bf16-true` | f16 / bf16 | in the parameters' dtype | outside autocast |
//! | `64-true` | f64 | in f64 | outside autocast |
//!
//! Setup changes nothing process-wide for the mixed precisions: the model comes back as a
//! [`PrecisionModule`] whose region carries the precision (and the scaler), so the
//! precision applies to that model's work, on any thread, and to nothing else, and ends
//! when the prepared model and optimizer are dropped. The one process-wide effect is
//! Burn's own: the `-true` precisions may make their dtype the device's default for new
//! tensors, which Burn allows once per device and never undoes (see
//! [`MixedPrecision::with_device_default_dtype`]).

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend, get_device_settings, set_default_float_dtype};
use burn::tensor::{DType, FloatDType, Tensor};
use core::fmt;

use crate::autocast::dtype_name;
use crate::convert::convert_module;
use crate::module::PrecisionModule;
use crate::precision::Precision;
use crate::region::PrecisionRegion;
use crate::scaler::{GradScaler, GradScalerConfig, PrecisionOptimizer, ScalerConfigError};

/// Why a precision could not be set up.
#[derive(Clone, PartialEq)]
pub enum SetupError {
    /// The backend cannot compute in the precision's dtype on this device.
    Unsupported {
        /// The precision asked for.
        precision: Precision,
        /// The backend's name.
        backend: String,
        /// The dtype it cannot compute in.
        dtype: &'static str,
        /// The precisions that would run on this device.
        working: Vec<Precision>,
    },
    /// The loss scaler's settings are invalid.
    Scaler(ScalerConfigError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Unsupported { precision, backend, dtype, working } => {
                let working: Vec<_> = working.iter().map(|p| p.as_str()).collect();
                write!(
                    f,
                    "precision {precision} needs {dtype}, which backend {backend} does not support on this device; \
                     precisions that work here: {}",
                    working.join(", ")
                )?;
                if *precision == Precision::Mixed16 && working.contains(&"bf16-mixed") {
                    write!(f, " (or allow the fallback to bf16-mixed)")?;
                }
                Ok(())
            }
            SetupError::Scaler(err) => write!(f, "{err}"),
        }
    }
}

/// The [`Display`](fmt::Display) message: a `main` returning `Result<(), Box<dyn Error>>`
/// prints an error's `Debug`, and that should say what is wrong and what to do. The
/// variants hold the same facts as fields, for code that matches on them.
impl fmt::Debug for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for SetupError {}

/// A model and optimizer made ready for a precision by [`MixedPrecision::setup`].
pub struct Prepared<M, O> {
    /// The model, bound to its precision: hand it to burn-train's `Learner` as it is, or
    /// enter its region in a hand-written loop.
    pub model: PrecisionModule<M>,
    /// The optimizer, wrapped to step outside autocast and (under 16-mixed) behind the loss
    /// scaler.
    pub optimizer: PrecisionOptimizer<O>,
    /// The precision in force (differs from the requested one only after a fallback).
    pub precision: Precision,
    /// The loss scaler (16-mixed only); also reachable through the optimizer.
    pub scaler: Option<GradScaler>,
}

/// A precision plus how to set it up.
#[derive(Clone, Debug)]
pub struct MixedPrecision {
    precision: Precision,
    fallback: bool,
    scaler: GradScalerConfig,
    /// A scaler to share with models set up before (16-mixed only).
    shared_scaler: Option<GradScaler>,
    default_dtype: bool,
}

impl PartialEq for MixedPrecision {
    fn eq(&self, other: &Self) -> bool {
        let same_shared = match (&self.shared_scaler, &other.shared_scaler) {
            (Some(a), Some(b)) => a.same_as(b),
            (a, b) => a.is_none() && b.is_none(),
        };
        self.precision == other.precision
            && self.fallback == other.fallback
            && self.scaler == other.scaler
            && self.default_dtype == other.default_dtype
            && same_shared
    }
}

impl MixedPrecision {
    /// A setup for `precision`, with the default loss scaler, no fallback, and (for the
    /// `-true` precisions) the device's default float dtype set to the precision's
    /// (see [`MixedPrecision::with_device_default_dtype`]).
    pub fn new(precision: Precision) -> Self {
        Self { precision, fallback: false, scaler: GradScalerConfig::default(), shared_scaler: None, default_dtype: true }
    }

    /// Whether the `-true` precisions make their dtype the device's default for new
    /// tensors (default: yes). That default is Burn's, process-wide: Burn fixes it once per
    /// device, before the device's first tensor, and nothing can undo it, so it outlives
    /// the prepared model and applies to every model on the device. Turn this off when
    /// other code in the process keeps using the device in f32 (tests, a second model);
    /// inputs then go through [`MixedPrecision::input`]. The mixed precisions never touch
    /// it.
    pub fn with_device_default_dtype(mut self, set: bool) -> Self {
        self.default_dtype = set;
        self
    }

    /// Opt in to falling back between f16 and bf16 (16-mixed <-> bf16-mixed, 16-true <->
    /// bf16-true) when the device lacks the requested one. Logged as a warning; never
    /// silent, never implicit.
    pub fn with_fallback(mut self, allow: bool) -> Self {
        self.fallback = allow;
        self
    }

    /// Loss-scaler settings for 16-mixed (ignored by every other precision).
    pub fn with_scaler(mut self, config: GradScalerConfig) -> Self {
        self.scaler = config;
        self
    }

    /// Under 16-mixed, use `scaler` (e.g. another prepared model's) instead of a new one:
    /// PyTorch's recipe for several models or optimizers trained from one loss (a GAN, a
    /// model split into parts). Declare how many optimizers step per iteration with
    /// [`GradScaler::set_optimizers_per_step`]. Ignored by every other precision.
    pub fn with_shared_scaler(mut self, scaler: &GradScaler) -> Self {
        self.shared_scaler = Some(scaler.clone());
        self
    }

    /// The precision asked for (before any fallback).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The precision that will run on `device`: the requested one, or its fallback.
    pub fn resolve<B: Backend>(&self, device: &B::Device) -> Result<Precision, SetupError> {
        let supported = |p: Precision| [p.compute_dtype(), p.param_dtype()].into_iter().all(|d| B::supports_dtype(device, DType::from(d)));
        if supported(self.precision) {
            return Ok(self.precision);
        }
        let swapped = match self.precision {
            Precision::Mixed16 => Some(Precision::MixedBf16),
            Precision::MixedBf16 => Some(Precision::Mixed16),
            Precision::True16 => Some(Precision::TrueBf16),
            Precision::TrueBf16 => Some(Precision::True16),
            _ => None,
        };
        if let Some(fallback) = swapped.filter(|p| self.fallback && supported(*p)) {
            log::warn!(
                "precision {} is not supported by {} on this device; falling back to {fallback} as allowed",
                self.precision,
                B::name(device)
            );
            return Ok(fallback);
        }
        Err(SetupError::Unsupported {
            precision: self.precision,
            backend: B::name(device),
            dtype: dtype_name(self.precision.compute_dtype()),
            working: Precision::ALL.into_iter().filter(|p| supported(*p)).collect(),
        })
    }

    /// This configuration with the precision that will run on `device` (after an allowed
    /// fallback), so that [`MixedPrecision::input`] converts for the dtype actually in use.
    pub fn resolved<B: Backend>(&self, device: &B::Device) -> Result<Self, SetupError> {
        Ok(Self { precision: self.resolve::<B>(device)?, ..self.clone() })
    }

    /// Prepares `model` for the precision (no optimizer: inference). Call the model through
    /// [`PrecisionModule::run`] or burn-train's `InferenceStep`.
    pub fn setup_module<B: Backend, M: Module<B>>(&self, device: &B::Device, model: M) -> Result<PrecisionModule<M>, SetupError> {
        let precision = self.resolve::<B>(device)?;
        self.prepare_module::<B, M>(device, model, precision, None)
    }

    /// Prepares `model` and `optimizer` for the precision: the counterpart of
    /// `fabric.setup(model, optimizer)`. Hand both to burn-train's `Learner` unchanged.
    ///
    /// ```
    /// use burn::backend::{Autodiff, Flex};
    /// use burn::nn::LinearConfig;
    /// use burn::optim::AdamConfig;
    /// use burn::tensor::DType;
    /// use burn_mixed::{Mixed, MixedPrecision, Precision, Prepared};
    ///
    /// type B = Mixed<Autodiff<Flex>>;
    /// let device = Default::default();
    /// let precision: Precision = "16-mixed".parse()?;
    /// let Prepared { model, scaler, precision, .. } = MixedPrecision::new(precision)
    ///     .setup::<B, _, _>(&device, LinearConfig::new(8, 8).init::<B>(&device), AdamConfig::new().init())?;
    /// assert_eq!(precision, Precision::Mixed16);
    /// assert_eq!(model.module().weight.val().dtype(), DType::F32); // parameters stay f32
    /// assert_eq!(scaler.expect("16-mixed scales the loss").scale(), 65536.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn setup<B, M, O>(&self, device: &B::Device, model: M, optimizer: O) -> Result<Prepared<M, O>, SetupError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let precision = self.resolve::<B>(device)?;
        let scaler = match (precision.uses_grad_scaler(), &self.shared_scaler) {
            (false, _) => None,
            (true, Some(shared)) => Some(shared.clone()),
            (true, None) => Some(GradScaler::new(self.scaler).map_err(SetupError::Scaler)?),
        };
        let model = self.prepare_module::<B, M>(device, model, precision, scaler.clone())?;
        Ok(Prepared { model, optimizer: PrecisionOptimizer::new(optimizer, scaler.clone()), precision, scaler })
    }

    fn prepare_module<B: Backend, M: Module<B>>(
        &self,
        device: &B::Device,
        model: M,
        precision: Precision,
        scaler: Option<GradScaler>,
    ) -> Result<PrecisionModule<M>, SetupError> {
        #[cfg(feature = "flex")]
        if precision.compute_dtype() == FloatDType::BF16 && B::name(device).contains("flex") {
            crate::kernels::warn_if_bf16_is_slow();
        }
        let param_dtype = precision.param_dtype();
        let model = match param_dtype {
            FloatDType::F32 => model,
            _ => {
                if self.default_dtype {
                    set_default_dtype::<B>(device, param_dtype);
                }
                convert_module(model, param_dtype)
            }
        };
        Ok(PrecisionModule::new(model, PrecisionRegion::new(precision, scaler)))
    }

    /// Converts a float input to the dtype the model computes in under the `-true`
    /// precisions (mixed precisions take f32 inputs and cast per op). After a fallback, call
    /// it on [`MixedPrecision::resolved`].
    pub fn input<B: Backend, const D: usize>(&self, tensor: Tensor<B, D>) -> Tensor<B, D> {
        match self.precision.is_mixed() {
            true => tensor,
            false => tensor.cast(self.precision.param_dtype()),
        }
    }

    /// Converts a float output back to f32, as Fabric returns outputs in the default dtype.
    pub fn output<B: Backend, const D: usize>(&self, tensor: Tensor<B, D>) -> Tensor<B, D> {
        tensor.cast(FloatDType::F32)
    }

    /// Runs `f` (e.g. a loss outside the model's forward) under the precision: autocast to
    /// its half dtype for the mixed precisions, no autocast otherwise. No loss scaler: a
    /// backward pass that must be scaled runs inside the prepared model's region.
    pub fn autocast<B: Backend, R>(&self, device: &B::Device, f: impl FnOnce() -> R) -> Result<R, SetupError> {
        let region = PrecisionRegion::new(self.resolve::<B>(device)?, None);
        Ok(region.run_or_panic(f))
    }
}

/// Makes tensors created on `device` default to `dtype`. Burn fixes a device's default
/// once, before its first tensor; when that already happened (the usual case: the model
/// was created first, in f32), created tensors keep the old default and the model's
/// inputs must go through [`MixedPrecision::input`]. That is expected, so it is logged at
/// info level only.
fn set_default_dtype<B: Backend>(device: &B::Device, dtype: FloatDType) {
    if get_device_settings::<B>(device).float_dtype == dtype {
        return;
    }
    if let Err(err) = set_default_float_dtype::<B>(device, dtype) {
        log::info!(
            "could not make {:?} the default float dtype of the device ({err:?}): Burn lets it be set only \
             before the first tensor; convert inputs with MixedPrecision::input",
            dtype
        );
    }
}
