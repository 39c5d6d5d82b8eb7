//! The ledger, written once for both stores: decoding an entry, appending one as
//! `billing::ledger::next` chains it, posting usage sums, balances, key spend and the
//! billing snapshot. Each store includes this file with its own types and supplies
//! `ledger_tx` (how appenders are kept one at a time) and `snapshot`.

use sqlx::Row;

use super::{BYTEWISE, CLOCK_MS, DbConn, DbRow, ThisStore, snapshot};
use crate::billing::ledger::{LedgerEntry, LedgerKind};
use crate::store::{Scope, StoreError};
use crate::time::now_ms;

pub(in crate::store) fn entry_of(row: &DbRow) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        seq: row.try_get("seq")?,
        ts_ms: row.try_get("ts_ms")?,
        billing_id: row.try_get("billing_id")?,
        kind: {
            let kind: String = row.try_get("kind")?;
            LedgerKind::parse(&kind).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown ledger kind `{kind}`").into())
            })?
        },
        amount_nanos: row.try_get("amount_nanos")?,
        period_start_ms: row.try_get("period_start_ms")?,
        period_end_ms: row.try_get("period_end_ms")?,
        memo: row.try_get("memo")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Appends one entry after the last, as `ledger::next` chains it; the caller's transaction
/// keeps appenders one at a time (SQLite: an immediate transaction; PostgreSQL:
/// `LEDGER_LOCK`).
pub(in crate::store) async fn append(
    conn: &mut DbConn,
    billing_id: &str,
    kind: LedgerKind,
    amount_nanos: i64,
    period: Option<(i64, i64)>,
    memo: &str,
) -> Result<LedgerEntry, sqlx::Error> {
    let tip = sqlx::query(crate::store::sql::LEDGER_TIP)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| Ok::<_, sqlx::Error>((row.try_get("seq")?, row.try_get("hash")?)))
        .transpose()?;
    let e = crate::billing::ledger::next(
        tip,
        crate::billing::ledger::Draft {
            ts_ms: now_ms(),
            billing_id,
            kind,
            amount_nanos,
            period,
            memo,
        },
    );
    sqlx::query(crate::store::sql::LEDGER_INSERT)
        .bind(e.seq)
        .bind(e.ts_ms)
        .bind(&e.billing_id)
        .bind(e.kind.as_str())
        .bind(e.amount_nanos)
        .bind(e.period_start_ms)
        .bind(e.period_end_ms)
        .bind(&e.memo)
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(&mut *conn)
        .await?;
    Ok(e)
}

/// Appends one `usage` entry per billing id from the sums a posting read (columns
/// `billing_id`, `cost`, `n`), skipping sums of zero; returns how many it appended.
pub(in crate::store) async fn post_sums(
    conn: &mut DbConn,
    sums: &[DbRow],
    since_ms: i64,
    now_ms: i64,
) -> Result<usize, sqlx::Error> {
    let mut posted = 0;
    for row in sums {
        let cost: i64 = row.try_get("cost")?;
        let n: i64 = row.try_get("n")?;
        if cost == 0 {
            continue;
        }
        let billing_id: String = row.try_get("billing_id")?;
        let memo = match n {
            1 => "1 request".to_owned(),
            n => format!("{n} requests"),
        };
        append(
            conn,
            &billing_id,
            LedgerKind::Usage,
            -cost,
            Some((since_ms, now_ms)),
            &memo,
        )
        .await?;
        posted += 1;
    }
    Ok(posted)
}

const ENTRIES_OF: &str = "SELECT * FROM ledger WHERE billing_id = $1 ORDER BY seq DESC LIMIT $2";

impl ThisStore {
    pub async fn append_ledger(
        &self,
        billing_id: &str,
        kind: LedgerKind,
        amount_nanos: i64,
        memo: &str,
    ) -> Result<LedgerEntry, StoreError> {
        self.ledger_tx(async |c| append(c, billing_id, kind, amount_nanos, None, memo).await)
            .await
    }

