//! The management API's route table, [`ROUTES`] — each operation's handler and its
//! documentation in one entry, so registering a route is documenting it — and the OpenAPI
//! 3.1 document generated from it.

use std::sync::{Arc, OnceLock};

use axum::routing::{MethodRouter, delete, get, patch, post};

use super::{
    accounts, alerts, billing, keys, models, privacy, providers, requests, session, tokens, usage,
};
use crate::app::AppState;

use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// One documented operation.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// `public`, `any` (any signed-in caller), `viewer`, `member`, `owner` or `operator`.
    pub access: &'static str,
    /// Component schema of the JSON request body, if any.
    pub request: Option<&'static str>,
    /// Success status and the component schema of its body (`None`: no body).
    pub status: u16,
    pub response: Option<&'static str>,
    /// The handler: the router registers exactly this at `method path`.
    pub handler: fn() -> MethodRouter<Arc<AppState>>,
}

// One argument per column of the table: a row reads as the table's header says.
#[allow(clippy::too_many_arguments)]
const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: &'static str,
    request: Option<&'static str>,
    status: u16,
    response: Option<&'static str>,
    handler: fn() -> MethodRouter<Arc<AppState>>,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        access,
        request,
        status,
        response,
        handler,
    }
}

const A: &str = "/api/v1/accounts/{account}";

