//! Persistence: the store's domain rows and the backends behind one enum.
//!
//! Only typed metadata crosses this boundary: ids, names the account holder chose for
//! keys and accounts, counts, prices, timestamps. The schema has no column that could
//! hold a prompt or an output. SQL lives here and nowhere else.

mod codec;
mod postgres;
mod rows;
mod span;
mod sql;
mod sqlite;

use std::sync::Arc;

use crate::billing::ledger::LedgerEntry;
use crate::keys::KeyHash;
use crate::usage::UsageRecord;
pub use postgres::PgStore;
pub use rows::*;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A value that cannot be taken; `field` names it (as data) when one is at fault.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// The account has as many keys as it may (`accounts.max_keys_per_account`).
    #[error("the account has reached its limit of {0} access keys; delete unused keys first")]
    KeyLimit(usize),
    /// Removing or demoting this member would leave the account without an owner.
    #[error("an account must keep at least one owner: make another member an owner first")]
    LastOwner,
    /// Still referenced (e.g. a provider some model routes to).
    #[error("{0}")]
    InUse(String),
    #[error("cannot prepare the store: {0}")]
    Setup(String),
}

impl StoreError {
    /// A value that cannot be taken: the field travels as data, the message (`field: why`)
    /// is for people.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        StoreError::Invalid {
            field: Some(field.to_owned()),
            message: format!("{field}: {why}"),
        }
    }

    /// Whether the store refused the data itself (a value out of range, a constraint, an
    /// overflowing sum), so retrying the same rows cannot help; connection, lock and I/O
    /// failures are not. SQLite codes are numeric, PostgreSQL's are SQLSTATEs: classes 22
    /// (data exception) and 23 (integrity constraint).
    pub fn is_data_error(&self) -> bool {
        let StoreError::Db(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Encode(_) => true,
            sqlx::Error::Database(d) => {
                let Some(code) = d.code() else { return false };
                if d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    return code.starts_with("22") || code.starts_with("23");
                }
                // SQLITE_ERROR with SUM()'s overflow; CONSTRAINT (trigger RAISE included),
                // TOOBIG, MISMATCH, RANGE.
                match code.parse::<u32>().map(|c| c & 0xff) {
                    Ok(1) => d.message().contains("integer overflow"),
                    Ok(18 | 19 | 20 | 25) => true,
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $body:expr) => {
        match $self {
            Store::Sqlite($s) => $body,
            Store::Postgres($s) => $body,
        }
    };
}

/// The store, dispatched by backend: an embedded SQLite file for one instance, or a
/// shared PostgreSQL database that several instances use at once.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating and migrating) the store named by `url`: `sqlite:PATH` /
    /// `sqlite://PATH`, or `postgres://…` / `postgresql://…` (the database must exist).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::open(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::open(url).await?))
        } else {
            Err(StoreError::Setup(
                "store URL must start with sqlite:, postgres:// or postgresql://".to_owned(),
            ))
        }
    }

    pub async fn ping(&self) -> bool {
        dispatch!(self, s => s.ping().await)
    }

    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    // Accounts.
    pub async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        dispatch!(self, s => s.create_account(name).await)
    }
    pub async fn account(&self, id: &str) -> Result<Account, StoreError> {
        dispatch!(self, s => s.account(id).await)
    }
    pub async fn account_by_name(&self, name: &str) -> Result<Account, StoreError> {
        dispatch!(self, s => s.account_by_name(name).await)
    }
    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        dispatch!(self, s => s.list_accounts().await)
    }
    // Operator-managed providers.
    pub async fn list_providers(&self) -> Result<Vec<StoredProvider>, StoreError> {
        dispatch!(self, s => s.list_providers().await)
    }

    pub async fn providers_version(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.providers_version().await)
    }

    pub async fn create_provider(&self, p: &StoredProvider) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_provider(p).await)
    }

    pub async fn update_provider(&self, p: &StoredProvider) -> Result<(), StoreError> {
        dispatch!(self, s => s.update_provider(p).await)
    }

    pub async fn delete_provider(&self, name: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_provider(name).await)
    }

    pub async fn set_account_regions(
        &self,
        id: &str,
        regions: Option<&[String]>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_account_regions(id, regions).await)
    }

    pub async fn set_account_limits(
        &self,
        id: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_account_limits(id, rpm, tpm).await)
    }

    pub async fn set_account_status(
        &self,
        id: &str,
        status: AccountStatus,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_account_status(id, status).await)
    }

    // Users, memberships, sessions.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        is_operator: bool,
    ) -> Result<User, StoreError> {
        dispatch!(self, s => s.create_user(email, password_hash, is_operator).await)
    }
    pub async fn user(&self, id: &str) -> Result<User, StoreError> {
        dispatch!(self, s => s.user(id).await)
    }
    pub async fn user_by_email(&self, email: &str) -> Result<User, StoreError> {
        dispatch!(self, s => s.user_by_email(email).await)
    }
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        dispatch!(self, s => s.list_users().await)
    }
    /// Records that the user has seen privacy policy `version`.
    pub async fn set_privacy_seen(&self, user_id: &str, version: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_privacy_seen(user_id, version).await)
    }
    pub async fn set_membership(
        &self,
        account_id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_membership(account_id, user_id, role).await)
    }
    pub async fn remove_membership(
        &self,
        account_id: &str,
        user_id: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.remove_membership(account_id, user_id).await)
    }
    /// Revokes a member's tokens in the account (those above `keep_up_to`, or all) and
    /// their sessions; returns how many tokens were revoked.
    pub async fn revoke_member_credentials(
        &self,
        account_id: &str,
        user_id: &str,
        keep_up_to: Option<Role>,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.revoke_member_credentials(account_id, user_id, keep_up_to).await)
    }
    pub async fn role_of(
        &self,
        account_id: &str,
        user_id: &str,
    ) -> Result<Option<Role>, StoreError> {
        dispatch!(self, s => s.role_of(account_id, user_id).await)
    }
    pub async fn members(&self, account_id: &str) -> Result<Vec<Membership>, StoreError> {
        dispatch!(self, s => s.members(account_id).await)
    }
    pub async fn memberships_of(&self, user_id: &str) -> Result<Vec<Membership>, StoreError> {
        dispatch!(self, s => s.memberships_of(user_id).await)
    }
    pub async fn create_session(
        &self,
        token_hash: &KeyHash,
        user_id: &str,
        csrf_hash: &KeyHash,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_session(token_hash, user_id, csrf_hash, expires_ms).await)
    }
    pub async fn session(&self, token_hash: &KeyHash) -> Result<Option<SessionRow>, StoreError> {
        dispatch!(self, s => s.session(token_hash).await)
    }
    pub async fn delete_session(&self, token_hash: &KeyHash) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_session(token_hash).await)
    }

    // Management tokens.
    pub async fn insert_token(
        &self,
        id: &str,
        account_id: Option<&str>,
        role: &str,
        name: &str,
        hash: &KeyHash,
        created_by: Option<&str>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_token(id, account_id, role, name, hash, created_by).await)
    }
    pub async fn token(&self, id: &str) -> Result<TokenInfo, StoreError> {
        dispatch!(self, s => s.token(id).await)
    }
    pub async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenInfo>, StoreError> {
        dispatch!(self, s => s.list_tokens(account_id).await)
    }
    pub async fn revoke_token(&self, id: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.revoke_token(id).await)
    }
    pub async fn touch_token(&self, id: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.touch_token(id).await)
    }

    // Audit and security.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        dispatch!(self, s => s.append_audit(entry).await)
    }
    pub async fn audit(
        &self,
        account_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        dispatch!(self, s => s.audit(account_id, limit).await)
    }
    pub async fn add_security_events(&self, events: &[SecurityEvent]) -> Result<(), StoreError> {
        dispatch!(self, s => s.add_security_events(events).await)
    }
    /// Security events of one account, or all of them (operators) with `None`.
    pub async fn security_events(
        &self,
        account_id: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        dispatch!(self, s => s.security_events(account_id, since_ms).await)
    }

    // Keys.
    pub async fn insert_key(
        &self,
        account_id: &str,
        id: &str,
        hash: &KeyHash,
        spec: &KeySpec,
        max_live: usize,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_key(account_id, id, hash, spec, max_live).await)
    }
    pub async fn key(&self, account_id: &str, id: &str) -> Result<KeyInfo, StoreError> {
        dispatch!(self, s => s.key(account_id, id).await)
    }
    /// The account a key belongs to (for the CLI, which names keys by id alone).
    pub async fn key_account(&self, id: &str) -> Result<String, StoreError> {
        dispatch!(self, s => s.key_account(id).await)
    }
    pub async fn create_invitation(
        &self,
        invitation: &Invitation,
        token_hash: &KeyHash,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_invitation(invitation, token_hash).await)
    }
    pub async fn account_invitations(
        &self,
        account_id: &str,
    ) -> Result<Vec<Invitation>, StoreError> {
        dispatch!(self, s => s.account_invitations(account_id).await)
    }
    pub async fn invitations_for(&self, email: &str) -> Result<Vec<Invitation>, StoreError> {
        dispatch!(self, s => s.invitations_for(email).await)
    }
    pub async fn invitation_by_token(
        &self,
        token_hash: &KeyHash,
    ) -> Result<Invitation, StoreError> {
        dispatch!(self, s => s.invitation_by_token(token_hash).await)
    }
    pub async fn delete_invitation(&self, account_id: &str, id: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_invitation(account_id, id).await)
    }
    pub async fn list_keys(&self, account_id: &str) -> Result<Vec<KeyInfo>, StoreError> {
        dispatch!(self, s => s.list_keys(account_id, false, None, None).await)
    }
    /// Like `list_keys`, with deleted keys too (their usage stays attributed to them).
    pub async fn list_keys_with_deleted(
        &self,
        account_id: &str,
    ) -> Result<Vec<KeyInfo>, StoreError> {
        dispatch!(self, s => s.list_keys(account_id, true, None, None).await)
    }
    /// One page of an account's keys in creation order: those after `after` (the last
    /// key of the page before: created-ms and id), at most `limit`.
    pub async fn list_keys_page(
        &self,
        account_id: &str,
        include_deleted: bool,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<KeyInfo>, StoreError> {
        dispatch!(self, s => s.list_keys(account_id, include_deleted, after, Some(limit)).await)
    }
    pub async fn update_key(
        &self,
        account_id: &str,
        id: &str,
        update: &KeyUpdate,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.update_key(account_id, id, update).await)
    }
    /// Replaces the secret; the old hash keeps working until `grace_until_ms` (None: at once).
    pub async fn rotate_key(
        &self,
        account_id: &str,
        id: &str,
        hash: &KeyHash,
        grace_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.rotate_key(account_id, id, hash, grace_until_ms).await)
    }
    /// Sets a key's status; `Deleted` also erases its hashes so it can never authenticate again.
    pub async fn set_key_status(
        &self,
        account_id: &str,
        id: &str,
        status: KeyStatus,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_key_status(account_id, id, status).await)
    }
    /// Up to `limit` keys whose version is above `version`, oldest change first (versions
    /// are unique, so a caller pages on with the last one it got).
    pub async fn keys_changed_since(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<KeyRow>, StoreError> {
        dispatch!(self, s => s.keys_changed_since(version, limit).await)
    }

    // Billing.
    pub async fn append_ledger(
        &self,
        billing_id: &str,
        kind: crate::billing::ledger::LedgerKind,
        amount_nanos: i64,
        memo: &str,
    ) -> Result<LedgerEntry, StoreError> {
        dispatch!(self, s => s.append_ledger(billing_id, kind, amount_nanos, memo).await)
    }
    /// An account's entries (newest first, `limit`), or with `None` the whole chain in order.
    pub async fn ledger(
        &self,
        billing_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        dispatch!(self, s => s.ledger(billing_id, limit).await)
    }
    /// Each billing id's running ledger total (what balances are read from).
    pub async fn ledger_totals(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, s => s.ledger_totals().await)
    }
    pub async fn post_usage(&self) -> Result<usize, StoreError> {
        dispatch!(self, s => s.post_usage().await)
    }
    /// The store's clock (Unix ms) and newest key version, for the next [`Since`].
    pub async fn change_marks(&self) -> Result<(i64, i64), StoreError> {
        dispatch!(self, s => s.change_marks().await)
    }
    /// Balances of the accounts `scope` names.
    pub async fn balances(&self, scope: Scope) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, s => s.balances(scope).await)
    }
    /// (key, limit, spent this period) of the limited keys `scope` names.
    pub async fn key_spend(
        &self,
        day_start_ms: i64,
        month_start_ms: i64,
        scope: Scope,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        dispatch!(self, s => s.key_spend(day_start_ms, month_start_ms, scope).await)
    }
    /// (ledger total, unposted usage, newest `limit` entries) from one consistent snapshot.
    pub async fn billing_snapshot(
        &self,
        billing_id: &str,
        account_id: &str,
        limit: i64,
    ) -> Result<(i64, i64, Vec<LedgerEntry>), StoreError> {
        dispatch!(self, s => s.billing_snapshot(billing_id, account_id, limit).await)
    }

    // Data rights and retention.
    /// Erases an account's personal data; the ledger and daily aggregates stay under a tombstone id.
    pub async fn erase_account(&self, id: &str) -> Result<Erased, StoreError> {
        dispatch!(self, s => s.erase_account(id).await)
    }
    /// Purges per-request records older than `before_ms` (only those already posted to the ledger).
    pub async fn purge(&self, before_ms: i64) -> Result<u64, StoreError> {
        dispatch!(self, s => s.purge(before_ms).await)
    }

    // Usage.
    /// Inserts usage records; a record whose request id is already stored is skipped,
    /// which makes journal replay idempotent.
    /// Inserts usage records idempotently (by request id). A record of an account erased
    /// while its request ran lands under the account's tombstone, as erasure left the
    /// rest: its charge is billed under the same billing id, never lost or misattributed.
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for r in records {
            if !seen.iter().any(|(a, _)| *a == &*r.account_id) {
                seen.push((&r.account_id, &r.key_id));
            }
        }
        // Each tombstone is made shared once; the records moved to it clone the reference.
        let mut moved: Vec<(&str, Arc<str>)> = Vec::new();
        for (account, key) in seen {
            if let Some(tombstone) = dispatch!(self, s => s.tombstone_of(account, key).await)? {
                moved.push((account, Arc::from(tombstone)));
            }
        }
        if moved.is_empty() {
            return dispatch!(self, s => s.insert_usage(records).await);
        }
        let rewritten: Vec<UsageRecord> = records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some((_, t)) = moved.iter().find(|(a, _)| *a == &*r.account_id) {
                    r.account_id = t.clone();
                }
                r
            })
            .collect();
        dispatch!(self, s => s.insert_usage(&rewritten).await)
    }
    /// Per-request records of an account in `[from_ms, to_ms)`, oldest first.
    pub async fn usage_records(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        dispatch!(self, s => s.usage_records(account_id, from_ms, to_ms).await)
    }
    /// Aggregates from the rollups at `granularity` over `[from_ms, to_ms)`, split by time
    /// bucket when `by_bucket`, and by `group`.
    pub async fn usage_rollup(
        &self,
        account_id: &str,
        granularity: Granularity,
        from_ms: i64,
        to_ms: i64,
        by_bucket: bool,
        group: GroupBy,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        dispatch!(self, s => s.usage_rollup(account_id, granularity, from_ms, to_ms, by_bucket, group).await)
    }
    pub async fn create_alert_rule(&self, rule: &AlertRule) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_alert_rule(rule).await)
    }
    /// An account's alert rules (every account's with `None`), oldest first.
    pub async fn alert_rules(
        &self,
        account_id: Option<&str>,
    ) -> Result<Vec<AlertRule>, StoreError> {
        dispatch!(self, s => s.alert_rules(account_id).await)
    }
    pub async fn delete_alert_rule(&self, account_id: &str, id: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_alert_rule(account_id, id).await)
    }
    /// Fires `rule_id` in `period` with its deliveries, once across instances.
    pub async fn fire_alert(
        &self,
        rule_id: &str,
        period: &str,
        deliveries: &[Delivery],
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.fire_alert(rule_id, period, deliveries).await)
    }
    pub async fn rearm_alert(&self, rule_id: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.rearm_alert(rule_id).await)
    }
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
        with_email: bool,
    ) -> Result<Vec<Delivery>, StoreError> {
        dispatch!(self, s => s.due_deliveries(now_ms, limit, with_email).await)
    }
    pub async fn claim_delivery(&self, d: &Delivery, until_ms: i64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.claim_delivery(d, until_ms).await)
    }
    pub async fn record_attempt(&self, d: &Delivery) -> Result<(), StoreError> {
        dispatch!(self, s => s.record_attempt(d).await)
    }
    pub async fn deliveries(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        dispatch!(self, s => s.deliveries(account_id, limit).await)
    }
    pub async fn owner_emails(
        &self,
        account_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self, s => s.owner_emails(account_id).await)
    }
    /// Tells every existing user of policy `version`, once (see the stores).
    pub async fn notice_privacy_version(
        &self,
        version: &str,
        now_ms: i64,
        notice: impl Fn(&str, &str) -> Delivery,
    ) -> Result<usize, StoreError> {
        dispatch!(self, s => s.notice_privacy_version(version, now_ms, notice).await)
    }
    /// The record of request `request_id` if it is `account_id`'s (and written yet).
    pub async fn usage_record(
        &self,
        account_id: &str,
        request_id: &str,
    ) -> Result<Option<UsageRecord>, StoreError> {
        dispatch!(self, s => s.usage_record(account_id, request_id).await)
    }
    /// The account's records (one key's with `key_id`), newest first, before `before`.
    pub async fn recent_usage_records(
        &self,
        account_id: &str,
        key_id: Option<&str>,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        dispatch!(self, s => s.recent_usage_records(account_id, key_id, before, limit).await)
    }
    /// Usage per endpoint in `[from_ms, to_ms)`, from the endpoint rollups (edges from the
    /// per-request records).
    pub async fn usage_by_endpoint(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        dispatch!(self, s => s.usage_by_endpoint(account_id, from_ms, to_ms).await)
    }
    /// A key's usage since the start of `day_ms`'s day and of `month_ms`'s month.
    pub async fn key_usage_day_and_month(
        &self,
        key_id: &str,
        day_ms: i64,
        month_ms: i64,
    ) -> Result<(UsageStats, UsageStats), StoreError> {
        dispatch!(self, s => s.key_usage_day_and_month(key_id, day_ms, month_ms).await)
    }
    /// One page of per-request records after `after` (started_ms, request_id), oldest first.
    pub async fn usage_records_page(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        dispatch!(self, s => s.usage_records_page(account_id, from_ms, to_ms, after, limit).await)
    }
    pub async fn usage_by_model(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        dispatch!(self, s => s.usage_by_model(account_id, from_ms, to_ms).await)
    }
}
