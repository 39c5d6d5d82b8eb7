//! The kernels on x86-64: AVX2 and FMA, checked at run time.

pub use pulp::x86::V3;
use std::arch::x86_64::__m256i;

/// Values per block.
pub const QK: usize = 32;
/// Prompt rows of one register tile.
const ROWS: usize = 4;
/// Weight rows (output columns) of one register tile.
const COLS: usize = 2;

/// Whether this CPU runs these kernels (AVX2 and FMA); elsewhere candle's are used.
pub fn available() -> bool {
    V3::is_available()
}

/// A block type the tiled kernel multiplies: 32 weights, a scale, and (for unsigned
/// values) a minimum added to each.
pub trait Format: bytemuck::Pod + Sync {
    /// Signed values (Q8_0); otherwise unsigned values plus a minimum (Q4_1).
    const SIGNED: bool;
    fn scale(&self) -> f32;
    fn min(&self) -> f32;
    /// The 32 values in order, as bytes.
    fn values(&self, simd: V3) -> __m256i;
}

/// One Q8_0 block as GGUF files and candle lay it out: an f16 scale, then 32 signed bytes.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Q8_0 {
    d: [u8; 2],
    qs: [u8; QK],
}

impl Format for Q8_0 {
    const SIGNED: bool = true;
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn min(&self) -> f32 {
        0.0
    }
    #[inline(always)]
    fn values(&self, _: V3) -> __m256i {
        bytemuck::cast(self.qs)
    }
}

/// One Q4_1 block: an f16 scale and minimum, then 32 four-bit values, the first 16 in the
/// low nibbles and the last 16 in the high ones.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Q4_1 {
    d: [u8; 2],
    m: [u8; 2],
    qs: [u8; QK / 2],
}

impl Format for Q4_1 {
    const SIGNED: bool = false;
    fn scale(&self) -> f32 {
        f16_to_f32(self.d)
    }
    fn min(&self) -> f32 {
        f16_to_f32(self.m)
    }
    #[inline(always)]
    fn values(&self, simd: V3) -> __m256i {
        let packed = bytemuck::cast(self.qs);
        let high = simd.sse2._mm_srli_epi16::<4>(packed);
        let both = simd
            .avx
            ._mm256_insertf128_si256::<1>(simd.avx._mm256_castsi128_si256(packed), high);
        simd.avx2
            ._mm256_and_si256(both, simd.avx._mm256_set1_epi8(0x0F))
    }
}

/// An f16 (little-endian) as f32, exactly, inline: `half`'s conversion is a call that
/// checks the CPU each time, once per block and column, which a decode step cannot afford.
#[inline(always)]
fn f16_to_f32(bytes: [u8; 2]) -> f32 {
    let h = u32::from(u16::from_le_bytes(bytes));
    let sign = (h & 0x8000) << 16;
    let exponent = (h >> 10) & 0x1f;
    let mantissa = h & 0x3ff;
    let magnitude = match exponent {
        // Zero and subnormals: mantissa × 2⁻²⁴, exact in f32.
        0 => (mantissa as f32 * (1.0 / 16_777_216.0)).to_bits(),
        // Infinities and NaNs.
        0x1f => 0x7f80_0000 | (mantissa << 13),
        _ => ((exponent + 112) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// Blocks seen in their bytes, or `None` when the bytes are not whole blocks.
pub fn blocks<F: Format>(bytes: &[u8]) -> Option<&[F]> {
    bytemuck::try_cast_slice(bytes).ok()
}

/// Rows quantized to 8 bits a value: values, each block's scale (rounded through f16, as
/// the weights' are) and the scale times the sum of its values (for Q4_1's minimum).
pub struct Rows {
    qs: Vec<[u8; QK]>,
    d: Vec<f32>,
    s: Vec<f32>,
}

/// The same rounding as candle's and llama.cpp's `quantize_row_q8_0`, compiled for AVX2
/// (outside it, each value's rounding is a call into libm).
pub fn quantize(simd: V3, xs: &[f32]) -> Rows {
    simd.vectorize(Quantize { xs })
}

struct Quantize<'a> {
    xs: &'a [f32],
}

impl pulp::NullaryFnOnce for Quantize<'_> {
    type Output = Rows;

    #[inline(always)]
    fn call(self) -> Rows {
        let blocks = self.xs.len() / QK;
        let mut rows = Rows {
            qs: Vec::with_capacity(blocks),
            d: Vec::with_capacity(blocks),
            s: Vec::with_capacity(blocks),
        };
        for block in self.xs.chunks_exact(QK) {
            let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0u8; QK];
            let mut sum = 0i32;
            for (q, &x) in qs.iter_mut().zip(block) {
                // `as` saturates; |x · id| ≤ 127.
                let v = (x * id).round() as i8;
                sum += i32::from(v);
                *q = v as u8;
            }
            let d = round_to_f16(d);
            rows.qs.push(qs);
            rows.d.push(d);
            rows.s.push(d * sum as f32);
        }
        rows
    }
}