/// Every management operation: the router is built from this table (see `manage::router`).
pub const ROUTES: &[RouteDoc] = &[
    r(
        "post",
        "/api/v1/signup",
        "Sign up (when open_signup is on): a new user owning a new account",
        "public",
        Some("Signup"),
        201,
        Some("SignupResult"),
        || post(session::signup),
    ),
    r(
        "post",
        "/api/v1/session",
        "Log in: sets the session cookie and returns the CSRF token",
        "public",
        Some("Login"),
        200,
        Some("Session"),
        || post(session::login),
    ),
    r(
        "get",
        "/api/v1/session",
        "The caller's cookie session as login returned it, CSRF token included (recomputed), so a reloaded console can carry on; a bearer caller has no session: 400 session_required",
        "any",
        None,
        200,
        Some("Session"),
        || get(session::current),
    ),
    r(
        "delete",
        "/api/v1/session",
        "Log out",
        "any",
        None,
        204,
        None,
        || delete(session::logout),
    ),
    r(
        "get",
        "/api/v1/me",
        "The caller: user or token, and memberships",
        "any",
        None,
        200,
        Some("Me"),
        || get(session::me),
    ),
    r(
        "post",
        "/api/v1/me/privacy",
        "Record that the signed-in user has read the privacy policy; `version` must be the one in force (else 400 naming `version`); tokens get 400 session_required",
        "any",
        Some("PrivacyAck"),
        200,
        Some("PrivacySeen"),
        || post(privacy::acknowledge),
    ),
    r(
        "get",
        "/api/v1/privacy",
        "The operator's privacy policy: version, text and contact",
        "public",
        None,
        200,
        Some("PrivacyPolicy"),
        || get(privacy::show),
    ),
    r(
        "get",
        "/api/v1/models",
        "Configured models: prices in force now and scheduled changes (exact USD per million tokens); routes for operators only, an empty list for everyone else",
        "any",
        None,
        200,
        Some("ModelList"),
        || get(models::list),
    ),
    r(
        "get",
        "/api/v1/users",
        "List users",
        "operator",
        None,
        200,
        Some("UserList"),
        || get(accounts::users),
    ),
    r(
        "post",
        "/api/v1/users",
        "Create a user",
        "operator",
        Some("UserCreate"),
        201,
        Some("User"),
        || post(accounts::create_user),
    ),
    r(
        "get",
        "/api/v1/providers",
        "Providers in effect: from config, and those managed here (keys never shown)",
        "operator",
        None,
        200,
        Some("ProviderList"),
        || get(providers::list),
    ),
    r(
        "post",
        "/api/v1/providers",
        "Add a provider (or override a config one by name); its api_key is sealed with AES-256-GCM",
        "operator",
        Some("ProviderCreate"),
        201,
        Some("Provider"),
        || post(providers::create),
    ),
    r(
        "get",
        "/api/v1/providers/{name}",
        "One provider",
        "operator",
        None,
        200,
        Some("Provider"),
        || get(providers::get),
    ),
    r(
        "patch",
        "/api/v1/providers/{name}",
        "Change a managed provider (api_key: a new key, or null to remove it)",
        "operator",
        Some("ProviderPatch"),
        200,
        Some("Provider"),
        || patch(providers::update),
    ),
    r(
        "delete",
        "/api/v1/providers/{name}",
        "Delete a managed provider (a config provider of the same name takes over again)",
        "operator",
        None,
        200,
        Some("ProviderDeleted"),
        || delete(providers::delete),
    ),
    r(
        "get",
        "/api/v1/routes",
        "Every model's routes and their live health",
        "operator",
        None,
        200,
        Some("RouteHealthList"),
        || get(providers::routes),
    ),
    r(
        "get",
        "/api/v1/audit",
        "The whole audit log (newest first, 500)",
        "operator",
        None,
        200,
        Some("AuditList"),
        || get(tokens::audit_all),
    ),
    r(
        "get",
        "/api/v1/accounts",
        "Accounts the caller can see (operators: all)",
        "any",
        None,
        200,
        Some("AccountList"),
        || get(accounts::list),
    ),
    r(
        "post",
        "/api/v1/accounts",
        "Create an account, optionally with an owner",
        "operator",
        Some("AccountCreate"),
        201,
        Some("Account"),
        || post(accounts::create),
    ),
    r(
        "get",
        A,
        "An account and the caller's role in it",
        "viewer",
        None,
        200,
        Some("AccountView"),
        || get(accounts::get),
    ),
    r(
        "patch",
        A,
        "Operator: restrict the account to provider regions and/or set its requests and tokens per minute; its keys inherit both",
        "operator",
        Some("AccountUpdate"),
        200,
        Some("Account"),
        || patch(accounts::update),
    ),
    r(
        "delete",
        A,
        "Delete the account: personal data erased, ledger and daily aggregates kept pseudonymised",
        "owner",
        Some("DeleteAccount"),
        200,
        Some("Deleted"),
        || delete(accounts::delete_account),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/export-all",
        "Everything held about the account, as JSON (per-request records included)",
        "owner",
        None,
        200,
        None,
        || get(accounts::export_all),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/suspend",
        "Suspend an account (its keys stop working)",
        "operator",
        None,
        200,
        Some("Account"),
        || post(accounts::suspend),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/unsuspend",
        "Reactivate an account",
        "operator",
        None,
        200,
        Some("Account"),
        || post(accounts::unsuspend),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/members",
        "Members and roles",
        "viewer",
        None,
        200,
        Some("MemberList"),
        || get(accounts::members),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/members",
        "Owners change a member's role (201) or invite anyone else (202: the invitation and its token, shown once; they join only by accepting, and the answer never says whether the email has a login). Operators add a user directly (201; `password` creates one). Demoting the last owner is 409 last_owner",
        "owner",
        Some("MemberAdd"),
        201,
        Some("Member"),
        || post(accounts::add_member),
    ),
    r(
        "delete",
        "/api/v1/accounts/{account}/members/{user_id}",
        "Remove a member: their sessions and the tokens they created are revoked; removing the last owner is 409 last_owner",
        "owner",
        None,
        204,
        None,
        || delete(accounts::remove_member),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/invitations",
        "Pending invitations",
        "owner",
        None,
        200,
        Some("InvitationList"),
        || get(accounts::invitations),
    ),
    r(
        "delete",
        "/api/v1/accounts/{account}/invitations/{invitation_id}",
        "Revoke a pending invitation",
        "owner",
        None,
        204,
        None,
        || delete(accounts::revoke_invitation),
    ),
    r(
        "get",
        "/api/v1/me/invitations",
        "Invitations addressed to the signed-in user's email (sessions only)",
        "any",
        None,
        200,
        Some("MyInvitationList"),
        || get(accounts::my_invitations),
    ),
    r(
        "post",
        "/api/v1/me/invitations/{invitation_id}/accept",
        "The signed-in user accepts an invitation addressed to them (sessions only)",
        "any",
        None,
        201,
        Some("Member"),
        || post(accounts::accept_my_invitation),
    ),
    r(
        "post",
        "/api/v1/invitations/accept",
        "Someone without a login accepts an invitation with its token and chooses a password (an email with a login accepts signed in: 409 login_exists)",
        "public",
        Some("InvitationAccept"),
        201,
        Some("InvitationAccepted"),
        || post(accounts::accept_invitation_with_token),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/usage/summary",
        "Requests, tokens and cost, per model (query: from, to as RFC 3339)",
        "viewer",
        None,
        200,
        Some("UsageSummary"),
        || get(accounts::usage_summary),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/keys",
        "Access keys with usage statistics",
        "viewer",
        None,
        200,
        Some("KeyList"),
        || get(keys::list),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/keys",
        "Create an access key; the secret is returned once",
        "member",
        Some("KeyCreate"),
        201,
        Some("CreatedKey"),
        || post(keys::create),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/keys/{key_id}",
        "One access key",
        "viewer",
        None,
        200,
        Some("Key"),
        || get(keys::get),
    ),
    r(
        "patch",
        "/api/v1/accounts/{account}/keys/{key_id}",
        "Update name, description, models, expiry, limits, enabled",
        "member",
        Some("KeyPatch"),
        200,
        Some("Key"),
        || patch(keys::update),
    ),
    r(
        "delete",
        "/api/v1/accounts/{account}/keys/{key_id}",
        "Delete a key for good (hash erased, usage kept)",
        "member",
        None,
        204,
        None,
        || delete(keys::delete),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/keys/{key_id}/rotate",
        "New secret (returned once); the old one works for the grace period",
        "member",
        Some("Rotate"),
        200,
        Some("RotatedKey"),
        || post(keys::rotate),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/keys/{key_id}/disable",
        "Disable a key",
        "member",
        None,
        200,
        Some("Key"),
        || post(keys::disable),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/keys/{key_id}/enable",
        "Enable a key",
        "member",
        None,
        200,
        Some("Key"),
        || post(keys::enable),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/tokens",
        "Management tokens (never their secrets)",
        "owner",
        None,
        200,
        Some("TokenList"),
        || get(tokens::list),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/tokens",
        "Create a management token; the secret is returned once",
        "owner",
        Some("TokenCreate"),
        201,
        Some("CreatedToken"),
        || post(tokens::create),
    ),
    r(
        "delete",
        "/api/v1/accounts/{account}/tokens/{token_id}",
        "Revoke a management token",
        "owner",
        None,
        204,
        None,
        || delete(tokens::revoke),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/audit",
        "The account's audit log (newest first, 500)",
        "owner",
        None,
        200,
        Some("AuditList"),
        || get(tokens::audit),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/security-events",
        "Failed /v1 authentications with the account's keys, per hour, last 30 days",
        "owner",
        None,
        200,
        Some("SecurityEventList"),
        || get(tokens::security_events),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/requests",
        "The request log, newest first: each request's metadata (endpoint, model, status, timings, each token kind, cost), never content; `key_id` narrows it to one key",
        "viewer",
        None,
        200,
        Some("GenerationList"),
        || get(requests::list),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/requests/{request_id}",
        "One request's metadata record, by the x-request-id of its answer",
        "viewer",
        None,
        200,
        Some("Generation"),
        || get(requests::get),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/usage",
        "Usage analytics: totals, a time series and groups (by model or key) over a range",
        "viewer",
        None,
        200,
        Some("Analytics"),
        || get(usage::analytics),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/usage/export",
        "Export usage as CSV or JSON, per request or per day (a download)",
        "viewer",
        None,
        200,
        None,
        || get(usage::export_usage),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/billing",
        "The account's balance and its hash-chained ledger",
        "viewer",
        None,
        200,
        Some("Billing"),
        || get(billing::show),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/alerts",
        "The account's alerts: thresholds (a key's spend as a percentage of its limit, a balance below, a day's spend above) and where each is sent",
        "owner",
        None,
        200,
        Some("AlertList"),
        || get(alerts::list),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/alerts",
        "Create an alert: crossing its threshold sends a signed webhook and/or emails the owners, once per period; the answer carries the webhook signing secret, shown only here",
        "owner",
        Some("AlertSpec"),
        201,
        Some("Alert"),
        || post(alerts::create),
    ),
    r(
        "delete",
        "/api/v1/accounts/{account}/alerts/{alert}",
        "Delete an alert",
        "owner",
        None,
        204,
        None,
        || delete(alerts::delete),
    ),
    r(
        "get",
        "/api/v1/accounts/{account}/alert-deliveries",
        "The delivery log: each webhook call and email, its status, attempts, last receiver status and error (newest 200)",
        "owner",
        None,
        200,
        Some("DeliveryList"),
        || get(alerts::deliveries),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/billing/credits",
        "Credit the account's prepaid balance (operators)",
        "operator",
        Some("Posting"),
        201,
        Some("LedgerEntry"),
        || post(billing::credit),
    ),
    r(
        "post",
        "/api/v1/accounts/{account}/billing/adjustments",
        "Post a signed adjustment to the ledger (operators)",
        "operator",
        Some("Posting"),
        201,
        Some("LedgerEntry"),
        || post(billing::adjust),
    ),
    r(
        "get",
        "/api/v1/security-events",
        "Security events of every account: failed authentications and abuse, by hour (operators)",
        "operator",
        None,
        200,
        Some("SecurityEventList"),
        || get(tokens::security_events_all),
    ),
];

