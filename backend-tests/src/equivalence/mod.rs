//! Equivalence: outside any autocast region (precision `32-true`), `Mixed<B>` must give
//! bit-identical results to the bare backend `B`: same dtype, same shape, same bytes.
//!
//! `Mixed` only forwards to `B` here, so there is no tolerance: any difference is a
//! forwarding bug (a wrong method called, a default used instead of `B`'s override, a cast
//! inserted where none belongs). Each test runs one scenario, a function written once and
//! generic over the backend, on `B` and on `Mixed<B>` with identical inputs, and compares
//! every output it records (see [`crate::support::assert_equivalent`]).
//!
//! One test per op family; [`equivalence_tests!`](crate::equivalence_tests) instantiates
//! them for one backend.

pub mod activation;
pub mod autodiff;
pub mod autodiff_modules;
pub mod boolean;
pub mod float;
pub mod float_layout;
pub mod int;
pub mod module;
pub mod quantized;
pub mod transaction;

pub use activation::activations;
pub use autodiff::{autodiff_cnn, autodiff_mlp, autodiff_tensor_ops, backend_metadata};
pub use autodiff_modules::{autodiff_module_backward, autodiff_over_mixed};
pub use boolean::bool_ops;
pub use float::{float_arithmetic, float_creation, float_dtypes, float_unary_math};
pub use float_layout::{float_compare_sort, float_indexing, float_reductions, float_shape_ops};
pub use int::int_ops;
pub use module::{module_conv, module_layers, module_pool_interpolate};
pub use quantized::quantized;
pub use transaction::transactions;

/// Expands to one `#[test]` per equivalence family, for the backend `B` and the function
/// `device()` in scope at the call site.
#[macro_export]
macro_rules! equivalence_tests {
    () => {
        $crate::equivalence_tests!(@tests
            float_creation, float_arithmetic, float_unary_math, float_dtypes,
            float_reductions, float_shape_ops, float_indexing, float_compare_sort,
            int_ops, bool_ops,
            module_conv, module_pool_interpolate, module_layers,
            activations, quantized, transactions,
            autodiff_mlp, autodiff_cnn, autodiff_tensor_ops, autodiff_module_backward,
            autodiff_over_mixed, backend_metadata,
        );
    };
    (@tests $($family:ident),* $(,)?) => {
        $(
            #[test]
            fn $family() {
                $crate::equivalence::$family::<B>(&device());
            }
        )*
    };
}
