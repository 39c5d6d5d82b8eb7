//! Alerts: an account's rules, firing each once per period (claimed by a conditional
//! update, so several instances never send the same alert twice), the delivery log of
//! webhooks and emails with its retries, and the privacy-policy versions users were told
//! of. Written once for both stores.

use sqlx::Row;

use super::{DbRow, ThisStore};
use crate::store::{AlertKind, AlertRule, Channel, Delivery, DeliveryStatus, StoreError};

fn rule_of(row: &DbRow) -> Result<AlertRule, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(AlertRule {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        kind: AlertKind::parse(&kind).ok_or(StoreError::invalid(
            "kind",
            format!("stored alert kind `{kind}` is unknown"),
        ))?,
        key_id: row.try_get("key_id")?,
        threshold: row.try_get("threshold")?,
        webhook_url: row.try_get("webhook_url")?,
        email: row.try_get("email")?,
        fired: row.try_get("fired")?,
        created_ms: row.try_get("created_ms")?,
    })
}

fn delivery_of(row: &DbRow) -> Result<Delivery, StoreError> {
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        rule_id: row.try_get("rule_id")?,
        account_id: row.try_get("account_id")?,
        user_id: row.try_get("user_id")?,
        channel: Channel::parse(&channel).ok_or(StoreError::invalid(
            "channel",
            format!("stored channel `{channel}` is unknown"),
        ))?,
        target: row.try_get("target")?,
        event: row.try_get("event")?,
        payload: row.try_get("payload")?,
        status: DeliveryStatus::parse(&status).ok_or(StoreError::invalid(
            "status",
            format!("stored delivery status `{status}` is unknown"),
        ))?,
        attempts: i64::from(row.try_get::<i32, _>("attempts")?),
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        last_status: row.try_get::<Option<i32>, _>("last_status")?.map(i64::from),
        last_error: row.try_get("last_error")?,
        created_ms: row.try_get("created_ms")?,
        delivered_ms: row.try_get("delivered_ms")?,
    })
}

async fn insert_delivery(c: &mut super::DbConn, d: &Delivery) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alert_deliveries (id, rule_id, account_id, user_id, channel, target, event,
             payload, status, attempts, next_attempt_ms, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10)",
    )
    .bind(&d.id)
    .bind(&d.rule_id)
    .bind(&d.account_id)
    .bind(&d.user_id)
    .bind(d.channel.as_str())
    .bind(&d.target)
    .bind(&d.event)
    .bind(&d.payload)
    .bind(d.next_attempt_ms)
    .bind(d.created_ms)
    .execute(&mut *c)
    .await?;
    Ok(())
}

impl ThisStore {
    pub async fn create_alert_rule(&self, rule: &AlertRule) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alert_rules (id, account_id, kind, key_id, threshold, webhook_url, email, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&rule.id)
        .bind(&rule.account_id)
        .bind(rule.kind.as_str())
        .bind(&rule.key_id)
        .bind(rule.threshold)
        .bind(&rule.webhook_url)
        .bind(rule.email)
        .bind(rule.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An account's rules (every account's with `None`, for the evaluator), oldest first.
    pub async fn alert_rules(
        &self,
        account_id: Option<&str>,
    ) -> Result<Vec<AlertRule>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM alert_rules WHERE $1 IS NULL OR account_id = $1 ORDER BY created_ms, id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_of).collect()
    }

    pub async fn delete_alert_rule(&self, account_id: &str, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM alert_rules WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        match done.rows_affected() {
            0 => Err(StoreError::NotFound("alert")),
            _ => Ok(()),
        }
    }

    /// Marks `rule_id` fired in `period` and queues its deliveries, unless it already fired
    /// in that period (here or on another instance): whether this call fired it.
    pub async fn fire_alert(
        &self,
        rule_id: &str,
        period: &str,
        deliveries: &[Delivery],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE alert_rules SET fired = $2 WHERE id = $1 AND COALESCE(fired, '') <> $2",
        )
        .bind(rule_id)
        .bind(period)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(false);
        }
        for d in deliveries {
            insert_delivery(&mut tx, d).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Re-arms a rule whose condition no longer holds (a balance topped up again).
    pub async fn rearm_alert(&self, rule_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE alert_rules SET fired = NULL WHERE id = $1")
            .bind(rule_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Up to `limit` pending deliveries whose time has come; emails only `with_email`
    /// (an instance without an SMTP server leaves them to one with).
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
        with_email: bool,
    ) -> Result<Vec<Delivery>, StoreError> {
        // The limit is written in, not bound (see `keys_changed_since`).
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT * FROM alert_deliveries WHERE status = 'pending' AND next_attempt_ms <= $1
               AND (channel = 'webhook' OR $2)
             ORDER BY next_attempt_ms LIMIT {limit}"
        ));
        let rows = sqlx::query(sql)
            .bind(now_ms)
            .bind(with_email)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(delivery_of).collect()
    }

    /// Takes a due delivery for one attempt by moving its next attempt to `until` (so no
    /// other instance sends it meanwhile): whether this call took it.
    pub async fn claim_delivery(&self, d: &Delivery, until_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE alert_deliveries SET next_attempt_ms = $3
             WHERE id = $1 AND status = 'pending' AND next_attempt_ms = $2",
        )
        .bind(&d.id)
        .bind(d.next_attempt_ms)
        .bind(until_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records an attempt's outcome (`d` as it now stands).
    pub async fn record_attempt(&self, d: &Delivery) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_deliveries SET status = $2, attempts = $3, next_attempt_ms = $4,
                 last_status = $5, last_error = $6, delivered_ms = $7
             WHERE id = $1",
        )
        .bind(&d.id)
        .bind(d.status.as_str())
        .bind(i32::try_from(d.attempts).unwrap_or(i32::MAX))
        .bind(d.next_attempt_ms)
        .bind(d.last_status.and_then(|s| i32::try_from(s).ok()))
        .bind(&d.last_error)
        .bind(d.delivered_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An account's newest `limit` deliveries, newest first.
    pub async fn deliveries(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM alert_deliveries WHERE account_id = $1
             ORDER BY created_ms DESC, id DESC LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_of).collect()
    }

    /// The owners of an account: (user id, email).
    pub async fn owner_emails(
        &self,
        account_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT u.id, u.email FROM users u JOIN memberships m ON m.user_id = u.id
             WHERE m.account_id = $1 AND m.role = 'owner' ORDER BY u.email",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records that users are told of policy `version`, once: the first call for a version
    /// queues one email per user who existed before (`notice` builds it from the user's
    /// id and email), unless no version was ever recorded (a new deployment: nobody is
    /// told of a change). Returns how many were queued.
    pub async fn notice_privacy_version(
        &self,
        version: &str,
        now_ms: i64,
        notice: impl Fn(&str, &str) -> Delivery,
    ) -> Result<usize, StoreError> {
        // The write comes first: on SQLite a read-then-write transaction can fail to upgrade.
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO privacy_notices (version, noticed_ms) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM privacy_notices")
            .fetch_one(&mut *tx)
            .await?;
        // The first version ever recorded is nobody's news.
        if inserted == 0 || versions <= 1 {
            tx.commit().await?;
            return Ok(0);
        }
        let users: Vec<(String, String)> =
            sqlx::query_as("SELECT id, email FROM users WHERE created_ms < $1 ORDER BY id")
                .bind(now_ms)
                .fetch_all(&mut *tx)
                .await?;
        for (id, email) in &users {
            insert_delivery(&mut tx, &notice(id, email)).await?;
        }
        tx.commit().await?;
        Ok(users.len())
    }
}
