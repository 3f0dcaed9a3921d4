//! AVX-512 loops that lay bf16 values out as AMX tiles read them: two consecutive values of
//! k side by side in 32 bits (the even one in the low half). `tile_gemm` packs both
//! operands through them; the safe functions of `simd` check their contracts.

use core::arch::x86_64::*;

use burn::tensor::bf16;

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
