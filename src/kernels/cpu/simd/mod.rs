//! Every `unsafe` of the host kernels, behind safe functions: the AVX-512 loops
//! (`avx512`), AMX's tile loop for bf16 products (`amx`), and the outputs the kernels
//! write without zeroing them first.
//!
//! **Outputs.** A kernel's new output is written into uninitialized memory ([`filled`]):
//! zeroing it first cost as much as the op itself (relu on 2048 x 256 bf16: 0.090 ms with
//! a zeroed output, 0.031 ms without; Flex's f32 relu 0.044 ms). Kernels write through
//! [`Out`], which hands out its elements front to back and counts them; [`filled`] checks
//! that every element was written before the memory is read as values, so no kernel can
//! leave one uninitialized, whatever it does.
//!
//! **AVX-512.** Element-wise and row loops fused into one pass over 16-lane registers: load
//! the half values, widen them, compute in f32, round once and store, with masked loads
//! and stores for the last partial group (no scalar tail). Each safe entry point returns
//! `false`, having written nothing, where the CPU lacks AVX-512F/BW/VL (checked at run time)
//! or `MIXED_HOST_LANES=0` asks for the portable loops; the caller then runs its portable
//! loop. bf16 rounds with `vcvtneps2bf16` where the CPU has AVX512-BF16
//! (`MIXED_HOST_LANES=avx512` keeps to the integer rounding, for comparison). The block
//! loops made five passes over L1 buffers per block (widen each operand, the op, round,
//! copy out), and left a broadcast add at 1.17-1.26x and a mul at 1.31-1.46x Flex's f32
//! time; here each element is loaded, computed and stored once.
//!
//! Results are the portable loops' bit for bit: the same exact widening, the same f32 op,
//! and the same rounding (f16: the hardware's conversion, to nearest even; bf16: the same
//! integer rounding, NaN made quiet). The softmax rows are the exception: their exp is a
//! polynomial here and the platform's `exp` in the portable loop, each within about one
//! f32 rounding, so a probability can round to the neighbouring half value.

use core::mem::MaybeUninit;
use std::sync::OnceLock;

use rayon::prelude::*;

use burn::tensor::{bf16, f16};

use crate::kernels::BinaryOp;

/// An output being written front to back: a kernel pushes its results in order, and
/// [`filled`] (or [`Out::par_blocks`]) checks that it wrote every element.
pub(crate) struct Out<'a, T> {
    buf: &'a mut [MaybeUninit<T>],
    written: usize,
}

impl<'a, T: Copy> Out<'a, T> {
    /// An output over an existing slice, overwritten in place (every element stays
    /// initialized: an `Out` only ever writes values).
    pub(crate) fn over(slice: &'a mut [T]) -> Self {
        // SAFETY: `MaybeUninit<T>` has `T`'s layout, and an `Out` writes only initialized
        // `T`s (with `MaybeUninit::write` or stores of values), so the slice stays
        // initialized; `T: Copy` has no drop to skip.
        let buf = unsafe { &mut *(slice as *mut [T] as *mut [MaybeUninit<T>]) };
        Self { buf, written: 0 }
    }

    /// Elements in all.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether every element is written.
    pub(crate) fn is_full(&self) -> bool {
        self.written == self.buf.len()
    }

    /// The next `n` elements, counted as written: every caller in this file writes all of
    /// them before anything can read them.
    fn next(&mut self, n: usize) -> &mut [MaybeUninit<T>] {
        assert!(n <= self.buf.len() - self.written, "a kernel wrote past the end of its output");
        let start = self.written;
        self.written += n;
        &mut self.buf[start..start + n]
    }

    /// Writes `values` next.
    pub(crate) fn push_slice(&mut self, values: &[T]) {
        self.next(values.len()).iter_mut().zip(values).for_each(|(d, v)| {
            d.write(*v);
        });
    }

