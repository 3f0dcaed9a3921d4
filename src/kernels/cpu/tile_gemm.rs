//! bf16 products on AMX tiles: the operands packed into the tiles' layouts (zero-padded to
//! whole tiles), bands of 32 rows of the result across threads, each band's f32 tiles
//! finished while in cache (bias added in f32, one rounding to bf16). Where the CPU has
//! no tiles the caller runs gemmkit, or f32 copies below AVX512-BF16 (`flex::products`).
//!
//! Subnormal bf16 operands read as zero here, as in gemmkit's `vdpbf16ps` kernel that ran
//! these products before on CPUs with AVX512-BF16, and as in oneDNN's bf16 products.
//!
//! Why our own driver (figures in docs/host-fast-path.md): no GEMM crate on crates.io
//! issues AMX instructions, and gemmkit's bf16 product runs on `vdpbf16ps`, whose peak on
//! this project's CPU is 227 GFLOP/s on 2 cores; one core's tiles compute 3.4 TFLOP/s. The
//! products are then bound by packing the operands and writing the result, which this
//! driver does once per operand, in cache.
//!
//! Layout of the work: the right operand is packed whole, pass by pass ([`PASS_TILES`]
//! tiles of k); each thread takes a run of 32-row bands. A row-major left operand is read
//! in place; any other is packed a pass at a time for a group of bands.

use std::cell::RefCell;

use burn::tensor::bf16;
use rayon::prelude::*;

use super::gemm::{SPLIT_EACH_FROM, View};
use super::scratch::with_scratch;
use super::simd::{self, BAND_ROWS, LeftTiles, TILE_ROW_VALUES, TILE_ROWS, TILE_VALUES};
use super::{Half, Out};

/// Bytes the packed tiles and the band's f32 tiles are aligned to: tile rows that cross
/// two cache lines load at a third of the rate (850 against 2,500 GFLOP/s, in a loop on
/// tiles in L1).
const ROW_ALIGN: usize = 64;

/// `len` elements of `buf` starting on a [`ROW_ALIGN`]-byte boundary, `buf` grown to hold
/// them. What they hold is left from earlier use: every caller writes all of them.
fn aligned<T: Copy + Default>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    let slack = ROW_ALIGN / size_of::<T>();
    if buf.len() < len + slack {
        buf.clear();
        buf.resize(len + slack, T::default());
    }
    let start = buf.as_ptr().align_offset(ROW_ALIGN).min(slack);
    &mut buf[start..start + len]
}

thread_local! {
    /// Each thread's buffers (`scratch`) for the packed right operand, packed left bands,
    /// and band sums.
    static PANELS: RefCell<Vec<bf16>> = const { RefCell::new(Vec::new()) };
    static BANDS: RefCell<Vec<bf16>> = const { RefCell::new(Vec::new()) };
    static SUMS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A view's strides as offsets, `None` where one is negative.
fn strides(v: &View) -> Option<(usize, usize)> {
    Some((usize::try_from(v.rs).ok()?, usize::try_from(v.cs).ok()?))
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

/// Bands a thread computes pass by pass together: the right operand's pass is read once
/// for all of them, and a transposed left operand is packed from runs of 2 x 32 values
/// (a single band reads 64 bytes of each of its columns at a time).
const GROUP_BANDS: usize = 2;

/// Right operands of fewer values are packed on the calling thread.
const PARALLEL_PACK_FROM: usize = 1 << 17;

/// k tiles per pass over the right operand: a band's left tiles of one pass (2 x 8 KiB)
/// stay in L1 while the right panels stream from L2, and the band's f32 tiles carry the
/// sums from one pass to the next. Without passes a long k (a weight gradient's batch of
/// 2048) reads both operands from L2 for every pair of panels.
const PASS_TILES: usize = 8;

/// 16-column panels for `n` columns, rounded up to whole pairs (the tile loop takes two
/// at a time; a padding panel is zeros, its sums are dropped).
fn panel_count(n: usize) -> usize {
    n.div_ceil(2 * TILE_ROWS) * 2
}

/// The right operand `b` in the layout of `simd::tile_band`, pass by pass ([`PASS_TILES`]
/// k tiles each, the last one shorter): within a pass, its 16-column panels one after the
/// other (columns past the end and k past the end as zeros), each the pass's tiles of 16
/// pairs of k rows with the pair's two values side by side for each column.
fn pack_panels<'a>(data: &[bf16], b: &View, (rs, cs): (usize, usize), kb: usize, parallel: bool, storage: &'a mut Vec<bf16>) -> &'a [bf16] {
    let (k, n) = (b.rows, b.cols);
    let panels = panel_count(n);
    let packed = aligned(storage, panels * kb * TILE_VALUES);
    let pass_len = panels * PASS_TILES * TILE_VALUES;
    if cs == 1 {
        // Row-major: a pass at a time, two whole rows at a time, each split into the panels'
        // 16 pairs (reading every row once, in order).
        let pack_pass = |(pass, region): (usize, &mut [bf16])| {
            let tiles = region.len() / (panels * TILE_VALUES);
            let pairs: &mut [u32] = bytemuck::cast_slice_mut(region);
            let panel_len = tiles * TILE_VALUES / 2;
            let kp0 = pass * PASS_TILES * TILE_ROWS;
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
        region.chunks_mut(panel_len).enumerate().map(move |(q, dst)| (q, pass * PASS_TILES * TILE_ROWS, dst))
    });
    if parallel {
        units.collect::<Vec<_>>().into_par_iter().for_each(pack);
    } else {
        units.for_each(pack);
    }
    packed
}

