//! The operands of the AMX products in the tiles' layouts (`simd::tile_band`), zero-padded
//! to whole tiles: the left one as bands of two 16-row panels, the right one as 16-column
//! panels of column pairs, both pass by pass over k.
//!
//! **f16 operands, split.** The tiles multiply bf16 only. An f16 value splits exactly into
//! two bf16 values, `x = hi + lo` (`hi` rounded to nearest even; `lo` has at most 3
//! significant bits), and a product of f16 matrices becomes one of bf16 matrices three
//! times as long in k: for each 32 values of k, three tiles pair the halves so that
//! `x y = hi(x) hi(y) + lo(x) hi(y) + hi(x) lo(y)`, which drops only `lo(x) lo(y)`
//! (below 2^-16 of `x y`, against the 2^-11 of one f16 rounding):
//!
//! | tile | left pairs (value `k`) | right pairs (value `k`) |
//! |---|---|---|
//! | 1st | `(hi, lo)` of `k` = 0..16 | `(hi, hi)` of `k` = 0..16 |
//! | 2nd | `(hi, lo)` of `k` = 16..32 | `(hi, hi)` of `k` = 16..32 |
//! | 3rd | `(hi, hi)` of `k` = 2p, 2p + 1 | `(lo, lo)` of `k` = 2p, 2p + 1 |
//!
//! Every bf16 product is exact in f32, as in the bf16 products. An infinity splits into
//! `inf + NaN`, and `inf * 0` in a cross term would be NaN where the product is not: the
//! packers report any value that is not finite, and the caller recomputes such a product
//! elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{bf16, f16};
use rayon::prelude::*;

use super::gemm::View;
use super::simd::{self, TILE_ROW_VALUES, TILE_ROWS, TILE_VALUES};

/// Whether every operand value a product (or a call of several) packed was finite: cleared
/// by the first that was not (an f16 infinity or NaN, which the split layout does not
/// multiply exactly), from any thread.
pub(crate) struct Finite(AtomicBool);

impl Finite {
    pub(crate) fn new() -> Self {
        Self(AtomicBool::new(true))
    }

    /// Records one product's (or packing's) answer.
    pub(crate) fn record(&self, finite: bool) {
        if !finite {
            self.0.store(false, Ordering::Relaxed);
        }
    }

    pub(crate) fn all(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// An operand element type the tiles multiply, and how it is packed.
pub(crate) trait TileInput: Copy + Send + Sync + 'static {
    /// Tiles of k the product runs for each 32 values of the operands' k.
    const TILES_PER_K_TILE: usize;
    /// Tiles of k per pass over the right operand (a multiple of [`Self::TILES_PER_K_TILE`]):
    /// a band's left tiles of one pass (2 x 8-9 KiB) stay in L1 while the right panels
    /// stream from L2, and the band's f32 tiles carry the sums from one pass to the next.
    /// Without passes a long k (a weight gradient's batch of 2048) reads both operands
    /// from L2 for every pair of panels.
    const PASS_TILES: usize;

    /// The values as the tiles read them in place (a row-major left operand with whole
    /// tiles of k goes unpacked), where they are bf16 values.
    fn as_bf16(data: &[Self]) -> Option<&[bf16]>;

    /// Rows `row0..` of `a` for `dst.len() / (2 * tiles * TILE_VALUES)` bands, tiles of
    /// k `t0..t0 + tiles` (whole groups of [`Self::TILES_PER_K_TILE`]), in the band layout
    /// of `simd::tile_band`. Returns whether every value read was finite.
    fn pack_bands(data: &[Self], a: &View, strides: (usize, usize), row0: usize, t0: usize, tiles: usize, dst: &mut [bf16]) -> bool;

    /// The right operand `b` ([`pack_panels`]'s layout, `kb` tiles of k), and whether
    /// every value was finite.
    fn pack_panels<'a>(
        data: &[Self],
        b: &View,
        strides: (usize, usize),
        kb: usize,
        parallel: bool,
        storage: &'a mut Vec<bf16>,
    ) -> (&'a [bf16], bool);
}

impl TileInput for bf16 {
    const TILES_PER_K_TILE: usize = 1;
    const PASS_TILES: usize = 8;