    /// Writes `f(x)` for every `x` of `input` next.
    pub(crate) fn push_map<U: Copy>(&mut self, input: &[U], f: impl Fn(U) -> T) {
        self.next(input.len()).iter_mut().zip(input).for_each(|(d, x)| {
            d.write(f(*x));
        });
    }

    /// Writes `f(x, y)` for every pair of `a` and `b` (of one length) next.
    pub(crate) fn push_zip<U: Copy, V: Copy>(&mut self, a: &[U], b: &[V], f: impl Fn(U, V) -> T) {
        assert_eq!(a.len(), b.len(), "one value per pair");
        self.next(a.len()).iter_mut().zip(a.iter().zip(b)).for_each(|(d, (x, y))| {
            d.write(f(*x, *y));
        });
    }

    /// Writes the next `n` elements with `fill`, which must write all of them.
    pub(crate) fn fill_next(&mut self, n: usize, fill: impl FnOnce(&mut Out<'_, T>)) {
        let mut out = Out { buf: self.next(n), written: 0 };
        fill(&mut out);
        assert!(out.is_full(), "a kernel left part of its output unwritten");
    }

    /// Writes the rest of the output in blocks of `block` elements across threads: `fill`
    /// gets each block's start (counted from the first element not yet written) and the
    /// block, and must write all of it.
    pub(crate) fn par_blocks(&mut self, block: usize, fill: impl Fn(usize, &mut Out<'_, T>) + Sync + Send)
    where
        T: Send,
    {
        let rest = self.buf.len() - self.written;
        let block = block.max(1);
        self.next(rest).par_chunks_mut(block).enumerate().for_each(|(i, buf)| {
            let mut out = Out { buf, written: 0 };
            fill(i * block, &mut out);
            assert!(out.is_full(), "a kernel left part of its output unwritten");
        });
    }
}

/// A new vector of `n` elements, written by `fill` without zeroing them first.
///
/// # Panics
/// When `fill` leaves an element unwritten (a kernel's bug, caught before anything reads it).
pub(crate) fn filled<T: Copy>(n: usize, fill: impl FnOnce(&mut Out<'_, T>)) -> Vec<T> {
    let mut data = Vec::with_capacity(n);
    let mut out = Out { buf: &mut data.spare_capacity_mut()[..n], written: 0 };
    fill(&mut out);
    assert!(out.is_full(), "a kernel left part of its output unwritten");
    // SAFETY: the first `n` elements of the allocation are initialized: `out` covered them,
    // counted every one it handed out, and only hands out elements it writes.
    unsafe { data.set_len(n) };
    data
}

/// `1 / sum(p)` for a row of rounded probabilities summing to `total`, 0 for a row masked
/// whole (all zeros): the renormalization of softmax's backward, shared by the AVX-512
/// and the portable loop.
#[inline]
pub(crate) fn row_normalizer(total: f32) -> f32 {
    if total > 0.0 { 1.0 / total } else { 0.0 }
}

/// A half type's 16-lane load and store (no lanes off x86-64: every type qualifies).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) trait Lanes {}
#[cfg(not(target_arch = "x86_64"))]
impl<T> Lanes for T {}
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::Lanes;

/// The instruction set the host kernels use on this CPU ([`host_isa`]): what the CPU
/// has, capped by `MIXED_HOST_LANES` (`0`: the portable loops; `avx512`: no bf16
/// instructions; `avx512bf16`: no matrix tiles, bf16 and f16 products on gemmkit), decided once
/// per process. Ordered: each level has what the ones before it have. Below
/// `Avx512Bf16` bf16 products run on f32 copies of their operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostIsa {
    /// No AVX-512: the portable loops, gemmkit's products at the CPU's own level.
    Portable,
    /// AVX-512F/BW/VL.
    Avx512,
    /// And AVX512-BF16: its conversion instruction, and gemmkit's `vdpbf16ps` products.
    Avx512Bf16,
    /// And AMX's bf16 tiles for bf16 products (the OS granted their state).
    Amx,
}

impl core::fmt::Display for HostIsa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            HostIsa::Portable => "portable",
            HostIsa::Avx512 => "avx512",
            HostIsa::Avx512Bf16 => "avx512bf16",
            HostIsa::Amx => "amx",
        })
    }
}

