//! A GGUF file seen with some tensors converted to another type as they load: every
//! tensor to f32 for `weights = "f32"`, and in `quantized` mode only the block types
//! whose matrix products have no SIMD kernel in candle to 8-bit blocks that have one.
//!
//! The loader reads tensors through `Read + Seek` at offsets its `Content` names; this
//! reader rewrites those offsets to the converted layout and produces each tensor's bytes
//! when it is read, one tensor at a time, so loading never holds a second copy of the
//! whole model.

use std::io::{Read, Seek, SeekFrom};

use candle_core::Device;
use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::{GgmlDType, QTensor};

/// What each tensor becomes: `None` keeps it as the file has it.
pub type Plan = fn(GgmlDType) -> Option<GgmlDType>;

/// `weights = "f32"`: every tensor dequantized.
pub fn to_f32(dtype: GgmlDType) -> Option<GgmlDType> {
    (dtype != GgmlDType::F32).then_some(GgmlDType::F32)
}

/// `weights = "quantized"`: candle 0.11 multiplies Q4_1, Q5_0 and Q5_1 blocks with scalar
/// code on every CPU (its AVX2 and NEON kernels cover Q4_0, Q8_0 and the K-quants, chosen
/// at run time), which makes them 2–3× slower to decode and ~10× slower to prefill. Such
/// blocks are re-quantized to Q8_0 at load: 8-bit values whose step is under a tenth of a
/// 4-bit step (an error of at most half of it), for 1.7× the memory of Q4_1.
pub fn to_fast_blocks(dtype: GgmlDType) -> Option<GgmlDType> {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1).then_some(GgmlDType::Q8_0)
}

/// `weights = "quantized"` where `instagen-kernels` runs (AVX2): its own kernel multiplies
/// Q4_1, so those blocks stay as the file has them (fewer bytes to read a token).
pub fn to_fast_blocks_keeping_q4_1(dtype: GgmlDType) -> Option<GgmlDType> {
    if dtype == GgmlDType::Q4_1 {
        None
    } else {
        to_fast_blocks(dtype)
    }
}

pub struct Converting<'a, R> {
    file: &'a mut R,
    /// Where the original file's tensor data starts.
    data_offset: u64,
    /// `(virtual start, byte length, where the tensor really is, what it becomes)`, by
    /// start.
    tensors: Vec<(u64, u64, TensorInfo, Option<GgmlDType>)>,
    size: u64,
    pos: u64,
    /// The bytes of the tensor read last.
    current: Option<(usize, Vec<u8>)>,
}

impl<'a, R: Read + Seek> Converting<'a, R> {
    /// Rewrites `content` to describe the converted tensors in this reader's layout.
    pub fn new(file: &'a mut R, content: &mut Content, plan: Plan) -> Self {
        let data_offset = content.tensor_data_offset;
        let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
        names.sort();
        let mut tensors = Vec::with_capacity(names.len());
        let mut at = 0u64;
        for name in names {
            let Some(info) = content.tensor_infos.get_mut(&name) else {
                continue;
            };
            let original = TensorInfo {
                ggml_dtype: info.ggml_dtype,
                shape: info.shape.clone(),
                offset: info.offset,
            };
            let target = plan(info.ggml_dtype).filter(|t| {
                // A block type needs whole blocks along the rows.
                info.shape
                    .dims()
                    .last()
                    .is_some_and(|&row| row % t.block_size() == 0)
            });
            let dtype = target.unwrap_or(info.ggml_dtype);
            let len = (info.shape.elem_count() / dtype.block_size() * dtype.type_size()) as u64;
            info.ggml_dtype = dtype;
            info.offset = at;
            tensors.push((at, len, original, target));
            at += len;
        }
        content.tensor_data_offset = 0;
        Self {
            file,
            data_offset,
            tensors,
            size: at,
            pos: 0,
            current: None,
        }
    }

    fn materialise(&mut self, index: usize) -> std::io::Result<&[u8]> {
        if self.current.as_ref().is_none_or(|(i, _)| *i != index) {
            self.current = None;
            let (_, len, info, target) = &self.tensors[index];
            let bytes = match target {
                // Kept as it is: the file's bytes, read straight through.
                None => {
                    let len = usize::try_from(*len).map_err(std::io::Error::other)?;
                    let mut bytes = vec![0; len];
                    self.file
                        .seek(SeekFrom::Start(self.data_offset + info.offset))?;
                    self.file.read_exact(&mut bytes)?;
                    bytes
                }
                // F32 included: a "quantization" to f32 is the plain values.
                Some(dtype) => info
                    .read(self.file, self.data_offset, &Device::Cpu)
                    .and_then(|t| t.dequantize(&Device::Cpu))
                    .and_then(|t| QTensor::quantize(&t, *dtype))
                    .and_then(|q| q.data().map(|d| d.into_owned()))
                    .map_err(std::io::Error::other)?,
            };
            self.current = Some((index, bytes));
        }
        Ok(self.current.as_ref().map_or(&[][..], |(_, b)| b.as_slice()))
    }
}

