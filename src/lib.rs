//! Automatic mixed precision for Burn 0.21.
//!
//! [`Mixed<B>`] wraps any Burn backend and runs each op in the precision the autocast
//! policy gives it; [`Precision`] is the user's choice, in Lightning Fabric's vocabulary.

pub mod autocast;
mod backend;
pub mod convert;
mod device_map;
mod ops;
pub mod precision;
pub mod scaler;
pub mod setup;
pub mod train;

pub use backend::Mixed;
pub use setup::{MixedPrecision, Prepared, SetupError};
pub use scaler::{GradScaler, GradScalerConfig, PrecisionOptimizer};
pub use precision::{PRECISION_ENV, Precision, PrecisionError};
