//! The built-in CPU inference engine: a llama-family GGUF model run in-process.
//!
//! Weights are loaded once (quantized, memory-shared by every sequence); each admitted
//! request gets its own KV cache and runs on a blocking thread inside the engine's own
//! thread pool. Admission is bounded: `max_sequences` generate at once, `max_queue` more
//! wait, and the rest are refused at once. Generation stops at an end-of-turn token, a
//! stop string, `max_tokens`, the context length, or when the caller goes away. Prompts
//! and outputs live only in this request's memory.

mod convert;
mod llama;
mod q8;
mod vocab;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use vocab::{ChatMessage, Vocab};

/// The longest context the quantized llama implementation supports.
pub const MAX_CONTEXT: usize = llama::MAX_SEQ_LEN;

/// How the engine is set up (from a `kind = "local"` provider).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub path: PathBuf,
    /// Threads of the engine's pool; 0 means one per core.
    pub threads: usize,
    /// Sequences generated at once.
    pub max_sequences: usize,
    /// Requests that may wait for a free sequence; more are refused.
    pub max_queue: usize,
    /// Prompt plus output tokens, at most [`MAX_CONTEXT`].
    pub context_length: usize,
    /// Output tokens when the request sets no `max_tokens`.
    pub default_max_tokens: usize,
    pub weights: crate::config::LocalWeights,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-turn token or a stop string.
    Stop,
    /// `max_tokens` or the context length.
    Length,
    /// The caller went away.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length | FinishReason::Cancelled => "length",
        }
    }
}

/// Sampling settings of one request.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
}

/// What to generate: the prompt's token ids, how many tokens at most, how to sample and
/// which strings end the answer.
pub struct Generation<'a> {
    pub prompt: &'a [u32],
    pub max_new: usize,
    pub sampler: &'a Sampler,
    pub stops: &'a [String],
}

/// Decrements a counter when dropped: a request leaving the queue, a sequence ending.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tokens of one generation, readable while it runs (a cancelled stream bills these).
#[derive(Debug, Default)]
pub struct LiveCounts {
    pub prompt: AtomicU64,
    pub output: AtomicU64,
}

/// A failure inside the engine (never carries prompt or output text).
#[derive(Debug)]
pub struct EngineError(String);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError(format!("inference failed: {e}"))
    }
}

/// The admission queue is full.
#[derive(Debug)]
pub struct Busy;

pub struct Engine {
    weights: llama::Llama,
    pub vocab: Vocab,
    pool: rayon::ThreadPool,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    pub config: EngineConfig,
}

