//! SQL written once for both stores, where the dialects agree (`$N` placeholders work on
//! SQLite too); what truly differs (locking, bulk inserts, migrations) stays per backend.

/// The ledger's last entry: `seq` and `hash`.
pub(super) const LEDGER_TIP: &str = "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1";

/// One ledger entry, as `billing::ledger::next` made it.
pub(super) const LEDGER_INSERT: &str = "INSERT INTO ledger (seq, ts_ms, billing_id, kind, amount_nanos, period_start_ms, period_end_ms, memo, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
