//! Alerts before the money runs out: an account's owners set thresholds (a key's spend as
//! a percentage of its limit, a balance below an amount, a day's spend above one); a check
//! loop compares them with the store's figures and fires each once per period, queueing a
//! signed webhook and an email to the owners; a delivery loop sends what is due and retries
//! with backoff, every attempt in the delivery log. A change of `privacy.version` emails
//! every user once. Everything sent is metadata: ids, amounts, thresholds; never content.

pub mod send;

use std::collections::HashMap;

use serde_json::json;

use crate::billing::Money;
use crate::config::{AlertsConfig, Config};
use crate::keys::{KeyHasher, random_id};
use crate::store::{
    AlertKind, AlertRule, Channel, Delivery, DeliveryStatus, Granularity, GroupBy, Scope, Store,
    StoreError,
};
use crate::time::{day_start_ms, format_rfc3339, month_start_ms, now_ms};

const DAY_MS: i64 = 86_400_000;
/// How long one attempt holds its delivery before another instance may take it.
const ATTEMPT_LEASE_MS: i64 = 120_000;
/// The longest wait between retries.
const MAX_BACKOFF_MS: u64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot draw a random id: {0}")]
    Random(#[from] std::io::Error),
}

/// A new id with `prefix` (`evt_`, `dlv_`).
fn new_id(prefix: &str) -> Result<String, AlertError> {
    Ok(format!("{prefix}{}", random_id(20)?))
}

pub struct Alerts {
    store: Store,
    hasher: KeyHasher,
    config: AlertsConfig,
    webhooks: send::Webhooks,
    mailer: Option<send::Mailer>,
    privacy_version: String,
    privacy_contact: Option<String>,
}

/// A rule's webhook signing secret, derived from the server secret and the rule's id:
/// nothing to store, shown to the owner when the rule is made.
pub fn webhook_secret(hasher: &KeyHasher, rule_id: &str) -> String {
    format!("whsec_{}", hasher.derive("webhook-signing", rule_id))
}

