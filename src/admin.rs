//! Account, user, key and token operations shared by the CLI and the management API, and
//! the read-only views they serve (models and prices, the privacy policy).
//!
//! Each operation validates its input (errors name the field), changes the store, and
//! appends an audit entry saying who did what to which object — never a secret, never
//! request content. Printing and HTTP are the callers' business.

use crate::billing::Money;
use crate::store::{AuditEntry, Store, StoreError};
use crate::time::now_ms;

mod accounts;
mod alerts;
mod billing;
mod keys;
mod models;
mod privacy;
mod providers;

pub use accounts::{
    CreatedInvitation, INVITATION_TTL_MS, accept_invitation, account_snapshot, add_member,
    create_account, create_user, delete_account, hash_password, invite, login, remove_member,
    set_account_limits, set_account_regions, set_account_status,
};
pub use alerts::{
    AlertSpec, AlertView, MAX_ALERT_RULES, alert_deliveries, create_alert, delete_alert,
    list_alerts,
};
pub use billing::{
    BillingView, ModelUsage, UsageSummary, billing_view, post_to_ledger, usage_summary,
};
pub use keys::{
    CreatedKey, CreatedToken, DEFAULT_MAX_KEYS_PER_ACCOUNT, DEFAULT_ROTATION_GRACE_SECS,
    create_key, create_key_capped, create_token, revoke_token, rotate_key, set_key_status,
    update_key,
};
pub use models::{ModelView, PriceChangeView, RouteView, model_catalog};
pub use privacy::{PolicyView, acknowledge_privacy, policy};
pub use providers::{
    create_provider, delete_provider, get_provider, list_providers, update_provider,
};

/// Who performs an action, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `user`, `token`, `admin_token` or `cli`.
    pub kind: &'static str,
    pub id: Option<String>,
    /// Truncated client address (`/24` or `/48`).
    pub client_ip: Option<String>,
}

impl Actor {
    pub fn cli() -> Self {
        Self {
            kind: "cli",
            id: None,
            client_ip: None,
        }
    }
}

pub(crate) async fn audit(
    store: &Store,
    actor: &Actor,
    account_id: Option<&str>,
    action: &str,
    target: Option<&str>,
) {
    let entry = AuditEntry {
        id: 0,
        ts_ms: now_ms(),
        account_id: account_id.map(str::to_owned),
        actor_kind: actor.kind.to_owned(),
        actor_id: actor.id.clone(),
        action: action.to_owned(),
        target_id: target.map(str::to_owned),
        client_ip: actor.client_ip.clone(),
    };
    if let Err(e) = store.append_audit(&entry).await {
        tracing::error!(error = %e, action, "cannot append to the audit log");
    }
}

/// A value the caller gave that cannot be taken: the field travels as data, the message
/// (`field: why`) is for people.
pub(crate) fn invalid(field: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::invalid(field, why)
}

/// Checks a human-chosen name: trimmed, 1..=max characters, no control characters.
pub fn check_name(field: &str, value: &str, max: usize) -> Result<String, StoreError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("must be 1 to {max} printable characters"),
        ));
    }
    Ok(v.to_owned())
}

pub(crate) fn check_description(value: &str) -> Result<String, StoreError> {
    if value.chars().count() > 1024 || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid("description", "at most 1024 characters"));
    }
    Ok(value.to_owned())
}

pub(crate) fn check_models(models: &Option<Vec<String>>) -> Result<(), StoreError> {
    if let Some(m) = models
        && (m.len() > 256 || m.iter().any(|id| id.is_empty() || id.len() > 256))
    {
        return Err(invalid("allowed_models", "at most 256 non-empty model ids"));
    }
    Ok(())
}

pub(crate) fn check_limits(limits: &crate::store::KeyLimits) -> Result<(), StoreError> {
    for (field, v) in [
        ("limits.rpm", limits.rpm),
        ("limits.tpm", limits.tpm),
        ("limits.max_concurrent", limits.max_concurrent),
    ] {
        if v.is_some_and(|n| n <= 0) {
            return Err(invalid(field, "must be a positive integer"));
        }
    }
    if let Some(p) = &limits.spend_limit_period
        && !matches!(p.as_str(), "day" | "month" | "total")
    {
        return Err(invalid(
            "limits.spend_limit_period",
            "must be day, month or total",
        ));
    }
    if let Some(usd) = &limits.spend_limit_usd {
        let m = Money::parse_usd(usd).map_err(|e| invalid("limits.spend_limit_usd", e))?;
        if m.nanos() < 0 {
            return Err(invalid("limits.spend_limit_usd", "must not be negative"));
        }
    }
    Ok(())
}

pub(crate) fn check_email(email: &str) -> Result<String, StoreError> {
    let e = email.trim().to_ascii_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(invalid("email", "not a valid email address"));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_parses() {
        use argon2::password_hash::phc::PasswordHash;
        assert!(PasswordHash::new(super::accounts::DUMMY_HASH).is_ok());
    }

    #[test]
    fn names_and_emails_are_validated_naming_the_field() {
        assert!(
            check_name("name", "  ", 10)
                .unwrap_err()
                .to_string()
                .starts_with("name:")
        );
        assert_eq!(check_name("name", " ok ", 10).unwrap(), "ok");
        assert!(check_email("nope").is_err());
        assert_eq!(check_email(" A@Example.com ").unwrap(), "a@example.com");
    }
}