/// The instruction set the host kernels use in this process (the same for every thread).
pub fn host_isa() -> HostIsa {
    level()
}

/// This process's [`HostIsa`].
pub(crate) fn level() -> HostIsa {
    static LEVEL: OnceLock<HostIsa> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var(crate::kernels::HOST_LANES_ENV).as_deref().map(str::trim) {
            Ok("0") => HostIsa::Portable,
            Ok("avx512") => HostIsa::Avx512,
            Ok("avx512bf16") => HostIsa::Avx512Bf16,
            _ => HostIsa::Amx,
        };
        cap.min(cpu_level(cap))
    })
}

/// The CPU's own level; asks the OS for the tiles' state only when `cap` allows them.
#[cfg(target_arch = "x86_64")]
fn cpu_level(cap: HostIsa) -> HostIsa {
    if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl")) {
        HostIsa::Portable
    } else if !is_x86_feature_detected!("avx512bf16") {
        HostIsa::Avx512
    } else if cap == HostIsa::Amx && amx::enable() {
        HostIsa::Amx
    } else {
        HostIsa::Avx512Bf16
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_level(_cap: HostIsa) -> HostIsa {
    HostIsa::Portable
}

/// Whether the AVX-512 loops run here (the CPU has them, and `MIXED_HOST_LANES` allows them).
#[inline]
fn lanes() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Writes `widen(src[i])` next in `out`, on AVX-512; `false` (nothing written) without it.
pub(crate) fn widen<T: Lanes>(src: &[T], out: &mut Out<'_, f32>) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(src.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); `dst` is as long as `src`.
        unsafe { avx512::widen(src, dst) };
    }
    true
}

/// Writes `narrow(src[i])` next in `out`, on AVX-512; `false` (nothing written) without it.
pub(crate) fn narrow<T: Lanes>(src: &[f32], out: &mut Out<'_, T>) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(src.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); `dst` is as long as `src`.
        unsafe { avx512::narrow(src, dst) };
    }
    true
}

/// Writes `op(a[i], b[(start + i) % b.len()])` next in `out` for every `i < a.len()`, or
/// `op(b[..], a[i])` with `swap` (the operands' order kept for NaN payloads), on AVX-512;
/// `false` (nothing written) without it.
pub(crate) fn binary<T: Lanes>(a: &[T], b: &[T], start: usize, out: &mut Out<'_, T>, op: BinaryOp, swap: bool) -> bool {
    if !lanes() {
        return false;
    }
    assert!(!b.is_empty() || a.is_empty(), "a repeated operand with elements");
    #[cfg(target_arch = "x86_64")]
    if !a.is_empty() {
        let dst = out.next(a.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); `a` is as long as `dst`, `b` is
        // not empty.
        unsafe {
            match op {
                BinaryOp::Add => avx512::zip(a, b, start, dst, avx512::Add, swap),
                BinaryOp::Mul => avx512::zip(a, b, start, dst, avx512::Mul, swap),
            }
        }
    }
    true
}

/// Writes `g[i] * gelu'(x[i])` next in `out` (gelu's backward, the erf form), in f32 within
/// about 1e-7 of the exact derivative and rounded once, on AVX-512; `false` (nothing
/// written) without it.
///
/// # Panics
/// When `x` and `g` differ in length.
pub(crate) fn gelu_grad<T: Lanes>(x: &[T], g: &[T], out: &mut Out<'_, T>) -> bool {
    assert_eq!(x.len(), g.len(), "one gradient per input");
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(x.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); `x` and `g` are as long as `dst`.
        unsafe { avx512::gelu_grad(x, g, dst) };
    }
    true
}

/// Adds every `cols`-long row of `rows` (widened) into `acc`, in row order, on AVX-512;
/// `false` (nothing added) without it.
pub(crate) fn add_rows<T: Lanes>(rows: &[T], cols: usize, acc: &mut [f32]) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the loop checks `acc` against `cols`.
    unsafe {
        avx512::add_rows(rows, cols, acc)
    };
    true
}

