//! The operator's privacy policy as users read it, and each user's acknowledgement of a
//! version of it.
//!
//! The text lives in config (`[privacy]`), never in the store; the store keeps only the
//! version a user last acknowledged, so changing the configured version asks everyone again.

use serde::Serialize;

use super::{Actor, audit, invalid};
use crate::config::PrivacyConfig;
use crate::store::{Store, StoreError, User};

/// What `GET /api/v1/privacy` shows.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PolicyView<'a> {
    pub version: &'a str,
    pub text: &'a str,
    pub contact: Option<&'a str>,
}

pub fn policy(config: &PrivacyConfig) -> PolicyView<'_> {
    PolicyView {
        version: &config.version,
        text: config.text(),
        contact: config.contact.as_deref(),
    }
}

/// Records that `user` has seen policy `version`, which must be the one in force (a
/// stale page acknowledging an older version is refused, naming `version`). Returns the
/// version now recorded; acknowledging it again changes nothing and audits nothing.
pub async fn acknowledge_privacy(
    store: &Store,
    actor: &Actor,
    user: &User,
    version: &str,
    config: &PrivacyConfig,
) -> Result<String, StoreError> {
    if version != config.version {
        return Err(invalid(
            "version",
            format!(
                "the privacy policy in force is version {}; read it and acknowledge that one",
                config.version
            ),
        ));
    }
    if user.privacy_seen_version.as_deref() == Some(version) {
        return Ok(version.to_owned());
    }
    store.set_privacy_seen(&user.id, version).await?;
    audit(store, actor, None, "privacy.acknowledged", Some(&user.id)).await;
    Ok(version.to_owned())
}
