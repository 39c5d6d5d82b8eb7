//! Prompt-sized matrix products with Q8_0 weights, multiplied in register tiles.
//!
//! candle multiplies a quantized matrix by a batch of rows one dot product at a time: for
//! each row and each column it loads the weight block again, converts both blocks' f16
//! scales again and sums the lanes again. For a prompt (many rows) this module does what
//! llama.cpp's tiled kernels do instead: the rows are quantized to Q8_0 once (exactly as
//! candle and llama.cpp quantize them), and `ROWS × COLS` outputs are accumulated at once
//! in AVX2 registers, so each weight block is loaded and each scale converted once per
//! tile of rows, and lanes are summed once per output. The intrinsics are pulp's safe,
//! run-time-checked ones: no `unsafe` here. A single row (a decode step), a CPU without
//! AVX2 and any other block type stay on candle's own kernels.

use std::sync::{Arc, OnceLock};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use pulp::x86::V3;

type Result<T> = candle_core::Result<T>;

/// Values per Q8_0 block.
const QK: usize = 32;
/// Prompt rows of one register tile.
const ROWS: usize = 4;
/// Weight rows (output columns) of one register tile.
const COLS: usize = 2;
/// Output columns of one parallel task.
const CHUNK: usize = 32;

/// One Q8_0 block as the file and candle lay it out: an f16 scale, then 32 signed bytes.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Block {
    d: [u8; 2],
    qs: [u8; QK],
}

/// A weight matrix of a linear layer: candle's product for one row or other block types,
/// the tiled one for prompts on Q8_0 weights.
#[derive(Clone)]
pub struct Linear {
    candle: QMatMul,
    tiled: Option<Tiled>,
}

#[derive(Clone)]
struct Tiled {
    weights: Arc<QTensor>,
    /// Output columns (weight rows).
    n: usize,
    /// Inputs per row.
    k: usize,
    simd: V3,
}

impl Linear {
    pub fn new(weights: QTensor) -> Result<Self> {
        let weights = Arc::new(weights);
        let tiled = match (weights.dtype(), weights.shape().dims2(), V3::try_new()) {
            (GgmlDType::Q8_0, Ok((n, k)), Some(simd)) if k.is_multiple_of(QK) && n > 0 => {
                Some(Tiled {
                    weights: weights.clone(),
                    n,
                    k,
                    simd,
                })
            }
            _ => None,
        };
        Ok(Self {
            candle: QMatMul::from_arc(weights)?,
            tiled,
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.tiled {
            Some(tiled) if xs.elem_count() > tiled.k => xs.contiguous()?.apply_op1_no_bwd(tiled),
            _ => self.candle.forward(xs),
        }
    }
}

impl CustomOp1 for Tiled {
    fn name(&self) -> &'static str {
        "q8_0-tiled-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(xs) = storage else {
            candle_core::bail!("the tiled Q8_0 product takes f32 rows");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the tiled Q8_0 product takes contiguous rows");
        };
        let mut dims = layout.shape().dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == self.k => *last = self.n,
            _ => candle_core::bail!("rows of {:?} do not match {} inputs", dims, self.k),
        }
        let data = self.weights.data()?;
        let Ok(weights) = bytemuck::try_cast_slice::<u8, Block>(&data) else {
            candle_core::bail!("Q8_0 weights of {} bytes are not whole blocks", data.len());
        };
        if weights.len() != self.n * (self.k / QK) {
            candle_core::bail!("Q8_0 weights hold {} blocks", weights.len());
        }
        let out = matmul(self.simd, &xs[start..end], self.k, weights, self.n)?;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// Prompt rows quantized to Q8_0: values and each block's scale (rounded through f16, as
/// the weights' are).
struct Rows {
    qs: Vec<[u8; QK]>,
    d: Vec<f32>,
}

/// The same rounding as candle's and llama.cpp's `quantize_row_q8_0`.
fn quantize(xs: &[f32]) -> Rows {
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

/// `xs` (m × k, row-major) times the transpose of `weights` (n rows of k/32 blocks):
/// m × n, row-major. Chunks of columns are spread over candle's own worker pool, the one
/// its other kernels use, so no second pool spins against it for the same cores.
fn matmul(simd: V3, xs: &[f32], k: usize, weights: &[Block], n: usize) -> Result<Vec<f32>> {
    let m = xs.len() / k;
    let kb = k / QK;
    let rows = quantize(xs);
    let chunks: Vec<OnceLock<Vec<f32>>> = (0..n.div_ceil(CHUNK)).map(|_| OnceLock::new()).collect();
    candle_core::utils::barrier_pool().execute_chunked(chunks.len(), |range| {
        for c in range {
            let weights = &weights[c * CHUNK * kb..n.min((c + 1) * CHUNK) * kb];
            let mut out = vec![0f32; m * (weights.len() / kb)];
            simd.vectorize(|| chunk(simd, &rows, m, kb, weights, &mut out));
            let _ = chunks[c].set(out);
        }
    });
    let mut dst = vec![0f32; m * n];
    for (c, out) in chunks.iter().enumerate() {
        let Some(out) = out.get() else {
            candle_core::bail!("a chunk of the tiled Q8_0 product was not computed");
        };
        let width = out.len() / m;
        for (r, row) in out.chunks_exact(width).enumerate() {
            let at = r * n + c * CHUNK;
            dst[at..at + width].copy_from_slice(row);
        }
    }
    Ok(dst)
}

/// All `m` rows times the columns whose blocks are `weights`: `out` is m × columns.
#[inline(always)]
fn chunk(simd: V3, rows: &Rows, m: usize, kb: usize, weights: &[Block], out: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A deterministic spread of values, some large, some near zero.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn tiled_products_are_candles_bit_for_bit_for_every_tile_shape() {
        if V3::try_new().is_none() {
            eprintln!("skipped: this CPU has no AVX2, where candle's kernels are used");
            return;
        }
        // Odd row and column counts exercise every remainder tile and a partial chunk.
        for (m, k, n) in [(7, 64, 37), (4, 96, 2), (2, 32, 1), (9, 576, 70)] {
            let w = Tensor::from_vec(values(n * k, 7), (n, k), &Device::Cpu).unwrap();
            let w = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
            let x = Tensor::from_vec(values(m * k, 11), (1, m, k), &Device::Cpu).unwrap();
            let linear = Linear::new(w).unwrap();
            assert!(linear.tiled.is_some());
            let ours = linear.forward(&x).unwrap();
            let theirs = linear.candle.forward(&x).unwrap();
            assert_eq!(ours.dims(), &[1, m, n]);
            let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
            let theirs: Vec<f32> = theirs.flatten_all().unwrap().to_vec1().unwrap();
            // The same quantized products, accumulated and summed in the same order.
            assert_eq!(ours, theirs, "({m},{k},{n})");
        }
    }

    #[test]
    fn a_single_row_stays_on_candles_kernel() {
        let w = Tensor::from_vec(values(64, 3), (2, 32), &Device::Cpu).unwrap();
        let linear = Linear::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        let x = Tensor::from_vec(values(32, 5), (1, 1, 32), &Device::Cpu).unwrap();
        let ours: Vec<f32> = linear
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let theirs: Vec<f32> = linear
            .candle
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(ours, theirs);
    }
}
