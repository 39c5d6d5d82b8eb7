//! The ledger's rows, written once for both stores: decoding an entry, and appending one
//! as `billing::ledger::next` chains it. Each store includes this file with its own types.

use sqlx::Row;

use super::{DbConn, DbRow};
use crate::billing::ledger::{LedgerEntry, LedgerKind};
use crate::time::now_ms;

pub(super) fn entry_of(row: &DbRow) -> Result<LedgerEntry, sqlx::Error> {
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
pub(super) async fn append(
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