    fn as_bf16(data: &[Self]) -> Option<&[bf16]> {
        Some(data)
    }

    fn pack_bands(data: &[Self], a: &View, strides: (usize, usize), row0: usize, t0: usize, tiles: usize, dst: &mut [bf16]) -> bool {
        pack_bands(data, a, strides, row0, t0, tiles, dst);
        // The tiles multiply bf16 infinities and NaN as f32 arithmetic does.
        true
    }

    fn pack_panels<'a>(
        data: &[Self],
        b: &View,
        strides: (usize, usize),
        kb: usize,
        parallel: bool,
        storage: &'a mut Vec<bf16>,
    ) -> (&'a [bf16], bool) {
        (pack_panels(data, b, strides, kb, Self::PASS_TILES, parallel, storage), true)
    }
}

impl TileInput for f16 {
    const TILES_PER_K_TILE: usize = 3;
    const PASS_TILES: usize = 9;

    fn as_bf16(_: &[Self]) -> Option<&[bf16]> {
        None
    }

    fn pack_bands(data: &[Self], a: &View, strides: (usize, usize), row0: usize, t0: usize, tiles: usize, dst: &mut [bf16]) -> bool {
        pack_split_bands(data, a, strides, row0, t0, tiles, dst)
    }

    fn pack_panels<'a>(
        data: &[Self],
        b: &View,
        strides: (usize, usize),
        kb: usize,
        parallel: bool,
        storage: &'a mut Vec<bf16>,
    ) -> (&'a [bf16], bool) {
        pack_split_panels(data, b, strides, kb, parallel, storage)
    }
}

/// Bytes the packed tiles and the band's f32 tiles are aligned to: tile rows that cross
/// two cache lines load at a third of the rate (850 against 2,500 GFLOP/s, in a loop on
/// tiles in L1).
pub(crate) const ROW_ALIGN: usize = 64;

/// `len` elements of `buf` starting on a [`ROW_ALIGN`]-byte boundary, `buf` grown to hold
/// them. What they hold is left from earlier use: every caller writes all of them.
pub(crate) fn aligned<T: Copy + Default>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    let slack = ROW_ALIGN / size_of::<T>();
    if buf.len() < len + slack {
        buf.clear();
        buf.resize(len + slack, T::default());
    }
    let start = buf.as_ptr().align_offset(ROW_ALIGN).min(slack);
    &mut buf[start..start + len]
}

/// Two bf16 values as the pair a tile row holds: `lo` (the even k) at the lower address.
#[inline]
fn pair(lo: bf16, hi: bf16) -> u32 {
    u32::from(lo.to_bits()) | (u32::from(hi.to_bits()) << 16)
}

