//! Conversion of a module's float parameters to another dtype (the `-true` precisions).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

/// Casts every float parameter of `module` to `dtype`, keeping each parameter's id (so
/// optimizer state and records still line up) and its `require_grad` flag.
pub fn convert_module<B: Backend, M: Module<B>>(module: M, dtype: FloatDType) -> M {
    module.map(&mut CastParams { dtype })
}

struct CastParams {
    dtype: FloatDType,
}

impl<B: Backend> ModuleMapper<B> for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        // Detach: the converted tensor is a new leaf, not a node hanging off the old one.
        let mut tensor = tensor.cast(self.dtype).detach();
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}
