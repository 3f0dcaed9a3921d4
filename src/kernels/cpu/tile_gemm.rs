//! Products on AMX tiles: the operands packed into the tiles' layouts (`tile_pack`), bands
//! of 32 rows of the result across threads, each band's f32 tiles finished while in cache
//! (bias added in f32, one rounding to the output's type). bf16 operands go to the tiles
//! as they are, f16 operands split exactly into pairs of bf16 values (`tile_pack`'s split
//! layout, three times the tile work). Where the CPU has no tiles the caller runs gemmkit,
//! or f32 copies for bf16 below AVX512-BF16 (`flex::products`).
//!
//! Subnormal bf16 operands read as zero here, as in gemmkit's `vdpbf16ps` kernel that ran
//! these products before on CPUs with AVX512-BF16, and as in oneDNN's bf16 products. f16
//! operands lose nothing: their halves are normal bf16 values.
//!
//! Why our own driver (figures in docs/host-fast-path.md): no GEMM crate on crates.io
//! issues AMX instructions, and gemmkit's bf16 product runs on `vdpbf16ps`, whose peak on
//! this project's CPU is 227 GFLOP/s on 2 cores; one core's tiles compute 3.4 TFLOP/s. The
//! products are then bound by packing the operands and writing the result, which this
//! driver does once per operand, in cache. For f16 (the CPU has no f16 tiles) the
//! alternative is gemmkit's f32 FMA, which three bf16 tile products outrun 2.5-4x.
//!
//! Layout of the work: the right operand is packed whole, pass by pass
//! (`TileInput::PASS_TILES` tiles of k); each thread takes a run of 32-row bands. A
//! row-major bf16 left operand is read in place; any other is packed a pass at a time for
//! a group of bands.

use std::cell::RefCell;

use burn::tensor::{bf16, f16};

use super::gemm::{SPLIT_EACH_FROM, View};
use super::scratch::with_scratch;
use super::simd::{self, BAND_ROWS, LeftTiles, TILE_ROW_VALUES, TILE_ROWS, TILE_VALUES};
use super::tile_pack::{Finite, PARALLEL_PACK_FROM, TileInput, aligned, panel_count};
use super::{Half, Out};

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

/// Bands a thread computes pass by pass together, at least: the right operand's pass is
/// read once for all of them, and a transposed left operand is packed from runs of 2 x 32
/// values (a single band reads 64 bytes of each of its columns at a time).
const GROUP_BANDS: usize = 2;

/// Bytes of a group's f32 sums, up to which a group takes more bands: a right operand
/// larger than L2 (an f16 weight gradient's, 3 MiB for a batch of 2048 x 256 columns)
/// then streams from L3 once per group, not once per two bands.
const GROUP_SUMS_BYTES: usize = 256 << 10;

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

/// An element type the products store: f32 sums as they are, or rounded once to a half type.
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

impl TileOutput for f16 {
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
/// Returns `false` where an f16 operand holds an infinity or NaN, which the split layout
/// does not multiply exactly: `out` is then written with values to discard, and the caller
/// computes the product elsewhere. bf16 products always return `true`.
///
/// # Panics
/// Where [`accepts`] is false.
pub(crate) fn gemm<T: TileInput + TileOutput + Half>(
    lhs_data: &[T],
    lhs: View,
    rhs_data: &[T],
    rhs: View,
    offsets: &[(usize, usize)],
    bias: Option<&[T]>,
    out: &mut Out<'_, T>,
) -> bool {
    assert!(accepts(&lhs, &rhs), "a product the tiles do not take");
    let bias: Option<Vec<f32>> = bias.map(|b| {
        let mut wide = vec![0.0; b.len()];
        T::widen_slice(b, &mut wide);
        wide
    });
    let bias = bias.as_deref().map_or(Bias::None, Bias::Columns);
    let finite = Finite::new();
    let one = |(lhs_off, rhs_off): (usize, usize), out: &mut Out<'_, T>, parallel: bool| {
        let lhs = View { offset: lhs.offset + lhs_off, ..lhs };
        let rhs = View { offset: rhs.offset + rhs_off, ..rhs };
        finite.record(product(lhs_data, lhs, rhs_data, rhs, bias, out, parallel));
    };
    let matrix = lhs.rows * rhs.cols;
    if offsets.len() > 1 && matrix * lhs.cols < SPLIT_EACH_FROM {
        out.par_blocks(matrix, |start, out| one(offsets[start / matrix], out, false));
    } else {
        offsets.iter().for_each(|&offset| out.fill_next(matrix, |out| one(offset, out, true)));
    }
    finite.all()
}

