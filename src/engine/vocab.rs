//! The tokenizer and chat template of a GGUF model, rebuilt from the file's own metadata.
//!
//! A GGUF file carries its vocabulary (`tokenizer.ggml.tokens`), BPE merges, token types,
//! special token ids, the pre-tokenizer's name and the Jinja chat template. From these we
//! build a `tokenizers` BPE tokenizer (byte-level, as the model was trained) and a
//! MiniJinja template with the same whitespace rules Hugging Face uses, so prompts and
//! token counts match the reference implementation exactly.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::json;
use tokenizers::Tokenizer;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

/// Llama 3's pre-tokenizer pattern (its GGUF files say `llama-bpe`).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A model's text side: tokenizer, chat template and the ids that end a turn.
pub struct Vocab {
    pub tokenizer: Tokenizer,
    template: Option<minijinja::Environment<'static>>,
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub add_bos: bool,
    /// Token ids that end generation (the EOS token and the end-of-turn tokens).
    pub stop_ids: Vec<u32>,
}

fn meta<'a>(content: &'a Content, key: &str) -> Option<&'a Value> {
    content.metadata.get(key)
}

fn meta_u32(content: &Content, key: &str) -> Option<u32> {
    meta(content, key).and_then(|v| v.to_u32().ok())
}

/// One chat message as the template sees it.
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl Vocab {
    /// The tokenizer and template of a model file, without loading its weights.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open model file {}: {e}", path.display()))?;
        let content = Content::read(&mut file)
            .map_err(|e| format!("{} is not a GGUF model file: {e}", path.display()))?;
        Self::from_gguf(&content)
    }

    pub fn from_gguf(content: &Content) -> Result<Self, String> {
        let model = meta(content, "tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("");
        if model != "gpt2" {
            return Err(format!(
                "tokenizer.ggml.model `{model}` is not supported (byte-level BPE, `gpt2`, is)"
            ));
        }
        let tokens = meta(content, "tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .ok_or("the model file has no tokenizer.ggml.tokens")?;
        let tokens: Vec<&str> = tokens
            .iter()
            .map(|t| t.to_string().map(String::as_str))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tokenizer.ggml.tokens: {e}"))?;
        let merges: Vec<&str> = match meta(content, "tokenizer.ggml.merges") {
            Some(v) => v
                .to_vec()
                .map_err(|e| format!("tokenizer.ggml.merges: {e}"))?
                .iter()
                .map(|m| m.to_string().map(String::as_str))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("tokenizer.ggml.merges: {e}"))?,
            None => Vec::new(),
        };
        let types: Vec<i32> = match meta(content, "tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| format!("tokenizer.ggml.token_type: {e}"))?
                .iter()
                .map(|t| t.to_i32().unwrap_or(1))
                .collect(),
            None => Vec::new(),
        };
        let pre = meta(content, "tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("default");
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        let pre_tokenizer = match pre {
            "default" | "gpt-2" | "gpt2" => byte_level,
            // SmolLM, StarCoder: digits one by one, then GPT-2's pattern.
            "smollm" | "starcoder" | "refact" => json!({
                "type": "Sequence",
                "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level],
            }),
            "llama-bpe" | "llama3" => json!({
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
                ],
            }),
            other => return Err(format!("tokenizer.ggml.pre `{other}` is not supported")),
        };
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), json!(i)))
            .collect();
        let added: Vec<serde_json::Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(&TOKEN_CONTROL | &TOKEN_USER_DEFINED)))
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false,
                       "special": types.get(i) == Some(&TOKEN_CONTROL)})
            })
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let tokenizer: Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|e| format!("cannot build the tokenizer: {e}"))?;

        let token = |key: &str| {
            meta_u32(content, key)
                .and_then(|id| tokens.get(id as usize))
                .map(|t| (*t).to_owned())
        };
        let bos = token("tokenizer.ggml.bos_token_id");
        let eos = token("tokenizer.ggml.eos_token_id");
        let add_bos = meta(content, "tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let mut stop_ids: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
            .iter()
            .filter_map(|k| meta_u32(content, k))
            .collect();
        // End-of-turn markers of common chat formats, when the vocabulary has them.
        let by_text: HashMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| types.get(*i) == Some(&TOKEN_CONTROL))
            .filter_map(|(i, t)| u32::try_from(i).ok().map(|i| (*t, i)))
            .collect();
        for marker in ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"] {
            if let Some(&id) = by_text.get(marker) {
                stop_ids.push(id);
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();

        let template =
            match meta(content, "tokenizer.chat_template").and_then(|v| v.to_string().ok()) {
                Some(source) => {
                    let mut env = minijinja::Environment::new();
                    // Hugging Face renders chat templates with both of these on.
                    let syntax = minijinja::syntax::SyntaxConfig::builder()
                        .trim_blocks(true)
                        .lstrip_blocks(true)
                        .build()
                        .map_err(|e| format!("chat template: {e}"))?;
                    env.set_syntax(syntax);
                    env.add_function(
                        "raise_exception",
                        |message: String| -> Result<String, minijinja::Error> {
                            Err(minijinja::Error::new(
                                minijinja::ErrorKind::InvalidOperation,
                                message,
                            ))
                        },
                    );
                    env.add_template_owned("chat", source.clone())
                        .map_err(|e| format!("chat template: {e}"))?;
                    Some(env)
                }
                None => None,
            };
        Ok(Self {
            tokenizer,
            template,
            bos,
            eos,
            add_bos,
            stop_ids,
        })
    }

    /// The prompt for a conversation, ending where the assistant's answer begins. Without a
    /// template in the file, ChatML is used.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, String> {
        let Some(env) = &self.template else {
            let mut out = String::new();
            for m in messages {
                out.push_str("<|im_start|>");
                out.push_str(&m.role);
                out.push('\n');
                out.push_str(&m.content);
                out.push_str("<|im_end|>\n");
            }
            out.push_str("<|im_start|>assistant\n");
            return Ok(out);
        };
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| minijinja::context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let template = env.get_template("chat").map_err(|e| e.to_string())?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos.as_deref().unwrap_or(""),
                eos_token => self.eos.as_deref().unwrap_or(""),
            })
            .map_err(|e| format!("the chat template failed: {e}"))
    }

    /// Token ids of a prompt; special tokens written in it (`<|im_start|>`) are parsed.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| format!("cannot tokenize: {e}"))?;
        let mut ids = encoding.get_ids().to_vec();
        if self.add_bos
            && let Some(bos) = &self.bos
            && !text.starts_with(bos.as_str())
            && let Some(id) = self.tokenizer.token_to_id(bos)
        {
            ids.insert(0, id);
        }
        Ok(ids)
    }

    /// Text of generated ids, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| format!("cannot detokenize: {e}"))
    }
}
