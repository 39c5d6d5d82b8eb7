//! Account, user, key and token operations shared by the CLI and the management API.
//!
//! Each operation validates its input (errors name the field), changes the store, and
//! appends an audit entry saying who did what to which object — never a secret, never
//! request content. Printing and HTTP are the callers' business.

use serde::Serialize;

use crate::billing::Money;
use crate::config::Secret;
use crate::keys::KeyHasher;
use crate::store::{
    Account, AuditEntry, KeyInfo, KeySpec, KeyStatus, KeyUpdate, Membership, Role, Store,
    StoreError, User,
};
use crate::time::now_ms;

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

async fn audit(
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

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Invalid(message.into())
}

/// Checks a human-chosen name: trimmed, 1..=max characters, no control characters.
pub fn check_name(field: &str, value: &str, max: usize) -> Result<String, StoreError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field}: must be 1 to {max} printable characters"
        )));
    }
    Ok(v.to_owned())
}

fn check_description(value: &str) -> Result<String, StoreError> {
    if value.chars().count() > 1024 || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid("description: at most 1024 characters"));
    }
    Ok(value.to_owned())
}

fn check_models(models: &Option<Vec<String>>) -> Result<(), StoreError> {
    if let Some(m) = models
        && (m.len() > 256 || m.iter().any(|id| id.is_empty() || id.len() > 256))
    {
        return Err(invalid("allowed_models: at most 256 non-empty model ids"));
    }
    Ok(())
}

fn check_limits(limits: &crate::store::KeyLimits) -> Result<(), StoreError> {
    for (field, v) in [
        ("limits.rpm", limits.rpm),
        ("limits.tpm", limits.tpm),
        ("limits.max_concurrent", limits.max_concurrent),
    ] {
        if v.is_some_and(|n| n <= 0) {
            return Err(invalid(format!("{field}: must be a positive integer")));
        }
    }
    if let Some(p) = &limits.spend_limit_period
        && !matches!(p.as_str(), "day" | "month" | "total")
    {
        return Err(invalid(
            "limits.spend_limit_period: must be day, month or total",
        ));
    }
    if let Some(usd) = &limits.spend_limit_usd {
        let m =
            Money::parse_usd(usd).map_err(|e| invalid(format!("limits.spend_limit_usd: {e}")))?;
        if m.nanos() < 0 {
            return Err(invalid("limits.spend_limit_usd: must not be negative"));
        }
    }
    Ok(())
}

fn check_email(email: &str) -> Result<String, StoreError> {
    let e = email.trim().to_ascii_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(invalid("email: not a valid email address"));
    }
    Ok(e)
}

/// Hashes a password with Argon2id (default parameters) off the async runtime.
pub async fn hash_password(password: &str) -> Result<String, StoreError> {
    if password.chars().count() < 10 || password.len() > 1024 {
        return Err(invalid("password: must be 10 to 1024 characters"));
    }
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Setup(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| StoreError::Setup(e.to_string()))?
}

