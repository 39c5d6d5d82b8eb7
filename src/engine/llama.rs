//! The llama-family forward pass: shared weights, and each sequence's own KV cache.
//!
//! The same computation as candle-transformers' `quantized_llama` (whose layers are
//! private), with two differences: the matrix products go through [`q8::Linear`], which
//! multiplies prompts in register tiles, and the weights are apart from the per-sequence
//! state, so a request borrows the model instead of cloning it.

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::Embedding;

use super::q8::{Linear, Slot};

/// The longest context: the rotary tables are computed this far.
pub const MAX_SEQ_LEN: usize = 4096;

struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    attention_norm: Norm,
    gate: Linear,
    down: Linear,
    up: Linear,
    ffn_norm: Norm,
}

/// An RMS norm's weights, as a tensor for prompts (candle's `rms_norm`) and as plain
/// values for decode steps, which repeat candle's arithmetic on them.
struct Norm {
    weight: Tensor,
    values: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn new(weight: candle_core::quantized::QTensor, eps: f64) -> Result<Self> {
        let weight = weight.dequantize(&Device::Cpu)?;
        let values = weight.flatten_all()?.to_vec1()?;
        Ok(Self {
            weight,
            values,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }

    /// candle's `rms_norm` on one row: the same sum, root and products, in the same order.
    fn row(&self, x: &[f32]) -> Vec<f32> {
        let sum2: f32 = x.iter().map(|v| v * v).sum();
        let m = (sum2 / x.len() as f32 + self.eps).sqrt();
        x.iter().zip(&self.values).map(|(v, a)| v / m * a).collect()
    }
}

/// The weights, loaded once and shared by every sequence.
pub struct Llama {
    embeddings: Embedding,
    layers: Vec<Layer>,
    norm: Norm,
    output: Linear,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    cos: Tensor,
    sin: Tensor,
    /// The rotary tables as plain values (`[position][head_dim / 2]`), for decode steps.
    cos_values: Vec<f32>,
    sin_values: Vec<f32>,
    neg_inf: Tensor,
}

/// One sequence's state: keys and values of every layer so far. Dropped with the request.
#[derive(Default)]
pub struct Sequence {
    layers: Vec<Cache>,
    /// Positions to make room for at the first step (the prompt plus the answer's limit).
    capacity: usize,
}

/// One layer's keys and values after rotation, position-major (`[position][kv head]
/// [head_dim]`): a decode step appends its own and reads them in place, where a tensor
/// cache would be copied whole at every step (and copied again per query head).
#[derive(Default)]
struct Cache {
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Sequence {
    /// A sequence that will hold about `positions` tokens, reserved at its first step
    /// (memory is only touched as positions are filled).
    pub fn with_capacity(positions: usize) -> Self {
        Self {
            capacity: positions.min(MAX_SEQ_LEN),
            ..Self::default()
        }
    }
}

impl Llama {
    /// Reads the weights named in `content` from `reader` (llama architecture only).
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        content: &gguf_file::Content,
        reader: &mut R,
    ) -> Result<Self> {
        let device = &Device::Cpu;
        let md = |key: &str| match content.metadata.get(key) {
            Some(v) => Ok(v),
            None => candle_core::bail!("the file has no `{key}`"),
        };
        let experts = md("llama.expert_count")
            .and_then(|v| v.to_u32())
            .unwrap_or(0);
        if experts > 1 {
            candle_core::bail!("mixture-of-experts files ({experts} experts) are not supported");
        }
        let n_head = md("llama.attention.head_count")?.to_u32()? as usize;
        let n_kv_head = md("llama.attention.head_count_kv")?.to_u32()? as usize;
        let block_count = md("llama.block_count")?.to_u32()? as usize;
        let embedding_length = md("llama.embedding_length")?.to_u32()? as usize;
        let rope_dim = md("llama.rope.dimension_count")?.to_u32()? as usize;
        let eps = f64::from(md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?);
        let rope_base = md("llama.rope.freq_base")
            .and_then(|v| v.to_f32())
            .unwrap_or(10_000.0);
        if n_head == 0 || n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
            candle_core::bail!("{n_head} heads cannot share {n_kv_head} key/value heads");
        }
        if !embedding_length.is_multiple_of(n_head) || rope_dim != embedding_length / n_head {
            candle_core::bail!("rotary dimension {rope_dim} is not the head size");
        }
        let (cos, sin) = rotary_tables(rope_dim, rope_base)?;
        let (cos_values, sin_values) =
            (cos.flatten_all()?.to_vec1()?, sin.flatten_all()?.to_vec1()?);
        let tensor = |reader: &mut R, name: &str| content.tensor(reader, name, device);

        let embeddings_q = tensor(reader, "token_embd.weight")?;
        let embeddings = Embedding::new(embeddings_q.dequantize(device)?, embedding_length);
        let norm = Norm::new(tensor(reader, "output_norm.weight")?, eps)?;
        // Files with tied embeddings have no output matrix of their own.
        let output = match tensor(reader, "output.weight") {
            Ok(output) => output,
            Err(_) => embeddings_q,
        };
        let mut layers = Vec::with_capacity(block_count);
        for i in 0..block_count {
            let mut linear = |name: &str| Linear::new(tensor(reader, &format!("blk.{i}.{name}"))?);
            let (wq, wk, wv, wo) = (
                linear("attn_q.weight")?,
                linear("attn_k.weight")?,
                linear("attn_v.weight")?,
                linear("attn_output.weight")?,
            );
            let (gate, down, up) = (
                linear("ffn_gate.weight")?,
                linear("ffn_down.weight")?,
                linear("ffn_up.weight")?,
            );
            let attention_norm = tensor(reader, &format!("blk.{i}.attn_norm.weight"))?;
            let ffn_norm = tensor(reader, &format!("blk.{i}.ffn_norm.weight"))?;
            layers.push(Layer {
                wq,
                wk,
                wv,
                wo,
                attention_norm: Norm::new(attention_norm, eps)?,
                gate,
                down,
                up,
                ffn_norm: Norm::new(ffn_norm, eps)?,
            });
        }
        Ok(Self {
            embeddings,
            layers,
            norm,
            output: Linear::new(output)?,
            n_head,
            n_kv_head,
            head_dim: embedding_length / n_head,
            cos,
            sin,
            cos_values,
            sin_values,
            neg_inf: Tensor::new(f32::NEG_INFINITY, device)?,
        })
    }

    /// The next token's logits after `tokens` (shape `(1, len)`), which sit at `position`
    /// in `sequence`.
    pub fn forward(
        &self,
        sequence: &mut Sequence,
        tokens: &Tensor,
        position: usize,
    ) -> Result<Tensor> {
        let (_, len) = tokens.dims2()?;
        sequence
            .layers
            .resize_with(self.layers.len(), Cache::default);
        if len == 1 {
            let Some(&token) = tokens.flatten_all()?.to_vec1::<u32>()?.first() else {
                candle_core::bail!("a decode step takes one token");
            };
            return self.step(sequence, token, position);
        }
        // More than one token is a prompt: its mask is built once for every layer.
        let mask = candle_transformers::utils::build_causal_mask(len, position, &Device::Cpu)?;
        let mut x = self.embeddings.forward(tokens)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let h = layer.attention_norm.forward(&x)?;
            let attn = self.attention(layer, sequence, index, &h, &mask, position)?;
            let x_mid = (attn + &x)?;
            let h = layer.ffn_norm.forward(&x_mid)?;
            let gate = candle_nn::ops::silu(&layer.gate.forward(&h)?)?;
            let mlp = layer.down.forward(&(gate * layer.up.forward(&h)?)?)?;
            x = (mlp + x_mid)?;
        }
        let x = self.norm.forward(&x)?;
        self.output.forward(&x.i((.., len - 1, ..))?)?.squeeze(0)
    }

