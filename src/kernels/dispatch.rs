//! From `Mixed<B>`'s generic `B` to a backend's own kernels: the registry of the backends
//! with host kernels, and the dispatch that moves a call's arguments into the first of them
//! that `B` is (and its result or declined arguments back).
//!
//! `Mixed<B>` is generic over any backend, and Rust has no specialization: whether `B` is
//! one with host kernels is a comparison of type ids, made once per call for the few ops
//! that have kernels (and only for half-precision inputs).

use core::any::Any;

/// Moves `value` into type `U` when `T` and `U` are the same type, or hands it back.
// Unused in a build whose registry is empty (no `flex`): nothing is dispatched there.
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
pub(crate) fn same_type<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(moved) => Ok(moved.take().expect("filled just above")),
        None => Err(slot.expect("untouched")),
    }
}

/// The backends with host kernels (the one list): expands `$then!($($arg)* [backends])`.
#[cfg(feature = "flex")]
macro_rules! registry {
    ($then:ident!($($arg:tt)*)) => {
        $crate::kernels::dispatch::$then!($($arg)* [burn::backend::Flex, burn::backend::Autodiff<burn::backend::Flex>])
    };
}
#[cfg(not(feature = "flex"))]
macro_rules! registry {
    ($then:ident!($($arg:tt)*)) => {
        $crate::kernels::dispatch::$then!($($arg)* [])
    };
}

/// `HostKernels::$method` of the first backend in the list that `$B` is, on `$args`
/// (moved into that backend's types, and the result or the declined arguments moved
/// back), or `Err($args)` when `$B` is none of them.
macro_rules! dispatch_to {
    ($B:ty, $args:expr, $method:ident, [$($K:ty),* $(,)?]) => {{
        #[allow(unused_imports)]
        use $crate::kernels::HostKernels as _;
        #[cfg(feature = "flex")]
        #[allow(unused_imports)]
        use $crate::kernels::Composed as _;
        #[allow(unused_imports)]
        use $crate::kernels::dispatch::same_type;
        // `Ok(result)` once a backend of the list took the call, `Err(args)` until then.
        #[allow(unused_mut)]
        let mut pending = Err($args);
        $(
            pending = match pending {
                Err(args) => match same_type::<_, _>(args) {
                    Ok(native) => Ok(match <$K>::$method(native) {
                        Ok(out) => Ok(same_type(out).unwrap_or_else(|_| unreachable!("same backend"))),
                        Err(back) => Err(same_type(back).unwrap_or_else(|_| unreachable!("same backend"))),
                    }),
                    Err(unchanged) => Err(unchanged),
                },
                taken => taken,
            };
        )*
        pending.unwrap_or_else(Err)
    }};
}

/// `$method` of `$B`'s host kernels on `$args`, or `Err($args)` when `$B` has none.
macro_rules! host_kernel {
    ($B:ty, $args:expr, $method:ident) => {
        $crate::kernels::dispatch::registry!(dispatch_to!($B, $args, $method,))
    };
}
pub(crate) use {dispatch_to, host_kernel, registry};

/// Whether `$B` is one of the listed backends.
macro_rules! is_one_of {
    ($B:ty, [$($K:ty),* $(,)?]) => {
        false $(|| core::any::TypeId::of::<$B>() == core::any::TypeId::of::<$K>())*
    };
}
use is_one_of;

/// Whether `B` is one of the backends with host kernels.
pub(crate) fn has_host_kernels<B: 'static>() -> bool {
    registry!(is_one_of!(B,))
}
