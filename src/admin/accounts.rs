//! Accounts, users, members, logins, and the account's data rights (export, erasure).

use super::{Actor, audit, invalid};
use super::{billing_view, check_email, check_name};
use crate::config::Secret;
use crate::keys::{KeyHasher, random_id};
use crate::store::{Account, AccountStatus, Invitation, Membership, Role, Store, StoreError, User};
use crate::time::now_ms;

/// Hashes a password with Argon2id (default parameters) off the async runtime.
pub async fn hash_password(password: &str) -> Result<String, StoreError> {
    if password.chars().count() < 10 || password.len() > 1024 {
        return Err(invalid("password", "must be 10 to 1024 characters"));
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
pub(super) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Gd8bPqD0mhBv4b5n1TTHdbgyBOE3qA5JpUFqGWSL3U8";

/// Checks email and password; `None` for any mismatch (never says which).
/// Checks an email and password: the user, or why not — `Some(user)` when the email is a
/// user's but the password is wrong (their accounts' owners see the failure), `None` for an
/// unknown email. Both take the same time.
pub async fn login(
    store: &Store,
    email: &str,
    password: &str,
) -> Result<Result<User, Option<User>>, StoreError> {
    let email = email.trim().to_ascii_lowercase();
    match store.user_by_email(&email).await {
        Ok(user) => Ok(
            if verify_password(user.password_hash.clone(), password).await {
                Ok(user)
            } else {
                Err(Some(user))
            },
        ),
        Err(StoreError::NotFound(_)) => {
            let _ = verify_password(DUMMY_HASH.to_owned(), password).await;
            Ok(Err(None))
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

/// Restricts (or, with `None`, frees) an account's requests to provider regions.
pub async fn set_account_regions(
    store: &Store,
    actor: &Actor,
    id: &str,
    regions: Option<Vec<String>>,
) -> Result<Account, StoreError> {
    super::check_models(&regions)
        .map_err(|_| invalid("allowed_regions", "at most 256 non-empty region names"))?;
    store.set_account_regions(id, regions.as_deref()).await?;
    audit(store, actor, Some(id), "account.regions", Some(id)).await;
    store.account(id).await
}

/// Sets an account's requests and tokens per minute (`None`: unlimited).
pub async fn set_account_limits(
    store: &Store,
    actor: &Actor,
    id: &str,
    rpm: Option<i64>,
    tpm: Option<i64>,
) -> Result<Account, StoreError> {
    for (field, v) in [("rpm", rpm), ("tpm", tpm)] {
        if v.is_some_and(|n| !(1..=1_000_000_000_000).contains(&n)) {
            return Err(invalid(
                &format!("limits.{field}"),
                "must be between 1 and 10^12, or null",
            ));
        }
    }
    store.set_account_limits(id, rpm, tpm).await?;
    audit(store, actor, Some(id), "account.limits", Some(id)).await;
    store.account(id).await
}

pub async fn set_account_status(
    store: &Store,
    actor: &Actor,
    id: &str,
    suspended: bool,
) -> Result<(), StoreError> {
    store
        .set_account_status(
            id,
            if suspended {
                AccountStatus::Suspended
            } else {
                AccountStatus::Active
            },
        )
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
            None => return Err(invalid("password", "required to invite a new user")),
        },
        Err(e) => return Err(e),
    };
    let before = store.role_of(account_id, &user.id).await?;
    store.set_membership(account_id, &user.id, role).await?;
    audit(store, actor, Some(account_id), "member.set", Some(&user.id)).await;
    // Credentials derive from the membership: a demotion revokes what it no longer allows.
    if before.is_some_and(|b| role < b) {
        store
            .revoke_member_credentials(account_id, &user.id, Some(role))
            .await?;
    }
    store
        .members(account_id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user.id)
        .ok_or(StoreError::NotFound("member"))
}

/// How long an invitation may be accepted.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 3_600_000;

/// A new invitation and its token, which the inviter passes on (shown once).
#[derive(Debug, serde::Serialize)]
pub struct CreatedInvitation {
    pub invitation: Invitation,
    #[serde(serialize_with = "super::keys::expose")]
    pub token: Secret,
}

/// Invites `email` to an account with `role`. The answer is the same whether the email
/// belongs to a user or not; nobody joins until the invitee accepts.
pub async fn invite(
    store: &Store,
    hasher: &KeyHasher,
    actor: &Actor,
    account_id: &str,
    email: &str,
    role: Role,
    invited_by: Option<&str>,
) -> Result<CreatedInvitation, StoreError> {
    let email = check_email(email)?;
    let account = store.account(account_id).await?;
    let (token, token_hash) = hasher
        .opaque("invitation")
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    let now = now_ms();
    let invitation = Invitation {
        id: random_id(16).map_err(|e| StoreError::Setup(e.to_string()))?,
        account_id: account.id,
        account_name: account.name,
        email,
        role,
        invited_by: invited_by.map(str::to_owned),
        created_ms: now,
        expires_ms: now + INVITATION_TTL_MS,
    };
    store.create_invitation(&invitation, &token_hash).await?;
    audit(
        store,
        actor,
        Some(&invitation.account_id),
        "invitation.create",
        Some(&invitation.id),
    )
    .await;
    Ok(CreatedInvitation { invitation, token })
}

/// `user` accepts `invitation` (addressed to their email): they join with its role, or
/// keep a higher role they already have. The invitation is used up.
pub async fn accept_invitation(
    store: &Store,
    actor: &Actor,
    invitation: &Invitation,
    user: &User,
) -> Result<Membership, StoreError> {
    if user.email != invitation.email {
        return Err(StoreError::NotFound("invitation"));
    }
    let account = &invitation.account_id;
    let current = store.role_of(account, &user.id).await?;
    if current.is_none_or(|c| c < invitation.role) {
        store
            .set_membership(account, &user.id, invitation.role)
            .await?;
    }
    store.delete_invitation(account, &invitation.id).await?;
    audit(
        store,
        actor,
        Some(account),
        "invitation.accept",
        Some(&user.id),
    )
    .await;
    store
        .members(account)
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
    // Every credential derived from the membership dies with it.
    store
        .revoke_member_credentials(account_id, user_id, None)
        .await?;
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
            "confirm",
            "type the account's exact name to confirm deletion",
        ));
    }
    // Phase 1: stop new requests. Suspension bumps the keys' versions, so every instance's
    // key cache refuses them within a second; then the writer flushes what was in flight.
    store
        .set_account_status(account_id, AccountStatus::Suspended)
        .await?;
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
