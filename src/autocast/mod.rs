//! Autocast: per-op precision inside scoped regions.
//!
//! - [`policy`]: the declarative table (which op runs in which precision);
//! - [`context`]: the thread-local regions that switch autocast on and off;
//! - [`device`]: the per-device default that applies outside regions;
//! - `cast`: the mechanism the forwarding code calls.

pub(crate) mod cast;
pub mod context;
pub mod device;
pub mod policy;

pub use cast::widest;
pub use context::{
    AutocastError, AutocastGuard, AutocastState, autocast, autocast_state, check_dtype, dtype_name,
    no_autocast,
};
pub use device::{device_autocast, set_device_autocast};
pub use policy::{AutocastPolicy, CastPolicy, Op};
