//! The OpenAI-compatible adapter: vLLM, SGLang, llama.cpp, Ollama, OpenAI and the like.
//!
//! The upstream receives the (rewritten) JSON body, `Content-Type`, `Accept` and our
//! own `Authorization` when a key is configured — no client header, no client address.
//! A first party gets the client's body unchanged but for `model` and usage reporting;
//! a third party only the allow-listed fields (see `body.rs`).

use axum::http::header::AUTHORIZATION;

use super::Outgoing;
use super::http::{HttpCore, credential, secret_header};
use crate::config::ProviderConfig;
use crate::gateway::ProviderProblem;
use crate::gateway::body::TRANSCRIPTION_FIELDS;
use crate::gateway::{BodyError, Endpoint, Request};

pub struct OpenAiProvider {
    pub core: HttpCore,
    /// Parsed once: one URL per [`Endpoint`].
    urls: Box<[axum::http::Uri; 4]>,
    /// `responses = "native"`: the provider serves the Responses API itself.
    pub responses_native: bool,
    responses_url: axum::http::Uri,
}

impl OpenAiProvider {
    pub fn new(config: &ProviderConfig) -> Result<Self, ProviderProblem> {
        let mut headers = Vec::new();
        if let Some(key) = credential(config)? {
            headers.push((
                AUTHORIZATION,
                secret_header(&format!("Bearer {}", key.expose()))?,
            ));
        }
        let urls = Box::new([
            HttpCore::url(config, Endpoint::Chat.path())?,
            HttpCore::url(config, Endpoint::Completions.path())?,
            HttpCore::url(config, Endpoint::Embeddings.path())?,
            HttpCore::url(config, Endpoint::Transcriptions.path())?,
        ]);
        Ok(Self {
            core: HttpCore::new(config, headers)?,
            urls,
            responses_native: matches!(
                config.kind,
                crate::config::ProviderKind::Openai {
                    responses: crate::config::ResponsesApi::Native,
                    ..
                }
            ),
            responses_url: HttpCore::url(config, "/responses")?,
        })
    }

    pub fn build_body(
        &self,
        endpoint: Endpoint,
        request: &Request<'_>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Outgoing, BodyError> {
        match request {
            Request::Json(inspected) => inspected
                .rewrite(
                    upstream_model,
                    stream,
                    self.core.third_party.then_some(endpoint),
                )
                .map(Outgoing::json),
            Request::Form(form, _) => {
                let allow = self.core.third_party.then_some(TRANSCRIPTION_FIELDS);
                let (body, content_type) = form.rewrite(upstream_model, allow);
                let content_type = axum::http::HeaderValue::from_str(&content_type)
                    .map_err(|_| BodyError::field("file", "the upload could not be forwarded"))?;
                Ok(Outgoing {
                    content_type,
                    ..Outgoing::json(body)
                })
            }
        }
    }

    /// The URL a request goes to: the endpoint's, or Responses' when it goes out natively.
    pub fn url(&self, endpoint: Endpoint, body: &Outgoing) -> &axum::http::Uri {
        match body.native {
            Some(crate::gateway::wire::Wire::Responses) => &self.responses_url,
            _ => &self.urls[endpoint as usize],
        }
    }
}