    /// One new position (a decode step) on plain values: the computation of [`Self::forward`]
    /// with candle's arithmetic, without a tensor operation (and its allocations) per norm,
    /// sum and activation; only products without a kernel of ours (the output matrix's
    /// among them) go through candle.
    fn step(&self, sequence: &mut Sequence, token: u32, position: usize) -> Result<Tensor> {
        let mut x = self
            .embeddings
            .embeddings()
            .i(token as usize)?
            .to_vec1::<f32>()?;
        for (index, layer) in self.layers.iter().enumerate() {
            let h = layer.attention_norm.row(&x);
            let attn = self.attention_step(layer, sequence, index, &h, position)?;
            add(&mut x, &attn)?;
            let h = layer.ffn_norm.row(&x);
            let mut gate = layer.gate.row(&h)?;
            let up = layer.up.row(&h)?;
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            add(&mut x, &layer.down.row(&gate)?)?;
        }
        let x = self.norm.row(&x);
        let width = x.len();
        self.output
            .forward(&Tensor::from_vec(x, (1, width), &Device::Cpu)?)?
            .squeeze(0)
    }

    /// Attention over several new positions (a prompt), with candle's tensors: the
    /// computation of candle's llama. Their keys and values join the cache.
    fn attention(
        &self,
        layer: &Layer,
        sequence: &mut Sequence,
        index: usize,
        x: &Tensor,
        mask: &Tensor,
        position: usize,
    ) -> Result<Tensor> {
        let (b, len, width) = x.dims3()?;
        let heads = |t: Tensor, n: usize| t.reshape((b, len, n, self.head_dim))?.transpose(1, 2);
        let q = self.rope(&heads(layer.wq.forward(x)?, self.n_head)?, position)?;
        let k = self.rope(&heads(layer.wk.forward(x)?, self.n_kv_head)?, position)?;
        let v = heads(layer.wv.forward(x)?, self.n_kv_head)?.contiguous()?;
        let row = self.n_kv_head * self.head_dim;
        let capacity = sequence.capacity.max(position + len) * row;
        let Some(cache) = sequence.layers.get_mut(index) else {
            candle_core::bail!("no cache for layer {index}");
        };
        for (values, cache) in [(&k, &mut cache.k), (&v, &mut cache.v)] {
            // (1, kv heads, len, head_dim) to position-major rows.
            let rows = values.transpose(1, 2)?.flatten_all()?.to_vec1::<f32>()?;
            cache.truncate(position * row);
            cache.reserve(capacity.saturating_sub(cache.len()));
            cache.extend_from_slice(&rows);
        }
        // A prompt that continues a cache attends to all of it.
        let (k, v) = if position == 0 {
            (k, v)
        } else {
            let all = |values: &[f32]| {
                Tensor::from_slice(
                    values,
                    (b, position + len, self.n_kv_head, self.head_dim),
                    &Device::Cpu,
                )?
                .transpose(1, 2)
            };
            (all(&cache.k)?, all(&cache.v)?)
        };
        let repeat = self.n_head / self.n_kv_head;
        let k = candle_transformers::utils::repeat_kv(k, repeat)?;
        let v = candle_transformers::utils::repeat_kv(v, repeat)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
        let mask = mask.broadcast_as(scores.shape())?;
        let scores = mask.where_cond(&self.neg_inf.broadcast_as(scores.shape())?, &scores)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = weights.matmul(&v.contiguous()?)?;
        let y = y.transpose(1, 2)?.reshape((b, len, width))?;
        layer.wo.forward(&y)
    }