impl<R: Read + Seek> Read for Converting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = self.pos;
        let index = self
            .tensors
            .partition_point(|(start, len, _, _)| start + len <= pos);
        let Some(&(start, _, _, _)) = self.tensors.get(index) else {
            return Ok(0);
        };
        if pos < start {
            return Err(std::io::Error::other("read between tensors"));
        }
        let bytes = self.materialise(index)?;
        let from = usize::try_from(pos - start).map_err(std::io::Error::other)?;
        let n = buf.len().min(bytes.len().saturating_sub(from));
        let (Some(src), Some(dst)) = (bytes.get(from..from + n), buf.get_mut(..n)) else {
            return Ok(0);
        };
        dst.copy_from_slice(src);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Converting<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use candle_core::quantized::gguf_file;
    use candle_core::{Device, Tensor};

    use super::*;

    /// A small GGUF file with a Q4_1 tensor `a` and a Q8_0 tensor `b`: a reader of it, its
    /// contents, and its bytes.
    fn test_file() -> (Cursor<Vec<u8>>, gguf_file::Content, Vec<u8>) {
        let values: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
        let source = Tensor::from_vec(values, (16, 32), &Device::Cpu).unwrap();
        let q4 = QTensor::quantize(&source, GgmlDType::Q4_1).unwrap();
        let q8 = QTensor::quantize(&source.affine(2.0, 0.5).unwrap(), GgmlDType::Q8_0).unwrap();
        let name = gguf_file::Value::String("test".to_owned());
        let mut file = Cursor::new(Vec::new());
        gguf_file::write(
            &mut file,
            &[("general.name", &name)],
            &[("a", &q4), ("b", &q8)],
        )
        .unwrap();
        let bytes = file.into_inner();
        let mut direct = Cursor::new(bytes.clone());
        let original = gguf_file::Content::read(&mut direct).unwrap();
        (direct, original, bytes)
    }

    fn values(t: &QTensor) -> Vec<f32> {
        t.dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    #[test]
    fn every_tensor_reads_back_as_its_f32_dequantization() {
        let (mut direct, original, bytes) = test_file();
        let mut file = Cursor::new(bytes);
        let mut content = gguf_file::Content::read(&mut file).unwrap();
        let mut reader = Converting::new(&mut file, &mut content, to_f32);
        for name in ["b", "a"] {
            let via = content.tensor(&mut reader, name, &Device::Cpu).unwrap();
            assert_eq!(via.dtype(), GgmlDType::F32);
            let want = original.tensor(&mut direct, name, &Device::Cpu).unwrap();
            assert_eq!(via.shape(), want.shape());
            assert_eq!(values(&via), values(&want), "tensor {name}");
        }
    }

    #[test]
    fn quantized_weights_without_a_simd_kernel_load_as_close_q8_0_and_the_rest_unchanged() {
        let (mut direct, original, bytes) = test_file();
        let mut file = Cursor::new(bytes);
        let mut content = gguf_file::Content::read(&mut file).unwrap();
        let mut reader = Converting::new(&mut file, &mut content, to_fast_blocks);
        // Q8_0 already has a kernel: the very same blocks.
        let b = content.tensor(&mut reader, "b", &Device::Cpu).unwrap();
        let want_b = original.tensor(&mut direct, "b", &Device::Cpu).unwrap();
        assert_eq!(b.dtype(), GgmlDType::Q8_0);
        assert_eq!(b.data().unwrap(), want_b.data().unwrap());
        // Q4_1 becomes Q8_0, within half an 8-bit step of the file's values (plus what
        // storing the block's scale as f16 costs: under 127 × 2⁻¹¹ steps).
        let a = content.tensor(&mut reader, "a", &Device::Cpu).unwrap();
        let want_a = original.tensor(&mut direct, "a", &Device::Cpu).unwrap();
        assert_eq!(want_a.dtype(), GgmlDType::Q4_1);
        assert_eq!(a.dtype(), GgmlDType::Q8_0);
        assert_eq!(a.shape(), want_a.shape());
        // Where our own kernel multiplies Q4_1, it stays as it is.
        let mut file = Cursor::new(test_file().2);
        let mut kept = gguf_file::Content::read(&mut file).unwrap();
        let mut keeping = Converting::new(&mut file, &mut kept, to_fast_blocks_keeping_q4_1);
        let kept_a = kept.tensor(&mut keeping, "a", &Device::Cpu).unwrap();
        assert_eq!(kept_a.dtype(), GgmlDType::Q4_1);
        assert_eq!(kept_a.data().unwrap(), want_a.data().unwrap());
        let (got, want) = (values(&a), values(&want_a));
        for (row, (g, w)) in got.chunks(32).zip(want.chunks(32)).enumerate() {
            let step = w.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (x, y) in g.iter().zip(w) {
                assert!((x - y).abs() <= step * 0.57, "row {row}: {x} vs {y}");
            }
        }
    }
}
