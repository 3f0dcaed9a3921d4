//! The scoped autocast context: thread-local, nestable, restored on exit and on panic.
//!
//! Scope rules:
//! - A region applies to the thread that opened it, and only while its guard lives; other
//!   threads (data loaders, a second training loop) keep their own state.
//! - Regions nest. The innermost one wins: an enabled region inside a disabled one turns
//!   autocast back on; a disabled region inside an enabled one forces full precision
//!   (e.g. around scatter-heavy code, or an optimizer step).
//! - Leaving a region, by return or by unwinding, restores exactly the state that was in
//!   force when it was opened.
//! - Outside every region, autocast is off and `Mixed<B>` behaves like `B`, except that
//!   multi-input ops still unify their input dtypes. Nothing process-wide turns it on: a
//!   prepared model's precision reaches its work through the region it enters
//!   ([`crate::region`]), never through the device.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType};

/// The autocast state of the current thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutocastState {
    /// No region is open on this thread: autocast is off.
    Outside,
    /// Inside an enabled region: lower-precision ops run in this dtype.
    Enabled(FloatDType),
    /// Inside a disabled region: every op keeps its inputs' precision.
    Disabled,
}

thread_local! {
    static STATE: Cell<AutocastState> = const { Cell::new(AutocastState::Outside) };
}

/// The autocast state of the calling thread.
pub fn autocast_state() -> AutocastState {
    STATE.with(Cell::get)
}

/// The dtype lower-precision ops run in right now on this thread, if autocast is on.
#[inline]
pub(crate) fn active_dtype() -> Option<FloatDType> {
    match STATE.with(Cell::get) {
        AutocastState::Enabled(dtype) => Some(dtype),
        AutocastState::Disabled | AutocastState::Outside => None,
    }
}

/// Why autocast could not be turned on.
#[derive(Clone, PartialEq, Eq)]
pub enum AutocastError {
    /// Autocast runs ops in f16 or bf16; another dtype was asked for.
    NotHalf {
        /// The dtype asked for.
        dtype: FloatDType,
    },
    /// The backend cannot compute in the requested dtype on this device.
    Unsupported {
        /// The backend's name.
        backend: String,
        /// The dtype asked for.
        dtype: FloatDType,
        /// The half dtypes the backend computes in on this device.
        supported: Vec<FloatDType>,
    },
}

/// Short lowercase dtype name, as users write it.
pub fn dtype_name(dtype: FloatDType) -> &'static str {
    match dtype {
        FloatDType::F64 => "f64",
        FloatDType::F32 => "f32",
        FloatDType::Flex32 => "flex32",
        FloatDType::F16 => "f16",
        FloatDType::BF16 => "bf16",
    }
}

impl fmt::Display for AutocastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AutocastError::NotHalf { dtype } => write!(f, "autocast dtype must be f16 or bf16, got {}", dtype_name(*dtype)),
            AutocastError::Unsupported { backend, dtype, supported } => {
                let names: Vec<_> = supported.iter().map(|d| dtype_name(*d)).collect();
                let half: Vec<_> = supported
                    .iter()
                    .filter(|d| matches!(d, FloatDType::F16 | FloatDType::BF16))
                    .map(|d| format!("{}-mixed", if *d == FloatDType::F16 { "16" } else { "bf16" }))
                    .collect();
                write!(
                    f,
                    "backend {backend} does not support {} on this device (it supports: {}); ",
                    dtype_name(*dtype),
                    names.join(", ")
                )?;
                if half.is_empty() {
                    write!(f, "use precision 32-true or 64-true, or a backend with {} (flex, cuda)", dtype_name(*dtype))
                } else {
                    write!(f, "use {} instead, or 32-true", half.join(" or "))
                }
            }
        }
    }
}

/// The [`Display`](fmt::Display) message: a `main` returning `Result<(), Box<dyn Error>>`
/// prints an error's `Debug`, and that should say what is wrong and what to do. The
/// variants hold the same facts as fields, for code that matches on them.
impl fmt::Debug for AutocastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for AutocastError {}