/// One request's claim on a sequence slot.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Engine {
    /// Loads the model file; slow (reads and checks every tensor), so call it once at start.
    pub fn load(config: EngineConfig) -> Result<Self, String> {
        let path = &config.path;
        let mut file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open model file {}: {e}", path.display()))?;
        let mut content = gguf_file::Content::read(&mut file)
            .map_err(|e| format!("{} is not a GGUF model file: {e}", path.display()))?;
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "llama" {
            return Err(format!(
                "{}: architecture `{arch}` is not supported (llama-family models are)",
                path.display()
            ));
        }
        let vocab = Vocab::from_gguf(&content).map_err(|e| format!("{}: {e}", path.display()))?;
        let plan: convert::Plan = match config.weights {
            crate::config::LocalWeights::Quantized if instagen_kernels::available() => {
                convert::to_fast_blocks_keeping_q4_1
            }
            crate::config::LocalWeights::Quantized => convert::to_fast_blocks,
            crate::config::LocalWeights::F32 => convert::to_f32,
        };
        let mut reader = convert::Converting::new(&mut file, &mut content, plan);
        let weights = llama::Llama::from_gguf(&content, &mut reader)
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            config.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("instagen-engine-{i}"))
            .build()
            .map_err(|e| format!("cannot start the engine's threads: {e}"))?;
        let slots = Arc::new(Semaphore::new(config.max_sequences.max(1)));
        Ok(Self {
            weights,
            vocab,
            pool,
            slots,
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            config,
        })
    }

    /// Waits for a free sequence, or refuses at once when the queue is full.
    pub async fn admit(&self) -> Result<Slot, Busy> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Decrement(&self.waiting);
        if ahead >= self.config.max_queue {
            return Err(Busy);
        }
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| Busy)?;
        Ok(Slot { _permit: permit })
    }

    /// Requests waiting for a sequence.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Sequences generating now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Output tokens allowed for a prompt of `prompt_tokens`, given the request's own cap.
    pub fn output_budget(&self, prompt_tokens: usize, max_tokens: Option<u64>) -> usize {
        let room = self.config.context_length.saturating_sub(prompt_tokens);
        let wanted = max_tokens.map_or(self.config.default_max_tokens, |m| {
            usize::try_from(m).unwrap_or(usize::MAX)
        });
        wanted.min(room)
    }

    /// Generates from `prompt` (token ids) on the calling thread, inside the engine's pool.
    /// `emit` receives text as it becomes final and returns false when nobody listens any
    /// more; `cancel` stops it too. Stop strings are never emitted.
    pub fn generate(
        &self,
        _slot: &Slot,
        what: &Generation<'_>,
        cancel: &AtomicBool,
        live: &LiveCounts,
        emit: &mut (dyn FnMut(&str) -> bool + Send),
    ) -> Result<FinishReason, EngineError> {
        self.running.fetch_add(1, Ordering::AcqRel);
        let _running = Decrement(&self.running);
        live.prompt
            .store(what.prompt.len() as u64, Ordering::Relaxed);
        self.pool
            .install(|| self.decode_loop(what, cancel, live, emit))
    }

    fn decode_loop(
        &self,
        what: &Generation<'_>,
        cancel: &AtomicBool,
        live: &LiveCounts,
        emit: &mut (dyn FnMut(&str) -> bool + Send),
    ) -> Result<FinishReason, EngineError> {
        let &Generation {
            prompt,
            max_new,
            sampler,
            stops,
        } = what;
        if prompt.is_empty() {
            return Err(EngineError("the prompt is empty".to_owned()));
        }
        if max_new == 0 {
            return Ok(FinishReason::Length);
        }
        // The weights are shared; this sequence owns only its KV cache.
        let mut sequence = llama::Sequence::with_capacity(prompt.len().saturating_add(max_new));
        let sampling = if sampler.temperature <= 0.0 {
            Sampling::ArgMax
        } else if sampler.top_p < 1.0 {
            Sampling::TopP {
                p: sampler.top_p,
                temperature: sampler.temperature,
            }
        } else {
            Sampling::All {
                temperature: sampler.temperature,
            }
        };
        let mut logits_processor = LogitsProcessor::from_sampling(sampler.seed, sampling);
        let mut text = TextStream::new(stops);
        let mut generated: Vec<u32> = Vec::with_capacity(max_new.min(4096));
        let input = Tensor::new(prompt, &Device::Cpu)?.unsqueeze(0)?;
        let logits = self.weights.forward(&mut sequence, &input, 0)?;
        let mut next = logits_processor.sample(&logits)?;
        let mut position = prompt.len();
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Ok(FinishReason::Cancelled);
            }
            generated.push(next);
            live.output.fetch_add(1, Ordering::Relaxed);
            if self.vocab.stop_ids.contains(&next) {
                generated.pop();
                let full = self.vocab.decode(&generated).map_err(EngineError)?;
                text.finish(&full, emit);
                return Ok(FinishReason::Stop);
            }
            let full = self.vocab.decode(&generated).map_err(EngineError)?;
            match text.advance(&full, emit) {
                Advance::Stop => return Ok(FinishReason::Stop),
                Advance::Gone => return Ok(FinishReason::Cancelled),
                Advance::More => {}
            }
            if generated.len() >= max_new || position + 1 >= self.config.context_length {
                text.finish(&full, emit);
                return Ok(FinishReason::Length);
            }
            let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
            let logits = self.weights.forward(&mut sequence, &input, position)?;
            position += 1;
            next = logits_processor.sample(&logits)?;
        }
    }
}

/// Decides which generated text is final: complete UTF-8, and not possibly the start of a
/// stop string.
struct TextStream<'a> {
    stops: &'a [String],
    /// Bytes of the decoded text already emitted.
    emitted: usize,
}

enum Advance {
    More,
    Stop,
    Gone,
}

impl<'a> TextStream<'a> {
    fn new(stops: &'a [String]) -> Self {
        Self { stops, emitted: 0 }
    }

    fn send(&mut self, full: &str, end: usize, emit: &mut dyn FnMut(&str) -> bool) -> bool {
        let Some(piece) = full.get(self.emitted..end) else {
            return true;
        };
        if piece.is_empty() {
            return true;
        }
        self.emitted = end;
        emit(piece)
    }