/// Writes the softmax of every `n`-long row of `scores` next in `out`, rounded once,
/// with `row` (`n` values) as scratch, on AVX-512; `false` (nothing written) without it.
pub(crate) fn softmax_rows<T: Lanes>(scores: &[f32], n: usize, row: &mut [f32], out: &mut Out<'_, T>) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(scores.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the loop checks the row lengths.
        unsafe { avx512::softmax_rows(scores, n, row, dst) };
    }
    true
}

/// Writes softmax's backward for every `n`-long row of `p` and `g` next in `out`, on
/// AVX-512; `false` (nothing written) without it.
pub(crate) fn softmax_grad_rows<T: Lanes>(p: &[T], g: &[T], n: usize, out: &mut Out<'_, f32>) -> bool {
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let dst = out.next(p.len());
        // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the loop checks the row lengths.
        unsafe { avx512::softmax_grad_rows(p, g, n, dst) };
    }
    true
}

#[cfg(target_arch = "x86_64")]
mod amx;

/// Whether bf16 products run on AMX tiles here ([`tile_band`]).
pub(crate) fn has_tiles() -> bool {
    level() == HostIsa::Amx
}

// The tiles' layouts, shared by the packing code (`tile_gemm`) and the AMX loop.

/// Rows of every tile here.
pub(crate) const TILE_ROWS: usize = 16;
/// bf16 values per tile row (64 bytes): 32 values of k for a left tile, 16 column pairs
/// for a right tile.
pub(crate) const TILE_ROW_VALUES: usize = 32;
/// bf16 values per tile.
pub(crate) const TILE_VALUES: usize = TILE_ROWS * TILE_ROW_VALUES;
/// Rows of the band one call computes: two left tiles.
pub(crate) const BAND_ROWS: usize = 2 * TILE_ROWS;

/// Where a band's left tiles are, in bf16 values from the start of its slice: row `r` of
/// the band's 16-row panel `p`, k tile `t`, starts at `p * panel_step + t * k_step +
/// r * row_step` and holds 32 values of k. Packed tiles: `(16 kb * 32, 512, 32)`; a
/// row-major matrix read in place: `(16 rs, 32, rs)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeftTiles {
    /// Values between the band's two 16-row panels.
    pub panel_step: usize,
    /// Values between consecutive k tiles of a panel.
    pub k_step: usize,
    /// Values between a tile's rows.
    pub row_step: usize,
}

impl LeftTiles {
    /// Values from the slice's start to one past the last value the band reads.
    pub(crate) fn span(&self, kb: usize) -> usize {
        self.panel_step + (kb - 1) * self.k_step + (TILE_ROWS - 1) * self.row_step + TILE_ROW_VALUES
    }
}

/// `c = a b` (or `c += a b` when `accumulate`) for one band of [`BAND_ROWS`] rows on AMX
/// tiles: `a`'s tiles where `left` says, `b` in the packed layout `tile_gemm` writes (every
/// 16-column panel of `kb` tiles, column pairs interleaved, an even number of panels); row `r` of the result is
/// `c[r * ldc..]`. `false` (nothing written) without the tiles ([`has_tiles`]).
///
/// # Panics
/// When the slices are too short for those layouts.
pub(crate) fn tile_band(a: &[bf16], left: LeftTiles, b: &[bf16], kb: usize, c: &mut [f32], ldc: usize, accumulate: bool) -> bool {
    if !has_tiles() {
        return false;
    }
    assert!(kb >= 1 && a.len() >= left.span(kb), "a band's left tiles lie inside its slice");
    assert!(b.len().is_multiple_of(2 * kb * TILE_VALUES), "pairs of right panels of {kb} tiles each");
    let panels = b.len() / (kb * TILE_VALUES);
    assert!(ldc >= TILE_ROWS * panels && c.len() >= (BAND_ROWS - 1) * ldc + TILE_ROWS * panels, "a band's output holds 32 rows of {ldc}");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the tiles are enabled (`has_tiles`), and the lengths are the ones checked
    // above.
    unsafe {
        amx::band(a, left, b, kb, c, ldc, accumulate)
    };
    true
}