async fn verify_password(hash: String, password: &str) -> bool {
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordVerifier;
        use argon2::password_hash::phc::PasswordHash;
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2::Argon2::default()
                    .verify_password(pw.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A syntactically valid Argon2id hash of a random string, checked when the email is
/// unknown so that a login takes as long for unknown users as for wrong passwords.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Gd8bPqD0mhBv4b5n1TTHdbgyBOE3qA5JpUFqGWSL3U8";

/// Checks email and password; `None` for any mismatch (never says which).
pub async fn login(store: &Store, email: &str, password: &str) -> Result<Option<User>, StoreError> {
    let email = email.trim().to_ascii_lowercase();
    match store.user_by_email(&email).await {
        Ok(user) => Ok(verify_password(user.password_hash.clone(), password)
            .await
            .then_some(user)),
        Err(StoreError::NotFound(_)) => {
            let _ = verify_password(DUMMY_HASH.to_owned(), password).await;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub async fn create_account(
    store: &Store,
    actor: &Actor,
    name: &str,
) -> Result<Account, StoreError> {
    let name = check_name("name", name, 128)?;
    let account = store.create_account(&name).await?;
    audit(
        store,
        actor,
        Some(&account.id),
        "account.create",
        Some(&account.id),
    )
    .await;
    Ok(account)
}

pub async fn set_account_status(
    store: &Store,
    actor: &Actor,
    id: &str,
    suspended: bool,
) -> Result<(), StoreError> {
    store
        .set_account_status(id, if suspended { "suspended" } else { "active" })
        .await?;
    let action = if suspended {
        "account.suspend"
    } else {
        "account.unsuspend"
    };
    audit(store, actor, Some(id), action, Some(id)).await;
    Ok(())
}

pub async fn create_user(
    store: &Store,
    actor: &Actor,
    email: &str,
    password: &str,
    operator: bool,
) -> Result<User, StoreError> {
    let email = check_email(email)?;
    let hash = hash_password(password).await?;
    let user = store.create_user(&email, &hash, operator).await?;
    audit(
        store,
        actor,
        None,
        if operator {
            "user.create_operator"
        } else {
            "user.create"
        },
        Some(&user.id),
    )
    .await;
    Ok(user)
}

/// Adds (or re-roles) a member; creates the user first when `password` is given and the
/// email is new.
pub async fn add_member(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    email: &str,
    role: Role,
    password: Option<&str>,
) -> Result<Membership, StoreError> {
    let email = check_email(email)?;
    let user = match store.user_by_email(&email).await {
        Ok(u) => u,
        Err(StoreError::NotFound(_)) => match password {
            Some(pw) => create_user(store, actor, &email, pw, false).await?,
            None => return Err(invalid("password: required to invite a new user")),
        },
        Err(e) => return Err(e),
    };
    store.set_membership(account_id, &user.id, role).await?;
    audit(store, actor, Some(account_id), "member.set", Some(&user.id)).await;
    store
        .members(account_id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user.id)
        .ok_or(StoreError::NotFound("member"))
}

pub async fn remove_member(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    user_id: &str,
) -> Result<(), StoreError> {
    store.remove_membership(account_id, user_id).await?;
    audit(
        store,
        actor,
        Some(account_id),
        "member.remove",
        Some(user_id),
    )
    .await;
    Ok(())
}

/// A key or token just created or rotated: the only moment its secret exists in plaintext.
#[derive(Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// The full `ig-…` key, shown once.
    #[serde(serialize_with = "expose")]
    pub secret: Secret,
    /// After a rotation: until when the previous secret keeps working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until_ms: Option<i64>,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

pub async fn create_key(
    store: &Store,
    hasher: &KeyHasher,
    actor: &Actor,
    account_id: &str,
    spec: KeySpec,
) -> Result<CreatedKey, StoreError> {
    let spec = KeySpec {
        name: check_name("name", &spec.name, 128)?,
        description: check_description(&spec.description)?,
        ..spec
    };
    check_models(&spec.allowed_models)?;
    check_limits(&spec.limits)?;
    let account = store.account(account_id).await?;
    let key = hasher
        .generate()
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    store
        .insert_key(&account.id, &key.id, &key.hash, &spec)
        .await?;
    audit(store, actor, Some(&account.id), "key.create", Some(&key.id)).await;
    Ok(CreatedKey {
        id: key.id,
        account_id: account.id,
        name: spec.name,
        secret: key.plaintext,
        previous_secret_valid_until_ms: None,
    })
}

pub async fn update_key(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    key_id: &str,
    mut update: KeyUpdate,
) -> Result<KeyInfo, StoreError> {
    if let Some(n) = &update.name {
        update.name = Some(check_name("name", n, 128)?);
    }
    if let Some(d) = &update.description {
        update.description = Some(check_description(d)?);
    }
    if let Some(m) = &update.allowed_models {
        check_models(m)?;
    }
    if let Some(l) = &update.limits {
        check_limits(l)?;
    }
    store.update_key(account_id, key_id, &update).await?;
    audit(store, actor, Some(account_id), "key.update", Some(key_id)).await;
    store.key(account_id, key_id).await
}

/// Default grace period for the old secret after a rotation.
pub const DEFAULT_ROTATION_GRACE_SECS: i64 = 24 * 3600;

pub async fn rotate_key(
    store: &Store,
    hasher: &KeyHasher,
    actor: &Actor,
    account_id: &str,
    key_id: &str,
    grace_secs: i64,
) -> Result<CreatedKey, StoreError> {
    if !(0..=30 * 24 * 3600).contains(&grace_secs) {
        return Err(invalid(
            "grace_seconds: must be between 0 and 2592000 (30 days)",
        ));
    }
    let current = store.key(account_id, key_id).await?;
    let key = hasher
        .regenerate(key_id)
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    let until = (grace_secs > 0).then(|| now_ms() + grace_secs * 1000);
    store
        .rotate_key(account_id, key_id, &key.hash, until)
        .await?;
    audit(store, actor, Some(account_id), "key.rotate", Some(key_id)).await;
    Ok(CreatedKey {
        id: key.id,
        account_id: account_id.to_owned(),
        name: current.name,
        secret: key.plaintext,
        previous_secret_valid_until_ms: until,
    })
}

pub async fn set_key_status(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    key_id: &str,
    status: KeyStatus,
) -> Result<(), StoreError> {
    store.set_key_status(account_id, key_id, status).await?;
    let action = match status {
        KeyStatus::Active => "key.enable",
        KeyStatus::Disabled => "key.disable",
        KeyStatus::Deleted => "key.delete",
    };
    audit(store, actor, Some(account_id), action, Some(key_id)).await;
    Ok(())
}

/// A management token just created: its secret is shown once.
#[derive(Serialize)]
pub struct CreatedToken {
    pub id: String,
    pub account_id: Option<String>,
    pub role: String,
    pub name: String,
    #[serde(serialize_with = "expose")]
    pub secret: Secret,
}

/// Creates a management token for `account_id` with `role`, or a global operator token
/// when `account_id` is `None`.
pub async fn create_token(
    store: &Store,
    hasher: &KeyHasher,
    actor: &Actor,
    account_id: Option<&str>,
    role: &str,
    name: &str,
) -> Result<CreatedToken, StoreError> {
    let name = check_name("name", name, 128)?;
    match (account_id, role) {
        (None, "operator") => {}
        (Some(a), r) if Role::parse(r).is_some() => {
            store.account(a).await?;
        }
        _ => {
            return Err(invalid(
                "role: must be owner, member or viewer (operator tokens have no account)",
            ));
        }
    }
    let token = hasher
        .generate_token()
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    store
        .insert_token(
            &token.id,
            account_id,
            role,
            &name,
            &token.hash,
            actor.id.as_deref(),
        )
        .await?;
    audit(store, actor, account_id, "token.create", Some(&token.id)).await;
    Ok(CreatedToken {
        id: token.id,
        account_id: account_id.map(str::to_owned),
        role: role.to_owned(),
        name,
        secret: token.plaintext,
    })
}

pub async fn revoke_token(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    token_id: &str,
) -> Result<(), StoreError> {
    let t = store.token(token_id).await?;
    if t.account_id.as_deref() != Some(account_id) {
        return Err(StoreError::NotFound("token"));
    }
    store.revoke_token(token_id).await?;
    audit(
        store,
        actor,
        Some(account_id),
        "token.revoke",
        Some(token_id),
    )
    .await;
    Ok(())
}

/// Totals and a per-model breakdown, with exact USD strings.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UsageSummary {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: String,
    pub models: Vec<ModelUsage>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ModelUsage {
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
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
        output_tokens: 0,
        cost_usd: String::new(),
        models: Vec::with_capacity(rows.len()),
    };
    for r in rows {
        summary.requests += r.requests;
        summary.input_tokens += r.input_tokens;
        summary.output_tokens += r.output_tokens;
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
            output_tokens: r.output_tokens,
            cost_usd: cost.to_string(),
        });
    }
    summary.cost_usd = total.to_string();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_parses() {
        use argon2::password_hash::phc::PasswordHash;
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
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

/// Adds a `credit` (positive `usd`) or an `adjustment` (any non-zero `usd`) to the ledger.
pub async fn post_to_ledger(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    kind: &str,
    usd: &str,
    memo: &str,
) -> Result<crate::billing::ledger::LedgerEntry, StoreError> {
    let amount = Money::parse_usd(usd)
        .map_err(|e| invalid(format!("usd: {e}")))?
        .nanos();
    match kind {
        "credit" if amount > 0 => {}
        "adjustment" if amount != 0 => {}
        "credit" => return Err(invalid("usd: a credit must be positive")),
        _ => return Err(invalid("usd: an adjustment must not be zero")),
    }
    if memo.chars().count() > 256 || memo.chars().any(char::is_control) {
        return Err(invalid("memo: at most 256 printable characters"));
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

/// How long deletion waits between stopping an account's keys and erasing its data.
const ERASE_SETTLE: std::time::Duration = std::time::Duration::from_millis(1500);

/// Erases an account after the owner typed its name: keys and their hashes, members'
/// personal data, sessions, tokens, security events and per-request records go; the
/// ledger and daily aggregates stay, pseudonymised under an opaque tombstone id.
pub async fn delete_account(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    confirm: &str,
) -> Result<crate::store::Erased, StoreError> {
    let account = store.account(account_id).await?;
    if confirm != account.name {
        return Err(invalid(
            "confirm: type the account's exact name to confirm deletion",
        ));
    }
    // Phase 1: stop new requests. Suspension bumps the keys' versions, so every instance's
    // key cache refuses them within a second; then the writer flushes what was in flight.
    store.set_account_status(account_id, "suspended").await?;
    tokio::time::sleep(ERASE_SETTLE).await;
    // Phase 2: every recorded charge reaches the ledger, then the data goes.
    store.post_usage().await?;
    let erased = store.erase_account(account_id).await?;
    audit(
        store,
        actor,
        None,
        "account.delete",
        Some(&erased.tombstone_id),
    )
    .await;
    Ok(erased)
}

/// Everything held about an account except its per-request records (streamed separately).
pub async fn account_snapshot(
    store: &Store,
    account_id: &str,
) -> Result<serde_json::Value, StoreError> {
    let account = store.account(account_id).await?;
    let members = store.members(account_id).await?;
    let keys = store.list_keys_with_deleted(account_id).await?;
    let tokens = store.list_tokens(account_id).await?;
    let audit_log = store.audit(Some(account_id), i64::MAX).await?;
    let security = store.security_events(Some(account_id), 0).await?;
    let billing = billing_view(store, account_id, i64::MAX).await?;
    let daily = store
        .usage_rollup(
            account_id,
            crate::store::Granularity::Day,
            0,
            i64::MAX,
            true,
            crate::store::GroupBy::Model,
        )
        .await?;
    Ok(serde_json::json!({
        "exported_at": crate::time::format_rfc3339(now_ms()),
        "account": account,
        "members": members,
        "keys": keys,
        "management_tokens": tokens,
        "audit_log": audit_log,
        "security_events": security,
        "billing": billing,
        "daily_usage": daily,
    }))
}
