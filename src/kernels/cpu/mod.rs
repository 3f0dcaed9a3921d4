//! The CPU loops of the host kernels, on host slices, by concern: half conversions
//! (`convert`), how work is split across threads (`threads`), products (`gemm`),
//! reductions (`reduce`), element-wise ops (`elementwise`), and the row kernels
//! (`softmax`, `layer_norm`). The AVX-512 loops, and with them the kernels' only unchecked
//! code, are in `simd`, behind safe functions the others call.
//!
//! Nothing here knows a tensor type: the Flex adapters (`kernels::flex`) hand these loops
//! their tensors' slices and build tensors from what they return.

pub(crate) mod convert;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod layer_norm;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod scratch;
pub(crate) mod simd;
pub(crate) mod softmax;
pub(crate) mod threads;
pub(crate) mod tile_gemm;
pub(crate) mod tile_pack;
pub(crate) mod unfold;

pub(crate) use convert::Half;
pub use simd::{HostIsa, host_isa};
pub(crate) use simd::{Out, filled};
pub use threads::{AWAKE_FOR, HostPoolError, join_host_pool};