/// One product `lhs rhs + bias` on AMX tiles, written next in `out` (row-major), across
/// threads when `parallel`. Returns whether every operand value was finite, as [`gemm`].
///
/// # Panics
/// Where [`accepts`] is false, or a bias is not as long as the columns (rows) it adds to.
pub(crate) fn product<S: TileInput, E: TileOutput>(
    lhs_data: &[S],
    lhs: View,
    rhs_data: &[S],
    rhs: View,
    bias: Bias<'_>,
    out: &mut Out<'_, E>,
    parallel: bool,
) -> bool {
    assert!(accepts(&lhs, &rhs), "a product the tiles do not take");
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    match bias {
        Bias::Columns(b) => assert_eq!(b.len(), n, "one bias per column"),
        Bias::Rows(b) => assert_eq!(b.len(), m, "one bias per row"),
        Bias::None => {}
    }
    let (ls, rs) = (strides(&lhs).expect("`accepts` checked"), strides(&rhs).expect("`accepts` checked"));
    let kb = S::TILES_PER_K_TILE * k.div_ceil(TILE_ROW_VALUES);
    let finite = Finite::new();
    with_scratch(&PANELS, |panel_storage| {
        // Waking the other threads costs more than packing a small operand on this one.
        let parallel_pack = parallel && k * n >= PARALLEL_PACK_FROM;
        let (panels, right_finite) = S::pack_panels(rhs_data, &rhs, rs, kb, parallel_pack, panel_storage);
        finite.record(right_finite);
        let panel_count = panel_count(n);
        let pass_len = panel_count * S::PASS_TILES * TILE_VALUES;
        let ldc = panel_count * TILE_ROWS;
        // Row-major left operands with whole tiles of k are read in place, band by band (even
        // off cache-line boundaries: packing them cost more than the split loads, 0.34 against
        // 0.30 ms for 2048 x 256 x 256 on one core); others (and a last partial band) are
        // packed.
        let in_place = S::as_bf16(lhs_data).filter(|_| ls.1 == 1 && k.is_multiple_of(TILE_ROW_VALUES));
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
            let group_bands = match in_place {
                Some(_) => 1,
                None => (GROUP_SUMS_BYTES / (BAND_ROWS * ldc * size_of::<f32>())).max(GROUP_BANDS),
            };
            let group_cap = group_bands.min(last - first);
            with_scratch(&BANDS, |packed_storage| {
                with_scratch(&SUMS, |c_storage| {
                    let packed = aligned(packed_storage, group_cap * 2 * S::PASS_TILES.min(kb) * TILE_VALUES);
                    let c = aligned(c_storage, group_cap * BAND_ROWS * ldc);
                    for group0 in (first..last).step_by(group_bands) {
                        let group = group_bands.min(last - group0);
                        let row0 = group0 * BAND_ROWS;
                        let read_in_place = in_place.filter(|_| row0 + group * BAND_ROWS <= m);
                        for (pass, right) in panels.chunks(pass_len).enumerate() {
                            let tiles = right.len() / (TILE_VALUES * panel_count);
                            let t0 = pass * S::PASS_TILES;
                            let band_tiles = 2 * tiles * TILE_VALUES;
                            if read_in_place.is_none() {
                                finite.record(S::pack_bands(lhs_data, &lhs, ls, row0, t0, tiles, &mut packed[..group * band_tiles]));
                            }
                            for (g, c) in c.chunks_exact_mut(BAND_ROWS * ldc).take(group).enumerate() {
                                let (a, left) = if let Some(lhs_data) = read_in_place {
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
        finite.all()
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
    /// column stride of 2 (every other element), behind an offset of 3, NaN around it.
    fn lay_out<T: Half>(values: &[T], rows: usize, cols: usize, layout: usize) -> (Vec<T>, View) {
        let (rs, cs) = match layout {
            0 => (cols, 1),
            1 => (1, rows),
            _ => (2 * cols, 2),
        };
        let mut data = vec![T::from_elem(f32::NAN); 3 + rows * rs.max(1) + cols * cs + 1];
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
            let (_, l) = lay_out::<bf16>(&quarters(4, 0), 2, 2, 0);
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
                let out = crate::kernels::cpu::filled(entries * m * n, |out| assert!(gemm(&a, l, &b, r, &offsets, bias_slice, out)));
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
        let out = crate::kernels::cpu::filled(m * n, |out| assert!(gemm(&a, l, &b, r, &[(0, 0)], None, out)));
        assert_eq!(out[0], bf16::INFINITY);
        assert!(out[1].is_nan());
        assert!(out[n..2 * n].iter().all(|v| v.is_nan()));
        assert!(out[2 * n..].iter().all(|v| v.is_finite()));
    }

    /// f16 values with all 11 significant bits in use, in [-4, 4): their bf16 halves are
    /// both non-zero for most of them.
    fn f16_values(len: usize, seed: usize) -> Vec<f16> {
        (0..len).map(|i| f16::from_f32(((i * 1031 + seed * 977) % 2048) as f32 / 256.0 - 4.0)).collect()
    }

    #[test]
    fn f16_products_on_tiles_are_within_one_rounding_of_the_exact_sums() {
        if !simd::has_tiles() {
            return;
        }
        // As above, and k over several passes of three-tile groups (9 tiles a pass).
        let shapes = [(1, 1, 1), (5, 33, 17), (33, 64, 48), (70, 300, 40), (40, 1024, 31), (300, 96, 24), (64, 2048, 32)];
        for (m, k, n) in shapes {
            let (a_values, b_values) = (f16_values(m * k, m), f16_values(k * n, n + 1));
            let bias_values = f16_values(n, 5);
            for (a_layout, b_layout, bias, entries) in
                [(0, 0, false, 1), (1, 0, true, 2), (0, 1, false, 2), (2, 2, true, 1), (1, 1, false, 1)]
            {
                let (a, l) = lay_out(&a_values, m, k, a_layout);
                let (b, r) = lay_out(&b_values, k, n, b_layout);
                let offsets = vec![(0, 0); entries];
                let bias_slice = bias.then_some(&bias_values[..]);
                let mut finite = false;
                let out = crate::kernels::cpu::filled(entries * m * n, |out| finite = gemm(&a, l, &b, r, &offsets, bias_slice, out));
                assert!(finite, "finite operands");
                for (e, i, j) in (0..entries).flat_map(|e| (0..m).flat_map(move |i| (0..n).map(move |j| (e, i, j)))) {
                    let terms = (0..k).map(|t| a_values[i * k + t].to_f64() * b_values[t * n + j].to_f64());
                    let (dot, magnitude) = terms.fold((0.0, 0.0), |(s, m), p: f64| (s + p, m + p.abs()));
                    let exact = dot + if bias { bias_values[j].to_f64() } else { 0.0 };
                    let got = out[(e * m + i) * n + j].to_f64();
                    // One rounding to f16, plus the dropped `lo * lo` terms (2^-16 of each
                    // product) and f32 sums (k roundings of 2^-24).
                    let rounding = (exact.abs().max(f64::from(f16::MIN_POSITIVE))).log2().floor().exp2() * 2f64.powi(-11);
                    let allowed = rounding + magnitude * (2f64.powi(-16) + k as f64 * 2f64.powi(-24));
                    let at = format!("({m}, {k}, {n}) layouts {a_layout}/{b_layout} bias {bias} entry {e}: [{i}][{j}]");
                    assert!((got - exact).abs() <= allowed, "{at} = {got}, want {exact} within {allowed:e}");
                }
            }
        }
    }

    #[test]
    fn f16_operands_that_are_not_finite_are_reported() {
        if !simd::has_tiles() {
            return;
        }
        let (m, k, n) = (40, 70, 20);
        for (side, layout, value) in
            [(0, 0, f16::INFINITY), (0, 1, f16::NEG_INFINITY), (1, 0, f16::NAN), (1, 1, f16::INFINITY), (0, 2, f16::NAN)]
        {
            let (mut a_values, mut b_values) = (f16_values(m * k, 1), f16_values(k * n, 2));
            // In the last band's last tile of k, and the last panel.
            match side {
                0 => a_values[(m - 1) * k + k - 1] = value,
                _ => b_values[(k - 1) * n + n - 1] = value,
            }
            let (a, l) = lay_out(&a_values, m, k, layout);
            let (b, r) = lay_out(&b_values, k, n, layout);
            let mut finite = true;
            crate::kernels::cpu::filled(m * n, |out| finite = gemm(&a, l, &b, r, &[(0, 0)], None, out));
            assert!(!finite, "{value} in operand {side}, layout {layout}: reported");
        }
    }
}
