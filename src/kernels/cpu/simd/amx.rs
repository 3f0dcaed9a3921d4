//! AMX's bf16 tiles: the products' inner loop on the CPU's matrix unit. `tdpbf16ps`
//! multiplies a 16 x 32 bf16 tile by a 32 x 16 one (stored as 16 rows of 16 column pairs)
//! into a 16 x 16 f32 tile, exactly as a chain of f32 multiply-adds: each bf16 product is
//! exact in f32 and each addition rounds once to nearest even. Subnormal inputs read as
//! zero and subnormal results are flushed, as in `vdpbf16ps`.
//!
//! Measured on this project's CPU (one core, 4 independent accumulators): 3.4 TFLOP/s,
//! 15x `vdpbf16ps` (227 GFLOP/s on 2 cores) and 8x f32 FMA.
//!
//! Linux hands out the tiles' 8 KiB register state only to processes that ask for it
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); [`enable`] asks once, and the level falls back to
//! AVX-512 where the kernel refuses.

use core::arch::asm;

use burn::tensor::bf16;

use super::{LeftTiles, TILE_ROW_VALUES, TILE_ROWS, TILE_VALUES};

/// Bytes between a tile's rows in the packed layouts (one tile row, 64 bytes).
const ROW_BYTES: usize = TILE_ROW_VALUES * 2;
/// Bytes per packed tile.
const TILE_BYTES: usize = TILE_VALUES * 2;

/// The tile configuration every band loads: palette 1, eight tiles of 16 rows x 64 bytes
/// (four accumulators, two left tiles, two right tiles).
#[repr(C, align(64))]
struct Config([u8; 64]);

const CONFIG: Config = {
    let mut bytes = [0u8; 64];
    bytes[0] = 1;
    let mut tile = 0;
    while tile < 8 {
        bytes[16 + 2 * tile] = ROW_BYTES as u8;
        bytes[48 + tile] = TILE_ROWS as u8;
        tile += 1;
    }
    Config(bytes)
};

/// Whether the CPU has AMX-TILE and AMX-BF16 and the OS granted this process their
/// state. Asks the OS (once per process is enough: the grant covers every thread).
pub(super) fn enable() -> bool {
    // CPUID leaf 7, sub-leaf 0: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
    // `__cpuid_count` is a safe function on recent toolchains and `unsafe` on older ones
    // within `rust-version` (the AMX feature names are not stable for
    // `is_x86_feature_detected!`).
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86-64 CPU.
    let edx = unsafe { core::arch::x86_64::__cpuid_count(7, 0) }.edx;
    if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
        return false;
    }
    request_tile_state()
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes which register state the
    // kernel lets this process use; it reads and writes no memory of ours.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// `c = a b` (or `c += a b` when `accumulate`) for one band of [`BAND_ROWS`] rows: `a`'s
/// tiles where `left` says; `b` holds an even number of 16-column panels one after the
/// other, each `kb` tiles of 16 pairs of k rows (`b[((q * kb + t) * 16 + i) * 32 + 2 c + e]`
/// is k `32 t + 2 i + e`, column `16 q + c`), taken two at a time. Row `r` of the result
/// goes to `c[r * ldc..][..16 * panels]`.
///
/// # Safety
/// [`enable`] returned `true`; `kb >= 1`; `a.len() >= left.span(kb)`; `b.len()` an even
/// multiple of `kb * TILE_VALUES`; `ldc >= 16 * panels` and
/// `c.len() >= 31 * ldc + 16 * panels`.
pub(super) unsafe fn band(a: &[bf16], left: LeftTiles, b: &[bf16], kb: usize, c: &mut [f32], ldc: usize, accumulate: bool) {
    let panel = kb * TILE_VALUES;
    let panels = b.len() / panel;
    let a0 = a.as_ptr();
    // SAFETY (all blocks): the caller's contract bounds every tile read (`kb` tiles of
    // each panel of a pair, 64-byte rows, `left`'s steps for `a`) and written (16 rows of
    // `ldc` f32 from the band's row 0 or 16, the pair's 32 columns); every pointer formed
    // stays inside its slice (`b1` is the pair's second panel, `c1` the band's row 16).
    // The CPU has AMX and the process its state (`enable`). The tile registers are not the
    // compiler's: each block configures or uses them whole.
    unsafe {
        let a1 = a0.add(left.panel_step);
        let (a_row, a_tile) = (left.row_step * 2, left.k_step * 2);
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        let ldc_bytes = ldc * 4;
        for q in (0..panels).step_by(2) {
            let b0 = b.as_ptr().add(q * panel);
            let c0 = c.as_mut_ptr().add(q * TILE_ROWS);
            asm!(
                "test {acc}, {acc}",
                "jnz 3f",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "jmp 2f",
                "3:",
                "tileloadd tmm0, [{c0} + {ldc}*1]",
                "tileloadd tmm1, [{c0} + {ldc}*1 + 64]",
                "tileloadd tmm2, [{c1} + {ldc}*1]",
                "tileloadd tmm3, [{c1} + {ldc}*1 + 64]",
                "2:",
                "tileloadd tmm4, [{a0} + {a_row}*1]",
                "tileloadd tmm6, [{b0} + {row}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {row}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {a_row}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, {a_tile}",
                "add {a1}, {a_tile}",
                "add {b0}, {tile}",
                "add {b1}, {tile}",
                "dec {k}",
                "jnz 2b",
                "tilestored [{c0} + {ldc}*1], tmm0",
                "tilestored [{c0} + {ldc}*1 + 64], tmm1",
                "tilestored [{c1} + {ldc}*1], tmm2",
                "tilestored [{c1} + {ldc}*1 + 64], tmm3",
                a0 = inout(reg) a0 => _,
                a1 = inout(reg) a1 => _,
                b0 = inout(reg) b0 => _,
                b1 = inout(reg) b0.add(panel) => _,
                k = inout(reg) kb => _,
                row = in(reg) ROW_BYTES,
                a_row = in(reg) a_row,
                a_tile = in(reg) a_tile,
                tile = const TILE_BYTES,
                c0 = in(reg) c0,
                c1 = in(reg) c0.add(TILE_ROWS * ldc),
                ldc = in(reg) ldc_bytes,
                acc = in(reg) usize::from(accumulate),
                options(nostack),
            );
        }
        // Hands the tile state back, so the thread's context switches stay small.
        asm!("tilerelease", options(nostack, nomem));
    }
}
