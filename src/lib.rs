//! Automatic mixed precision for Burn 0.21.
//!
//! [`Mixed<B>`] wraps any Burn backend and runs each op in the precision the autocast
//! policy gives it; [`Precision`] is the user's choice, in Lightning Fabric's vocabulary.

pub mod autocast;
mod backend;
mod ops;
pub mod precision;

pub use backend::Mixed;
pub use precision::{PRECISION_ENV, Precision, PrecisionDType, PrecisionError};