/// bf16 pairs as a tile row holds them (`even[i] | odd[i] << 16` as bits, `odd` zeros
/// where `None`), into `panels` runs of 16 pairs `stride` pairs apart: run `q` pairs
/// values `16 q..16 q + 16` (zeros past their length), on AVX-512; `false` (nothing
/// written) without it.
///
/// # Panics
/// When `odd` is not as long as `even`, `even` is longer than the runs, or `dst` does not
/// hold them.
pub(crate) fn interleave_panels(even: &[bf16], odd: Option<&[bf16]>, dst: &mut [u32], panels: usize, stride: usize) -> bool {
    assert!(odd.is_none_or(|o| o.len() == even.len()) && even.len() <= 16 * panels, "one pair per value, inside the runs");
    assert!(panels == 0 || (stride >= 16 && dst.len() >= (panels - 1) * stride + 16), "the runs lie in `dst`");
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the lengths are checked above.
    unsafe {
        tile_operands::interleave_panels(even, odd, dst, panels, stride)
    };
    true
}

/// A left tile of a column-major operand, on AVX-512: `dst[16 r + p]` pairs values `2p`
/// and `2p + 1` of column `r`, where value `k` of column `r` is `src[start + k * stride +
/// r]`, and values `k >= k_rows` and columns `r >= cols` are zeros. `false` (nothing
/// written) without AVX-512.
///
/// # Panics
/// When `k_rows > 32`, `cols > 16`, `dst` does not hold 256 pairs, or `src` does not hold
/// the values read.
pub(crate) fn transposed_pairs(src: &[bf16], start: usize, stride: usize, k_rows: usize, cols: usize, dst: &mut [u32]) -> bool {
    assert!(k_rows <= TILE_ROW_VALUES && cols <= TILE_ROWS && dst.len() == TILE_ROWS * TILE_ROWS, "one tile");
    assert!(k_rows == 0 || cols == 0 || start + (k_rows - 1) * stride + cols <= src.len(), "the tile's values lie in `src`");
    if !lanes() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the bounds are checked above.
    unsafe {
        tile_operands::transposed(src, start, stride, k_rows, cols, dst)
    };
    true
}

