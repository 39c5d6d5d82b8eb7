//! The OpenAI-compatible adapter: vLLM, SGLang, llama.cpp, Ollama, OpenAI and the like.
//!
//! The upstream receives the (rewritten) JSON body, `Content-Type`, `Accept` and our
//! own `Authorization` when a key is configured — no client header, no client address.
//! A first party gets the client's body unchanged but for `model` and usage reporting;
//! a third party only the allow-listed fields (see `body.rs`).

use bytes::Bytes;
use reqwest::header::AUTHORIZATION;

use super::UpstreamError;
use super::http::{HttpCore, credential, secret_header};
use crate::config::ProviderConfig;
use crate::gateway::{BodyError, Endpoint, Inspected};

pub struct OpenAiProvider {
    pub core: HttpCore,
    /// Parsed once: chat, completions and embeddings URLs.
    urls: [reqwest::Url; 3],
}

impl OpenAiProvider {
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let mut headers = Vec::new();
        if let Some(key) = credential(config)? {
            headers.push((
                AUTHORIZATION,
                secret_header(&config.name, &format!("Bearer {}", key.expose()))?,
            ));
        }
        let urls = [
            HttpCore::url(config, Endpoint::Chat.path())?,
            HttpCore::url(config, Endpoint::Completions.path())?,
            HttpCore::url(config, Endpoint::Embeddings.path())?,
        ];
        Ok(Self {
            core: HttpCore::new(config, headers)?,
            urls,
        })
    }

    pub fn build_body(
        &self,
        endpoint: Endpoint,
        inspected: &Inspected<'_>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Bytes, BodyError> {
        inspected.rewrite(
            upstream_model,
            stream,
            self.core.third_party.then_some(endpoint),
        )
    }

    pub async fn send(
        &self,
        endpoint: Endpoint,
        body: Bytes,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.core
            .post(&self.urls[endpoint as usize], body, &[])
            .await
    }
}