/// `half::f16::from_f32(x).to_f32()` inline: the nearest f16 (ties to even), as f32.
#[inline(always)]
fn round_to_f16(x: f32) -> f32 {
    let bits = x.to_bits();
    let sign = bits & 0x8000_0000;
    let abs = bits & 0x7fff_ffff;
    if abs >= 0x7f80_0000 {
        // Infinities and NaNs.
        x
    } else if abs >= 0x477f_f000 {
        // From 65520 up: past f16's largest finite value.
        f32::from_bits(sign | 0x7f80_0000)
    } else if abs >= 0x3880_0000 {
        // f16's normal range: ten bits of mantissa, the last 13 of f32's rounded off.
        let odd = (abs >> 13) & 1;
        f32::from_bits(sign | ((abs + 0x0fff + odd) & !0x1fff))
    } else {
        // Subnormal in f16: a multiple of 2⁻²⁴ (both scalings are exact).
        let units = (f32::from_bits(abs) * 16_777_216.0).round_ties_even();
        f32::from_bits(sign | (units * (1.0 / 16_777_216.0)).to_bits())
    }
}

/// All `m` rows of `rows` (`kb` blocks each) times the Q8_0 columns `weights`: `out` is
/// m × columns, row-major. Compiled here, with this crate's optimisation (neither generic
/// nor inline, so callers do not instantiate it). The products, their accumulation and
/// the final sum of lanes follow candle's `vec_dot_q8_0_q8_0`: the results are its bits.
pub fn columns_q8_0(simd: V3, rows: &Rows, m: usize, kb: usize, weights: &[Q8_0], out: &mut [f32]) {
    simd.vectorize(Columns {
        simd,
        rows,
        m,
        kb,
        weights,
        out,
    });
}

/// [`columns_q8_0`] for Q4_1 weights (as llama.cpp's `vec_dot_q4_1_q8_1`, with the
/// row sums kept in f32).
pub fn columns_q4_1(simd: V3, rows: &Rows, m: usize, kb: usize, weights: &[Q4_1], out: &mut [f32]) {
    simd.vectorize(Columns {
        simd,
        rows,
        m,
        kb,
        weights,
        out,
    });
}

/// The arguments as a call whose body is always inlined into pulp's AVX2 frame. A
/// closure would be a function of its own, without AVX2 enabled, wherever the compiler
/// declines to inline it (debug builds split code into many units): every intrinsic in it
/// would then be a call.
struct Columns<'a, F> {
    simd: V3,
    rows: &'a Rows,
    m: usize,
    kb: usize,
    weights: &'a [F],
    out: &'a mut [f32],
}

impl<F: Format> pulp::NullaryFnOnce for Columns<'_, F> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Columns {
            simd,
            rows,
            m,
            kb,
            weights,
            out,
        } = self;
        let width = weights.len() / kb;
        let scales: Vec<f32> = weights.iter().map(F::scale).collect();
        let mins: Vec<f32> = if F::SIGNED {
            Vec::new()
        } else {
            weights.iter().map(F::min).collect()
        };
        let tiles = Tiles {
            simd,
            rows,
            weights,
            scales: &scales,
            mins: &mins,
            kb,
            width,
        };
        let mut col = 0;
        while col < width {
            let cols = COLS.min(width - col);
            let mut row = 0;
            while row < m {
                let n_rows = ROWS.min(m - row);
                match (n_rows, cols) {
                    (4, 2) => tiles.tile::<4, 2>(row, col, out),
                    (3, 2) => tiles.tile::<3, 2>(row, col, out),
                    (2, 2) => tiles.tile::<2, 2>(row, col, out),
                    (1, 2) => tiles.tile::<1, 2>(row, col, out),
                    (4, _) => tiles.tile::<4, 1>(row, col, out),
                    (3, _) => tiles.tile::<3, 1>(row, col, out),
                    (2, _) => tiles.tile::<2, 1>(row, col, out),
                    _ => tiles.tile::<1, 1>(row, col, out),
                }
                row += n_rows;
            }
            col += cols;
        }
    }
}

/// One chunk of columns: its blocks with their scales (and minimums) as f32, the rows,
/// blocks per row, and the chunk's width.
struct Tiles<'a, F> {
    simd: V3,
    rows: &'a Rows,
    weights: &'a [F],
    scales: &'a [f32],
    mins: &'a [f32],
    kb: usize,
    width: usize,
}