/// Checks that `B` can compute in `dtype` on `device`; the error lists what it can do.
pub fn check_dtype<B: Backend>(device: &B::Device, dtype: FloatDType) -> Result<(), AutocastError> {
    if B::supports_dtype(device, DType::from(dtype)) {
        return Ok(());
    }
    let supported = [FloatDType::F64, FloatDType::F32, FloatDType::F16, FloatDType::BF16]
        .into_iter()
        .filter(|d| B::supports_dtype(device, DType::from(*d)))
        .collect();
    Err(AutocastError::Unsupported { backend: B::name(device), dtype, supported })
}

/// An open autocast region. The previous state comes back when it is dropped.
///
/// The guard is neither `Send` nor `Sync`: a region belongs to the thread that opened it.
#[must_use = "the region ends as soon as the guard is dropped"]
pub struct AutocastGuard {
    previous: AutocastState,
    _thread_bound: PhantomData<*const ()>,
}

impl AutocastGuard {
    fn enter(state: AutocastState) -> Self {
        let previous = STATE.with(|s| s.replace(state));
        Self { previous, _thread_bound: PhantomData }
    }

    /// Opens a region where lower-precision ops run in `dtype` (f16 or bf16), after
    /// checking that `B` supports it on `device`.
    pub fn enable<B: Backend>(device: &B::Device, dtype: FloatDType) -> Result<Self, AutocastError> {
        if !matches!(dtype, FloatDType::F16 | FloatDType::BF16) {
            return Err(AutocastError::NotHalf { dtype });
        }
        check_dtype::<B>(device, dtype)?;
        Ok(Self::enter(AutocastState::Enabled(dtype)))
    }

    /// [`AutocastGuard::enable`] for a dtype already checked against the backend (a
    /// prepared model's region, checked at setup).
    pub(crate) fn enabled_unchecked(dtype: FloatDType) -> Self {
        Self::enter(AutocastState::Enabled(dtype))
    }

    /// Opens a region where autocast is off, whatever encloses it.
    pub fn disable() -> Self {
        Self::enter(AutocastState::Disabled)
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        STATE.with(|s| s.set(self.previous));
        if self.previous == AutocastState::Outside {
            // The outermost region closed: its cached casts must not outlive it.
            super::cache::clear_cast_cache();
        }
    }
}

/// Runs `f` with autocast to `dtype`; see [`AutocastGuard::enable`].
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::activation::softmax;
/// use burn::tensor::{DType, FloatDType, Tensor};
/// use burn_mixed::Mixed;
/// use burn_mixed::autocast::autocast;
///
/// let device = Default::default();
/// let x = Tensor::<Mixed<Flex>, 2>::ones([2, 2], &device);
/// let y = autocast::<Mixed<Flex>, _>(&device, FloatDType::F16, || softmax(x.clone().matmul(x.clone()), 1))?;
/// assert_eq!(y.dtype(), DType::F32); // the product ran in f16, softmax in f32
///
/// // A backend that cannot compute in the dtype is an error that says so, not a panic.
/// # #[cfg(feature = "ndarray")] {
/// use burn::backend::NdArray;
/// let refused = autocast::<Mixed<NdArray>, _>(&Default::default(), FloatDType::F16, || ()).unwrap_err();
/// assert!(refused.to_string().contains("does not support f16"), "{refused}");
/// # }
/// # Ok::<(), burn_mixed::autocast::AutocastError>(())
/// ```
pub fn autocast<B: Backend, R>(device: &B::Device, dtype: FloatDType, f: impl FnOnce() -> R) -> Result<R, AutocastError> {
    let _region = AutocastGuard::enable::<B>(device, dtype)?;
    Ok(f())
}

/// Runs `f` with autocast off (optimizer steps, scatter-heavy code, metrics).
pub fn no_autocast<R>(f: impl FnOnce() -> R) -> R {
    let _region = AutocastGuard::disable();
    f()
}
