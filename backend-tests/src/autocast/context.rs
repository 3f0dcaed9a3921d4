//! Scope rules of autocast regions: nesting, disabling, unwinding, threads, and the error
//! for dtypes a backend cannot run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Barrier;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::autocast::{AutocastError, AutocastGuard, AutocastState, autocast, autocast_state, dtype_name};

use super::{half_dtypes, input};

/// The dtype a small matmul on `Mixed<B>` comes out in under the current state.
fn matmul_dtype<B: Backend>(device: &B::Device) -> DType {
    let a: Tensor<Mixed<B>, 2> = input([2, 3], 1, FloatDType::F32, device);
    let b: Tensor<Mixed<B>, 2> = input([3, 2], 2, FloatDType::F32, device);
    a.matmul(b).dtype()
}

pub fn nested_and_disabled_regions<B: Backend>(device: &B::Device) {
    assert_eq!(autocast_state(), AutocastState::Outside);
    assert_eq!(matmul_dtype::<B>(device), DType::F32);
    {
        let _off = AutocastGuard::disable();
        assert_eq!(autocast_state(), AutocastState::Disabled);
        assert_eq!(matmul_dtype::<B>(device), DType::F32);
    }
    assert_eq!(autocast_state(), AutocastState::Outside);

    let halves = half_dtypes::<B>(device);
    for &outer in &halves {
        let inner = *halves.iter().next_back().expect("non-empty");
        let _outer = AutocastGuard::enable::<Mixed<B>>(device, outer).expect("supported");
        assert_eq!(autocast_state(), AutocastState::Enabled(outer));
        assert_eq!(matmul_dtype::<B>(device), DType::from(outer));
        {
            let _off = AutocastGuard::disable();
            assert_eq!(matmul_dtype::<B>(device), DType::F32, "disabled inside enabled");
            {
                let _on = AutocastGuard::enable::<Mixed<B>>(device, inner).expect("supported");
                assert_eq!(autocast_state(), AutocastState::Enabled(inner));
                assert_eq!(matmul_dtype::<B>(device), DType::from(inner), "enabled inside disabled");
            }
            assert_eq!(autocast_state(), AutocastState::Disabled);
        }
        assert_eq!(autocast_state(), AutocastState::Enabled(outer));
        // The closure form nests the same way and hands back the closure's value.
        let dtype = autocast::<Mixed<B>, _>(device, inner, || matmul_dtype::<B>(device)).expect("supported");
        assert_eq!(dtype, DType::from(inner));
        assert_eq!(autocast_state(), AutocastState::Enabled(outer));
    }
    assert_eq!(autocast_state(), AutocastState::Outside);
    assert_eq!(matmul_dtype::<B>(device), DType::F32);
}

pub fn restored_after_panic<B: Backend>(device: &B::Device) {
    for half in half_dtypes::<B>(device) {
        let _outer = AutocastGuard::enable::<Mixed<B>>(device, half).expect("supported");
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _off = AutocastGuard::disable();
            panic!("failure inside a disabled region");
        }));
        assert!(result.is_err());
        assert_eq!(autocast_state(), AutocastState::Enabled(half));
        assert_eq!(matmul_dtype::<B>(device), DType::from(half));
    }
    let result = catch_unwind(AssertUnwindSafe(|| burn_mixed::autocast::no_autocast(|| panic!("failure inside a closure region"))));
    assert!(result.is_err());
    assert_eq!(autocast_state(), AutocastState::Outside);
}

pub fn threads_have_their_own_context<B: Backend>(device: &B::Device) {
    let Some(&half) = half_dtypes::<B>(device).first() else {
        // Without a half dtype no region can be enabled; a disabled one must still stay local.
        let _off = AutocastGuard::disable();
        let seen = std::thread::scope(|s| s.spawn(autocast_state).join().expect("thread ran"));
        assert_eq!(seen, AutocastState::Outside);
        return;
    };
    // Both threads hold their region at the same time, so a shared state would show.
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let other = s.spawn(|| {
            let _off = AutocastGuard::disable();
            barrier.wait();
            let dtype = matmul_dtype::<B>(device);
            barrier.wait();
            (autocast_state(), dtype)
        });
        let _on = AutocastGuard::enable::<Mixed<B>>(device, half).expect("supported");
        barrier.wait();
        let mine = matmul_dtype::<B>(device);
        barrier.wait();
        let (their_state, their_dtype) = other.join().expect("thread ran");
        assert_eq!(mine, DType::from(half));
        assert_eq!(their_state, AutocastState::Disabled);
        assert_eq!(their_dtype, DType::F32);
        assert_eq!(autocast_state(), AutocastState::Enabled(half));
    });
}

pub fn unsupported_dtype_is_an_error<B: Backend>(device: &B::Device) {
    let supported = half_dtypes::<B>(device);
    for dtype in [FloatDType::F16, FloatDType::BF16] {
        let result = AutocastGuard::enable::<Mixed<B>>(device, dtype);
        if supported.contains(&dtype) {
            assert!(result.is_ok(), "{dtype:?} is supported by {}", B::name(device));
            continue;
        }
        let err = result.err().expect("unsupported dtype must be refused");
        assert!(matches!(err, AutocastError::Unsupported { .. }));
        let message = err.to_string();
        assert!(message.contains(&Mixed::<B>::name(device)), "{message}");
        assert!(message.contains(dtype_name(dtype)), "{message}");
        assert!(message.contains("32-true"), "names an alternative: {message}");
        assert_eq!(autocast_state(), AutocastState::Outside, "a refused region changes nothing");
    }
    let err = AutocastGuard::enable::<Mixed<B>>(device, FloatDType::F32).err().expect("f32 is not a half dtype");
    assert_eq!(err, AutocastError::NotHalf { dtype: FloatDType::F32 });
    assert_eq!(err.to_string(), "autocast dtype must be f16 or bf16, got f32");
}
