//! Alert rules: validated, stored, listed and deleted, each change audited; and the
//! account's delivery log.

use serde::{Deserialize, Serialize};

use super::{Actor, audit, invalid};
use crate::billing::Money;
use crate::keys::random_id;
use crate::store::{AlertKind, AlertRule, Delivery, Store, StoreError};
use crate::time::now_ms;

/// The most rules one account may have.
pub const MAX_ALERT_RULES: usize = 50;
/// The highest threshold in USD (a balance or a day's spend).
const MAX_THRESHOLD_NANOS: i64 = 1_000_000_000 * 1_000_000_000;

/// A new rule as an owner asks for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    pub kind: AlertKind,
    /// `key_spend`: the key watched.
    #[serde(default)]
    pub key_id: Option<String>,
    /// `key_spend`: percent of the key's spend limit (1 to 1000).
    #[serde(default)]
    pub threshold_percent: Option<i64>,
    /// `balance_below`, `daily_spend`: decimal USD.
    #[serde(default)]
    pub threshold_usd: Option<String>,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub email: bool,
}

/// A rule as its owners see it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub id: String,
    pub account_id: String,
    pub kind: AlertKind,
    pub key_id: Option<String>,
    pub threshold_percent: Option<i64>,
    pub threshold_usd: Option<String>,
    pub webhook_url: Option<String>,
    pub email: bool,
    /// The period it last fired in, if any.
    pub fired: Option<String>,
    pub created_ms: i64,
    /// Only when the rule is created: the key that signs its webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl From<AlertRule> for AlertView {
    fn from(r: AlertRule) -> Self {
        let percent = r.kind == AlertKind::KeySpend;
        Self {
            id: r.id,
            account_id: r.account_id,
            kind: r.kind,
            key_id: r.key_id,
            threshold_percent: percent.then_some(r.threshold),
            threshold_usd: (!percent).then(|| Money::from_nanos(r.threshold).to_string()),
            webhook_url: r.webhook_url,
            email: r.email,
            fired: r.fired,
            created_ms: r.created_ms,
            webhook_secret: None,
        }
    }
}

fn check_url(url: &str) -> Result<(), StoreError> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| invalid("webhook_url", "must be an absolute http or https URL"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("https" | "http"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) || url.len() > 2048 {
        return Err(invalid(
            "webhook_url",
            "must be an absolute http or https URL of at most 2048 characters",
        ));
    }
    Ok(())
}

/// Creates a rule; `secret` derives its webhook signing secret from its id.
pub async fn create_alert(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    spec: AlertSpec,
    secret: impl Fn(&str) -> String,
) -> Result<AlertView, StoreError> {
    store.account(account_id).await?;
    let threshold = match spec.kind {
        AlertKind::KeySpend => {
            let key_id = spec
                .key_id
                .as_deref()
                .ok_or_else(|| invalid("key_id", "a key_spend alert names the key it watches"))?;
            let key = store
                .key(account_id, key_id)
                .await
                .map_err(|_| invalid("key_id", "no such key in this account"))?;
            if key.limits.spend_limit_usd.is_none() {
                return Err(invalid(
                    "key_id",
                    "the key has no spend limit to measure against",
                ));
            }
            match spec.threshold_percent {
                Some(p) if (1..=1000).contains(&p) => p,
                _ => {
                    return Err(invalid(
                        "threshold_percent",
                        "must be a whole percentage from 1 to 1000",
                    ));
                }
            }
        }
        AlertKind::BalanceBelow | AlertKind::DailySpend => {
            if spec.key_id.is_some() {
                return Err(invalid("key_id", "only key_spend alerts watch a key"));
            }
            let usd = spec
                .threshold_usd
                .as_deref()
                .ok_or_else(|| invalid("threshold_usd", "is required (decimal USD)"))?;
            match Money::parse_usd(usd).map(Money::nanos) {
                Ok(n) if (0..=MAX_THRESHOLD_NANOS).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        "threshold_usd",
                        "must be a decimal USD amount from 0 to 1000000000",
                    ));
                }
            }
        }
    };
    if spec.kind == AlertKind::KeySpend && spec.threshold_usd.is_some() {
        return Err(invalid(
            "threshold_usd",
            "key_spend alerts take threshold_percent",
        ));
    }
    if spec.kind != AlertKind::KeySpend && spec.threshold_percent.is_some() {
        return Err(invalid(
            "threshold_percent",
            "only key_spend alerts take a percentage",
        ));
    }
    if let Some(url) = &spec.webhook_url {
        check_url(url)?;
    }
    if spec.webhook_url.is_none() && !spec.email {
        return Err(invalid(
            "webhook_url",
            "an alert is sent somewhere: give a webhook_url, email: true, or both",
        ));
    }
    if store.alert_rules(Some(account_id)).await?.len() >= MAX_ALERT_RULES {
        return Err(invalid(
            "kind",
            format!("an account may have at most {MAX_ALERT_RULES} alerts"),
        ));
    }
    let rule = AlertRule {
        id: format!(
            "alr_{}",
            random_id(16).map_err(|e| StoreError::Setup(e.to_string()))?
        ),
        account_id: account_id.to_owned(),
        kind: spec.kind,
        key_id: spec.key_id.filter(|_| spec.kind == AlertKind::KeySpend),
        threshold,
        webhook_url: spec.webhook_url,
        email: spec.email,
        fired: None,
        created_ms: now_ms(),
    };
    store.create_alert_rule(&rule).await?;
    audit(
        store,
        actor,
        Some(account_id),
        "alert.create",
        Some(&rule.id),
    )
    .await;
    let secret = rule.webhook_url.as_ref().map(|_| secret(&rule.id));
    let mut view = AlertView::from(rule);
    view.webhook_secret = secret;
    Ok(view)
}

pub async fn list_alerts(store: &Store, account_id: &str) -> Result<Vec<AlertView>, StoreError> {
    store.account(account_id).await?;
    Ok(store
        .alert_rules(Some(account_id))
        .await?
        .into_iter()
        .map(AlertView::from)
        .collect())
}

pub async fn delete_alert(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    id: &str,
) -> Result<(), StoreError> {
    store.delete_alert_rule(account_id, id).await?;
    audit(store, actor, Some(account_id), "alert.delete", Some(id)).await;
    Ok(())
}

/// The account's newest deliveries (webhooks and emails), newest first.
pub async fn alert_deliveries(
    store: &Store,
    account_id: &str,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    store.account(account_id).await?;
    store.deliveries(account_id, limit.clamp(1, 500)).await
}
