//! Usage summaries, balances and ledger postings.

use serde::Serialize;

use super::{Actor, audit, invalid};
use crate::billing::Money;
use crate::store::{Store, StoreError};

/// Totals and a per-model breakdown, with exact USD strings.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UsageSummary {
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: String,
    pub models: Vec<ModelUsage>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ModelUsage {
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: String,
}

pub async fn usage_summary(
    store: &Store,
    account_id: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<UsageSummary, StoreError> {
    let rows = store.usage_by_model(account_id, from_ms, to_ms).await?;
    let mut total = Money::ZERO;
    let mut summary = UsageSummary {
        requests: 0,
        input_tokens: 0,
        cached_input_tokens: 0,
        cache_write_5m_tokens: 0,
        cache_write_1h_tokens: 0,
        output_tokens: 0,
        reasoning_tokens: 0,
        cost_usd: String::new(),
        models: Vec::with_capacity(rows.len()),
    };
    for r in rows {
        summary.requests += r.requests;
        summary.input_tokens += r.input_tokens;
        summary.output_tokens += r.output_tokens;
        summary.cached_input_tokens += r.cached_input_tokens;
        summary.cache_write_5m_tokens += r.cache_write_5m_tokens;
        summary.cache_write_1h_tokens += r.cache_write_1h_tokens;
        summary.reasoning_tokens += r.reasoning_tokens;
        let cost = Money::from_nanos(r.cost_nanos);
        total = total
            .checked_add(cost)
            .unwrap_or(Money::from_nanos(i64::MAX));
        summary.models.push(ModelUsage {
            model: if r.model.is_empty() {
                "(unrouted)".to_owned()
            } else {
                r.model
            },
            requests: r.requests,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens,
            cache_write_5m_tokens: r.cache_write_5m_tokens,
            cache_write_1h_tokens: r.cache_write_1h_tokens,
            output_tokens: r.output_tokens,
            reasoning_tokens: r.reasoning_tokens,
            cost_usd: cost.to_string(),
        });
    }
    summary.cost_usd = total.to_string();
    Ok(summary)
}

/// An account's balance and recent ledger entries.
#[derive(Debug, Serialize)]
pub struct BillingView {
    pub account_id: String,
    pub billing_id: String,
    /// Ledger total minus usage recorded but not yet posted.
    pub balance_nanos: i64,
    pub balance_usd: String,
    pub unposted_usage_usd: String,
    /// Newest first.
    pub ledger: Vec<crate::billing::ledger::LedgerEntry>,
}

pub async fn billing_view(
    store: &Store,
    account_id: &str,
    limit: i64,
) -> Result<BillingView, StoreError> {
    let account = store.account(account_id).await?;
    let (total, unposted, ledger) = store
        .billing_snapshot(&account.billing_id, account_id, limit)
        .await?;
    let balance = total - unposted;
    Ok(BillingView {
        account_id: account.id,
        balance_nanos: balance,
        balance_usd: Money::from_nanos(balance).to_string(),
        unposted_usage_usd: Money::from_nanos(unposted).to_string(),
        ledger,
        billing_id: account.billing_id,
    })
}

use crate::billing::ledger::LedgerKind;

/// Adds a `credit` (positive `usd`) or an `adjustment` (any non-zero `usd`) to the ledger.
pub async fn post_to_ledger(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    kind: LedgerKind,
    usd: &str,
    memo: &str,
) -> Result<crate::billing::ledger::LedgerEntry, StoreError> {
    let amount = Money::parse_usd(usd)
        .map_err(|e| invalid("usd", e))?
        .nanos();
    match kind {
        LedgerKind::Credit if amount > 0 => {}
        LedgerKind::Adjustment if amount != 0 => {}
        LedgerKind::Credit => return Err(invalid("usd", "a credit must be positive")),
        LedgerKind::Adjustment => return Err(invalid("usd", "an adjustment must not be zero")),
        LedgerKind::Usage => return Err(invalid("kind", "usage is posted from metering only")),
    }
    if memo.chars().count() > 256 || memo.chars().any(char::is_control) {
        return Err(invalid("memo", "at most 256 printable characters"));
    }
    let account = store.account(account_id).await?;
    let entry = store
        .append_ledger(&account.billing_id, kind, amount, memo)
        .await?;
    audit(
        store,
        actor,
        Some(account_id),
        &format!("billing.{kind}"),
        Some(&entry.seq.to_string()),
    )
    .await;
    Ok(entry)
}
