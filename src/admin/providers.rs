//! Providers an operator manages at run time: create, change, delete, with the API key
//! sealed under the master key and never shown again.
//!
//! A stored provider may share a config provider's name: it then overrides it (e.g. a
//! rotated key or a new base URL without a restart), and deleting it restores the config
//! one. `api_key_env` and `api_key_file` are refused here — they would let an API caller
//! send a server-side secret to a URL of their choosing.

use serde_json::{Map, Value, json};

use super::{Actor, audit, invalid};
use crate::config::{ProviderConfig, Secret};
use crate::gateway::catalog::Catalog;
use crate::gateway::{Provider, SetupError};
use crate::store::{Store, StoreError, StoredProvider};

/// How an operator sees a provider: its settings, where it comes from, never its key.
fn view(config: &ProviderConfig, stored: Option<&StoredProvider>, catalog: &Catalog) -> Value {
    let mut v = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert(
            "source".into(),
            if stored.is_some() { "api" } else { "config" }.into(),
        );
        map.insert(
            "overrides_config".into(),
            (stored.is_some() && catalog.config_provider(&config.name).is_some()).into(),
        );
        let has_key = match stored {
            Some(s) => s.credential.is_some(),
            None => config.api_key_env.is_some() || config.api_key_file.is_some(),
        };
        map.insert("has_api_key".into(), has_key.into());
        if let Some(s) = stored {
            map.insert("created_ms".into(), s.created_ms.into());
            map.insert("updated_ms".into(), s.updated_ms.into());
        }
        map.insert("models".into(), json!(catalog.models_using(&config.name)));
    }
    v
}

fn settings_of(stored: &StoredProvider) -> Result<ProviderConfig, StoreError> {
    ProviderConfig::from_stored(&stored.settings)
        .map_err(|_| StoreError::Setup(format!("stored provider `{}` is unreadable", stored.name)))
}

/// Every provider in effect: config ones not overridden, and stored ones.
pub async fn list_providers(store: &Store, catalog: &Catalog) -> Result<Vec<Value>, StoreError> {
    let stored = store.list_providers().await?;
    let mut out = Vec::new();
    for p in catalog_config(catalog, &stored) {
        out.push(view(&p, None, catalog));
    }
    for s in &stored {
        out.push(view(&settings_of(s)?, Some(s), catalog));
    }
    Ok(out)
}

fn catalog_config(catalog: &Catalog, stored: &[StoredProvider]) -> Vec<ProviderConfig> {
    catalog
        .config_providers()
        .iter()
        .filter(|p| !stored.iter().any(|s| s.name == p.name))
        .cloned()
        .collect()
}

pub async fn get_provider(
    store: &Store,
    catalog: &Catalog,
    name: &str,
) -> Result<Value, StoreError> {
    let stored = store.list_providers().await?;
    if let Some(s) = stored.iter().find(|s| s.name == name) {
        return Ok(view(&settings_of(s)?, Some(s), catalog));
    }
    catalog
        .config_provider(name)
        .map(|p| view(p, None, catalog))
        .ok_or(StoreError::NotFound("provider"))
}

/// Splits `api_key` off a request body: absent, `null` (remove) or a new key.
fn take_key(body: &mut Map<String, Value>) -> Result<Option<Option<Secret>>, StoreError> {
    for field in ["api_key_env", "api_key_file"] {
        if body.contains_key(field) {
            return Err(invalid(
                field,
                "only config files may name server-side secrets; send `api_key` (stored encrypted)",
            ));
        }
    }
    match body.remove("api_key") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(k)) if !k.trim().is_empty() && k.len() <= 4096 => {
            Ok(Some(Some(Secret::new(k.trim()))))
        }
        Some(_) => Err(invalid("api_key", "must be a non-empty string or null")),
    }
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            "1-64 characters of letters, digits, `-`, `_` and `.`",
        ))
    }
}

/// Parses and checks settings the way config does, and that an adapter can be built.
fn parse_settings(body: Map<String, Value>) -> Result<ProviderConfig, StoreError> {
    let file: crate::config::ProviderFile =
        serde_json::from_value(Value::Object(body)).map_err(|e| invalid("body", e))?;
    if file.is_local() {
        return Err(invalid(
            "kind",
            "local providers (a model file on the server) are set in the config file only",
        ));
    }
    let config = ProviderConfig::try_from(file).map_err(|e| invalid(e.field, e.message))?;
    check_name(&config.name)?;
    Provider::from_config(&config).map_err(|e| invalid(e.field().unwrap_or("body"), e))?;
    Ok(config)
}

