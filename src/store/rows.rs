//! The store's domain rows: what crosses the persistence boundary, typed metadata only.

use serde::{Deserialize, Serialize};

use crate::keys::KeyHash;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Disabled,
    Deleted,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Deleted => "deleted",
        }
    }

    pub(crate) fn parse(s: &str) -> KeyStatus {
        match s {
            "active" => KeyStatus::Active,
            "disabled" => KeyStatus::Disabled,
            _ => KeyStatus::Deleted,
        }
    }
}

/// A member's role in an account. Operators are a separate, global flag on users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Member,
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Member, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// An account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    /// Its keys stop authenticating; its data stays.
    Suspended,
    /// Erased: only the tombstone row is left (never listed).
    Deleted,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(AccountStatus::Active),
            "suspended" => Some(AccountStatus::Suspended),
            "deleted" => Some(AccountStatus::Deleted),
            _ => None,
        }
    }
}

impl std::fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A management token's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    Active,
    Revoked,
}

impl TokenStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(TokenStatus::Active),
            "revoked" => Some(TokenStatus::Revoked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub status: AccountStatus,
    pub created_ms: i64,
    /// The opaque id the ledger uses for this account.
    pub billing_id: String,
    /// Provider regions every key of the account is limited to; `None` means any.
    pub allowed_regions: Option<Vec<String>>,
    /// Requests per minute across all the account's keys; `None` is unlimited.
    pub rpm: Option<i64>,
    /// Tokens per minute across all the account's keys.
    pub tpm: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub is_operator: bool,
    pub created_ms: i64,
    #[serde(skip)]
    pub password_hash: String,
    /// The privacy policy version this user last acknowledged (`None`: never), so the
    /// console can tell whether the configured policy is new to them.
    pub privacy_seen_version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub account_id: String,
    pub account_name: String,
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub created_ms: i64,
}

/// What authentication needs of a key; `hash` is `None` once deleted.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub account_id: String,
    pub hash: Option<KeyHash>,
    pub status: KeyStatus,
    pub version: i64,
    pub account_active: bool,
    pub expires_ms: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    /// The hash before the last rotation, accepted until `previous_expires_ms`.
    pub previous_hash: Option<KeyHash>,
    pub previous_expires_ms: Option<i64>,
    /// Spend cap in nano-USD for the key's period, when set.
    pub spend_limit_nanos: Option<i64>,
    /// Provider regions this key's requests may be processed in; `None` means any.
    pub allowed_regions: Option<Vec<String>>,
    /// The account's own region restriction, which every key of it inherits.
    pub account_regions: Option<Vec<String>>,
    /// Rate limits of the key and its account.
    pub quotas: crate::limits::KeyQuotas,
}

/// Limits stored with a key; enforced by the limits and billing layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLimits {
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    pub max_concurrent: Option<i64>,
    /// Spend cap in USD (decimal string), per `spend_limit_period`.
    pub spend_limit_usd: Option<String>,
    /// `day`, `month` or `total`.
    pub spend_limit_period: Option<String>,
}

/// What a new key is created with.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub name: String,
    pub description: String,
    pub allowed_models: Option<Vec<String>>,
    pub expires_ms: Option<i64>,
    pub limits: KeyLimits,
    /// Provider regions (e.g. `eu`) the key's requests may go to; `None` means any.
    pub allowed_regions: Option<Vec<String>>,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `Some(None)` clears the restriction.
    pub allowed_models: Option<Option<Vec<String>>>,
    /// `Some(None)` lifts the region restriction.
    pub allowed_regions: Option<Option<Vec<String>>>,
    pub expires_ms: Option<Option<i64>>,
    pub limits: Option<KeyLimits>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UsageStats {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nanos: i64,
    /// Exact USD, nine decimals.
    pub cost_usd: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyStats {
    pub last_used_ms: Option<i64>,
    pub last_24h: UsageStats,
    pub last_30d: UsageStats,
    pub all_time: UsageStats,
}

/// A key as its owner sees it: metadata, limits and usage statistics, never the hash.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub description: String,
    pub status: KeyStatus,
    /// The key's visible prefix, enough to recognise it (`ig-<id>`).
    pub prefix: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub expires_ms: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    pub allowed_regions: Option<Vec<String>>,
    pub limits: KeyLimits,
    /// Until when the secret from before the last rotation still works.
    pub previous_secret_valid_until_ms: Option<i64>,
    pub usage: KeyStats,
    // Flattened all-time figures, kept for the CLI's table.
    #[serde(skip)]
    pub requests: i64,
    #[serde(skip)]
    pub cost_nanos: i64,
    #[serde(skip)]
    pub last_used_ms: Option<i64>,
}

/// Aggregated usage for one model over a time range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nanos: i64,
}

/// Rollup resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    pub const fn ms(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }
}

/// How analytics split their figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Nothing,
    Model,
    Key,
}

/// Aggregated usage: one time bucket and/or one group (model or key), or a total.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UsagePoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nanos: i64,
    pub cost_usd: String,
    /// Requests whose tokens we counted because the upstream reported none.
    pub estimated_requests: i64,
    pub error_requests: i64,
}