/// Whether the CPU has the tiles (and `MIXED_HOST_LANES` allows them).
pub(crate) fn available() -> bool {
    simd::has_tiles()
}

/// Whether [`gemm`] takes a product of these operands: the CPU has the tiles, the product
/// is not empty, and no stride is negative.
pub(crate) fn accepts(lhs: &View, rhs: &View) -> bool {
    available() && lhs.rows * rhs.cols > 0 && lhs.cols > 0 && strides(lhs).is_some() && strides(rhs).is_some()
}

/// What the epilogue adds to a product's f32 sums before they are stored.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bias<'a> {
    /// Nothing.
    None,
    /// `bias[j]` to every row's column `j` (a linear layer).
    Columns(&'a [f32]),
    /// `bias[i]` to all of row `i` (a convolution's output channels, as rows).
    Rows(&'a [f32]),
}

/// An element type the products store: f32 sums as they are, or rounded once to bf16.
pub(crate) trait TileOutput: Copy + Send + Sync {
    /// Writes a row of f32 sums next in `out`.
    fn store(row: &[f32], out: &mut Out<'_, Self>);
}

impl TileOutput for bf16 {
    fn store(row: &[f32], out: &mut Out<'_, Self>) {
        // The tiles come with AVX-512 (a higher `HostIsa`), so the vector loop runs.
        assert!(simd::narrow(row, out), "AVX-512 with the tiles");
    }
}

impl TileOutput for f32 {
    fn store(row: &[f32], out: &mut Out<'_, Self>) {
        out.push_slice(row);
    }
}

/// `out[b] = lhs[b] rhs[b] (+ bias)` on AMX tiles, written next in `out` (row-major,
/// `m x n` per entry), for one matrix per entry of `offsets` (each entry's start in the
/// data relative to the views' offsets, as `gemm::gemm`). Small products run one per
/// thread, large ones across threads.
///
/// # Panics
/// Where [`accepts`] is false.
pub(crate) fn gemm(
    lhs_data: &[bf16],
    lhs: View,
    rhs_data: &[bf16],
    rhs: View,
    offsets: &[(usize, usize)],
    bias: Option<&[bf16]>,
    out: &mut Out<'_, bf16>,
) {
    assert!(accepts(&lhs, &rhs), "a product the tiles do not take");
    let bias: Option<Vec<f32>> = bias.map(|b| {
        let mut wide = vec![0.0; b.len()];
        bf16::widen_slice(b, &mut wide);
        wide
    });
    let bias = bias.as_deref().map_or(Bias::None, Bias::Columns);
    let one = |(lhs_off, rhs_off): (usize, usize), out: &mut Out<'_, bf16>, parallel: bool| {
        let lhs = View { offset: lhs.offset + lhs_off, ..lhs };
        let rhs = View { offset: rhs.offset + rhs_off, ..rhs };
        product(lhs_data, lhs, rhs_data, rhs, bias, out, parallel);
    };
    let matrix = lhs.rows * rhs.cols;
    if offsets.len() > 1 && matrix * lhs.cols < SPLIT_EACH_FROM {
        out.par_blocks(matrix, |start, out| one(offsets[start / matrix], out, false));
    } else {
        offsets.iter().for_each(|&offset| out.fill_next(matrix, |out| one(offset, out, true)));
    }
}

/// One product `lhs rhs + bias` on AMX tiles, written next in `out` (row-major), across
/// threads when `parallel`.
///
/// # Panics
/// Where [`accepts`] is false, or a bias is not as long as the columns (rows) it adds to.
pub(crate) fn product<E: TileOutput>(
    lhs_data: &[bf16],
    lhs: View,
    rhs_data: &[bf16],
    rhs: View,
    bias: Bias<'_>,
    out: &mut Out<'_, E>,
    parallel: bool,
) {
    assert!(accepts(&lhs, &rhs), "a product the tiles do not take");
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    match bias {
        Bias::Columns(b) => assert_eq!(b.len(), n, "one bias per column"),
        Bias::Rows(b) => assert_eq!(b.len(), m, "one bias per row"),
        Bias::None => {}
    }
    let (ls, rs) = (strides(&lhs).expect("`accepts` checked"), strides(&rhs).expect("`accepts` checked"));
    let kb = k.div_ceil(TILE_ROW_VALUES);
    with_scratch(&PANELS, |panel_storage| {
        // Waking the other threads costs more than packing a small operand on this one.
        let parallel_pack = parallel && k * n >= PARALLEL_PACK_FROM;
        let panels: &[bf16] = pack_panels(rhs_data, &rhs, rs, kb, parallel_pack, panel_storage);
        let panel_count = panel_count(n);
        let pass_len = panel_count * PASS_TILES * TILE_VALUES;
        let ldc = panel_count * TILE_ROWS;
        // Row-major left operands with whole tiles of k are read in place, band by band (even
        // off cache-line boundaries: packing them cost more than the split loads, 0.34 against
        // 0.30 ms for 2048 x 256 x 256 on one core); others (and a last partial band) are
        // packed.
        let in_place = ls.1 == 1 && k.is_multiple_of(TILE_ROW_VALUES);
        let band_len = BAND_ROWS * n;
        let bands = m.div_ceil(BAND_ROWS);
        // Each thread takes a run of consecutive bands with its own buffers, a group of bands
        // at a time.
        let threads = if parallel { rayon::current_num_threads().clamp(1, bands) } else { 1 };
        let per_thread = bands.div_ceil(threads);
        let run = |start: usize, out: &mut Out<'_, E>| {
            let first = start / band_len;
            let last = (first + per_thread).min(bands);
            // Packed left operands only: bands read in place gain nothing from groups, which
            // would hold a group's f32 tiles at once.
            let group_bands = if in_place { 1 } else { GROUP_BANDS };
            let group_cap = group_bands.min(last - first);
            with_scratch(&BANDS, |packed_storage| {
                with_scratch(&SUMS, |c_storage| {
                    let packed = aligned(packed_storage, group_cap * 2 * PASS_TILES.min(kb) * TILE_VALUES);
                    let c = aligned(c_storage, group_cap * BAND_ROWS * ldc);
                    for group0 in (first..last).step_by(group_bands) {
                        let group = group_bands.min(last - group0);
                        let row0 = group0 * BAND_ROWS;
                        let read_in_place = in_place && row0 + group * BAND_ROWS <= m;
                        for (pass, right) in panels.chunks(pass_len).enumerate() {
                            let tiles = right.len() / (TILE_VALUES * panel_count);
                            let t0 = pass * PASS_TILES;
                            let band_tiles = 2 * tiles * TILE_VALUES;
                            if !read_in_place {
                                pack_bands(lhs_data, &lhs, ls, row0, t0, tiles, &mut packed[..group * band_tiles]);
                            }
                            for (g, c) in c.chunks_exact_mut(BAND_ROWS * ldc).take(group).enumerate() {
                                let (a, left) = if read_in_place {
                                    let start = lhs.offset + (row0 + g * BAND_ROWS) * ls.0 + t0 * TILE_ROW_VALUES;
                                    let a = &lhs_data[start..start + (BAND_ROWS - 1) * ls.0 + tiles * TILE_ROW_VALUES];
                                    (a, LeftTiles { panel_step: TILE_ROWS * ls.0, k_step: TILE_ROW_VALUES, row_step: ls.0 })
                                } else {
                                    let a = &packed[g * band_tiles..(g + 1) * band_tiles];
                                    (a, LeftTiles { panel_step: tiles * TILE_VALUES, k_step: TILE_VALUES, row_step: TILE_ROW_VALUES })
                                };
                                let taken = simd::tile_band(a, left, right, tiles, c, ldc, pass > 0);
                                assert!(taken, "the tiles were available when the product started");
                            }
                        }
                        for (i, row) in c.chunks_exact_mut(ldc).take((m - row0).min(group * BAND_ROWS)).enumerate() {
                            let row = &mut row[..n];
                            match bias {
                                Bias::Columns(bias) => row.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
                                Bias::Rows(bias) => row.iter_mut().for_each(|v| *v += bias[row0 + i]),
                                Bias::None => {}
                            }
                            E::store(row, out);
                        }
                    }
                })
            })
        };
        if threads > 1 {
            out.par_blocks(per_thread * band_len, run);
        } else {
            run(0, out);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values `j / 4` for small integers `j`: every product and partial sum of the shapes
    /// below is exact in f32, so the tiles' result must be the exact sum rounded once.
    fn quarters(len: usize, seed: usize) -> Vec<bf16> {
        (0..len).map(|i| bf16::from_f32(((i * 7 + seed * 13) % 17) as f32 / 4.0 - 2.0)).collect()
    }

    /// `data` laid out as a `rows x cols` matrix: row-major, column-major, or with a
    /// column stride of 2 (every other element), behind an offset of 3.
    fn lay_out(values: &[bf16], rows: usize, cols: usize, layout: usize) -> (Vec<bf16>, View) {
        let (rs, cs) = match layout {
            0 => (cols, 1),
            1 => (1, rows),
            _ => (2 * cols, 2),
        };
        let mut data = vec![bf16::from_f32(f32::NAN); 3 + rows * rs.max(1) + cols * cs + 1];
        for i in 0..rows {
            for j in 0..cols {
                data[3 + i * rs + j * cs] = values[i * cols + j];
            }
        }
        (data, View { offset: 3, rows, cols, rs: rs as isize, cs: cs as isize })
    }

    #[test]
    fn products_on_tiles_are_the_exact_sums_rounded_once() {
        if !simd::has_tiles() {
            let (_, l) = lay_out(&quarters(4, 0), 2, 2, 0);
            assert!(!accepts(&l, &l), "no tiles here: declined");
            return;
        }
        // Partial bands and groups of bands, odd panel counts, k off whole tiles, k over
        // several passes.
        let shapes = [
            (1, 1, 1),
            (5, 33, 17),
            (32, 32, 32),
            (33, 64, 48),
            (70, 300, 40),
            (64, 520, 16),
            (40, 1024, 31),
            (200, 64, 48),
            (300, 256, 24),
        ];
        for (m, k, n) in shapes {
            let (a_values, b_values) = (quarters(m * k, m), quarters(k * n, n));
            let bias_values = quarters(n, 5);
            let exact = |i: usize, j: usize, bias: bool| {
                let dot: f64 = (0..k).map(|t| a_values[i * k + t].to_f64() * b_values[t * n + j].to_f64()).sum();
                dot + if bias { bias_values[j].to_f64() } else { 0.0 }
            };
            // A batch of two entries (the same matrices) runs each entry on one thread;
            // one entry runs across threads.
            for (a_layout, b_layout, bias, entries) in
                [(0, 0, false, 1), (1, 0, true, 2), (0, 1, false, 2), (2, 2, true, 1), (1, 1, false, 1)]
            {
                let (a, l) = lay_out(&a_values, m, k, a_layout);
                let (b, r) = lay_out(&b_values, k, n, b_layout);
                assert!(accepts(&l, &r));
                let offsets = vec![(0, 0); entries];
                let bias_slice = bias.then_some(&bias_values[..]);
                let out = crate::kernels::cpu::filled(entries * m * n, |out| gemm(&a, l, &b, r, &offsets, bias_slice, out));
                for (e, i, j) in (0..entries).flat_map(|e| (0..m).flat_map(move |i| (0..n).map(move |j| (e, i, j)))) {
                    let want = bf16::from_f64(exact(i, j, bias));
                    let got = out[(e * m + i) * n + j];
                    let at = format!("({m}, {k}, {n}) layouts {a_layout}/{b_layout} bias {bias} entry {e}: [{i}][{j}]");
                    assert_eq!(got.to_bits(), want.to_bits(), "{at} = {got}, want {want}");
                }
            }
        }
    }

    #[test]
    fn special_values_propagate_through_the_tiles() {
        if !simd::has_tiles() {
            return;
        }
        let (m, k, n) = (32, 64, 16);
        let mut a_values = quarters(m * k, 1);
        a_values[0] = bf16::INFINITY; // row 0: inf times b's column, with a zero at column 1
        a_values[k] = bf16::NAN; // row 1: NaN everywhere
        let mut b_values = quarters(k * n, 2);
        b_values[1] = bf16::ZERO; // b[0][1] = 0: inf * 0 is NaN
        b_values[0] = bf16::from_f32(0.5);
        let (a, l) = lay_out(&a_values, m, k, 0);
        let (b, r) = lay_out(&b_values, k, n, 0);
        let out = crate::kernels::cpu::filled(m * n, |out| gemm(&a, l, &b, r, &[(0, 0)], None, out));
        assert_eq!(out[0], bf16::INFINITY);
        assert!(out[1].is_nan());
        assert!(out[n..2 * n].iter().all(|v| v.is_nan()));
        assert!(out[2 * n..].iter().all(|v| v.is_finite()));
    }
}