    /// Attention for one new position (a decode step) on plain values: its key and value
    /// are appended to the cache, and each query head reads its key/value head's rows in
    /// place. The same arithmetic as [`Self::attention`] (candle's rotation, scaled dot
    /// products, softmax), summed in another order, the query heads spread over the pool.
    fn attention_step(
        &self,
        layer: &Layer,
        sequence: &mut Sequence,
        index: usize,
        x: &[f32],
        position: usize,
    ) -> Result<Vec<f32>> {
        let hd = self.head_dim;
        let row = self.n_kv_head * hd;
        let mut q = layer.wq.row(x)?;
        let mut k = layer.wk.row(x)?;
        let v = layer.wv.row(x)?;
        if q.len() != self.n_head * hd || k.len() != row || v.len() != row {
            candle_core::bail!("a decode step takes one position");
        }
        let half = hd / 2;
        let Some((cos, sin)) = self
            .cos_values
            .get(position * half..(position + 1) * half)
            .zip(self.sin_values.get(position * half..(position + 1) * half))
        else {
            candle_core::bail!("position {position} is past the rotary tables");
        };
        for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
            rotate(head, cos, sin);
        }
        let capacity = sequence.capacity.max(position + 1) * row;
        let Some(cache) = sequence.layers.get_mut(index) else {
            candle_core::bail!("no cache for layer {index}");
        };
        if cache.k.len() != position * row || cache.v.len() != position * row {
            candle_core::bail!("the cache does not end at position {position}");
        }
        for (cache, new) in [(&mut cache.k, &k), (&mut cache.v, &v)] {
            cache.reserve(capacity.saturating_sub(cache.len()));
            cache.extend_from_slice(new);
        }
        let scale = (hd as f32).sqrt();
        let repeat = self.n_head / self.n_kv_head;
        let mut y = vec![0f32; self.n_head * hd];
        // Query heads in parallel, on the pool that runs the matrix products.
        let outs: Vec<Slot> = y.chunks_exact_mut(hd).map(Slot::new).collect();
        let cache = &*cache;
        candle_core::utils::barrier_pool().execute_chunked(self.n_head, |heads| {
            let mut scores = Vec::with_capacity(position + 1);
            for h in heads {
                let head = instagen_kernels::Head {
                    keys: &cache.k,
                    values: &cache.v,
                    stride: row,
                    offset: (h / repeat) * hd,
                };
                if let (Some(q), Some(Ok(mut out))) =
                    (q.get(h * hd..(h + 1) * hd), outs.get(h).map(Slot::lock))
                {
                    instagen_kernels::attend(q, head, scale, &mut scores, &mut out);
                }
            }
        });
        drop(outs);
        layer.wo.row(&y)
    }

    /// Rotary position embedding, pairs interleaved as llama's are.
    fn rope(&self, x: &Tensor, position: usize) -> Result<Tensor> {
        let (_, _, len, _) = x.dims4()?;
        let cos = self.cos.narrow(0, position, len)?;
        let sin = self.sin.narrow(0, position, len)?;
        candle_nn::rotary_emb::rope_i(&x.contiguous()?, &cos, &sin)
    }
}