    /// The newest `limit` entries of one billing id, or the whole ledger in order.
    pub async fn ledger(
        &self,
        billing_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = match billing_id {
            Some(b) => {
                sqlx::query(ENTRIES_OF)
                    .bind(b)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM ledger ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.iter().map(entry_of).collect::<Result<_, _>>()?)
    }

    pub async fn ledger_totals(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT billing_id, amount_nanos FROM ledger_totals ORDER BY billing_id{BYTEWISE}"
        ));
        Ok(sqlx::query_as(sql).fetch_all(&self.pool).await?)
    }

    /// The store's clock and its newest key version: read before a budget sync's
    /// queries, they say where the next sync's `Scope::Moved` starts.
    pub async fn change_marks(&self) -> Result<(i64, i64), StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {CLOCK_MS}, COALESCE((SELECT MAX(version) FROM api_keys), 0)"
        ));
        Ok(sqlx::query_as(sql).fetch_one(&self.pool).await?)
    }

    /// Each account's balance: ledger total minus usage not yet posted, for the accounts
    /// `scope` names.
    pub async fn balances(&self, scope: Scope) -> Result<Vec<(String, i64)>, StoreError> {
        // A narrower scope drives the query from its own (indexed) ids, never a scan of
        // every account: `CROSS JOIN` keeps SQLite's loops in the written order (its
        // planner would otherwise scan `a`); PostgreSQL plans it as any inner join.
        let source = match scope {
            Scope::All => "accounts a",
            Scope::Moved(_) => {
                "(SELECT id FROM accounts
                  WHERE billing_id IN (SELECT billing_id FROM ledger_totals WHERE changed_ms >= $1)
                  UNION
                  SELECT account_id FROM api_keys
                  WHERE id IN (SELECT key_id FROM key_usage_totals WHERE changed_ms >= $1)) c
                 CROSS JOIN accounts a WHERE a.id = c.id"
            }
            Scope::Alerted => {
                "(SELECT DISTINCT account_id AS id FROM alert_rules) c
                 CROSS JOIN accounts a WHERE a.id = c.id"
            }
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT a.id,
                    CAST(COALESCE((SELECT t.amount_nanos FROM ledger_totals t WHERE t.billing_id = a.billing_id), 0)
                       - COALESCE((SELECT p.cost_nanos FROM usage_unposted p WHERE p.account_id = a.id), 0) AS BIGINT)
             FROM {source}"
        ));
        let mut query = sqlx::query_as(sql);
        if let Scope::Moved(s) = scope {
            query = query.bind(s.since_ms);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// (key id, limit, spent this period) for the live keys with a spend limit that `scope`
    /// names (`Moved`: their usage moved or they were edited).
    pub async fn key_spend(
        &self,
        day_start_ms: i64,
        month_start_ms: i64,
        scope: Scope,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        // Driven from the scope's ids, as `balances` is.
        let source = match scope {
            Scope::All => "api_keys k WHERE",
            Scope::Moved(_) => {
                "(SELECT id FROM api_keys WHERE version > $4
                  UNION SELECT key_id FROM key_usage_totals WHERE changed_ms >= $3) c
                 CROSS JOIN api_keys k WHERE k.id = c.id AND"
            }
            Scope::Alerted => {
                "(SELECT DISTINCT key_id AS id FROM alert_rules WHERE key_id IS NOT NULL) c
                 CROSS JOIN api_keys k WHERE k.id = c.id AND"
            }
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT k.id, k.spend_limit_nanos,
                    CAST(CASE COALESCE(k.spend_limit_period, 'total')
                        WHEN 'total' THEN COALESCE((SELECT cost_nanos FROM key_usage_totals t WHERE t.key_id = k.id), 0)
                        WHEN 'day' THEN COALESCE((SELECT SUM(cost_nanos) FROM key_usage_hourly h WHERE h.key_id = k.id AND h.hour_ms >= $1), 0)
                        ELSE COALESCE((SELECT SUM(cost_nanos) FROM key_usage_hourly h WHERE h.key_id = k.id AND h.hour_ms >= $2), 0)
                    END AS BIGINT)
             FROM {source} k.spend_limit_nanos IS NOT NULL AND k.status != 'deleted'"
        ));
        let mut query = sqlx::query_as(sql).bind(day_start_ms).bind(month_start_ms);
        if let Scope::Moved(s) = scope {
            query = query.bind(s.since_ms).bind(s.key_version);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// (ledger total, unposted usage, newest `limit` entries), read in one snapshot so a
    /// posting that commits meanwhile cannot make the figures disagree.
    pub async fn billing_snapshot(
        &self,
        billing_id: &str,
        account_id: &str,
        limit: i64,
    ) -> Result<(i64, i64, Vec<LedgerEntry>), StoreError> {
        let mut tx = self.pool.begin().await?;
        snapshot(&mut tx).await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT amount_nanos FROM ledger_totals WHERE billing_id = $1), 0)",
        )
        .bind(billing_id)
        .fetch_one(&mut *tx)
        .await?;
        let unposted: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT cost_nanos FROM usage_unposted WHERE account_id = $1), 0)",
        )
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query(ENTRIES_OF)
            .bind(billing_id)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let entries = rows.iter().map(entry_of).collect::<Result<_, _>>()?;
        Ok((total, unposted, entries))
    }
}
