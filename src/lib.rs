//! Automatic mixed precision for Burn 0.21.
//!
//! [`Mixed<B>`] wraps any Burn backend and runs each op in the precision the autocast
//! policy gives it; [`Precision`] is the user's choice, in Lightning Fabric's vocabulary;
//! [`MixedPrecision::setup`] binds a model to it ([`PrecisionModule`]), so the precision
//! applies to that model's work, on whichever thread runs it, and to nothing else.

#![warn(missing_docs)]

// Under Burn's `distributed` feature, `Autodiff<B>` is an autodiff backend only when `B`
// implements `DistributedBackend`, which Flex and NdArray do not: their training would not
// compile, with errors deep inside Burn. Say so up front.
#[cfg(all(feature = "distributed", any(feature = "flex", feature = "ndarray")))]
compile_error!(
    "burn-mixed: feature `distributed` cannot be combined with `flex` or `ndarray` (Burn 0.21's autodiff \
     requires a DistributedBackend, which Flex and NdArray do not implement); build with \
     `--no-default-features --features wgpu,distributed` or `cuda,distributed`"
);

pub mod autocast;
mod backend;
pub mod convert;
pub mod data_parallel;
pub mod kernels;
mod module;
mod ops;
pub mod precision;
pub mod region;
pub mod scaler;
pub mod setup;
pub mod train;

pub use backend::Mixed;
pub use module::PrecisionModule;
pub use precision::{PRECISION_ENV, Precision, PrecisionError};
pub use region::{PrecisionRegion, RegionError, RegionGuard};
pub use scaler::{GradScaler, GradScalerConfig, PrecisionOptimizer};
pub use setup::{MixedPrecision, Prepared, SetupError};

#[cfg(test)]
mod error_debug_tests;