impl Default for UsagePoint {
    /// No usage: zero everywhere, the cost included (`"0.000000000"`, never an empty string).
    fn default() -> Self {
        Self {
            bucket_ms: None,
            group: None,
            requests: 0,
            input_tokens: 0,
            cached_input_tokens: 0,
            cache_write_5m_tokens: 0,
            cache_write_1h_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            cost_nanos: 0,
            cost_usd: crate::billing::Money::ZERO.to_string(),
            estimated_requests: 0,
            error_requests: 0,
        }
    }
}

/// A pending invitation to join an account. The invitee joins only by accepting it.
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    pub id: String,
    pub account_id: String,
    pub account_name: String,
    /// Where the invitation is addressed (lower-cased); whether a login exists for it is
    /// never revealed to the inviter.
    pub email: String,
    pub role: Role,
    /// The user who invited (none for operators acting through the CLI or admin token).
    pub invited_by: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: String,
    pub csrf_hash: KeyHash,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub account_id: Option<String>,
    /// `owner`, `member`, `viewer`, or `operator` (global).
    pub role: String,
    pub name: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    pub status: TokenStatus,
    /// The user whose access the token derives from (none for tokens an operator's CLI or
    /// the admin token made): it works only while that user keeps a role in the account,
    /// never above it, and is revoked when they are removed or demoted below it.
    pub created_by: Option<String>,
    #[serde(skip)]
    pub hash: Option<KeyHash>,
}

/// One management action. Never a secret, never request content.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub ts_ms: i64,
    pub account_id: Option<String>,
    /// `user`, `token`, `admin_token` or `cli`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_id: Option<String>,
    /// Truncated: /24 for IPv4, /48 for IPv6.
    pub client_ip: Option<String>,
}

/// Failed authentications, counted per hour.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SecurityEvent {
    pub bucket_ms: i64,
    /// `key_unknown`, `key_disabled`, `key_expired`, `key_revoked`, `key_malformed` …
    pub kind: String,
    pub key_id: Option<String>,
    pub client_ip: Option<String>,
    pub account_id: Option<String>,
    pub count: i64,
}

/// A provider managed through the operator API, as stored.
#[derive(Debug, Clone)]
pub struct StoredProvider {
    pub name: String,
    /// The provider's non-secret settings, as JSON (a `ProviderConfig` without its key).
    pub settings: String,
    /// The API key sealed under the master key; never plaintext.
    pub credential: Option<Vec<u8>>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// What erasing an account removed, for the audit trail and the caller.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Erased {
    /// The opaque id the kept ledger and daily aggregates now carry.
    pub tombstone_id: String,
    pub keys: u64,
    pub users: u64,
    pub usage_records: u64,
    pub tokens: u64,
    pub security_events: u64,
}

/// What an alert rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A key's spend in its limit's period reached `threshold` percent of the limit.
    KeySpend,
    /// The account's prepaid balance fell below `threshold` nano-USD.
    BalanceBelow,
    /// The account spent more than `threshold` nano-USD in one UTC day.
    DailySpend,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::KeySpend => "key_spend",
            AlertKind::BalanceBelow => "balance_below",
            AlertKind::DailySpend => "daily_spend",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AlertKind::KeySpend,
            AlertKind::BalanceBelow,
            AlertKind::DailySpend,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// An account's alert: what it watches, its threshold, and where it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRule {
    pub id: String,
    pub account_id: String,
    pub kind: AlertKind,
    /// The key watched (`key_spend` only).
    pub key_id: Option<String>,
    /// Percent of the key's limit (`key_spend`), else nano-USD.
    pub threshold: i64,
    pub webhook_url: Option<String>,
    /// Email the account's owners too.
    pub email: bool,
    /// The period (a UTC day, a month, `total`, or `below` for a balance) it last fired
    /// in; it fires once per period.
    pub fired: Option<String>,
    pub created_ms: i64,
}

/// How a notification travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Webhook,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Channel::Webhook),
            "email" => Some(Channel::Email),
            _ => None,
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet delivered; tried again at `next_attempt_ms`.
    Pending,
    Delivered,
    /// Given up after the last attempt.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One notification (a webhook call or an email) and how its delivery went. The payload
/// is metadata only (event, rule, key id, amounts): never content.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: String,
    pub rule_id: Option<String>,
    pub account_id: Option<String>,
    #[serde(skip)]
    pub user_id: Option<String>,
    pub channel: Channel,
    /// The webhook's URL or the email address.
    pub target: String,
    pub event: String,
    #[serde(skip)]
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    /// The receiver's HTTP status (webhooks) or SMTP reply code (email) of the last attempt.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
}

impl Delivery {
    /// A delivery queued at `now`, due at once, of nobody's rule, account or user yet.
    pub fn queued(
        id: String,
        channel: Channel,
        target: &str,
        event: &str,
        payload: &str,
        now: i64,
    ) -> Self {
        Self {
            id,
            rule_id: None,
            account_id: None,
            user_id: None,
            channel,
            target: target.to_owned(),
            event: event.to_owned(),
            payload: payload.to_owned(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_ms: now,
            last_status: None,
            last_error: None,
            created_ms: now,
            delivered_ms: None,
        }
    }
}

/// Which accounts' balances and keys' spend a read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every account and limited key (a full budget sync).
    All,
    /// Those whose figures moved or that were edited since (a budget sync's usual read).
    Moved(Since),
    /// Those an alert rule watches (the alert check).
    Alerted,
}

/// Where a budget sync's partial read starts: figures stamped at or after `since_ms` (the
/// store's clock, Unix ms) and keys edited after `key_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    pub since_ms: i64,
    pub key_version: i64,
}