    fn advance(&mut self, full: &str, emit: &mut dyn FnMut(&str) -> bool) -> Advance {
        // A stop string may span tokens: search from before the emitted end.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let from = full.floor_char_boundary(self.emitted.saturating_sub(longest));
        let hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| full[from..].find(s.as_str()).map(|i| from + i))
            .min();
        if let Some(at) = hit {
            let at = at.max(self.emitted);
            return if self.send(full, at, emit) {
                Advance::Stop
            } else {
                Advance::Gone
            };
        }
        // Hold back an incomplete character and any tail that may begin a stop string.
        let mut end = full.len();
        if full.ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        let held = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len())
                    .rev()
                    .find(|&k| s.is_char_boundary(k) && full[..end].ends_with(&s[..k]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        end = full.floor_char_boundary(end - held);
        if end > self.emitted && !self.send(full, end, emit) {
            return Advance::Gone;
        }
        Advance::More
    }

    /// The generation ended without a stop string: whatever is held back is final.
    fn finish(&mut self, full: &str, emit: &mut dyn FnMut(&str) -> bool) {
        let end = full.len();
        if end > self.emitted {
            self.send(full, end, emit);
        }
    }
}

/// The engine for a `local` provider: loaded on first use and shared by every gateway
/// built while it lives (a config reload does not load the weights again).
pub fn shared(
    provider: &crate::config::ProviderConfig,
    local: &crate::config::LocalConfig,
) -> Result<Arc<Engine>, String> {
    type Loaded = std::collections::HashMap<String, std::sync::Weak<Engine>>;
    static LOADED: std::sync::OnceLock<std::sync::Mutex<Loaded>> = std::sync::OnceLock::new();
    let config = EngineConfig::from_provider(provider, local);
    let key = format!("{config:?}");
    let loaded = LOADED.get_or_init(Default::default);
    let mut loaded = loaded
        .lock()
        .map_err(|_| "the engine registry is poisoned".to_owned())?;
    if let Some(engine) = loaded.get(&key).and_then(std::sync::Weak::upgrade) {
        return Ok(engine);
    }
    let started = std::time::Instant::now();
    let engine = Arc::new(Engine::load(config)?);
    tracing::info!(
        provider = %provider.name,
        model_file = %engine.config.path.display(),
        load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "local model loaded"
    );
    loaded.retain(|_, e| e.strong_count() > 0);
    loaded.insert(key, Arc::downgrade(&engine));
    Ok(engine)
}

impl EngineConfig {
    pub fn from_provider(
        p: &crate::config::ProviderConfig,
        local: &crate::config::LocalConfig,
    ) -> Self {
        Self {
            path: local.path.clone(),
            threads: local.threads,
            max_sequences: local.max_sequences.max(1),
            max_queue: local.max_queue,
            context_length: local.context_length.clamp(2, MAX_CONTEXT),
            default_max_tokens: usize::try_from(p.default_max_tokens).unwrap_or(usize::MAX),
            weights: local.weights,
        }
    }
}

/// Whether a model file exists at `path` (for the embedded default).
pub fn model_present(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], steps: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut stream = TextStream::new(&stops);
        let mut out = String::new();
        for full in steps {
            let mut emit = |s: &str| {
                out.push_str(s);
                true
            };
            if let Advance::Stop = stream.advance(full, &mut emit) {
                return (out, true);
            }
        }
        let last = steps.last().copied().unwrap_or("");
        stream.finish(last, &mut |s: &str| {
            out.push_str(s);
            true
        });
        (out, false)
    }

    #[test]
    fn text_is_emitted_as_it_becomes_final() {
        assert_eq!(
            run(&[], &["Hel", "Hello", "Hello!"]),
            ("Hello!".into(), false)
        );
    }

    #[test]
    fn a_stop_string_spanning_tokens_is_cut_and_never_emitted() {
        assert_eq!(
            run(&["END"], &["ab", "abE", "abEN", "abEND", "abENDzz"]),
            ("ab".into(), true)
        );
        assert_eq!(run(&["\n\n"], &["x\n", "x\ny"]), ("x\ny".into(), false));
    }

    #[test]
    fn an_incomplete_character_waits_for_its_last_byte() {
        let (out, _) = run(&[], &["a\u{FFFD}", "aé"]);
        assert_eq!(out, "aé");
    }

    #[test]
    fn a_held_prefix_is_released_when_the_stop_does_not_follow() {
        assert_eq!(
            run(&["stop"], &["st", "sta", "star"]),
            ("star".into(), false)
        );
    }
}
