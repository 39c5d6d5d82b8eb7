//! The live gateway and how it changes: providers from config, overridden or extended by
//! providers an operator manages through the API (stored with sealed credentials).
//!
//! Requests take the current [`Gateway`] (an `Arc` clone under a read lock); a change —
//! made here or, on another instance, noticed through the store's providers version —
//! builds a new gateway and swaps it in. In-flight requests finish on the one they started
//! with. Decrypted credentials exist only inside the providers' HTTP headers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Gateway, ProviderProblem, SetupError};
use crate::config::{ModelConfig, ProviderConfig};
use crate::secrets::MasterKey;
use crate::store::{Store, StoredProvider};

pub struct Catalog {
    current: RwLock<Arc<Gateway>>,
    config_providers: Vec<ProviderConfig>,
    models: Vec<ModelConfig>,
    master_key: Option<MasterKey>,
    /// The store's providers version the current gateway was built from.
    version: AtomicI64,
    /// Serialises rebuilds.
    rebuilding: tokio::sync::Mutex<()>,
    /// Stops the current gateway's health checks when it is replaced.
    health: Mutex<CancellationToken>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// A stored provider's settings and its decrypted key, as a provider config.
pub fn open_stored(
    stored: &StoredProvider,
    master_key: Option<&MasterKey>,
) -> Result<ProviderConfig, SetupError> {
    let mut config = ProviderConfig::from_stored(&stored.settings).map_err(|source| {
        SetupError::StoredUnreadable {
            provider: stored.name.clone(),
            source,
        }
    })?;
    if let Some(sealed) = &stored.credential {
        let key = master_key.ok_or_else(|| ProviderProblem::NoMasterKey.of(&stored.name))?;
        config.api_key = Some(
            key.open(sealed, &stored.name)
                .map_err(|e| ProviderProblem::Sealed(e.to_string()).of(&stored.name))?,
        );
    }
    Ok(config)
}

impl Catalog {
    /// Loads stored providers and builds the first gateway; fails on a route naming no provider.
    pub async fn load(
        config_providers: Vec<ProviderConfig>,
        models: Vec<ModelConfig>,
        master_key: Option<MasterKey>,
        store: &Store,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> Result<Self, SetupError> {
        let version = store.providers_version().await?;
        let stored = store.list_providers().await?;
        let effective = merge(&config_providers, &stored, master_key.as_ref())?;
        let gateway = Arc::new(Gateway::build(&effective, &models)?);
        let health = stop.child_token();
        gateway.spawn_health_checks(&tasks, &health);
        Ok(Self {
            current: RwLock::new(gateway),
            config_providers,
            models,
            master_key,
            version: AtomicI64::new(version),
            rebuilding: tokio::sync::Mutex::new(()),
            health: Mutex::new(health),
            tasks,
            stop,
        })
    }

    /// The gateway to serve the next request with.
    pub fn current(&self) -> Arc<Gateway> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn master_key(&self) -> Option<&MasterKey> {
        self.master_key.as_ref()
    }

    pub fn config_providers(&self) -> &[ProviderConfig] {
        &self.config_providers
    }

    pub fn config_provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.config_providers.iter().find(|p| p.name == name)
    }

    /// Models with a route through `provider`.
    pub fn models_using(&self, provider: &str) -> Vec<String> {
        self.models
            .iter()
            .filter(|m| m.route_list().iter().any(|r| r.provider == provider))
            .map(|m| m.id.clone())
            .collect()
    }

    /// Checks that `stored` (the store's providers after a change) would build a gateway.
    pub fn check(&self, stored: &[StoredProvider]) -> Result<(), SetupError> {
        let effective = merge(&self.config_providers, stored, self.master_key.as_ref())?;
        Gateway::build(&effective, &self.models).map(drop)
    }

    /// Rebuilds from the store if its providers changed (or always, with `force`).
    pub async fn refresh(&self, store: &Store, force: bool) -> Result<(), SetupError> {
        let _one = self.rebuilding.lock().await;
        let version = store.providers_version().await?;
        if !force && version == self.version.load(Ordering::Acquire) {
            return Ok(());
        }
        let stored = store.list_providers().await?;
        let effective = merge(&self.config_providers, &stored, self.master_key.as_ref())?;
        let gateway = Arc::new(Gateway::build(&effective, &self.models)?);
        let health = self.stop.child_token();
        gateway.spawn_health_checks(&self.tasks, &health);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = gateway;
        let old = std::mem::replace(
            &mut *self.health.lock().unwrap_or_else(|p| p.into_inner()),
            health,
        );
        old.cancel();
        self.version.store(version, Ordering::Release);
        tracing::info!(providers = effective.len(), "provider catalog reloaded");
        Ok(())
    }
}

/// Config providers, each replaced by a stored one of the same name, plus the other stored ones.
fn merge(
    config: &[ProviderConfig],
    stored: &[StoredProvider],
    master_key: Option<&MasterKey>,
) -> Result<Vec<ProviderConfig>, SetupError> {
    let mut out: Vec<ProviderConfig> = config
        .iter()
        .filter(|p| !stored.iter().any(|s| s.name == p.name))
        .cloned()
        .collect();
    for s in stored {
        out.push(open_stored(s, master_key)?);
    }
    Ok(out)
}
