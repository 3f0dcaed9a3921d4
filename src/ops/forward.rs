//! The one macro that forwards a backend trait from `Mixed<B>` to `B`.
//!
//! `Mixed<B>` reuses every primitive type of `B`, so a forwarded method is a plain call
//! `<B as Trait>::method(args)`. Each table line in `ops/*.rs` is the trait method's
//! signature, optionally followed by:
//!
//! - `as path::to::lift`: a function that re-labels a returned struct generic over the
//!   backend (`TensorPrimitive<B>` -> `TensorPrimitive<Mixed<B>>`); no data moves;
//! - `[Op: a, b; c]`: the autocast hook. `Op` names the op in the policy table
//!   (`autocast::policy`), `a, b` are its float tensor inputs and `c` its optional ones.
//!   The hook asks the policy for one target dtype and casts the inputs to it before the
//!   call; outside any autocast region it only unifies the dtypes of multi-input ops.
//! - `=> kernel`: after the casts, offer the arguments to the host kernel hook of that
//!   name in `crate::kernels`, which returns the result or hands the arguments back; handed back,
//!   they go to the inner backend as on any other line.
//!
//! Lines without a hook cost nothing over calling `B` directly.

macro_rules! forward_to_inner {
    // The `=> kernel` clause: offer the arguments, take them back when declined.
    (@kernel [] $inner:ident; $($arg:ident),*) => {};
    (@kernel [$kernel:ident] $inner:ident; $($arg:ident),*) => {
        #[allow(unused_parens)]
        let ($($arg),*) = match $crate::kernels::$kernel::<$inner>($($arg),*) {
            Ok(out) => return out,
            Err(args) => args,
        };
    };
    (
        <$inner:ident as $tr:path> {
            $(
                fn $name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)?
                    $(as $lift:path)?
                    $([$op:ident : $($cast:ident),+ $(; $($opt:ident),+)?])?
                    $(=> $kernel:ident)? ;
            )*
        }
    ) => {
        $(
            #[inline]
            fn $name($($arg: $ty),*) $(-> $ret)? {
                $(
                    let target = $crate::autocast::cast::target_dtype::<$inner>(
                        $crate::autocast::Op::$op,
                        &[$(Some(&$cast)),+ $($(, $opt.as_ref())+)?],
                    );
                    $(let $cast = $crate::autocast::cast::to_dtype::<$inner>($cast, target);)+
                    $($(let $opt = $opt.map(|t| $crate::autocast::cast::to_dtype::<$inner>(t, target));)+)?
                )?
                $crate::ops::forward::forward_to_inner!(@kernel [$($kernel)?] $inner; $($arg),*);
                let out = <$inner as $tr>::$name($($arg),*);
                $(let out = $lift(out);)?
                out
            }
        )*
    };
}

pub(crate) use forward_to_inner;
