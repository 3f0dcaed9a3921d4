//! Autocast: per-op precision inside scoped regions.
//!
//! - [`policy`]: the declarative table (which op runs in which precision);
//! - [`context`]: the thread-local regions that switch autocast on and off;
//! - `cast`: the mechanism the forwarding code calls;
//! - `cache`: one cast per parameter per forward pass.

pub(crate) mod cache;
pub(crate) mod cast;
pub mod context;
pub mod policy;

pub use cache::{CastCacheStats, cast_cache_stats, clear_cast_cache, reset_cast_cache_stats, set_cast_cache};
pub use cast::widest;
pub use context::{AutocastError, AutocastGuard, AutocastState, autocast, autocast_state, check_dtype, dtype_name, no_autocast};
pub use policy::{AutocastPolicy, CastPolicy, Op};
