//! Matrix products of the engine's linear layers: Q8_0 prompts and Q4_1 at any size
//! through the tiled kernels of `instagen-kernels`, everything else through candle.
//!
//! candle multiplies a quantized matrix by a batch of rows one dot product at a time: for
//! each row and each column it loads the weight block again, converts both blocks' f16
//! scales again and sums the lanes again. For a prompt (many rows) the tiled kernel does
//! what llama.cpp's does instead, with the same bits as a result. A single Q8_0 row (a decode
//! step), a CPU without AVX2 and any other block type stay on candle's own kernels. candle
//! multiplies Q4_1 with scalar code only, so Q4_1 goes through the kernel even for one row:
//! decoding then reads 4-bit weights, where memory bandwidth is what limits it.

use std::sync::Arc;
use std::sync::Mutex;
#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use candle_core::quantized::GgmlDType;
use candle_core::quantized::{QMatMul, QTensor};
#[cfg(target_arch = "x86_64")]
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use candle_core::{Module, Tensor};
#[cfg(target_arch = "x86_64")]
use instagen_kernels::{self as kernels, Format, QK, V3};

type Result<T> = candle_core::Result<T>;

#[cfg(target_arch = "x86_64")]
/// Output columns of one parallel task.
const CHUNK: usize = 32;

/// A weight matrix of a linear layer: the tiled kernel for Q8_0 prompts and for Q4_1 at
/// any size, candle's product otherwise.
#[derive(Clone)]
pub struct Linear {
    candle: QMatMul,
    #[cfg(target_arch = "x86_64")]
    tiled: Option<Tiled>,
}

#[cfg(target_arch = "x86_64")]
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
        #[cfg(target_arch = "x86_64")]
        let tiled = match (weights.dtype(), weights.shape().dims2(), V3::try_new()) {
            (GgmlDType::Q8_0 | GgmlDType::Q4_1, Ok((n, k)), Some(simd))
                if k.is_multiple_of(QK) && n > 0 =>
            {
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
            #[cfg(target_arch = "x86_64")]
            tiled,
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        #[cfg(target_arch = "x86_64")]
        if let Some(tiled) = self.tiled(xs.elem_count()) {
            return xs.contiguous()?.apply_op1_no_bwd(tiled);
        }
        self.candle.forward(xs)
    }

    /// One row (a decode step) as plain values: the product [`Self::forward`] computes,
    /// without a tensor around it where the tiled kernel runs.
    pub fn row(&self, x: &[f32]) -> Result<Vec<f32>> {
        #[cfg(target_arch = "x86_64")]
        if let Some(tiled) = self.tiled(x.len()) {
            return tiled.product(x);
        }
        let x = Tensor::from_slice(x, (1, x.len()), &candle_core::Device::Cpu)?;
        self.candle.forward(&x)?.flatten_all()?.to_vec1()
    }

    /// The tiled kernel, where it multiplies `values` inputs (one row or more): one row of
    /// Q8_0 (a decode step) is as fast on candle's kernel; candle has no SIMD kernel for
    /// Q4_1 at all.
    #[cfg(target_arch = "x86_64")]
    fn tiled(&self, values: usize) -> Option<&Tiled> {
        self.tiled
            .as_ref()
            .filter(|t| values > t.k || t.weights.dtype() == GgmlDType::Q4_1)
    }
}

#[cfg(target_arch = "x86_64")]
impl CustomOp1 for Tiled {
    fn name(&self) -> &'static str {
        "tiled-quantized-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(xs) = storage else {
            candle_core::bail!("the tiled product takes f32 rows");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("the tiled product takes contiguous rows");
        };
        let mut dims = layout.shape().dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == self.k => *last = self.n,
            _ => candle_core::bail!("rows of {:?} do not match {} inputs", dims, self.k),
        }
        let out = self.product(&xs[start..end])?;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(target_arch = "x86_64")]
impl Tiled {
    /// `xs` (rows of k values) times the transpose of the weights, with the kernel of
    /// their block type.
    fn product(&self, xs: &[f32]) -> Result<Vec<f32>> {
        if xs.is_empty() || !xs.len().is_multiple_of(self.k) {
            candle_core::bail!("{} values are not rows of {}", xs.len(), self.k);
        }
        let data = self.weights.data()?;
        match self.weights.dtype() {
            GgmlDType::Q8_0 => self.matmul(xs, &data, kernels::columns_q8_0),
            _ => self.matmul(xs, &data, kernels::columns_q4_1),
        }
    }

