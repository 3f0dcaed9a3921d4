//! AVX-512 loops that lay bf16 values out as AMX tiles read them: two consecutive values of
//! k side by side in 32 bits (the even one in the low half), and f16 values split exactly
//! into two bf16 values each on the way (`tile_pack`'s split layout). `tile_pack` packs
//! both operands through them; the safe functions of `simd` check their contracts.

use core::arch::x86_64::*;

use burn::tensor::{bf16, f16};

use super::avx512::mask;

/// 16 pairs of the masked lanes of `even` and `odd` (`None`: zeros), as 32-bit lanes.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; both rows are readable for the masked lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn pairs(even: Option<*const bf16>, odd: Option<*const bf16>, m: __mmask16) -> __m512i {
    // SAFETY: the caller's contract.
    let widen = |row: Option<*const bf16>| match row {
        Some(p) => unsafe { _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p as *const i16)) },
        None => _mm512_setzero_si512(),
    };
    _mm512_or_si512(widen(even), _mm512_slli_epi32::<16>(widen(odd)))
}

/// `even[i] | odd[i] << 16` (as bits; `odd` zeros where `None`) 16 values at a time, into
/// `panels` runs of 16 lanes `stride` lanes apart: run `q` pairs values `16 q..16 q + 16`,
/// zeros past `even`'s length.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `odd` is as long as `even`, `even` no longer than
/// `16 * panels`; `dst` holds `(panels - 1) * stride + 16` lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn interleave_panels(even: &[bf16], odd: Option<&[bf16]>, dst: &mut [u32], panels: usize, stride: usize) {
    let values = even.len();
    let (even, odd, dst) = (even.as_ptr(), odd.map(|o| o.as_ptr()), dst.as_mut_ptr());
    for q in 0..panels {
        let at = 16 * q;
        // SAFETY: `at < values` for a run with values, so its pointers lie inside `even`
        // and `odd` (as long as `even`), and the masked lanes (`mask`) inside their
        // length; a run past them stores zeros. The store's 16 lanes start at
        // `q * stride`, inside `dst` by the caller's contract.
        unsafe {
            let v = match at < values {
                true => pairs(Some(even.add(at)), odd.map(|o| o.add(at)), mask(values - at)),
                false => _mm512_setzero_si512(),
            };
            _mm512_storeu_epi32(dst.add(q * stride) as *mut i32, v);
        }
    }
}

/// A 16 x 16 block of 32-bit lanes, transposed: row `j` of the result is lane `j` of every
/// row. Unpacks within 128-bit lanes (32-bit, then 64-bit), then moves whole 128-bit lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_16x16(r: [__m512i; 16]) -> [__m512i; 16] {
    // a[2i], a[2i + 1]: rows 2i and 2i + 1 interleaved (low and high halves of each lane).
    let a: [__m512i; 16] = core::array::from_fn(|i| {
        let (x, y) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 { _mm512_unpacklo_epi32(x, y) } else { _mm512_unpackhi_epi32(x, y) }
    });
    // b[4g + e], 128-bit lane l: element 4l + e of rows 4g..4g + 4.
    let b: [__m512i; 16] = core::array::from_fn(|i| {
        let (g, e) = (i / 4, i % 4);
        let (x, y) = (a[4 * g + e / 2], a[4 * g + 2 + e / 2]);
        if e % 2 == 0 { _mm512_unpacklo_epi64(x, y) } else { _mm512_unpackhi_epi64(x, y) }
    });
    let mut out = [_mm512_setzero_si512(); 16];
    for e in 0..4 {
        // Lanes 0-1 and 2-3 of rows 0-7 and 8-15, then lane l of each group of four rows.
        let low = _mm512_shuffle_i32x4::<0x44>(b[e], b[4 + e]);
        let high = _mm512_shuffle_i32x4::<0xEE>(b[e], b[4 + e]);
        let low2 = _mm512_shuffle_i32x4::<0x44>(b[8 + e], b[12 + e]);
        let high2 = _mm512_shuffle_i32x4::<0xEE>(b[8 + e], b[12 + e]);
        out[e] = _mm512_shuffle_i32x4::<0x88>(low, low2);
        out[4 + e] = _mm512_shuffle_i32x4::<0xDD>(low, low2);
        out[8 + e] = _mm512_shuffle_i32x4::<0x88>(high, high2);
        out[12 + e] = _mm512_shuffle_i32x4::<0xDD>(high, high2);
    }
    out
}