impl Alerts {
    pub fn new(config: &Config, store: Store, hasher: KeyHasher) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            hasher,
            config: config.alerts.clone(),
            webhooks: send::Webhooks::new(&config.alerts),
            mailer: send::Mailer::new(&config.email)?,
            privacy_version: config.privacy.version.clone(),
            privacy_contact: config.privacy.contact.clone(),
        })
    }

    /// The signing secret of `rule_id`'s webhooks.
    pub fn webhook_secret(&self, rule_id: &str) -> String {
        webhook_secret(&self.hasher, rule_id)
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    /// Compares every rule with the store's figures and fires those crossed: the number
    /// fired.
    pub async fn check(&self) -> Result<usize, AlertError> {
        let rules = self.store.alert_rules(None).await?;
        if rules.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let day = day_start_ms(now);
        let month = month_start_ms(now);
        let wants = |k: AlertKind| rules.iter().any(|r| r.kind == k);
        let key_spend: HashMap<String, (i64, i64)> = match wants(AlertKind::KeySpend) {
            true => self
                .store
                .key_spend(day, month, Scope::Alerted)
                .await?
                .into_iter()
                .map(|(key, limit, spent)| (key, (limit, spent)))
                .collect(),
            false => HashMap::new(),
        };
        let balances: HashMap<String, i64> = match wants(AlertKind::BalanceBelow) {
            true => self
                .store
                .balances(Scope::Alerted)
                .await?
                .into_iter()
                .collect(),
            false => HashMap::new(),
        };
        let mut fired = 0;
        for rule in &rules {
            let crossed = match rule.kind {
                AlertKind::KeySpend => match self.key_spend(rule, &key_spend, day, month).await {
                    Ok(c) => c,
                    // One rule's trouble (its key deleted meanwhile) stops no other.
                    Err(e) => {
                        tracing::warn!(rule = %rule.id, error = %e, "cannot check an alert");
                        continue;
                    }
                },
                AlertKind::BalanceBelow => {
                    let balance = balances.get(&rule.account_id).copied().unwrap_or(0);
                    if balance >= rule.threshold {
                        if rule.fired.is_some() {
                            self.store.rearm_alert(&rule.id).await?;
                        }
                        None
                    } else {
                        Some((
                            "below".to_owned(),
                            json!({"balance_usd": usd(balance), "threshold_usd": usd(rule.threshold)}),
                        ))
                    }
                }
                AlertKind::DailySpend => {
                    let spent: i64 = self
                        .store
                        .usage_rollup(
                            &rule.account_id,
                            Granularity::Day,
                            day,
                            day + DAY_MS,
                            false,
                            GroupBy::Nothing,
                        )
                        .await?
                        .iter()
                        .map(|p| p.cost_nanos)
                        .sum();
                    (spent > rule.threshold).then(|| {
                        (
                            format!("day:{}", format_rfc3339(day)),
                            json!({"spent_today_usd": usd(spent), "threshold_usd": usd(rule.threshold),
                                   "day": format_rfc3339(day)}),
                        )
                    })
                }
            };
            let Some((period, figures)) = crossed else {
                continue;
            };
            if rule.fired.as_deref() == Some(period.as_str()) {
                continue;
            }
            let deliveries = self.deliveries_for(rule, figures, now).await?;
            if self
                .store
                .fire_alert(&rule.id, &period, &deliveries)
                .await?
            {
                tracing::info!(rule = %rule.id, kind = rule.kind.as_str(), "alert fired");
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// A key-spend rule's period and figures when the key's spend has reached it.
    async fn key_spend(
        &self,
        rule: &AlertRule,
        spend: &HashMap<String, (i64, i64)>,
        day: i64,
        month: i64,
    ) -> Result<Option<(String, serde_json::Value)>, AlertError> {
        let Some(key_id) = &rule.key_id else {
            return Ok(None);
        };
        let Some(&(limit, spent)) = spend.get(key_id) else {
            return Ok(None);
        };
        // spent / limit ≥ threshold %, in integers.
        if limit <= 0 || i128::from(spent) * 100 < i128::from(rule.threshold) * i128::from(limit) {
            return Ok(None);
        }
        let key = self.store.key(&rule.account_id, key_id).await?;
        let period = key.limits.spend_limit_period.unwrap_or("total".to_owned());
        let label = match period.as_str() {
            "day" => format!("day:{}", format_rfc3339(day)),
            "month" => format!("month:{}", format_rfc3339(month)),
            _ => "total".to_owned(),
        };
        let percent = i128::from(spent) * 100 / i128::from(limit);
        Ok(Some((
            label,
            json!({"key_id": key_id, "key_name": key.name, "spent_usd": usd(spent),
                   "limit_usd": usd(limit), "period": period, "percent": percent,
                   "threshold_percent": rule.threshold}),
        )))
    }

    /// The webhook and the owners' emails of one firing, sharing an event id.
    async fn deliveries_for(
        &self,
        rule: &AlertRule,
        figures: serde_json::Value,
        now: i64,
    ) -> Result<Vec<Delivery>, AlertError> {
        let event_id = new_id("evt_")?;
        let event = format!("alert.{}", rule.kind.as_str());
        let payload = json!({
            "id": event_id, "type": event, "created_at": format_rfc3339(now),
            "account_id": rule.account_id, "rule_id": rule.id, "data": figures,
        })
        .to_string();
        let delivery = |channel, target: &str, user_id: Option<String>| -> Result<_, AlertError> {
            Ok(Delivery {
                rule_id: Some(rule.id.clone()),
                account_id: Some(rule.account_id.clone()),
                user_id,
                ..Delivery::queued(new_id("dlv_")?, channel, target, &event, &payload, now)
            })
        };
        let mut out = Vec::new();
        if let Some(url) = &rule.webhook_url {
            out.push(delivery(Channel::Webhook, url, None)?);
        }
        if rule.email {
            match &self.mailer {
                Some(_) => {
                    for (user, email) in self.store.owner_emails(&rule.account_id).await? {
                        out.push(delivery(Channel::Email, &email, Some(user))?);
                    }
                }
                None => {
                    tracing::warn!(rule = %rule.id, "an alert asks for email but [email] has no smtp_host")
                }
            }
        }
        Ok(out)
    }

    /// Queues one email per existing user when `privacy.version` is new (once across
    /// instances and restarts); nothing without an SMTP server, so the change is noticed
    /// when one is configured.
    pub async fn notice_privacy(&self) -> Result<usize, AlertError> {
        if self.mailer.is_none() {
            return Ok(0);
        }
        let now = now_ms();
        let version = &self.privacy_version;
        let payload = json!({"type": "privacy.policy_changed", "version": version,
                             "created_at": format_rfc3339(now), "contact": self.privacy_contact})
        .to_string();
        Ok(self
            .store
            .notice_privacy_version(version, now, |user, email| Delivery {
                user_id: Some(user.to_owned()),
                // One notice per user and version: the instant and the user make it unique.
                ..Delivery::queued(
                    format!("dlv_p{now}_{user}"),
                    Channel::Email,
                    email,
                    "privacy.policy_changed",
                    &payload,
                    now,
                )
            })
            .await?)
    }

    /// Sends what is due, each claimed so one instance sends it: the number attempted.
    pub async fn deliver(&self) -> Result<usize, AlertError> {
        let now = now_ms();
        let mut attempted = 0;
        for mut d in self
            .store
            .due_deliveries(now, 50, self.mailer.is_some())
            .await?
        {
            if d.channel == Channel::Email && self.mailer.is_none() {
                continue;
            }
            if !self
                .store
                .claim_delivery(&d, now + ATTEMPT_LEASE_MS)
                .await?
            {
                continue;
            }
            attempted += 1;
            let result = match d.channel {
                Channel::Webhook => {
                    let secret = webhook_secret(&self.hasher, d.rule_id.as_deref().unwrap_or(""));
                    self.webhooks
                        .post(&d.target, &secret, &d.event, &d.id, &d.payload)
                        .await
                        .map(Some)
                }
                Channel::Email => {
                    let (subject, text) = email_text(&d.event, &d.payload);
                    match &self.mailer {
                        Some(m) => m.send(&d.target, &subject, text).await.map(|()| None),
                        None => continue,
                    }
                }
            };
            d.attempts += 1;
            let done = now_ms();
            match result {
                Ok(status) => {
                    d.status = DeliveryStatus::Delivered;
                    d.delivered_ms = Some(done);
                    d.last_status = status;
                    d.last_error = None;
                }
                Err(e) => {
                    tracing::info!(delivery = %d.id, attempt = d.attempts, error = %e, "delivery failed");
                    d.last_status = e.status;
                    d.last_error = Some(e.reason);
                    if d.attempts >= i64::from(self.config.max_attempts.max(1)) {
                        d.status = DeliveryStatus::Failed;
                    } else {
                        let exponent = u32::try_from(d.attempts - 1).unwrap_or(31).min(31);
                        let wait = self
                            .config
                            .retry_base_ms
                            .saturating_mul(1u64 << exponent)
                            .min(MAX_BACKOFF_MS);
                        d.next_attempt_ms = done + i64::try_from(wait).unwrap_or(i64::MAX / 2);
                    }
                }
            }
            self.store.record_attempt(&d).await?;
        }
        Ok(attempted)
    }
}

fn usd(nanos: i64) -> String {
    Money::from_nanos(nanos).to_string()
}

/// An email's subject and plain text from its event and payload.
fn email_text(event: &str, payload: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let d = &v["data"];
    let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_owned();
    let subject = match event {
        "alert.key_spend" => format!(
            "InstaGen alert: key {} has used {}% of its spend limit",
            s(&d["key_name"]),
            d["percent"]
        ),
        "alert.balance_below" => format!(
            "InstaGen alert: your balance is ${} (below ${})",
            s(&d["balance_usd"]),
            s(&d["threshold_usd"])
        ),
        "alert.daily_spend" => format!(
            "InstaGen alert: ${} spent today (over ${})",
            s(&d["spent_today_usd"]),
            s(&d["threshold_usd"])
        ),
        "privacy.policy_changed" => format!(
            "InstaGen's privacy policy has changed (version {})",
            s(&v["version"])
        ),
        other => format!("InstaGen: {other}"),
    };
    let mut text = format!("{subject}\n\n");
    match event {
        "privacy.policy_changed" => {
            text.push_str(
                "We have made a significant change to our privacy policy. You can read the new \
                 version in the console (you will be asked to acknowledge it when you next sign \
                 in) or at /api/v1/privacy.\n",
            );
            if let Some(contact) = v["contact"].as_str() {
                text.push_str(&format!("\nQuestions about your data: {contact}\n"));
            }
        }
        _ => {
            if let Some(fields) = d.as_object() {
                for (k, value) in fields {
                    text.push_str(&format!(
                        "{k}: {}\n",
                        value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned)
                    ));
                }
            }
            text.push_str(&format!(
                "\naccount: {}\nrule: {}\nevent: {}\n\nManage alerts in the console.\n",
                s(&v["account_id"]),
                s(&v["rule_id"]),
                s(&v["id"])
            ));
        }
    }
    (subject, text)
}