    /// `xs` (m × k, row-major) times the transpose of the weights (n rows of k/32 blocks):
    /// m × n, row-major. Chunks of columns are spread over candle's own worker pool, the
    /// one its other kernels use, so no second pool spins against it for the same cores.
    fn matmul<F: Format>(&self, xs: &[f32], data: &[u8], columns: Columns<F>) -> Result<Vec<f32>> {
        let (n, k, simd) = (self.n, self.k, self.simd);
        let kb = k / QK;
        let weights = match kernels::blocks::<F>(data) {
            Some(weights) if weights.len() == n * kb => weights,
            _ => candle_core::bail!("{} bytes are not {n} × {kb} weight blocks", data.len()),
        };
        let m = xs.len() / k;
        let rows = kernels::quantize(simd, xs);
        if m == 1 {
            // One row (a decode step): one contiguous part of the output row per pool
            // thread, written in place, each thread streaming its part's weights from first
            // to last. A shared cursor handed out short runs in turn instead, so the
            // threads' reads interleaved: alternating enginebench sets were faster with
            // the parts in 14 of 17 pairs, by 7–11 % in the median.
            let mut dst = vec![0f32; n];
            let pool = candle_core::utils::barrier_pool();
            let per = n.div_ceil(CHUNK).div_ceil(pool.n_workers() + 1) * CHUNK;
            let parts: Vec<Slot> = dst.chunks_mut(per).map(Slot::new).collect();
            pool.execute(|part| {
                let Some(Ok(mut out)) = parts.get(part).map(Slot::lock) else {
                    return;
                };
                for (c, out) in out.chunks_mut(CHUNK).enumerate() {
                    let first = part * per + c * CHUNK;
                    let weights = &weights[first * kb..(first + out.len()) * kb];
                    columns(simd, &rows, 1, kb, weights, out);
                }
            });
            drop(parts);
            return Ok(dst);
        }
        let chunks: Vec<OnceLock<Vec<f32>>> =
            (0..n.div_ceil(CHUNK)).map(|_| OnceLock::new()).collect();
        candle_core::utils::barrier_pool().execute_chunked(chunks.len(), |range| {
            for c in range {
                let weights = &weights[c * CHUNK * kb..n.min((c + 1) * CHUNK) * kb];
                let mut out = vec![0f32; m * (weights.len() / kb)];
                columns(simd, &rows, m, kb, weights, &mut out);
                let _ = chunks[c].set(out);
            }
        });
        let mut dst = vec![0f32; m * n];
        for (c, out) in chunks.iter().enumerate() {
            let Some(out) = out.get() else {
                candle_core::bail!("a chunk of the tiled product was not computed");
            };
            let width = out.len() / m;
            for (r, row) in out.chunks_exact(width).enumerate() {
                let at = r * n + c * CHUNK;
                dst[at..at + width].copy_from_slice(row);
            }
        }
        Ok(dst)
    }
}

/// One run of an output row (a thread's part of a product, a query head's values), for
/// the pool thread that takes it: each on cache lines of its own, since the pool's threads
/// take neighbouring runs, and locks packed side by side would pass one line between the
/// cores.
#[repr(align(128))]
pub(super) struct Slot<'a>(Mutex<&'a mut [f32]>);

impl<'a> Slot<'a> {
    pub(super) fn new(out: &'a mut [f32]) -> Self {
        Self(Mutex::new(out))
    }

    pub(super) fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, &'a mut [f32]>> {
        self.0.lock()
    }
}

#[cfg(target_arch = "x86_64")]
/// One of the kernels' entry points for a block type.
type Columns<F> = fn(V3, &kernels::Rows, usize, usize, &[F], &mut [f32]);

#[cfg(test)]
#[cfg(target_arch = "x86_64")]
mod tests {
    use super::*;
    use candle_core::Device;
    use instagen_kernels::test_values as values;

    /// The tiled (or routed) product and candle's own, on the same input, flattened.
    fn both(linear: &Linear, x: &Tensor) -> (Vec<f32>, Vec<f32>) {
        let flat = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
        (
            flat(linear.forward(x).unwrap()),
            flat(linear.candle.forward(x).unwrap()),
        )
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
            assert_eq!(linear.forward(&x).unwrap().dims(), &[1, m, n]);
            let (ours, theirs) = both(&linear, &x);
            // The same quantized products, accumulated and summed in the same order.
            assert_eq!(ours, theirs, "({m},{k},{n})");
        }
    }

    #[test]
    fn q4_1_products_match_candles_at_every_size_including_one_row() {
        if V3::try_new().is_none() {
            eprintln!("skipped: this CPU has no AVX2, where candle's kernels are used");
            return;
        }
        for (m, k, n) in [(1, 64, 37), (1, 576, 70), (7, 64, 37), (9, 576, 70)] {
            let w = Tensor::from_vec(values(n * k, 7), (n, k), &Device::Cpu).unwrap();
            let w = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
            let x = Tensor::from_vec(values(m * k, 11), (1, m, k), &Device::Cpu).unwrap();
            let linear = Linear::new(w).unwrap();
            let (ours, theirs) = both(&linear, &x);
            assert_eq!(ours.len(), m * n);
            // candle rounds each block's row sum to f16 (as llama.cpp does); the kernel
            // keeps it in f32. Nothing else differs.
            let range = theirs.iter().fold(0f32, |a, b| a.max(b.abs()));
            for (a, b) in ours.iter().zip(&theirs) {
                assert!((a - b).abs() <= 2e-3 * range, "{a} vs {b} ({m},{k},{n})");
            }
        }
    }

    #[test]
    fn a_single_row_stays_on_candles_kernel() {
        let w = Tensor::from_vec(values(64, 3), (2, 32), &Device::Cpu).unwrap();
        let linear = Linear::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        let x = Tensor::from_vec(values(32, 5), (1, 1, 32), &Device::Cpu).unwrap();
        let (ours, theirs) = both(&linear, &x);
        assert_eq!(ours, theirs);
    }
}
