//! Why a gateway cannot be built from its providers and models: typed, each naming the
//! provider, model or setting at fault, for the start-up message and the operator API.

use std::path::PathBuf;

/// A gateway that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("provider `{provider}`: {problem}")]
    Provider {
        provider: String,
        problem: ProviderProblem,
    },
    #[error("model `{model}` names unknown provider `{provider}`")]
    UnknownProvider { model: String, provider: String },
    #[error("model `{model}`: the alias `{alias}` is already a model id or alias")]
    DuplicateAlias { model: String, alias: String },
    #[error("model `{model}`: price_changes.effective_from: {source}")]
    PriceDate {
        model: String,
        source: crate::time::BadTimestamp,
    },
    #[error("stored provider `{provider}` is unreadable: {source}")]
    StoredUnreadable {
        provider: String,
        source: crate::config::StoredProviderError,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What is wrong with one provider's settings.
#[derive(Debug, thiserror::Error)]
pub enum ProviderProblem {
    #[error("invalid base_url: {0}")]
    BaseUrl(String),
    #[error("the API key is not a valid header value")]
    KeyHeader,
    #[error("cannot read api_key_file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("api_key_file {} is empty", .0.display())]
    EmptyKeyFile(PathBuf),
    #[error(
        "it has a stored API key but no master key is configured (server.master_key_file or INSTAGEN_MASTER_KEY)"
    )]
    NoMasterKey,
    #[error("its stored API key cannot be opened: {0}")]
    Sealed(String),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The built-in engine cannot load the model.
    #[error("{0}")]
    Engine(String),
}

impl SetupError {
    /// The provider setting at fault, when it is one (for the operator API's `field`).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SetupError::Provider { problem, .. } => problem.field(),
            _ => None,
        }
    }
}

impl ProviderProblem {
    /// The setting this problem is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ProviderProblem::BaseUrl(_) | ProviderProblem::Tls(_) => Some("base_url"),
            ProviderProblem::KeyHeader
            | ProviderProblem::NoMasterKey
            | ProviderProblem::Sealed(_) => Some("api_key"),
            ProviderProblem::KeyFile { .. } | ProviderProblem::EmptyKeyFile(_) => {
                Some("api_key_file")
            }
            ProviderProblem::Engine(_) => Some("path"),
        }
    }

    /// This problem, of the provider named `provider`.
    pub fn of(self, provider: &str) -> SetupError {
        SetupError::Provider {
            provider: provider.to_owned(),
            problem: self,
        }
    }
}
