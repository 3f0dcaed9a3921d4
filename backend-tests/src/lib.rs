//! One test suite for `burn_mixed::Mixed<B>`, run on every backend.
//!
//! Each test is a generic function over the bare backend `B`; the macros at the bottom of
//! each module instantiate them as `#[test]`s for one concrete backend and device, in
//! `tests/backends.rs`.

pub mod autocast;
pub mod equivalence;
pub mod precision;
pub mod support;
