//! The precision region: what a prepared model's work runs under, on whichever thread runs
//! it.
//!
//! A [`PrecisionRegion`] is a value (a precision plus, under 16-mixed, the loss scaler)
//! owned by a prepared model ([`crate::PrecisionModule`]). Entering it on a thread opens an
//! autocast region for the precision and makes its scaler the one that thread's
//! `loss.backward()` scales by; leaving it (by return or by unwinding) restores exactly what
//! the thread had before. Nothing is process-wide: a model that never entered a region, on
//! this thread or another, runs as if burn-mixed were not there, and when the prepared model
//! and its optimizer are dropped, nothing of their precision remains.
//!
//! burn-train runs training steps on its own worker threads; the prepared model's
//! `TrainStep` and `InferenceStep` enter the region on the thread that calls them, so the
//! precision follows the model wherever the steps run.

use core::cell::RefCell;
use core::fmt;
use core::marker::PhantomData;

use burn::tensor::FloatDType;

use crate::autocast::AutocastGuard;
use crate::precision::Precision;
use crate::scaler::GradScaler;

thread_local! {
    /// The loss scaler of the innermost region on this thread that has one.
    static SCALER: RefCell<Option<GradScaler>> = const { RefCell::new(None) };
}

/// A precision and the state its work needs (the loss scaler, under 16-mixed).
#[derive(Clone, Debug)]
pub struct PrecisionRegion {
    precision: Precision,
    /// The half dtype autocast runs in, for the mixed precisions (checked against the
    /// backend at setup).
    autocast: Option<FloatDType>,
    scaler: Option<GradScaler>,
}

/// Why a region could not be entered.
#[derive(Clone, PartialEq, Eq)]
pub enum RegionError {
    /// The thread is inside the region of another model whose loss scaler differs: a
    /// backward pass there could be scaled by only one of them.
    ConflictingScaler {
        /// The precision of the region that could not be entered.
        entering: Precision,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionError::ConflictingScaler { entering } => write!(
                f,
                "cannot enter a {entering} region with its own loss scaler inside another model's region that \
                 already has a different one: a backward pass can be scaled by one scaler only; share one \
                 GradScaler between the models (MixedPrecision::with_shared_scaler) or run them one after the other"
            ),
        }
    }
}

/// The [`Display`](fmt::Display) message: a `main` returning `Result<(), Box<dyn Error>>`
/// prints an error's `Debug`, and that should say what is wrong and what to do. The
/// variants hold the same facts as fields, for code that matches on them.
impl fmt::Debug for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for RegionError {}

impl PrecisionRegion {
    /// A region for `precision`. `scaler` is used by 16-mixed only; the caller has checked
    /// that the backend supports the precision's dtypes.
    pub(crate) fn new(precision: Precision, scaler: Option<GradScaler>) -> Self {
        let autocast = precision.is_mixed().then(|| precision.compute_dtype());
        Self { precision, autocast, scaler }
    }

    /// The precision this region runs.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The loss scaler (16-mixed only).
    pub fn scaler(&self) -> Option<&GradScaler> {
        self.scaler.as_ref()
    }

    /// Enters the region on this thread until the guard is dropped: autocast to the
    /// precision's half dtype (mixed precisions) or off (every other precision, whatever
    /// encloses it), and the region's scaler for backward passes.
    pub fn enter(&self) -> Result<RegionGuard, RegionError> {
        let previous_scaler = match &self.scaler {
            Some(scaler) => {
                let previous = SCALER.with(|s| s.borrow().clone());
                if previous.as_ref().is_some_and(|p| !p.same_as(scaler)) {
                    return Err(RegionError::ConflictingScaler { entering: self.precision });
                }
                Some(SCALER.with(|s| s.replace(Some(scaler.clone()))))
            }
            // A region without a scaler leaves an enclosing one in place: an inference
            // sub-model called inside a training step does not unscale that step's loss.
            None => None,
        };
        let autocast = match self.autocast {
            Some(dtype) => AutocastGuard::enabled_unchecked(dtype),
            None => AutocastGuard::disable(),
        };
        Ok(RegionGuard { autocast, previous_scaler, _thread_bound: PhantomData })
    }

    /// Runs `f` inside the region.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R, RegionError> {
        let _region = self.enter()?;
        Ok(f())
    }

    /// [`PrecisionRegion::run`] for the callers that have no error channel (burn-train's
    /// step traits): a conflict is a programming error there, reported with its message.
    pub(crate) fn run_or_panic<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.run(f) {
            Ok(r) => r,
            Err(err) => panic!("{err}"),
        }
    }
}

/// An entered region; the thread's previous state comes back when it is dropped.
///
/// Neither `Send` nor `Sync`: a region belongs to the thread that entered it.
#[must_use = "the region ends as soon as the guard is dropped"]
pub struct RegionGuard {
    // Dropped after `Drop::drop` below runs, which restores the scaler first.
    #[allow(dead_code)]
    autocast: AutocastGuard,
    /// `Some(previous)` when this region installed its scaler.
    previous_scaler: Option<Option<GradScaler>>,
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for RegionGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous_scaler.take() {
            SCALER.with(|s| *s.borrow_mut() = previous);
        }
    }
}

/// The scale this thread's backward pass multiplies its loss by, if it runs inside a
/// region with an enabled scaler; the scaler records that its scale was used.
pub(crate) fn loss_scale_for_backward() -> Option<f32> {
    SCALER.with(|s| s.borrow().as_ref().and_then(GradScaler::scale_for_backward))
}