fn obj(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "required": required, "properties": props})
}

fn list_of(item: &str) -> Value {
    obj(
        &["data"],
        json!({"data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}}),
    )
}

/// A paged list (`?limit=&cursor=`; see `page.rs`).
fn paged_list_of(item: &str) -> Value {
    let mut list = list_of(item);
    list["required"] = json!(["data", "next_cursor"]);
    list["properties"]["next_cursor"] = json!({"type": ["string", "null"],
        "description": "pass as `cursor` for the next page; null on the last"});
    list
}

/// Lists answered a page at a time.
fn is_paged(method: &str, path: &str) -> bool {
    method == "get"
        && !path.starts_with("/api/v1/me/")
        && [
            "/keys",
            "/members",
            "/tokens",
            "/audit",
            "/security-events",
            "/invitations",
            "/requests",
        ]
        .iter()
        .any(|end| path.ends_with(end))
}

fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let opt = |t: &str| json!({"type": [t, "null"]});
    let stats = obj(
        &[
            "requests",
            "input_tokens",
            "output_tokens",
            "cost_nanos",
            "cost_usd",
        ],
        json!({"requests": s("integer"), "input_tokens": s("integer"), "output_tokens": s("integer"),
               "cost_nanos": s("integer"), "cost_usd": {"type": "string", "description": "exact USD, nine decimals"}}),
    );
    let limits = json!({"type": "object", "additionalProperties": false, "properties": {
        "rpm": {"type": ["integer", "null"], "minimum": 1}, "tpm": {"type": ["integer", "null"], "minimum": 1},
        "max_concurrent": {"type": ["integer", "null"], "minimum": 1},
        "spend_limit_usd": {"type": ["string", "null"], "pattern": "^[0-9]+(\\.[0-9]{1,9})?$"},
        "spend_limit_period": {"enum": ["day", "month", "total", null]}}});
    let role = json!({"enum": ["owner", "member", "viewer"]});
    let usd_mtok =
        json!({"type": "string", "description": "exact USD per million tokens, nine decimals"});
    let email = json!({"type": "string", "format": "email", "maxLength": 254});
    let password = json!({"type": "string", "minLength": 10, "maxLength": 1024});
    let name = json!({"type": "string", "minLength": 1, "maxLength": 128});
    let models = json!({"type": ["array", "null"], "maxItems": 256, "items": {"type": "string", "minLength": 1, "maxLength": 256}});
    let ms = json!({"type": "integer", "minimum": 1, "maximum": 3_600_000});
    let provider_fields = json!({
        "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
        "kind": {"enum": ["openai", "anthropic"]},
        "base_url": {"type": "string", "format": "uri", "pattern": "^https?://"},
        "responses": {"enum": ["translate", "native"], "description": "openai providers: `native` when the provider serves /v1/responses itself"},
        "api_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 4096, "writeOnly": true,
                    "description": "sealed with AES-256-GCM under the master key; never returned"},
        "third_party": s("boolean"), "region": {"type": ["string", "null"], "maxLength": 64},
        "connect_timeout_ms": ms, "ttfb_timeout_ms": ms, "idle_timeout_ms": ms, "request_timeout_ms": ms,
        "health_check_interval_ms": {"type": ["integer", "null"], "minimum": 100, "maximum": 3_600_000},
        "health_check_path": {"type": "string", "pattern": "^/[A-Za-z0-9/_.-]{0,200}$"},
        "default_max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000}});
    json!({
        "Error": obj(&["error"], json!({"error": obj(&["code", "message"], json!({
            "code": {"type": "string", "description": "stable machine-readable code: invalid_request, unauthenticated, forbidden, csrf_failed, cross_origin, session_required, not_found, conflict, in_use, last_owner, key_limit, signup_closed, wrong_credential_kind, too_many_attempts, body_too_large, body_timeout, headers_too_large, store_unavailable, internal"},
            "message": s("string"),
            "field": {"type": ["string", "null"], "description": "the request field at fault, when one is"}}))})),
        "Signup": {"type": "object", "additionalProperties": false, "required": ["email", "password", "account_name"],
                   "properties": {"email": email, "password": password, "account_name": name}},
        "SignupResult": obj(&["user", "account"], json!({"user": {"$ref": "#/components/schemas/User"}, "account": {"$ref": "#/components/schemas/Account"}})),
        "Login": {"type": "object", "additionalProperties": false, "required": ["email", "password"],
                  "properties": {"email": s("string"), "password": s("string")}},
        "Session": obj(&["user", "memberships", "csrf_token", "expires_ms", "operator", "privacy_seen_version"], json!({"user": {"$ref": "#/components/schemas/User"},
            "memberships": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
            "csrf_token": {"type": "string", "description": "send as x-csrf-token on cookie-authenticated writes; derived from the session, so GET /api/v1/session returns the same one"},
            "expires_ms": s("integer"), "operator": s("boolean"),
            "privacy_seen_version": {"type": ["string", "null"], "description": "the privacy policy version the user last acknowledged"}})),
        "Me": obj(&["kind", "operator"], json!({"kind": {"enum": ["user", "token", "admin_token"]}, "operator": s("boolean"),
            "privacy_seen_version": {"type": ["string", "null"], "description": "users only"}})),
        "User": obj(&["id", "email", "is_operator", "created_ms", "privacy_seen_version"], json!({"id": s("string"), "email": s("string"), "is_operator": s("boolean"), "created_ms": s("integer"),
            "privacy_seen_version": opt("string")})),
        "PrivacyPolicy": obj(&["version", "text", "contact"], json!({"version": s("string"),
            "text": {"type": "string", "description": "Markdown-ish plain text: `#` headings, `-` list items, paragraphs"},
            "contact": {"type": ["string", "null"], "format": "email"}})),
        "PrivacyAck": {"type": "object", "additionalProperties": false, "required": ["version"],
                       "properties": {"version": {"type": "string", "description": "the version in force (GET /api/v1/privacy)"}}},
        "PrivacySeen": obj(&["privacy_seen_version"], json!({"privacy_seen_version": s("string")})),
        "UserList": list_of("User"),
        "UserCreate": {"type": "object", "additionalProperties": false, "required": ["email", "password"],
                       "properties": {"email": email, "password": password, "operator": s("boolean")}},
        "Account": obj(&["id", "name", "status", "created_ms"], json!({"id": s("string"), "name": s("string"), "status": {"enum": ["active", "suspended"]}, "created_ms": s("integer"),
            "billing_id": s("string"), "allowed_regions": {"type": ["array", "null"], "items": s("string")},
            "rpm": {"type": ["integer", "null"]}, "tpm": {"type": ["integer", "null"]}})),
        "AccountUpdate": {"type": "object", "additionalProperties": false, "minProperties": 1,
                          "properties": {"allowed_regions": {"type": ["array", "null"], "items": {"type": "string", "minLength": 1}, "maxItems": 256},
                                         "limits": {"type": "object", "additionalProperties": false, "properties": {
                                             "rpm": {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000_000_000_i64},
                                             "tpm": {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000_000_000_i64}}}}},
        "AccountList": list_of("Account"),
        "AccountView": obj(&["account", "your_role"], json!({"account": {"$ref": "#/components/schemas/Account"}, "your_role": role})),
        "AccountCreate": {"type": "object", "additionalProperties": false, "required": ["name"],
                          "properties": {"name": name, "owner_email": email, "owner_password": password}},
        "Invitation": obj(&["id", "account_id", "email", "role", "created_ms", "expires_ms"], json!({"id": s("string"), "account_id": s("string"), "account_name": s("string"),
            "email": s("string"), "role": role, "invited_by": opt("string"), "created_ms": s("integer"), "expires_ms": s("integer")})),
        "InvitationList": paged_list_of("Invitation"),
        "MyInvitationList": list_of("Invitation"),
        "CreatedInvitation": obj(&["invitation", "token"], json!({"invitation": {"$ref": "#/components/schemas/Invitation"},
            "token": {"type": "string", "description": "shown once: the invitee accepts with it (POST /api/v1/invitations/accept) or signed in"}})),
        "InvitationAccept": {"type": "object", "additionalProperties": false, "required": ["token", "password"],
            "properties": {"token": {"type": "string", "maxLength": 256}, "password": password}},
        "InvitationAccepted": obj(&["user", "membership"], json!({"user": {"$ref": "#/components/schemas/User"}, "membership": {"$ref": "#/components/schemas/Member"}})),
        "Member": obj(&["account_id", "user_id", "email", "role"], json!({"account_id": s("string"), "account_name": s("string"), "user_id": s("string"), "email": s("string"), "role": role, "created_ms": s("integer")})),
        "MemberList": paged_list_of("Member"),
        "MemberAdd": {"type": "object", "additionalProperties": false, "required": ["email", "role"],
                      "properties": {"email": email, "role": role, "password": password}},
        "UsageSummary": obj(&["requests", "input_tokens", "output_tokens", "cost_usd", "models"], json!({
            "requests": s("integer"), "input_tokens": s("integer"), "cached_input_tokens": s("integer"),
            "cache_write_5m_tokens": s("integer"), "cache_write_1h_tokens": s("integer"), "output_tokens": s("integer"),
            "reasoning_tokens": s("integer"), "cost_usd": s("string"),
            "models": {"type": "array", "items": obj(&["model"], json!({"model": s("string"), "requests": s("integer"),
                "input_tokens": s("integer"), "cached_input_tokens": s("integer"), "cache_write_5m_tokens": s("integer"),
                "cache_write_1h_tokens": s("integer"), "output_tokens": s("integer"), "reasoning_tokens": s("integer"),
                "cost_usd": s("string")}))}})),
        "KeyLimits": limits,
        "DeleteAccount": {"type": "object", "additionalProperties": false, "required": ["confirm"],
            "properties": {"confirm": {"type": "string", "description": "the account's exact name"}}},
        "Deleted": obj(&["deleted", "erased"], json!({"deleted": s("boolean"), "erased": obj(&["tombstone_id"], json!({
            "tombstone_id": s("string"), "keys": s("integer"), "users": s("integer"), "usage_records": s("integer"),
            "tokens": s("integer"), "security_events": s("integer")}))})),
        "AlertSpec": {"type": "object", "additionalProperties": false, "required": ["kind"], "properties": {
            "kind": {"enum": ["key_spend", "balance_below", "daily_spend"]},
            "key_id": {"type": "string", "description": "key_spend: the key watched (it must have a spend limit)"},
            "threshold_percent": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "key_spend: percent of the key's spend limit"},
            "threshold_usd": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]{1,9})?$", "description": "balance_below, daily_spend: decimal USD"},
            "webhook_url": {"type": "string", "maxLength": 2048, "description": "http(s) URL the signed webhook is POSTed to"},
            "email": {"type": "boolean", "description": "email the account's owners too"}}},
        "Alert": obj(&["id", "account_id", "kind", "email", "created_ms"], json!({
            "id": s("string"), "account_id": s("string"), "kind": {"enum": ["key_spend", "balance_below", "daily_spend"]},
            "key_id": opt("string"), "threshold_percent": opt("integer"), "threshold_usd": opt("string"),
            "webhook_url": opt("string"), "email": s("boolean"), "fired": opt("string"), "created_ms": s("integer"),
            "webhook_secret": {"type": "string", "description": "whsec_…: verifies `x-instagen-signature`; only in the creation answer"}})),
        "AlertList": list_of("Alert"),
        "Delivery": obj(&["id", "channel", "target", "event", "status", "attempts", "created_ms"], json!({
            "id": s("string"), "rule_id": opt("string"), "account_id": opt("string"), "channel": {"enum": ["webhook", "email"]},
            "target": s("string"), "event": s("string"), "status": {"enum": ["pending", "delivered", "failed"]},
            "attempts": s("integer"), "next_attempt_ms": s("integer"), "last_status": opt("integer"), "last_error": opt("string"),
            "created_ms": s("integer"), "delivered_ms": opt("integer")})),
        "DeliveryList": list_of("Delivery"),
        "Posting": {"type": "object", "additionalProperties": false, "required": ["usd"], "properties": {
            "usd": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?$", "description": "decimal USD"},
            "memo": {"type": "string", "maxLength": 256}}},
        "LedgerEntry": obj(&["seq", "ts_ms", "billing_id", "kind", "amount_nanos", "prev_hash", "hash"], json!({
            "seq": s("integer"), "ts_ms": s("integer"), "billing_id": s("string"), "kind": {"enum": ["credit", "usage", "adjustment"]},
            "amount_nanos": s("integer"), "period_start_ms": opt("integer"), "period_end_ms": opt("integer"), "memo": s("string"),
            "prev_hash": s("string"), "hash": s("string")})),
        "Billing": obj(&["account_id", "balance_nanos", "balance_usd", "ledger"], json!({"account_id": s("string"), "billing_id": s("string"),
            "balance_nanos": s("integer"), "balance_usd": s("string"), "unposted_usage_usd": s("string"),
            "ledger": {"type": "array", "items": {"$ref": "#/components/schemas/LedgerEntry"}}})),
        "UsagePoint": obj(&["requests", "input_tokens", "output_tokens", "cost_usd"], json!({"bucket_ms": s("integer"), "group": s("string"),
            "requests": s("integer"), "input_tokens": s("integer"), "cached_input_tokens": s("integer"), "output_tokens": s("integer"),
            "cost_nanos": s("integer"), "cost_usd": s("string"), "estimated_requests": s("integer"), "error_requests": s("integer")})),
        "Analytics": obj(&["from_ms", "to_ms", "bucket", "totals", "series", "groups"], json!({"account_id": s("string"),
            "from_ms": s("integer"), "to_ms": s("integer"), "bucket": s("string"), "group_by": opt("string"),
            "totals": {"$ref": "#/components/schemas/UsagePoint"},
            "series": {"type": "array", "items": {"$ref": "#/components/schemas/UsagePoint"}},
            "groups": {"type": "array", "items": {"$ref": "#/components/schemas/UsagePoint"}}})),
        "UsageStats": stats,
        "Generation": obj(&["id", "key_id", "endpoint", "status", "created_at", "started_ms", "finished_ms", "tokens", "estimated", "cost_usd"], json!({
            "id": {"type": "string", "description": "the x-request-id of the answer"}, "key_id": s("string"), "endpoint": s("string"),
            "model": opt("string"), "provider": opt("string"), "region": opt("string"), "stream": s("boolean"),
            "status": s("integer"), "error": {"type": ["string", "null"], "description": "the error kind of a failed request"},
            "created_at": s("string"), "started_ms": s("integer"), "finished_ms": s("integer"), "latency_us": s("integer"),
            "time_to_first_token_us": opt("integer"), "attempts": s("integer"),
            "tokens": obj(&["input", "cached_input", "cache_write_5m", "cache_write_1h", "output", "reasoning"], json!({
                "input": s("integer"), "cached_input": s("integer"), "cache_write_5m": s("integer"),
                "cache_write_1h": s("integer"), "output": s("integer"), "reasoning": s("integer")})),
            "estimated": s("boolean"), "cost": {"type": ["number", "null"], "description": "exact USD as a JSON number"},
            "cost_usd": {"type": "string", "description": "exact USD, nine decimals"}})),
        "GenerationList": paged_list_of("Generation"),
        "Key": obj(&["id", "account_id", "name", "status", "prefix", "usage"], json!({
            "id": s("string"), "account_id": s("string"), "name": s("string"), "description": s("string"),
            "status": {"enum": ["active", "disabled", "deleted"]}, "prefix": s("string"),
            "created_ms": s("integer"), "updated_ms": s("integer"), "expires_ms": opt("integer"),
            "allowed_models": models, "allowed_regions": models, "limits": {"$ref": "#/components/schemas/KeyLimits"},
            "previous_secret_valid_until_ms": opt("integer"),
            "spend": {"type": "object", "description": "single-key reads only: spend today, this month (UTC) and in the spend limit's period",
                "properties": {"today": {"$ref": "#/components/schemas/UsageStats"}, "this_month": {"$ref": "#/components/schemas/UsageStats"},
                    "period": {"enum": ["day", "month", "total"]}, "period_start_ms": s("integer"), "spent_in_period_usd": s("string"),
                    "limit_usd": opt("string"), "remaining_usd": opt("string")}},
            "usage": obj(&["last_24h", "last_30d", "all_time"], json!({"last_used_ms": opt("integer"),
                "last_24h": {"$ref": "#/components/schemas/UsageStats"}, "last_30d": {"$ref": "#/components/schemas/UsageStats"},
                "all_time": {"$ref": "#/components/schemas/UsageStats"}}))})),
        "KeyList": paged_list_of("Key"),
        "KeyCreate": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": name, "description": {"type": "string", "maxLength": 1024}, "allowed_models": models, "allowed_regions": models,
            "expires_ms": {"type": ["integer", "null"]}, "limits": {"$ref": "#/components/schemas/KeyLimits"}}},
        "KeyPatch": {"type": "object", "additionalProperties": false, "properties": {
            "name": name, "description": {"type": "string", "maxLength": 1024}, "allowed_models": models, "allowed_regions": models,
            "expires_ms": {"type": ["integer", "null"]}, "limits": {"$ref": "#/components/schemas/KeyLimits"}, "enabled": s("boolean")}},
        "CreatedKey": obj(&["secret", "key"], json!({"secret": {"type": "string", "description": "ig-…, shown once"}, "key": {"$ref": "#/components/schemas/Key"}})),
        "Rotate": {"type": "object", "additionalProperties": false, "properties": {
            "grace_seconds": {"type": "integer", "minimum": 0, "maximum": 2592000, "default": 86400}}},
        "RotatedKey": obj(&["secret", "key"], json!({"secret": s("string"), "previous_secret_valid_until_ms": opt("integer"), "key": {"$ref": "#/components/schemas/Key"}})),
        "Token": obj(&["id", "role", "name"], json!({"id": s("string"), "account_id": opt("string"), "role": s("string"), "name": s("string"), "created_ms": s("integer"), "last_used_ms": opt("integer"), "status": s("string"),
            "created_by": {"type": ["string", "null"], "description": "the user the token derives from: it works only while they keep a role in the account, never above it"}})),
        "TokenList": paged_list_of("Token"),
        "TokenCreate": {"type": "object", "additionalProperties": false, "required": ["name", "role"], "properties": {"name": name, "role": role}},
        "CreatedToken": obj(&["id", "role", "name", "secret"], json!({"id": s("string"), "account_id": opt("string"), "role": s("string"), "name": s("string"), "secret": {"type": "string", "description": "igm-…, shown once"}})),
        "AuditEntry": obj(&["id", "ts_ms", "actor_kind", "action"], json!({"id": s("integer"), "ts_ms": s("integer"), "account_id": opt("string"),
            "actor_kind": s("string"), "actor_id": opt("string"), "action": s("string"), "target_id": opt("string"),
            "client_ip": {"type": ["string", "null"], "description": "truncated to /24 (IPv4) or /48 (IPv6)"}})),
        "AuditList": paged_list_of("AuditEntry"),
        "Provider": obj(&["name", "kind", "source", "has_api_key"], json!({
            "name": s("string"), "kind": {"enum": ["openai", "anthropic", "local"], "description": "local: the built-in engine (config file only; no base_url)"},
            "base_url": {"type": "string", "description": "openai and anthropic providers"},
            "source": {"enum": ["config", "api"]}, "has_api_key": s("boolean"), "overrides_config": s("boolean"),
            "third_party": s("boolean"), "region": opt("string"), "models": {"type": "array", "items": s("string")}})),
        "ProviderList": list_of("Provider"),
        "ProviderCreate": {"type": "object", "additionalProperties": false, "required": ["name", "kind", "base_url"],
            "properties": provider_fields.clone()},
        "ProviderPatch": {"type": "object", "additionalProperties": false, "properties": provider_fields},
        "ProviderDeleted": obj(&["deleted", "name"], json!({"deleted": s("boolean"), "name": s("string")})),
        "RouteHealthList": obj(&["data"], json!({"data": {"type": "array", "items": obj(&["model", "routes"], json!({
            "model": s("string"), "routes": {"type": "array", "items": obj(&["provider", "healthy"], json!({
                "provider": s("string"), "healthy": s("boolean"), "in_flight": s("integer"), "weight": s("integer"),
                "priority": s("integer"), "latency_ewma_us": s("integer"),
                "engine": {"type": ["object", "null"], "description": "built-in engine routes: sequences running and waiting, and their limits"}}))}}))}})),
        "SecurityEvent": obj(&["bucket_ms", "kind", "count"], json!({"bucket_ms": s("integer"), "kind": s("string"), "key_id": opt("string"), "client_ip": opt("string"), "account_id": opt("string"), "count": s("integer")})),
        "SecurityEventList": paged_list_of("SecurityEvent"),
        "Model": obj(&["id", "input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok", "context_length", "routes", "price_changes"], json!({
            "id": s("string"),
            "input_usd_per_mtok": usd_mtok.clone(), "output_usd_per_mtok": usd_mtok.clone(), "cached_input_usd_per_mtok": usd_mtok.clone(),
            "context_length": opt("integer"),
            "routes": {"type": "array", "description": "operators only; empty for everyone else", "items": obj(&["provider", "upstream_model", "weight", "priority"], json!({
                "provider": s("string"), "upstream_model": s("string"), "weight": s("integer"), "priority": s("integer")}))},
            "price_changes": {"type": "array", "description": "every configured change, oldest first", "items": obj(&["effective_from", "input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok"], json!({
                "effective_from": {"type": "string", "format": "date-time"},
                "input_usd_per_mtok": usd_mtok.clone(), "output_usd_per_mtok": usd_mtok.clone(), "cached_input_usd_per_mtok": usd_mtok}))}})),
        "ModelList": list_of("Model"),
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The OpenAPI 3.1 document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = Map::new();
        for route in ROUTES {
            let mut params = Vec::new();
            for seg in route.path.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    params.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
                }
            }
            if route.method == "get" && route.path.ends_with("/keys") {
                params.push(json!({"name": "include_deleted", "in": "query", "required": false, "schema": {"type": "boolean"}}));
            }
            if route.path.ends_with("/requests") {
                params.push(json!({"name": "key_id", "in": "query", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 128}}));
            }
            if is_paged(route.method, route.path) {
                params.push(json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}));
                params.push(json!({"name": "cursor", "in": "query", "required": false, "schema": {"type": "string", "maxLength": 512}, "description": "next_cursor of the previous page"}));
            }
            if route.path.ends_with("/usage") {
                for (q, e) in [("range", json!(["24h", "7d", "30d"])), ("bucket", json!(["minute", "hour", "day"])), ("group_by", json!(["model", "key", "endpoint"]))] {
                    params.push(json!({"name": q, "in": "query", "required": false, "schema": {"type": "string", "enum": e}}));
                }
            }
            if route.path.ends_with("/usage/export") {
                for (q, e) in [("format", json!(["csv", "json"])), ("granularity", json!(["request", "day"])), ("range", json!(["24h", "7d", "30d"]))] {
                    params.push(json!({"name": q, "in": "query", "required": false, "schema": {"type": "string", "enum": e}}));
                }
            }
            if route.path.contains("/usage") {
                for q in ["from", "to"] {
                    params.push(json!({"name": q, "in": "query", "required": false, "schema": {"type": "string"}, "description": "RFC 3339 or YYYY-MM-DD"}));
                }
            }
            let mut responses = Map::new();
            let ok = match route.response {
                Some(schema) => json!({"description": "success", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
                None => json!({"description": "success, no body"}),
            };
            responses.insert(route.status.to_string(), ok);
            // Any operation refuses a query string or body it cannot take.
            responses.insert("400".into(), error_response("invalid input; `field` names the culprit"));
            if route.access != "public" {
                responses.insert("401".into(), error_response("not authenticated"));
                responses.insert("403".into(), error_response("authenticated, but the role (or CSRF token) does not allow this"));
            } else if route.method == "post" && route.path == "/api/v1/session" {
                responses.insert("401".into(), error_response("wrong email or password"));
            }
            if route.path.contains('{') || route.path == "/api/v1/invitations/accept" {
                responses.insert("404".into(), error_response("no such object in any account the caller belongs to"));
            }
            if route.request.is_some() || route.path.ends_with("/members/{user_id}") {
                responses.insert("409".into(), error_response("already exists, or a rule of the account forbids it (last_owner, key_limit)"));
            }
            if route.method == "post" && route.path.ends_with("/members") {
                responses.insert("202".into(), json!({"description": "invited: they join by accepting",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreatedInvitation"}}}}));
            }
            if ["/api/v1/session", "/api/v1/signup", "/api/v1/invitations/accept"].contains(&route.path) {
                responses.insert("429".into(), error_response("too many failed attempts from this address or for this email; see Retry-After"));
            }
            let mut op = json!({
                "summary": route.summary,
                "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}', '-'], "_")),
                "x-access": route.access,
                "parameters": params,
                "responses": responses,
            });
            if route.access != "public" {
                op["security"] = json!([{"session": [], "token": []}]);
            }
            if let Some(schema) = route.request {
                op["requestBody"] = json!({"required": route.method != "post" || !route.path.ends_with("/rotate"),
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
            }
            let entry = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
            entry[route.method] = op;
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "InstaGen management API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Accounts, users, access keys, management tokens, audit log and security events. \
                    Authenticate with a session cookie from POST /api/v1/session (writes also need the x-csrf-token header) \
                    or a management token (Authorization: Bearer igm-…). Access keys (ig-…) are refused here. \
                    Objects of accounts the caller does not belong to are reported as 404. Errors use the Error schema.",
            },
            "paths": paths,
            "components": {
                "schemas": schemas(),
                "securitySchemes": {
                    "session": {"type": "apiKey", "in": "cookie", "name": "ig_session"},
                    "token": {"type": "http", "scheme": "bearer", "description": "igm-… management token"},
                },
            },
        })
    })
}

pub async fn serve() -> Response {
    axum::Json(document()).into_response()
}