impl<F: Format> Tiles<'_, F> {
    /// `R` rows from `row` times `C` columns from `col`, accumulated in `R × C` registers
    /// of eight f32 lanes.
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(&self, row: usize, col: usize, out: &mut [f32]) {
        let Tiles {
            simd,
            rows,
            weights,
            scales,
            mins,
            kb,
            width,
        } = *self;
        let ones = simd.avx._mm256_set1_epi16(1);
        let mut acc = [[simd.avx._mm256_setzero_ps(); C]; R];
        let mut min_acc = [[0f32; C]; R];
        for b in 0..kb {
            let mut w = [simd.avx._mm256_setzero_si256(); C];
            let mut w_unsigned = w;
            let mut w_d = [0f32; C];
            let mut w_m = [0f32; C];
            for j in 0..C {
                let at = (col + j) * kb + b;
                w[j] = weights[at].values(simd);
                w_unsigned[j] = if F::SIGNED {
                    simd.avx2._mm256_sign_epi8(w[j], w[j])
                } else {
                    w[j]
                };
                w_d[j] = scales[at];
                if !F::SIGNED {
                    w_m[j] = mins[at];
                }
            }
            for (i, (acc, min_acc)) in acc.iter_mut().zip(min_acc.iter_mut()).enumerate() {
                let at = (row + i) * kb + b;
                let x = bytemuck::cast(rows.qs[at]);
                let x_d = rows.d[at];
                for j in 0..C {
                    // Signed weights: |w| · (x with w's sign) = w · x, as unsigned × signed
                    // pairs; unsigned ones multiply as they are.
                    let x = if F::SIGNED {
                        simd.avx2._mm256_sign_epi8(x, w[j])
                    } else {
                        x
                    };
                    let pairs = simd.avx2._mm256_maddubs_epi16(w_unsigned[j], x);
                    let sums = simd.avx2._mm256_madd_epi16(pairs, ones);
                    let sums = simd.avx._mm256_cvtepi32_ps(sums);
                    let d = simd.avx._mm256_set1_ps(x_d * w_d[j]);
                    acc[j] = simd.fma._mm256_fmadd_ps(d, sums, acc[j]);
                    if !F::SIGNED {
                        min_acc[j] += w_m[j] * rows.s[at];
                    }
                }
            }
        }
        for (i, (acc, min_acc)) in acc.iter().zip(&min_acc).enumerate() {
            for (j, (lanes, min)) in acc.iter().zip(min_acc).enumerate() {
                let l: [f32; 8] = bytemuck::cast(*lanes);
                // The order of candle's (and llama.cpp's) `hsum_float_8`, so that the same
                // products give the same bits whichever kernel ran.
                let sum = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
                out[(row + i) * width + col + j] = if F::SIGNED { sum } else { sum + min };
            }
        }
    }
}

/// Blocks of `n` columns of `kb` blocks each, from arbitrary bytes (varied by `seed`)
/// with sane scales: `scale` (an f16) for each block, and for Q4_1 its negative as the
/// minimum. Test and bench inputs, shared by this crate's tests and its decode bench.
#[doc(hidden)]
pub fn test_blocks<F: Format>(n: usize, kb: usize, scale: [u8; 2], seed: u32) -> Vec<F> {
    let size = std::mem::size_of::<F>();
    let bytes: Vec<u8> = (0..n * kb * size)
        .map(|i| match i % size {
            0 => scale[0],
            1 => scale[1],
            2 if !F::SIGNED => scale[0],
            3 if !F::SIGNED => scale[1] | 0x80,
            _ => ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8,
        })
        .collect();
    bytemuck::try_cast_slice(&bytes)
        .map(<[F]>::to_vec)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values as values;

    /// A decode step's row gives the bits the same row gets inside a tile of rows.
    fn one_row_matches_the_tile<F: Format>(columns: Columns1<F>) {
        let Some(simd) = V3::try_new() else {
            return;
        };
        let (kb, n) = (5, 11);
        // 0x2c00 is 1/16 as f16.
        let weights = test_blocks::<F>(n, kb, [0x00, 0x2c], 0);
        let x = values(kb * QK, 3);
        let mut alone = vec![0f32; n];
        columns(simd, &quantize(simd, &x), 1, kb, &weights, &mut alone);
        let twice: Vec<f32> = x.iter().chain(&x).copied().collect();
        let mut tiled = vec![0f32; 2 * n];
        columns(simd, &quantize(simd, &twice), 2, kb, &weights, &mut tiled);
        assert_eq!(alone, tiled[..n]);
        assert_eq!(alone, tiled[n..]);
        assert!(alone.iter().any(|v| *v != 0.0));
    }

    type Columns1<F> = fn(V3, &Rows, usize, usize, &[F], &mut [f32]);

    #[test]
    fn a_single_row_gives_the_bits_of_a_row_in_a_tile() {
        one_row_matches_the_tile::<Q8_0>(columns_q8_0);
        one_row_matches_the_tile::<Q4_1>(columns_q4_1);
    }

    #[test]
    fn rounding_to_f16_is_halfs_for_every_kind_of_value() {
        // Every 61st bit pattern (all exponents, both signs, NaNs) and every value near
        // f16's edges: the subnormal range, the normal boundary and overflow.
        let edges = [
            0x3880_0000u32,
            0x3380_0000,
            0x477f_e000,
            0x477f_f000,
            0x3300_0000,
        ];
        let near = edges.iter().flat_map(|&e| {
            (e - 0x4000..e + 0x4000).chain((e - 0x4000..e + 0x4000).map(|b| b | 0x8000_0000))
        });
        for bits in (0..=u32::MAX).step_by(61).chain(near) {
            let x = f32::from_bits(bits);
            let want = half::f16::from_f32(x).to_f32();
            let got = round_to_f16(x);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{bits:#x}: {got} against {want}"
            );
        }
    }

    #[test]
    fn f16_scales_convert_exactly_as_half_does() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_to_f32(h.to_le_bytes());
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{h:#x}"
            );
        }
    }
}
