//! The cross-backend suite, instantiated once per backend compiled in.

#[cfg(feature = "flex")]
mod flex {
    type B = burn::backend::Flex;
    fn device() -> <B as burn::tensor::backend::BackendTypes>::Device {
        Default::default()
    }
    backend_tests::equivalence_tests!();
    backend_tests::autocast_tests!();
    backend_tests::precision_tests!();
}

#[cfg(feature = "ndarray")]
mod ndarray {
    type B = burn::backend::NdArray;
    fn device() -> <B as burn::tensor::backend::BackendTypes>::Device {
        Default::default()
    }
    backend_tests::equivalence_tests!();
    backend_tests::autocast_tests!();
    backend_tests::precision_tests!();
}

#[cfg(feature = "wgpu")]
mod wgpu {
    type B = burn::backend::Wgpu;
    fn device() -> <B as burn::tensor::backend::BackendTypes>::Device {
        Default::default()
    }
    backend_tests::equivalence_tests!();
    backend_tests::autocast_tests!();
    backend_tests::precision_tests!();
}

#[cfg(feature = "cuda")]
mod cuda {
    type B = burn::backend::Cuda;
    fn device() -> <B as burn::tensor::backend::BackendTypes>::Device {
        Default::default()
    }
    backend_tests::equivalence_tests!();
    backend_tests::autocast_tests!();
    backend_tests::precision_tests!();
}