/// A residual sum in place: `x + y`, as candle adds (each pair of values once).
fn add(x: &mut [f32], y: &[f32]) -> Result<()> {
    if x.len() != y.len() {
        candle_core::bail!("{} values cannot be added to {}", y.len(), x.len());
    }
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
    Ok(())
}

/// candle's `rope_i` on one head: interleaved pairs turned by each angle.
fn rotate(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((pair, cos), sin) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos - b * sin;
        pair[1] = a * sin + b * cos;
    }
}

fn rotary_tables(dim: usize, base: f32) -> Result<(Tensor, Tensor)> {
    let device = &Device::Cpu;
    let theta: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
        .collect();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let angles = Tensor::arange(0, MAX_SEQ_LEN as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((MAX_SEQ_LEN, 1))?
        .matmul(&theta.reshape((1, theta.elem_count()))?)?;
    Ok((angles.cos()?, angles.sin()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::convert;
    use candle_transformers::models::quantized_llama::ModelWeights;

    /// The reference model, or `None` after reporting the test skipped as the API suite
    /// does (`target/tmp/skipped.txt`, counted by scripts/test.sh).
    fn reference_model(test: &str) -> Option<std::path::PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = std::env::var_os("INSTAGEN_TEST_MODEL").map_or_else(
            || {
                root.join("instagen-data")
                    .join(crate::config::DEFAULT_MODEL_FILE)
            },
            std::path::PathBuf::from,
        );
        if path.is_file() {
            return Some(path);
        }
        let line = format!("{test}: the reference model is not at {}\n", path.display());
        eprintln!("SKIPPED {line}");
        let tmp = root.join("target").join("tmp");
        let _ = std::fs::create_dir_all(&tmp);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(tmp.join("skipped.txt"))
        {
            use std::io::Write;
            let _ = f.write_all(line.as_bytes());
        }
        None
    }

    fn load(path: &std::path::Path, plan: convert::Plan) -> (Llama, ModelWeights) {
        let mut file = std::fs::File::open(path).unwrap();
        let mut content = gguf_file::Content::read(&mut file).unwrap();
        let mut reader = convert::Converting::new(&mut file, &mut content, plan);
        let ours = Llama::from_gguf(&content, &mut reader).unwrap();
        let mut file = std::fs::File::open(path).unwrap();
        let mut content = gguf_file::Content::read(&mut file).unwrap();
        let mut reader = convert::Converting::new(&mut file, &mut content, plan);
        let theirs = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();
        (ours, theirs)
    }

    fn tokens(ids: &[u32]) -> Tensor {
        Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Ours and candle's logits for `ids` at `pos`, each on its own cache.
    fn both(
        ours: &Llama,
        sequence: &mut Sequence,
        theirs: &mut ModelWeights,
        ids: &[u32],
        pos: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let mine = values(&ours.forward(sequence, &tokens(ids), pos).unwrap());
        let reference = values(
            &theirs
                .forward(&tokens(ids), pos)
                .unwrap()
                .squeeze(0)
                .unwrap(),
        );
        (mine, reference)
    }

    /// The largest difference between two sets of logits, and the reference's range.
    fn difference(ours: &[f32], reference: &[f32]) -> (f32, f32) {
        let range = reference.iter().fold(0f32, |a, b| a.max(b.abs()));
        let diff = ours
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        (diff, range)
    }

    /// Whether candle 0.11 multiplies quantized matrices with its VNNI kernels here
    /// (`quantized/repack_x86.rs`, chosen at run time unless `MISTRALRS_FORCE_AVX2=1`).
    /// Those sum in another order than its AVX2 path, which ours follow step for step.
    fn candle_uses_vnni() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let forced = std::env::var("MISTRALRS_FORCE_AVX2").as_deref() == Ok("1");
            !forced
                && ((is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"))
                    || is_x86_feature_detected!("avxvnni"))
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The tests' prompt: 24 token ids spread over the vocabulary.
    fn prompt() -> Vec<u32> {
        (0..24u32).map(|i| 100 + i * 37).collect()
    }

    /// The index of the largest logit.
    fn argmax(logits: &[f32]) -> u32 {
        let best = logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 { (i, x) } else { best }
            });
        best.0 as u32
    }

    /// The prompt's logits are candle's llama's bit for bit where candle runs its AVX2
    /// kernels. Where it picks its VNNI kernels (an AVX-512 VNNI machine, 2026-11-30) they
    /// were up to 3 % of their range apart, and bit for bit again with
    /// `MISTRALRS_FORCE_AVX2=1`: there the test holds 5 % (a wrong kernel moves them by all
    /// of it). A decode step then holds 5 %: its attention sums in another order than
    /// candle's (the next test holds that to float rounding), and on 8-bit activations one
    /// value rounded the other way moves logits by a percent or so through 30 layers.
    #[test]
    fn the_forward_pass_gives_candles_llama_logits() {
        let test = "engine::llama::tests::the_forward_pass_gives_candles_llama_logits";
        let Some(path) = reference_model(test) else {
            return;
        };
        let (ours, mut theirs) = load(&path, convert::to_fast_blocks);
        let prompt = prompt();
        // The whole prompt at once: our tiled kernel against candle's per-row one.
        let mut sequence = Sequence::default();
        let (whole, reference) = both(&ours, &mut sequence, &mut theirs, &prompt, 0);
        let exact = !candle_uses_vnni();
        let (diff, range) = difference(&whole, &reference);
        assert!(
            if exact {
                diff == 0.0
            } else {
                diff <= 0.05 * range
            },
            "logits differ by {diff} (range {range}; candle on VNNI: {})",
            !exact
        );
        // A decoding step on the cache each prompt left.
        let (ours_next, theirs_next) = both(
            &ours,
            &mut sequence,
            &mut theirs,
            &prompt[..1],
            prompt.len(),
        );
        let (next_diff, next_range) = difference(&ours_next, &theirs_next);
        assert!(
            next_diff <= 0.05 * next_range,
            "next-step logits differ by {next_diff} (range {next_range})"
        );
        eprintln!(
            "llama logits against candle's: prompt {diff} apart (range {range}; 0 is bit for \
             bit), next step {next_diff} apart (range {next_range})"
        );
    }

    /// On f32 weights (no quantized activations to round) the decode steps' attention,
    /// which reads the cache in place, gives candle's logits to float rounding, and greedy
    /// decoding picks candle's tokens, step after step. A wrong position, rotation or
    /// key/value head moves them by much of their range.
    #[test]
    fn decode_steps_attend_as_candles_llama_does() {
        let test = "engine::llama::tests::decode_steps_attend_as_candles_llama_does";
        let Some(path) = reference_model(test) else {
            return;
        };
        let (ours, mut theirs) = load(&path, convert::to_f32);
        let prompt = prompt();
        let mut sequence = Sequence::with_capacity(prompt.len() + 4);
        let (whole, reference) = both(&ours, &mut sequence, &mut theirs, &prompt, 0);
        assert_eq!(whole, reference, "the prompt runs candle's own computation");
        let mut worst = 0f32;
        let mut token = argmax(&reference);
        // More steps than the capacity asked for: the cache grows past it.
        for step in 0..12 {
            let position = prompt.len() + step;
            let (mine, reference) = both(&ours, &mut sequence, &mut theirs, &[token], position);
            let (diff, range) = difference(&mine, &reference);
            assert!(
                diff <= 1e-4 * range,
                "step {step}: logits differ by {diff} (range {range})"
            );
            worst = worst.max(diff / range);
            token = argmax(&reference);
            assert_eq!(argmax(&mine), token, "greedy tokens part at step {step}");
        }
        eprintln!("decode steps on f32 weights: at most {worst:e} of the range from candle's");
    }

    #[test]
    fn with_the_files_q4_1_blocks_the_logits_stay_within_candles_rounding() {
        let test = "engine::llama::tests::with_the_files_q4_1_blocks_the_logits_stay_within_candles_rounding";
        let Some(path) = reference_model(test) else {
            return;
        };
        if !instagen_kernels::available() {
            eprintln!("skipped: without AVX2 Q4_1 is converted to Q8_0");
            return;
        }
        let (ours, mut theirs) = load(&path, convert::to_fast_blocks_keeping_q4_1);
        let prompt = prompt();
        let mut sequence = Sequence::default();
        let (whole, reference) = both(&ours, &mut sequence, &mut theirs, &prompt, 0);
        // Row sums in f32 instead of f16 move logits through 30 layers by a few percent of
        // their range at most (a wrong nibble order or minimum moves them by all of it).
        let (diff, range) = difference(&whole, &reference);
        assert!(
            diff <= 0.1 * range,
            "logits differ by {diff} (range {range})"
        );
        eprintln!("Q4_1 logits differ by at most {diff} (range {range})");
    }
}
