//! What the training and inference examples share: the two tasks and their data, the two
//! models, the artifacts one leaves for the other, and the GPU adapter check.
//!
//! `examples/infer.rs` includes it as `mod common;`, `examples/train/main.rs` with
//! `#[path = "../common/mod.rs"]`. The `multiprocess/` workspace includes `data.rs`,
//! `sequence.rs` and `transformer.rs` on their own, as modules of its crate root: that is
//! why they refer to each other through `super::`, which names this module here and the
//! crate root there.

// Each example uses part of it: the inference example neither trains nor saves, the
// training example neither loads nor lists predictions.
#![allow(dead_code)]

pub mod adapter;
pub mod artifacts;
pub mod data;
pub mod mlp;
pub mod model;
pub mod sequence;
pub mod task;
pub mod transformer;