fn seal(
    catalog: &Catalog,
    name: &str,
    key: Option<&Secret>,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let master = catalog.master_key().ok_or_else(|| {
        invalid(
            "api_key",
            "no master key is configured (server.master_key_file or INSTAGEN_MASTER_KEY), \
             so a key cannot be stored",
        )
    })?;
    master
        .seal(key, name)
        .map(Some)
        .map_err(|e| StoreError::Setup(e.to_string()))
}

/// Checks the store's providers after a change would still serve every model, then
/// applies it and reloads this instance (others follow within a second).
async fn apply(
    store: &Store,
    catalog: &Catalog,
    after: Vec<StoredProvider>,
    write: impl AsyncFnOnce() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    catalog
        .check(&after)
        .map_err(|e| invalid(e.field().unwrap_or("body"), e))?;
    write().await?;
    catalog.refresh(store, true).await.map_err(|e| match e {
        SetupError::Store(e) => e,
        e => StoreError::Setup(e.to_string()),
    })
}

pub async fn create_provider(
    store: &Store,
    catalog: &Catalog,
    actor: &Actor,
    mut body: Map<String, Value>,
) -> Result<Value, StoreError> {
    let key = take_key(&mut body)?.flatten();
    let config = parse_settings(body)?;
    let row = StoredProvider {
        name: config.name.clone(),
        settings: serde_json::to_string(&config).map_err(|e| StoreError::Setup(e.to_string()))?,
        credential: seal(catalog, &config.name, key.as_ref())?,
        created_ms: 0,
        updated_ms: 0,
    };
    let mut after = store.list_providers().await?;
    if after.iter().any(|s| s.name == row.name) {
        return Err(StoreError::Conflict("provider"));
    }
    after.push(row.clone());
    apply(store, catalog, after, async || {
        store.create_provider(&row).await
    })
    .await?;
    audit(store, actor, None, "provider.create", Some(&row.name)).await;
    get_provider(store, catalog, &row.name).await
}

pub async fn update_provider(
    store: &Store,
    catalog: &Catalog,
    actor: &Actor,
    name: &str,
    mut patch: Map<String, Value>,
) -> Result<Value, StoreError> {
    let key = take_key(&mut patch)?;
    if patch.get("name").is_some_and(|n| n != name) {
        return Err(invalid("name", "a provider cannot be renamed"));
    }
    let mut after = store.list_providers().await?;
    let Some(current) = after.iter_mut().find(|s| s.name == name) else {
        return Err(StoreError::NotFound("provider"));
    };
    let mut settings = ProviderConfig::stored_settings(&current.settings)
        .map_err(|_| StoreError::Setup(format!("stored provider `{name}` is unreadable")))?;
    if patch.contains_key("kind") {
        // Settings of the old kind do not carry over to a new one.
        settings.remove("responses");
    }
    settings.extend(patch);
    let config = parse_settings(settings)?;
    current.settings =
        serde_json::to_string(&config).map_err(|e| StoreError::Setup(e.to_string()))?;
    if let Some(key) = key {
        current.credential = seal(catalog, name, key.as_ref())?;
    }
    let row = current.clone();
    apply(store, catalog, after, async || {
        store.update_provider(&row).await
    })
    .await?;
    audit(store, actor, None, "provider.update", Some(name)).await;
    get_provider(store, catalog, name).await
}

pub async fn delete_provider(
    store: &Store,
    catalog: &Catalog,
    actor: &Actor,
    name: &str,
) -> Result<(), StoreError> {
    let mut after = store.list_providers().await?;
    if !after.iter().any(|s| s.name == name) {
        return Err(StoreError::NotFound("provider"));
    }
    after.retain(|s| s.name != name);
    let users = catalog.models_using(name);
    if catalog.config_provider(name).is_none() && !users.is_empty() {
        return Err(StoreError::InUse(format!(
            "provider `{name}` is used by models {}; change their routes first",
            users.join(", ")
        )));
    }
    apply(store, catalog, after, async || {
        store.delete_provider(name).await
    })
    .await?;
    audit(store, actor, None, "provider.delete", Some(name)).await;
    Ok(())
}