/// Rows `row0..` of `a` for `dst.len() / (2 * tiles * TILE_VALUES)` bands, k tiles
/// `t0..t0 + tiles` (rows and k past the end as zeros), in the band layout of
/// `simd::tile_band`, bands one after the other: each two 16-row panels of `tiles` tiles
/// of 16 rows x 32 values of k.
fn pack_bands(data: &[bf16], a: &View, (rs, cs): (usize, usize), row0: usize, t0: usize, tiles: usize, dst: &mut [bf16]) {
    let k = a.cols;
    let band_rows = dst.len() / (tiles * TILE_VALUES) * TILE_ROWS;
    let rows = a.rows.saturating_sub(row0).min(band_rows);
    if rs == 1 && cs != 1 {
        // Column-major (a transposed matrix): the rows are contiguous for each k. A tile at
        // a time: 32 runs of k of 16 rows each, paired and transposed.
        let pairs: &mut [u32] = bytemuck::cast_slice_mut(dst);
        for t in 0..tiles {
            let k0 = (t0 + t) * TILE_ROW_VALUES;
            let k_rows = k.saturating_sub(k0).min(TILE_ROW_VALUES);
            for (p, tile) in pairs.chunks_exact_mut(tiles * TILE_VALUES / 2).enumerate() {
                let tile = &mut tile[t * TILE_VALUES / 2..][..TILE_VALUES / 2];
                let panel_rows = rows.saturating_sub(p * TILE_ROWS).min(TILE_ROWS);
                if panel_rows == 0 || k_rows == 0 {
                    tile.fill(0);
                    continue;
                }
                let start = a.offset + row0 + p * TILE_ROWS + k0 * cs;
                // The tiles come with AVX-512 (a higher `HostIsa`).
                assert!(simd::transposed_pairs(data, start, cs, k_rows, panel_rows, tile), "AVX-512 with the tiles");
            }
        }
        return;
    }
    for r in 0..band_rows {
        let (p, rr) = (r / TILE_ROWS, r % TILE_ROWS);
        for t in 0..tiles {
            let d = &mut dst[((p * tiles + t) * TILE_ROWS + rr) * TILE_ROW_VALUES..][..TILE_ROW_VALUES];
            let k0 = (t0 + t) * TILE_ROW_VALUES;
            let len = if r < rows { k.saturating_sub(k0).min(TILE_ROW_VALUES) } else { 0 };
            let start = a.offset + (row0 + r) * rs + k0 * cs;
            if cs == 1 && len > 0 {
                d[..len].copy_from_slice(&data[start..start + len]);
            } else {
                d[..len].iter_mut().enumerate().for_each(|(j, v)| *v = data[start + j * cs]);
            }
            d[len..].fill(bf16::ZERO);
        }
    }
}

/// Right operands of fewer values are packed on the calling thread.
pub(crate) const PARALLEL_PACK_FROM: usize = 1 << 17;

/// 16-column panels for `n` columns, rounded up to whole pairs (the tile loop takes two
/// at a time; a padding panel is zeros, its sums are dropped).
pub(crate) fn panel_count(n: usize) -> usize {
    n.div_ceil(2 * TILE_ROWS) * 2
}