/// `dst[16 r + p] = src[at(2p)][r] | src[at(2p + 1)][r] << 16` with `at(k) = start + k *
/// stride`, for `r < 16`, `p < 16`; rows `k >= k_rows` and columns `r >= cols` read as
/// zeros.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `k_rows <= 32`, `cols <= 16`, `dst.len() == 256`, and `src`
/// holds `cols` values from `at(k)` for every `k < k_rows`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn transposed(src: &[bf16], start: usize, stride: usize, k_rows: usize, cols: usize, dst: &mut [u32]) {
    let m = mask(cols);
    // SAFETY: rows below `k_rows` start inside `src` (the caller's contract).
    let row = |k: usize| (k < k_rows).then(|| unsafe { src.as_ptr().add(start + k * stride) });
    // SAFETY: each row is readable for the `cols` lanes of the mask.
    let rows: [__m512i; 16] = core::array::from_fn(|p| unsafe { pairs(row(2 * p), row(2 * p + 1), m) });
    for (j, v) in transpose_16x16(rows).into_iter().enumerate() {
        // SAFETY: `dst` holds 16 rows of 16 lanes.
        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(16 * j) as *mut __m512i, v) };
    }
}

/// f16 values (widened to f32) split exactly: `x = hi + lo`, `hi` rounded to nearest even
/// bf16 and `lo` the remainder, which has at most 3 significant bits and so is a bf16 too.
/// Both as f32 bit patterns, the bf16 in the top half (the low half zero). Finite values
/// only: an infinity's `lo` is NaN (callers check for them).
#[inline]
#[target_feature(enable = "avx512f")]
fn split(x: __m512) -> (__m512i, __m512i) {
    let bits = _mm512_castps_si512(x);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
    let rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    let hi = _mm512_and_si512(rounded, _mm512_set1_epi32(0xffff_0000_u32 as i32));
    let lo = _mm512_castps_si512(_mm512_sub_ps(x, _mm512_castsi512_ps(hi)));
    (hi, lo)
}

/// The pair `(a, b)` of two split halves (`a` at the lower address): 32-bit lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn pair_of(a: __m512i, b: __m512i) -> __m512i {
    _mm512_or_si512(_mm512_srli_epi32::<16>(a), b)
}

/// Lanes of 16 f16 values that are infinite or NaN (all exponent bits set).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn not_finite16(raw: __m256i) -> __mmask16 {
    let exponent = _mm256_set1_epi16(0x7c00);
    _mm256_cmpeq_epi16_mask(_mm256_and_si256(raw, exponent), exponent)
}

/// One row of 32 values of k (`len` of them from `src`, zeros past it) split into the
/// rows of three consecutive left tiles, `tile` values apart from `dst`: the pairs
/// `(hi, lo)` of values 0-15, the same of values 16-31, then the 32 `hi` values. Returns
/// whether every value was finite.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `len <= 32`; `src` is readable for `len` values; `dst`
/// is writable for `2 * tile + 32` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn split_row(src: *const f16, len: usize, dst: *mut bf16, tile: usize) -> bool {
    let m = if len >= 32 { !0u32 } else { (1u32 << len) - 1 };
    // SAFETY: the masked lanes lie in `src` (the caller's contract).
    let raw = unsafe { _mm512_maskz_loadu_epi16(m, src as *const i16) };
    let halves = [_mm512_castsi512_si256(raw), _mm512_extracti64x4_epi64::<1>(raw)];
    let finite = (not_finite16(halves[0]) | not_finite16(halves[1])) == 0;
    let [(h0, l0), (h1, l1)] = halves.map(|h| split(_mm512_cvtph_ps(h)));
    let his = [_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(h0)), _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(h1))];
    // SAFETY: the three rows lie in `dst` (the caller's contract).
    unsafe {
        _mm512_storeu_si512(dst as *mut __m512i, pair_of(h0, l0));
        _mm512_storeu_si512(dst.add(tile) as *mut __m512i, pair_of(h1, l1));
        _mm256_storeu_si256(dst.add(2 * tile) as *mut __m256i, his[0]);
        _mm256_storeu_si256(dst.add(2 * tile + 16) as *mut __m256i, his[1]);
    }
    finite
}

/// Three left tiles of a column-major f16 operand in the split layout (see [`split_row`]),
/// transposed as [`transposed`] does: value `k` of column `r` is `src[start + k * stride +
/// r]`, values `k >= k_rows` and columns `r >= cols` are zeros; `dst` holds the three
/// tiles one after the other. Returns whether every value was finite.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `k_rows <= 32`, `cols <= 16`, `dst.len() == 768`, and
/// `src` holds `cols` values from `start + k * stride` for every `k < k_rows`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn split_transposed(src: &[f16], start: usize, stride: usize, k_rows: usize, cols: usize, dst: &mut [u32]) -> bool {
    let m = mask(cols);
    let mut not_finite = 0;
    let zero = _mm512_setzero_si512();
    let (mut hi, mut lo) = ([zero; 32], [zero; 32]);
    for k in 0..k_rows {
        // SAFETY: row `k < k_rows` is readable for the masked lanes (the caller's contract).
        let raw = unsafe { _mm256_maskz_loadu_epi16(m, src.as_ptr().add(start + k * stride) as *const i16) };
        not_finite |= not_finite16(raw);
        (hi[k], lo[k]) = split(_mm512_cvtph_ps(raw));
    }
    let tiles: [[__m512i; 16]; 3] = [
        core::array::from_fn(|p| pair_of(hi[p], lo[p])),
        core::array::from_fn(|p| pair_of(hi[16 + p], lo[16 + p])),
        core::array::from_fn(|p| pair_of(hi[2 * p], hi[2 * p + 1])),
    ];
    for (t, rows) in tiles.into_iter().enumerate() {
        for (j, v) in transpose_16x16(rows).into_iter().enumerate() {
            // SAFETY: `dst` holds three tiles of 16 rows of 16 lanes.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(256 * t + 16 * j) as *mut __m512i, v) };
        }
    }
    not_finite == 0
}

