//! The engine's hot loops on the CPU, optimised even in debug builds (a crate of their
//! own, so `[profile.dev.package]` can say so: at `opt-level = 0` the intrinsics below
//! are calls and a prompt takes 100× longer).
//!
//! Q8_0 matrix products in register tiles: prompt rows are quantized to Q8_0 once,
//! exactly as candle and llama.cpp quantize them, and `ROWS × COLS` outputs are
//! accumulated at once in AVX2 registers, so each weight block is loaded and each scale
//! converted once per tile of rows, and lanes are summed once per output. The products,
//! their accumulation and the final sum of lanes follow candle's `vec_dot_q8_0_q8_0` step
//! for step, so the results are its bits. The intrinsics are pulp's safe, run-time-checked
//! ones: no `unsafe` here.

pub use pulp::x86::V3;

/// Values per Q8_0 block.
pub const QK: usize = 32;
/// Prompt rows of one register tile.
const ROWS: usize = 4;
/// Weight rows (output columns) of one register tile.
const COLS: usize = 2;

/// One Q8_0 block as GGUF files and candle lay it out: an f16 scale, then 32 signed bytes.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Block {
    d: [u8; 2],
    qs: [u8; QK],
}

/// Q8_0 blocks seen in their bytes, or `None` when the bytes are not whole blocks.
pub fn blocks(bytes: &[u8]) -> Option<&[Block]> {
    bytemuck::try_cast_slice(bytes).ok()
}

/// Prompt rows quantized to Q8_0: values and each block's scale (rounded through f16, as
/// the weights' are).
pub struct Rows {
    qs: Vec<[u8; QK]>,
    d: Vec<f32>,
}

/// The same rounding as candle's and llama.cpp's `quantize_row_q8_0`.
pub fn quantize(xs: &[f32]) -> Rows {
    let blocks = xs.len() / QK;
    let mut rows = Rows {
        qs: Vec::with_capacity(blocks),
        d: Vec::with_capacity(blocks),
    };
    for block in xs.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK];
        for (q, &x) in qs.iter_mut().zip(block) {
            // `as` saturates; |x · id| ≤ 127.
            *q = (x * id).round() as i8 as u8;
        }
        rows.qs.push(qs);
        rows.d.push(half::f16::from_f32(d).to_f32());
    }
    rows
}

fn scale(block: &Block) -> f32 {
    half::f16::from_le_bytes(block.d).to_f32()
}

/// All `m` rows of `rows` (`kb` blocks each) times the columns whose blocks are
/// `weights`: `out` is m × columns, row-major. Compiled here, with this crate's
/// optimisation (it is neither generic nor inline, so callers do not instantiate it).
pub fn columns(simd: V3, rows: &Rows, m: usize, kb: usize, weights: &[Block], out: &mut [f32]) {
    simd.vectorize(Columns {
        simd,
        rows,
        m,
        kb,
        weights,
        out,
    });
}

/// [`columns`]' arguments as a call whose body is always inlined into pulp's AVX2 frame.
/// A closure would be a function of its own, without AVX2 enabled, wherever the compiler
/// declines to inline it (debug builds split code into many units): every intrinsic in it
/// would then be a call.
struct Columns<'a> {
    simd: V3,
    rows: &'a Rows,
    m: usize,
    kb: usize,
    weights: &'a [Block],
    out: &'a mut [f32],
}

impl pulp::NullaryFnOnce for Columns<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        columns_in(
            self.simd,
            self.rows,
            self.m,
            self.kb,
            self.weights,
            self.out,
        );
    }
}

#[inline(always)]
fn columns_in(simd: V3, rows: &Rows, m: usize, kb: usize, weights: &[Block], out: &mut [f32]) {
    let width = weights.len() / kb;
    let scales: Vec<f32> = weights.iter().map(scale).collect();
    let mut col = 0;
    while col < width {
        let cols = COLS.min(width - col);
        let mut row = 0;
        while row < m {
            let n_rows = ROWS.min(m - row);
            let at = Tile {
                row,
                col,
                kb,
                width,
            };
            match (n_rows, cols) {
                (4, 2) => tile::<4, 2>(simd, rows, weights, &scales, &at, out),
                (3, 2) => tile::<3, 2>(simd, rows, weights, &scales, &at, out),
                (2, 2) => tile::<2, 2>(simd, rows, weights, &scales, &at, out),
                (1, 2) => tile::<1, 2>(simd, rows, weights, &scales, &at, out),
                (4, _) => tile::<4, 1>(simd, rows, weights, &scales, &at, out),
                (3, _) => tile::<3, 1>(simd, rows, weights, &scales, &at, out),
                (2, _) => tile::<2, 1>(simd, rows, weights, &scales, &at, out),
                _ => tile::<1, 1>(simd, rows, weights, &scales, &at, out),
            }
            row += n_rows;
        }
        col += cols;
    }
}

/// Where a tile sits: its first row and column, blocks per row, and the chunk's width.
struct Tile {
    row: usize,
    col: usize,
    kb: usize,
    width: usize,
}

/// `R` rows times `C` columns, accumulated in `R × C` registers of eight f32 lanes.
#[inline(always)]
fn tile<const R: usize, const C: usize>(
    simd: V3,
    rows: &Rows,
    weights: &[Block],
    scales: &[f32],
    at: &Tile,
    out: &mut [f32],
) {
    let Tile {
        row,
        col,
        kb,
        width,
    } = *at;
    let ones = simd.avx._mm256_set1_epi16(1);
    let zero = simd.avx._mm256_setzero_ps();
    let mut acc = [[zero; C]; R];
    for b in 0..kb {
        let mut w = [simd.avx._mm256_setzero_si256(); C];
        let mut w_abs = w;
        let mut w_d = [0f32; C];
        for j in 0..C {
            let at = (col + j) * kb + b;
            w[j] = bytemuck::cast(weights[at].qs);
            w_abs[j] = simd.avx2._mm256_sign_epi8(w[j], w[j]);
            w_d[j] = scales[at];
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            let at = (row + i) * kb + b;
            let x = bytemuck::cast(rows.qs[at]);
            let x_d = rows.d[at];
            for j in 0..C {
                // |w| · (x with w's sign) = w · x, in unsigned × signed pairs.
                let x_signed = simd.avx2._mm256_sign_epi8(x, w[j]);
                let pairs = simd.avx2._mm256_maddubs_epi16(w_abs[j], x_signed);
                let sums = simd.avx2._mm256_madd_epi16(pairs, ones);
                let sums = simd.avx._mm256_cvtepi32_ps(sums);
                let d = simd.avx._mm256_set1_ps(x_d * w_d[j]);
                acc[j] = simd.fma._mm256_fmadd_ps(d, sums, acc[j]);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (j, lanes) in acc.iter().enumerate() {
            let l: [f32; 8] = bytemuck::cast(*lanes);
            // The order of candle's (and llama.cpp's) `hsum_float_8`, so that the same
            // products give the same bits whichever kernel ran.
            out[(row + i) * width + col + j] =
                ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
        }
    }
}