/// The right operand `b` in the layout of `simd::tile_band`, pass by pass (`pass_tiles`
/// k tiles each, the last one shorter): within a pass, its 16-column panels one after the
/// other (columns past the end and k past the end as zeros), each the pass's tiles of 16
/// pairs of k rows with the pair's two values side by side for each column.
fn pack_panels<'a>(
    data: &[bf16],
    b: &View,
    (rs, cs): (usize, usize),
    kb: usize,
    pass_tiles: usize,
    parallel: bool,
    storage: &'a mut Vec<bf16>,
) -> &'a [bf16] {
    let (k, n) = (b.rows, b.cols);
    let panels = panel_count(n);
    let packed = aligned(storage, panels * kb * TILE_VALUES);
    let pass_len = panels * pass_tiles * TILE_VALUES;
    if cs == 1 {
        // Row-major: a pass at a time, two whole rows at a time, each split into the panels'
        // 16 pairs (reading every row once, in order).
        let pack_pass = |(pass, region): (usize, &mut [bf16])| {
            let tiles = region.len() / (panels * TILE_VALUES);
            let pairs: &mut [u32] = bytemuck::cast_slice_mut(region);
            let panel_len = tiles * TILE_VALUES / 2;
            let kp0 = pass * pass_tiles * TILE_ROWS;
            for kp in kp0..kp0 + tiles * TILE_ROWS {
                let row = |k_row: usize| (k_row < k).then(|| &data[b.offset + k_row * rs..][..n]);
                let (even, odd) = (row(2 * kp), row(2 * kp + 1));
                // This pair row of every panel (columns past the end, and the padding
                // panel, as zeros; k past the end as a row of zeros).
                let d = &mut pairs[(kp - kp0) * TILE_ROWS..];
                assert!(simd::interleave_panels(even.unwrap_or(&[]), odd, d, panels, panel_len), "AVX-512 with the tiles");
            }
        };
        if parallel {
            packed.par_chunks_mut(pass_len).enumerate().for_each(pack_pass);
        } else {
            packed.chunks_mut(pass_len).enumerate().for_each(pack_pass);
        }
        return packed;
    }
    // Other layouts, a panel of a pass at a time (starting at pair row `kp0`): column-major
    // reads each column's run of k, anything else one value at a time.
    let pack = |(q, kp0, dst): (usize, usize, &mut [bf16])| {
        let cols = n.saturating_sub(q * TILE_ROWS).min(TILE_ROWS);
        let col0 = b.offset + q * TILE_ROWS * cs;
        let pairs: &mut [u32] = bytemuck::cast_slice_mut(dst);
        pairs.fill(0);
        let kps = (pairs.len() / TILE_ROWS).min(k.div_ceil(2) - kp0);
        let value = |kk: usize, c: usize| if kk < k { data[col0 + kk * rs + c * cs] } else { bf16::ZERO };
        if rs == 1 {
            for c in 0..cols {
                let column = &data[col0 + c * cs + 2 * kp0..][..(k - 2 * kp0).min(2 * kps)];
                let mut chunks = column.chunks_exact(2);
                for (kp, two) in chunks.by_ref().enumerate() {
                    pairs[kp * TILE_ROWS + c] = pair(two[0], two[1]);
                }
                if let [last] = chunks.remainder() {
                    pairs[column.len() / 2 * TILE_ROWS + c] = pair(*last, bf16::ZERO);
                }
            }
        } else {
            for kp in kp0..kp0 + kps {
                for c in 0..cols {
                    pairs[(kp - kp0) * TILE_ROWS + c] = pair(value(2 * kp, c), value(2 * kp + 1, c));
                }
            }
        }
    };
    let units = packed.chunks_mut(pass_len).enumerate().flat_map(|(pass, region)| {
        let panel_len = region.len() / panels;
        region.chunks_mut(panel_len).enumerate().map(move |(q, dst)| (q, pass * pass_tiles * TILE_ROWS, dst))
    });
    if parallel {
        units.collect::<Vec<_>>().into_par_iter().for_each(pack);
    } else {
        units.for_each(pack);
    }
    packed
}
/// The split layout's left tiles (see the module's table): for each 32 values of k, three
/// tiles of each 16-row panel. Returns whether every value read was finite.
fn pack_split_bands(data: &[f16], a: &View, (rs, cs): (usize, usize), row0: usize, t0: usize, tiles: usize, dst: &mut [bf16]) -> bool {
    debug_assert!(t0.is_multiple_of(3) && tiles.is_multiple_of(3), "whole groups of three tiles");
    let k = a.cols;
    let band_rows = dst.len() / (tiles * TILE_VALUES) * TILE_ROWS;
    let rows = a.rows.saturating_sub(row0).min(band_rows);
    let (s0, k_tiles) = (t0 / 3, tiles / 3);
    let mut finite = true;
    if rs == 1 && cs != 1 {
        // Column-major: 32 runs of 16 rows per group of three tiles, split and transposed.
        let pairs: &mut [u32] = bytemuck::cast_slice_mut(dst);
        for (p, panel) in pairs.chunks_exact_mut(tiles * TILE_VALUES / 2).enumerate() {
            let panel_rows = rows.saturating_sub(p * TILE_ROWS).min(TILE_ROWS);
            for (s, three) in panel.chunks_exact_mut(3 * TILE_VALUES / 2).enumerate() {
                let k0 = (s0 + s) * TILE_ROW_VALUES;
                let k_rows = k.saturating_sub(k0).min(TILE_ROW_VALUES);
                if panel_rows == 0 || k_rows == 0 {
                    three.fill(0);
                    continue;
                }
                let start = a.offset + row0 + p * TILE_ROWS + k0 * cs;
                // The tiles come with AVX-512 (a higher `HostIsa`).
                finite &= simd::split_transposed(data, start, cs, k_rows, panel_rows, three).expect("AVX-512 with the tiles");
            }
        }
        return finite;
    }
    let mut gathered = [f16::ZERO; TILE_ROW_VALUES];
    for r in 0..band_rows {
        let (p, rr) = (r / TILE_ROWS, r % TILE_ROWS);
        for s in 0..k_tiles {
            let d = &mut dst[((p * tiles + 3 * s) * TILE_ROWS + rr) * TILE_ROW_VALUES..][..2 * TILE_VALUES + TILE_ROW_VALUES];
            let k0 = (s0 + s) * TILE_ROW_VALUES;
            let len = if r < rows { k.saturating_sub(k0).min(TILE_ROW_VALUES) } else { 0 };
            let start = a.offset + (row0 + r) * rs + k0 * cs;
            let row: &[f16] = match (len, cs) {
                (0, _) => &[],
                (_, 1) => &data[start..start + len],
                _ => {
                    gathered[..len].iter_mut().enumerate().for_each(|(j, v)| *v = data[start + j * cs]);
                    &gathered[..len]
                }
            };
            finite &= simd::split_row(row, d, TILE_VALUES).expect("AVX-512 with the tiles");
        }
    }
    finite
}