/// Three right tiles of a row-major f16 operand in the split layout (`tile_pack`'s
/// table), one after the other in `dst`: value `k` of column `c` is `src[start + k *
/// stride + c]`, values `k >= k_rows` and columns `c >= cols` are zeros. Pair row `p` of
/// the first two tiles is `(hi, hi)` of value `p` (`16 + p`), of the third `(lo, lo)` of
/// values `2p` and `2p + 1`. Returns whether every value was finite.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `k_rows <= 32`, `cols <= 16`, `dst.len() == 768`, and
/// `src` holds `cols` values from `start + k * stride` for every `k < k_rows`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn split_right_rows(src: &[f16], start: usize, stride: usize, k_rows: usize, cols: usize, dst: &mut [u32]) -> bool {
    let m = mask(cols);
    let mut not_finite = 0;
    let zero = _mm512_setzero_si512();
    let mut lo = [zero; 32];
    let out = dst.as_mut_ptr();
    for (k, lo) in lo.iter_mut().enumerate() {
        let (h, l) = match k < k_rows {
            true => {
                // SAFETY: row `k < k_rows` is readable for the masked lanes (the caller's contract).
                let raw = unsafe { _mm256_maskz_loadu_epi16(m, src.as_ptr().add(start + k * stride) as *const i16) };
                not_finite |= not_finite16(raw);
                split(_mm512_cvtph_ps(raw))
            }
            false => (zero, zero),
        };
        *lo = l;
        // SAFETY: pair row `k` of the first two tiles (16 lanes each) lies in `dst`.
        unsafe { _mm512_storeu_si512(out.add(16 * k) as *mut __m512i, pair_of(h, h)) };
    }
    for p in 0..16 {
        // SAFETY: pair row `p` of the third tile lies in `dst`.
        unsafe { _mm512_storeu_si512(out.add(512 + 16 * p) as *mut __m512i, pair_of(lo[2 * p], lo[2 * p + 1])) };
    }
    not_finite == 0
}

/// [`split_right_rows`] for a column-major operand: value `k` of column `c` is
/// `src[start + c * stride + k]`. Each column's 32 values are split in one load, then the
/// three tiles transposed.
///
/// # Safety
/// The CPU has AVX-512F/BW/VL; `k_rows <= 32`, `cols <= 16`, `dst.len() == 768`, and
/// `src` holds `k_rows` values from `start + c * stride` for every `c < cols`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn split_right_columns(src: &[f16], start: usize, stride: usize, k_rows: usize, cols: usize, dst: &mut [u32]) -> bool {
    let m = if k_rows >= 32 { !0u32 } else { (1u32 << k_rows) - 1 };
    let mut not_finite = 0;
    let zero = _mm512_setzero_si512();
    let mut tiles = [[zero; 16]; 3];
    #[allow(clippy::needless_range_loop, reason = "column `c` fills lane row `c` of all three tiles")]
    for c in 0..cols {
        // SAFETY: column `c < cols` is readable for the masked values (the caller's contract).
        let raw = unsafe { _mm512_maskz_loadu_epi16(m, src.as_ptr().add(start + c * stride) as *const i16) };
        let halves = [_mm512_castsi512_si256(raw), _mm512_extracti64x4_epi64::<1>(raw)];
        not_finite |= not_finite16(halves[0]) | not_finite16(halves[1]);
        let [(h0, l0), (h1, l1)] = halves.map(|h| split(_mm512_cvtph_ps(h)));
        tiles[0][c] = pair_of(h0, h0);
        tiles[1][c] = pair_of(h1, h1);
        // The 32 `lo` values in order are the 16 pairs of values 2p, 2p + 1.
        let narrow = |l: __m512i| _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(l));
        tiles[2][c] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(narrow(l0)), narrow(l1));
    }
    for (t, rows) in tiles.into_iter().enumerate() {
        for (p, v) in transpose_16x16(rows).into_iter().enumerate() {
            // SAFETY: `dst` holds three tiles of 16 pair rows of 16 lanes.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(256 * t + 16 * p) as *mut __m512i, v) };
        }
    }
    not_finite == 0
}
