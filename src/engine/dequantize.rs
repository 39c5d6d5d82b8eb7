//! A GGUF file seen with every tensor in f32: for `weights = "f32"`, where matrix
//! products run on dequantized weights (more memory, exact activations, fast prefill).
//!
//! The loader reads tensors through `Read + Seek` at offsets its `Content` names; this
//! reader rewrites those offsets to an f32 layout and produces each tensor's f32 bytes
//! when it is read, one tensor at a time, so loading never holds a second copy of the
//! whole model.

use std::io::{Read, Seek, SeekFrom};

use candle_core::Device;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo};

pub struct Dequantizing<'a, R> {
    file: &'a mut R,
    /// Where the original file's tensor data starts.
    data_offset: u64,
    /// `(virtual start, byte length, where the tensor really is)`, by start.
    tensors: Vec<(u64, u64, TensorInfo)>,
    size: u64,
    pos: u64,
    /// The f32 bytes of the tensor read last.
    current: Option<(usize, Vec<u8>)>,
}

impl<'a, R: Read + Seek> Dequantizing<'a, R> {
    /// Rewrites `content` to describe f32 tensors in this reader's layout.
    pub fn new(file: &'a mut R, content: &mut Content) -> Self {
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
            let len = info.shape.elem_count() as u64 * 4;
            info.ggml_dtype = GgmlDType::F32;
            info.offset = at;
            tensors.push((at, len, original));
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
            let info = &self.tensors[index].2;
            let values = info
                .read(self.file, self.data_offset, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(std::io::Error::other)?;
            let mut bytes = Vec::with_capacity(values.len() * 4);
            for v in values {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            self.current = Some((index, bytes));
        }
        Ok(self.current.as_ref().map_or(&[][..], |(_, b)| b.as_slice()))
    }
}

impl<R: Read + Seek> Read for Dequantizing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = self.pos;
        let index = self
            .tensors
            .partition_point(|(start, len, _)| start + len <= pos);
        let Some(&(start, _, _)) = self.tensors.get(index) else {
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

impl<R: Read + Seek> Seek for Dequantizing<'_, R> {
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

    use candle_core::quantized::{QTensor, gguf_file};
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn every_tensor_reads_back_as_its_f32_dequantization() {
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
        let mut file = Cursor::new(bytes);
        let mut content = gguf_file::Content::read(&mut file).unwrap();
        let mut reader = Dequantizing::new(&mut file, &mut content);
        for name in ["b", "a"] {
            let via = content.tensor(&mut reader, name, &Device::Cpu).unwrap();
            assert_eq!(via.dtype(), GgmlDType::F32);
            let want = original
                .tensor(&mut direct, name, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            let got = via.dequantize(&Device::Cpu).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert_eq!(
                got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "tensor {name}"
            );
        }
    }
}