/// The split layout's right tiles (see the module's table), `kb` tiles of k in passes of
/// `f16::PASS_TILES`: three tiles at a time for each panel and 32 values of k. Returns
/// whether every value was finite.
fn pack_split_panels<'a>(
    data: &[f16],
    b: &View,
    (rs, cs): (usize, usize),
    kb: usize,
    parallel: bool,
    storage: &'a mut Vec<bf16>,
) -> (&'a [bf16], bool) {
    let (k, n) = (b.rows, b.cols);
    let pass_tiles = <f16 as TileInput>::PASS_TILES;
    let panels = panel_count(n);
    let packed = aligned(storage, panels * kb * TILE_VALUES);
    let finite = Finite::new();
    let pack = |(q, s0, dst): (usize, usize, &mut [bf16])| {
        let cols = n.saturating_sub(q * TILE_ROWS).min(TILE_ROWS);
        let pairs: &mut [u32] = bytemuck::cast_slice_mut(dst);
        let mut gathered = [f16::ZERO; TILE_ROW_VALUES * TILE_ROWS];
        for (s, three) in pairs.chunks_exact_mut(3 * TILE_VALUES / 2).enumerate() {
            let k0 = (s0 + s) * TILE_ROW_VALUES;
            let k_rows = k.saturating_sub(k0).min(TILE_ROW_VALUES);
            if cols == 0 || k_rows == 0 {
                three.fill(0);
                continue;
            }
            let start = b.offset + k0 * rs + q * TILE_ROWS * cs;
            let split = match (rs, cs) {
                (_, 1) | (1, _) => simd::split_right(data, start, (rs, cs), k_rows, cols, three),
                _ => {
                    // Neither rows nor columns in runs: gathered into rows of 16 first.
                    for kk in 0..k_rows {
                        for c in 0..cols {
                            gathered[kk * TILE_ROWS + c] = data[start + kk * rs + c * cs];
                        }
                    }
                    simd::split_right(&gathered, 0, (TILE_ROWS, 1), k_rows, cols, three)
                }
            };
            // The tiles come with AVX-512 (a higher `HostIsa`).
            finite.record(split.expect("AVX-512 with the tiles"));
        }
    };
    let units = packed.chunks_mut(panels * pass_tiles * TILE_VALUES).enumerate().flat_map(|(pass, region)| {
        let panel_len = region.len() / panels;
        region.chunks_mut(panel_len).enumerate().map(move |(q, dst)| (q, pass * pass_tiles / 3, dst))
    });
    if parallel {
        units.collect::<Vec<_>>().into_par_iter().for_each(pack);
    } else {
        units.for_each(pack);
    }
    (packed, finite.all())
}