/// One row of 32 values of k of an f16 left operand split into three tile rows (see
/// `tile_pack`'s split layout), `tile` values apart from the start of `dst`: the pairs
/// `(hi, lo)` of values 0-15, of values 16-31, then the 32 `hi` values; `src`'s values
/// past its length as zeros. `Some(finite)` (whether every value was finite) on
/// AVX-512, `None` (nothing written) without it.
///
/// # Panics
/// When `src` holds more than 32 values or `dst` does not hold the three rows.
pub(crate) fn split_row(src: &[f16], dst: &mut [bf16], tile: usize) -> Option<bool> {
    assert!(src.len() <= TILE_ROW_VALUES && tile >= TILE_ROW_VALUES && dst.len() >= 2 * tile + TILE_ROW_VALUES, "three tile rows");
    if !lanes() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the lengths are checked above.
    return Some(unsafe { tile_operands::split_row(src.as_ptr(), src.len(), dst.as_mut_ptr(), tile) });
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Three left tiles of a column-major f16 operand in the split layout, transposed as
/// [`transposed_pairs`] reads them (value `k` of column `r` at `src[start + k * stride +
/// r]`, values `k >= k_rows` and columns `r >= cols` as zeros), one after the other in
/// `dst`. `Some(finite)` on AVX-512, `None` (nothing written) without it.
///
/// # Panics
/// When `k_rows > 32`, `cols > 16`, `dst` does not hold three tiles of pairs, or `src`
/// does not hold the values read.
pub(crate) fn split_transposed(src: &[f16], start: usize, stride: usize, k_rows: usize, cols: usize, dst: &mut [u32]) -> Option<bool> {
    assert!(k_rows <= TILE_ROW_VALUES && cols <= TILE_ROWS && dst.len() == 3 * TILE_ROWS * TILE_ROWS, "three tiles");
    assert!(k_rows == 0 || cols == 0 || start + (k_rows - 1) * stride + cols <= src.len(), "the tiles' values lie in `src`");
    if !lanes() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the bounds are checked above.
    return Some(unsafe { tile_operands::split_transposed(src, start, stride, k_rows, cols, dst) });
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Three right tiles of an f16 operand in the split layout, one after the other in
/// `dst`: value `k` of column `c` at `src[start + k * k_stride + c * c_stride]`, values
/// `k >= k_rows` and columns `c >= cols` as zeros; one of the strides must be 1.
/// `Some(finite)` on AVX-512, `None` (nothing written) without it.
///
/// # Panics
/// When neither stride is 1, `k_rows > 32`, `cols > 16`, `dst` does not hold three tiles
/// of pairs, or `src` does not hold the values read.
pub(crate) fn split_right(
    src: &[f16],
    start: usize,
    (k_stride, c_stride): (usize, usize),
    k_rows: usize,
    cols: usize,
    dst: &mut [u32],
) -> Option<bool> {
    assert!(k_rows <= TILE_ROW_VALUES && cols <= TILE_ROWS && dst.len() == 3 * TILE_ROWS * TILE_ROWS, "three tiles");
    assert!(c_stride == 1 || k_stride == 1, "rows or columns in runs");
    assert!(
        k_rows == 0 || cols == 0 || start + (k_rows - 1) * k_stride + (cols - 1) * c_stride < src.len(),
        "the tiles' values lie in `src`"
    );
    if !lanes() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F/BW/VL (`lanes`); the bounds are checked above, and the
    // stride of 1 picks the loop that reads runs along it.
    return Some(unsafe {
        match c_stride {
            1 => tile_operands::split_right_rows(src, start, k_stride, k_rows, cols, dst),
            _ => tile_operands::split_right_columns(src, start, c_stride, k_rows, cols, dst),
        }
    });
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod tile_operands;

#[cfg(test)]
mod tests {
    use super::{Out, filled};

    #[test]
    fn a_filled_output_holds_what_was_written_in_order() {
        let values = filled::<u16>(6, |out| {
            out.push_slice(&[1, 2]);
            out.push_map(&[3u8, 4], u16::from);
            out.push_zip(&[5u16, 6], &[0u16, 0], |a, b| a + b);
        });
        assert_eq!(values, [1, 2, 3, 4, 5, 6]);
        let blocks = filled::<usize>(10, |out| out.par_blocks(3, |start, block| block.push_map(&[0; 3][..block.len()], |_| start)));
        assert_eq!(blocks, [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]);
    }

    #[test]
    #[should_panic(expected = "left part of its output unwritten")]
    fn an_output_left_short_is_refused() {
        filled::<f32>(3, |out| out.push_slice(&[1.0, 2.0]));
    }

    #[test]
    #[should_panic(expected = "left part of its output unwritten")]
    fn a_block_left_short_is_refused() {
        filled::<f32>(8, |out| out.par_blocks(4, |_, block| block.push_slice(&[0.0; 3])));
    }

    #[test]
    #[should_panic(expected = "wrote past the end of its output")]
    fn writing_past_the_end_is_refused() {
        filled::<f32>(1, |out| out.push_slice(&[1.0, 2.0]));
    }

    #[test]
    fn an_output_over_a_slice_overwrites_it() {
        let mut values = [0u16; 4];
        let mut out = Out::over(&mut values);
        out.push_slice(&[7, 8]);
        assert!(!out.is_full());
        out.push_slice(&[9, 10]);
        assert!(out.is_full());
        assert_eq!(values, [7, 8, 9, 10]);
    }
}
