//! The CLI's subcommands (everything but `serve`): argument types and one thin call into
//! the library each, printing text or `--json`.

use clap::{Args, Subcommand};
use instagen::admin::{self, Actor};
use instagen::billing::ledger::LedgerKind;
use instagen::keys::KeyHasher;
use instagen::store::{KeyLimits, KeySpec, KeyStatus, KeyUpdate, Role, Store};
use instagen::time;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the gateway.
    Serve,
    /// Create the store and apply migrations, then exit.
    Migrate,
    /// Manage accounts (tenants).
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// Manage users (console and management-API logins).
    #[command(subcommand)]
    Users(UsersCmd),
    /// Manage access keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Manage management-API tokens (`igm-…`).
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Read usage.
    #[command(subcommand)]
    Usage(UsageCmd),
    /// Balances and the hash-chained ledger.
    #[command(subcommand)]
    Billing(BillingCmd),
}

#[derive(Subcommand)]
pub(crate) enum BillingCmd {
    /// Credit an account's prepaid balance.
    Credit {
        #[arg(long)]
        account: String,
        /// Decimal USD, e.g. 25.00.
        #[arg(long)]
        usd: String,
        #[arg(long, default_value = "")]
        memo: String,
        #[arg(long)]
        json: bool,
    },
    /// Post a signed adjustment.
    Adjust {
        #[arg(long)]
        account: String,
        #[arg(long, allow_hyphen_values = true)]
        usd: String,
        #[arg(long)]
        memo: String,
        #[arg(long)]
        json: bool,
    },
    /// Balance and recent ledger entries.
    Show {
        #[arg(long)]
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Post recorded usage to the ledger now.
    Post,
    /// Check the whole ledger chain; exits 1 if any entry was edited or removed.
    Verify,
}

#[derive(Subcommand)]
pub(crate) enum AccountsCmd {
    /// Create an account.
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Suspend an account: its keys stop authenticating within a second.
    Suspend { name: String },
    /// Reactivate a suspended account.
    Unsuspend { name: String },
}

#[derive(Subcommand)]
pub(crate) enum UsersCmd {
    /// Create a user; with --account, also make them a member.
    Create {
        #[arg(long)]
        email: String,
        /// The password, or `-` to read it from standard input.
        #[arg(long)]
        password: String,
        /// A platform operator (global admin).
        #[arg(long)]
        operator: bool,
        #[arg(long)]
        account: Option<String>,
        /// owner, member or viewer (with --account).
        #[arg(long, default_value = "member")]
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(crate) struct KeyFields {
    /// Comma-separated model ids this key may use (default: all).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Comma-separated provider regions this key's requests may go to (default: any).
    #[arg(long, value_delimiter = ',')]
    regions: Option<Vec<String>>,
    /// Expiry (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    expires: Option<String>,
    #[arg(long)]
    rpm: Option<i64>,
    #[arg(long)]
    tpm: Option<i64>,
    #[arg(long)]
    max_concurrent: Option<i64>,
    /// Spend limit in USD, e.g. 25.00.
    #[arg(long)]
    spend_limit_usd: Option<String>,
    /// day, month or total.
    #[arg(long)]
    spend_limit_period: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum KeysCmd {
    /// Create an access key; its secret is printed once.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        fields: KeyFields,
        #[arg(long)]
        json: bool,
    },
    /// List an account's keys with their usage.
    List {
        #[arg(long)]
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a key's name, description, models, expiry or limits.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        fields: KeyFields,
        #[arg(long)]
        json: bool,
    },
    /// Issue a new secret; the old one keeps working for the grace period.
    Rotate {
        id: String,
        #[arg(long, default_value_t = admin::DEFAULT_ROTATION_GRACE_SECS)]
        grace_seconds: i64,
        #[arg(long)]
        json: bool,
    },
    /// Disable a key (it stops authenticating within a second).
    Disable { id: String },
    /// Enable a disabled key.
    Enable { id: String },
    /// Delete a key for good (its hash is erased; its usage records stay).
    Delete { id: String },
}

#[derive(Subcommand)]
pub(crate) enum TokensCmd {
    /// Create a management token; its secret is printed once.
    Create {
        /// The account it acts on (omit with --operator).
        #[arg(long)]
        account: Option<String>,
        /// owner, member or viewer.
        #[arg(long, default_value = "member")]
        role: String,
        /// A global operator token.
        #[arg(long)]
        operator: bool,
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List an account's tokens (never their secrets).
    List {
        #[arg(long)]
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token.
    Revoke {
        #[arg(long)]
        account: String,
        id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum UsageCmd {
    /// Requests, tokens and cost for an account, with a per-model breakdown.
    Summary(SummaryArgs),
    /// Export per-request records (or daily aggregates) as CSV or JSON to stdout.
    Export {
        #[arg(long)]
        account: String,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// request or day.
        #[arg(long, default_value = "request")]
        granularity: String,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// Usage records the store refused, set aside in this instance's data dir.
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
}

#[derive(Subcommand)]
pub(crate) enum QuarantineCmd {
    /// The quarantined records (metadata only) with the reason each was refused.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Writes every quarantined record again; those still refused stay quarantined.
    Retry {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(crate) struct SummaryArgs {
    #[arg(long)]
    account: String,
    /// Start (RFC 3339 or YYYY-MM-DD, inclusive); default: the beginning.
    #[arg(long)]
    from: Option<String>,
    /// End (RFC 3339 or YYYY-MM-DD, exclusive); default: now.
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Prints `value` as JSON, or `text` otherwise.
fn show<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        println!("{}", text(value));
    }
    Ok(())
}

/// Posts a credit or an adjustment of `usd` to the account named `account`.
async fn post(
    store: &Store,
    cli: &Actor,
    kind: LedgerKind,
    account: &str,
    usd: &str,
    memo: &str,
    json: bool,
) -> anyhow::Result<()> {
    let a = store.account_by_name(account).await?;
    let e = admin::post_to_ledger(store, cli, &a.id, kind, usd, memo).await?;
    show(json, &e, |e| match kind {
        LedgerKind::Credit => format!("credited {usd} USD to {account} (ledger entry {})", e.seq),
        _ => format!("adjusted {account} by {usd} USD (ledger entry {})", e.seq),
    })
}

fn parse_time(flag: &str, value: Option<&str>) -> anyhow::Result<Option<i64>> {
    value
        .map(|t| time::parse_rfc3339(t).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
        .transpose()
}

impl KeyFields {
    fn limits(&self) -> KeyLimits {
        KeyLimits {
            rpm: self.rpm,
            tpm: self.tpm,
            max_concurrent: self.max_concurrent,
            spend_limit_usd: self.spend_limit_usd.clone(),
            spend_limit_period: self.spend_limit_period.clone(),
        }
    }

    fn has_limits(&self) -> bool {
        self.rpm.is_some()
            || self.tpm.is_some()
            || self.max_concurrent.is_some()
            || self.spend_limit_usd.is_some()
            || self.spend_limit_period.is_some()
    }
}

fn read_password(arg: &str) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg.to_owned());
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

pub async fn run_admin(
    command: Command,
    store: &Store,
    hasher: &KeyHasher,
    config: &instagen::config::Config,
) -> anyhow::Result<()> {
    let data_dir = config.server.data_dir.as_path();
    let cli = Actor::cli();
    match command {
        Command::Serve => {}
        Command::Migrate => println!("store is up to date"),
        Command::Accounts(cmd) => match cmd {
            AccountsCmd::Create { name, json } => {
                let a = admin::create_account(store, &cli, &name).await?;
                show(json, &a, |a| {
                    format!("created account {} ({})", a.name, a.id)
                })?;
            }
            AccountsCmd::List { json } => {
                let accounts = store.list_accounts().await?;
                show(json, &accounts, |list| {
                    list.iter()
                        .map(|a| {
                            format!(
                                "{}\t{}\t{}\t{}",
                                a.id,
                                a.name,
                                a.status,
                                time::format_rfc3339(a.created_ms)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
            AccountsCmd::Suspend { name } => {
                let a = store.account_by_name(&name).await?;
                admin::set_account_status(store, &cli, &a.id, true).await?;
                println!("suspended account {name}");
            }
            AccountsCmd::Unsuspend { name } => {
                let a = store.account_by_name(&name).await?;
                admin::set_account_status(store, &cli, &a.id, false).await?;
                println!("reactivated account {name}");
            }
        },
        Command::Users(cmd) => match cmd {
            UsersCmd::Create {
                email,
                password,
                operator,
                account,
                role,
                json,
            } => {
                let password = read_password(&password)?;
                let user = admin::create_user(store, &cli, &email, &password, operator).await?;
                if let Some(name) = account {
                    let role = Role::parse(&role).ok_or_else(|| {
                        anyhow::anyhow!("--role: must be owner, member or viewer")
                    })?;
                    let a = store.account_by_name(&name).await?;
                    admin::add_member(store, &cli, &a.id, &user.email, role, None).await?;
                }
                show(json, &user, |u| {
                    format!(
                        "created user {} ({}){}",
                        u.email,
                        u.id,
                        if u.is_operator { " [operator]" } else { "" }
                    )
                })?;
            }
            UsersCmd::List { json } => {
                let users = store.list_users().await?;
                show(json, &users, |list| {
                    list.iter()
                        .map(|u| {
                            format!(
                                "{}\t{}\t{}",
                                u.id,
                                u.email,
                                if u.is_operator { "operator" } else { "user" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
        },
        Command::Keys(cmd) => match cmd {
            KeysCmd::Create {
                account,
                name,
                description,
                fields,
                json,
            } => {
                let a = store.account_by_name(&account).await?;
                let spec = KeySpec {
                    name,
                    description,
                    allowed_models: fields.models.clone(),
                    allowed_regions: fields.regions.clone(),
                    expires_ms: parse_time("expires", fields.expires.as_deref())?,
                    limits: fields.limits(),
                };
                let k = admin::create_key_capped(
                    store,
                    hasher,
                    &cli,
                    &a.id,
                    spec,
                    config.accounts.max_keys_per_account,
                )
                .await?;
                show(json, &k, |k| {
                    format!(
                        "created key {} ({}) for account {account}\nsecret (shown once, store it now): {}",
                        k.id,
                        k.name,
                        k.secret.expose()
                    )
                })?;
            }
            KeysCmd::List { account, json } => {
                let a = store.account_by_name(&account).await?;
                let keys = store.list_keys(&a.id).await?;
                show(json, &keys, |keys| {
                    let mut out =
                        vec!["ID\tNAME\tSTATUS\tREQUESTS\tCOST_USD\tDESCRIPTION".to_owned()];
                    for k in keys {
                        out.push(format!(
                            "{}\t{}\t{}\t{}\t{}\t{}",
                            k.id,
                            k.name,
                            k.status.as_str(),
                            k.usage.all_time.requests,
                            k.usage.all_time.cost_usd,
                            k.description
                        ));
                    }
                    out.join("\n")
                })?;
            }
            KeysCmd::Update {
                id,
                name,
                description,
                fields,
                json,
            } => {
                let account = store.key_account(&id).await?;
                let update = KeyUpdate {
                    name,
                    description,
                    allowed_models: fields.models.clone().map(Some),
                    allowed_regions: fields.regions.clone().map(Some),
                    expires_ms: parse_time("expires", fields.expires.as_deref())?.map(Some),
                    limits: fields.has_limits().then(|| fields.limits()),
                    enabled: None,
                };
                let k = admin::update_key(store, &cli, &account, &id, update).await?;
                show(json, &k, |k| format!("updated key {} ({})", k.id, k.name))?;
            }
            KeysCmd::Rotate {
                id,
                grace_seconds,
                json,
            } => {
                let account = store.key_account(&id).await?;
                let k =
                    admin::rotate_key(store, hasher, &cli, &account, &id, grace_seconds).await?;
                show(json, &k, |k| {
                    let grace = k
                        .previous_secret_valid_until_ms
                        .map_or("the old secret stopped working now".to_owned(), |t| {
                            format!("the old secret works until {}", time::format_rfc3339(t))
                        });
                    format!(
                        "rotated key {}; {grace}\nnew secret (shown once): {}",
                        k.id,
                        k.secret.expose()
                    )
                })?;
            }
            KeysCmd::Disable { id } => {
                let account = store.key_account(&id).await?;
                admin::set_key_status(store, &cli, &account, &id, KeyStatus::Disabled).await?;
                println!("disabled key {id}");
            }
            KeysCmd::Enable { id } => {
                let account = store.key_account(&id).await?;
                admin::set_key_status(store, &cli, &account, &id, KeyStatus::Active).await?;
                println!("enabled key {id}");
            }
            KeysCmd::Delete { id } => {
                let account = store.key_account(&id).await?;
                admin::set_key_status(store, &cli, &account, &id, KeyStatus::Deleted).await?;
                println!("deleted key {id}");
            }
        },
        Command::Tokens(cmd) => match cmd {
            TokensCmd::Create {
                account,
                role,
                operator,
                name,
                json,
            } => {
                let (account_id, role) = match (operator, account) {
                    (true, None) => (None, "operator".to_owned()),
                    (false, Some(a)) => (Some(store.account_by_name(&a).await?.id), role),
                    _ => anyhow::bail!("give either --account NAME or --operator"),
                };
                let t = admin::create_token(
                    store,
                    hasher,
                    &cli,
                    account_id.as_deref(),
                    &role,
                    &name,
                    None,
                )
                .await?;
                show(json, &t, |t| {
                    format!(
                        "created token {} ({})\nsecret (shown once): {}",
                        t.id,
                        t.role,
                        t.secret.expose()
                    )
                })?;
            }
            TokensCmd::List { account, json } => {
                let a = store.account_by_name(&account).await?;
                let tokens = store.list_tokens(&a.id).await?;
                show(json, &tokens, |list| {
                    list.iter()
                        .map(|t| format!("{}\t{}\t{}", t.id, t.role, t.name))
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
            TokensCmd::Revoke { account, id } => {
                let a = store.account_by_name(&account).await?;
                admin::revoke_token(store, &cli, &a.id, &id).await?;
                println!("revoked token {id}");
            }
        },
        Command::Billing(cmd) => match cmd {
            BillingCmd::Credit {
                account,
                usd,
                memo,
                json,
            } => post(store, &cli, LedgerKind::Credit, &account, &usd, &memo, json).await?,
            BillingCmd::Adjust {
                account,
                usd,
                memo,
                json,
            } => {
                post(
                    store,
                    &cli,
                    LedgerKind::Adjustment,
                    &account,
                    &usd,
                    &memo,
                    json,
                )
                .await?
            }
            BillingCmd::Show { account, json } => {
                let a = store.account_by_name(&account).await?;
                let v = admin::billing_view(store, &a.id, 50).await?;
                show(json, &v, |v| {
                    let mut out = vec![format!(
                        "balance {} USD (unposted usage {} USD)",
                        v.balance_usd, v.unposted_usage_usd
                    )];
                    for e in &v.ledger {
                        out.push(format!(
                            "  #{} {} {} {} {}",
                            e.seq,
                            time::format_rfc3339(e.ts_ms),
                            e.kind,
                            instagen::billing::Money::from_nanos(e.amount_nanos),
                            e.memo
                        ));
                    }
                    out.join("\n")
                })?;
            }
            BillingCmd::Post => {
                let n = store.post_usage().await?;
                println!("posted {n} usage entries");
            }
            BillingCmd::Verify => {
                let entries = store.ledger(None, 0).await?;
                match instagen::billing::ledger::verify(&entries) {
                    Ok(n) => println!("ledger intact: {n} entries"),
                    Err(e) => {
                        eprintln!("ledger BROKEN: {e}");
                        // A read-only check: nothing is left to flush.
                        #[allow(clippy::disallowed_methods)]
                        std::process::exit(1);
                    }
                }
                // Balances are read from running totals, which the chain does not cover.
                let totals = store.ledger_totals().await?;
                match instagen::billing::ledger::check_totals(&entries, &totals) {
                    Ok(()) => println!("running totals agree: {} billing ids", totals.len()),
                    Err(e) => {
                        eprintln!("running totals BROKEN: {e}");
                        // A read-only check: nothing is left to flush.
                        #[allow(clippy::disallowed_methods)]
                        std::process::exit(1);
                    }
                }
            }
        },
        Command::Usage(UsageCmd::Export {
            account,
            format,
            granularity,
            from,
            to,
        }) => {
            use futures_util::StreamExt;
            use instagen::usage::export::{self, Format, Level};
            use std::io::Write;
            let format = match format.as_str() {
                "csv" => Format::Csv,
                "json" => Format::Json,
                _ => anyhow::bail!("--format: must be csv or json"),
            };
            let level = match granularity.as_str() {
                "request" => Level::Request,
                "day" => Level::Day,
                _ => anyhow::bail!("--granularity: must be request or day"),
            };
            let from = parse_time("from", from.as_deref())?.unwrap_or(0);
            let to = parse_time("to", to.as_deref())?.unwrap_or(i64::MAX);
            let a = store.account_by_name(&account).await?;
            let mut stream =
                std::pin::pin!(export::export(store.clone(), a.id, from, to, format, level));
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?)?;
            }
            if format == Format::Json {
                out.write_all(b"\n")?;
            }
        }
        Command::Usage(UsageCmd::Quarantine(cmd)) => {
            let quarantine = instagen::usage::Quarantine::new(data_dir);
            match cmd {
                QuarantineCmd::List { json } => {
                    let entries = quarantine.list()?;
                    show(json, &entries, |list| {
                        if list.is_empty() {
                            return "no quarantined usage records".to_owned();
                        }
                        list.iter()
                            .map(|e| {
                                format!(
                                    "{}\t{}\t{}\t{}",
                                    time::format_rfc3339(e.quarantined_ms),
                                    e.record.request_id,
                                    e.record.account_id,
                                    e.reason
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })?;
                }
                QuarantineCmd::Retry { json } => {
                    let outcome = quarantine.retry(store).await?;
                    show(json, &outcome, |o| {
                        format!(
                            "retried {}: {} inserted, {} still quarantined",
                            o.retried, o.inserted, o.still_quarantined
                        )
                    })?;
                }
            }
        }
        Command::Usage(UsageCmd::Summary(args)) => {
            let from = parse_time("from", args.from.as_deref())?.unwrap_or(0);
            let to = parse_time("to", args.to.as_deref())?.unwrap_or(i64::MAX);
            let a = store.account_by_name(&args.account).await?;
            let s = admin::usage_summary(store, &a.id, from, to).await?;
            show(args.json, &s, |s| {
                let kinds = |input, cached, w5, w1, output, reasoning, cost: &str| {
                    format!(
                        "input_tokens {input} (cache reads {cached}, cache writes 5m {w5} 1h {w1})  \
                         output_tokens {output} (reasoning {reasoning})  cost_usd {cost}"
                    )
                };
                let mut out = vec![format!(
                    "requests {}  {}",
                    s.requests,
                    kinds(
                        s.input_tokens,
                        s.cached_input_tokens,
                        s.cache_write_5m_tokens,
                        s.cache_write_1h_tokens,
                        s.output_tokens,
                        s.reasoning_tokens,
                        &s.cost_usd
                    )
                )];
                for m in &s.models {
                    out.push(format!(
                        "  {}: requests {}  {}",
                        m.model,
                        m.requests,
                        kinds(
                            m.input_tokens,
                            m.cached_input_tokens,
                            m.cache_write_5m_tokens,
                            m.cache_write_1h_tokens,
                            m.output_tokens,
                            m.reasoning_tokens,
                            &m.cost_usd
                        )
                    ));
                }
                out.join("\n")
            })?;
        }
    }
    Ok(())
}
