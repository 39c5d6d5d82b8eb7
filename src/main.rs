//! The `instagen` command line: `serve`, `accounts`, `keys`, `usage`, `migrate`.
//!
//! A thin shell over the library: parse arguments, load config (exit 64 when it is
//! bad), call one library function, print the result.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use instagen::config::Config;
use instagen::store::KeyStatus;
use instagen::{admin, telemetry, time};

/// sysexits.h EX_CONFIG-ish: bad configuration or usage.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "instagen",
    version,
    about = "A privacy-first, OpenAI-compatible LLM gateway"
)]
struct Cli {
    /// Config file (default: ./instagen.toml when present, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Create the store and apply migrations, then exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// Manage access keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Read usage.
    #[command(subcommand)]
    Usage(UsageCmd),
}

#[derive(Subcommand)]
enum AccountsCmd {
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
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create an access key; its secret is printed once.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
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
    /// Disable a key (it stops authenticating within a second).
    Disable { id: String },
    /// Enable a disabled key.
    Enable { id: String },
    /// Delete a key for good (its usage records stay).
    Delete { id: String },
}

#[derive(Subcommand)]
enum UsageCmd {
    /// Requests, tokens and cost for an account, with a per-model breakdown.
    Summary(SummaryArgs),
}

#[derive(Args)]
struct SummaryArgs {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("instagen: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("instagen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("instagen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.server.listen))?;
            instagen::run(config, listener, shutdown_signal()).await?;
        }
        Command::Migrate => {
            let (store, _) = instagen::open_store(&config).await?;
            store.close().await;
            println!("store is up to date");
        }
        Command::Accounts(cmd) => {
            let (store, _) = instagen::open_store(&config).await?;
            match cmd {
                AccountsCmd::Create { name, json } => {
                    let a = admin::create_account(&store, &name).await?;
                    if json {
                        println!("{}", serde_json::to_string(&a)?);
                    } else {
                        println!("created account {} ({})", a.name, a.id);
                    }
                }
                AccountsCmd::List { json } => {
                    let accounts = store.list_accounts().await?;
                    if json {
                        println!("{}", serde_json::to_string(&accounts)?);
                    } else {
                        for a in accounts {
                            println!(
                                "{}\t{}\t{}",
                                a.id,
                                a.name,
                                time::format_rfc3339(a.created_ms)
                            );
                        }
                    }
                }
            }
            store.close().await;
        }
        Command::Keys(cmd) => {
            let (store, hasher) = instagen::open_store(&config).await?;
            match cmd {
                KeysCmd::Create {
                    account,
                    name,
                    description,
                    json,
                } => {
                    let k =
                        admin::create_key(&store, &hasher, &account, &name, &description).await?;
                    if json {
                        println!("{}", serde_json::to_string(&k)?);
                    } else {
                        println!("created key {} ({}) for account {account}", k.id, k.name);
                        println!("secret (shown once, store it now): {}", k.secret.expose());
                    }
                }
                KeysCmd::List { account, json } => {
                    let keys = admin::list_keys(&store, &account).await?;
                    if json {
                        println!("{}", serde_json::to_string(&keys)?);
                    } else {
                        println!("ID\tNAME\tSTATUS\tREQUESTS\tCOST_USD\tDESCRIPTION");
                        for k in keys {
                            println!(
                                "{}\t{}\t{}\t{}\t{}\t{}",
                                k.id,
                                k.name,
                                k.status,
                                k.requests,
                                instagen::billing::Money::from_nanos(k.cost_nanos),
                                k.description
                            );
                        }
                    }
                }
                KeysCmd::Disable { id } => {
                    admin::set_key_status(&store, &id, KeyStatus::Disabled).await?;
                    println!("disabled key {id}");
                }
                KeysCmd::Enable { id } => {
                    admin::set_key_status(&store, &id, KeyStatus::Active).await?;
                    println!("enabled key {id}");
                }
                KeysCmd::Delete { id } => {
                    admin::set_key_status(&store, &id, KeyStatus::Deleted).await?;
                    println!("deleted key {id}");
                }
            }
            store.close().await;
        }
        Command::Usage(UsageCmd::Summary(args)) => {
            let parse = |v: &Option<String>, default: i64| -> anyhow::Result<i64> {
                v.as_deref().map_or(Ok(default), |t| {
                    time::parse_rfc3339(t).map_err(anyhow::Error::msg)
                })
            };
            let from = match parse(&args.from, 0) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("instagen: --from: {e}");
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            let to = match parse(&args.to, i64::MAX) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("instagen: --to: {e}");
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            let (store, _) = instagen::open_store(&config).await?;
            let s = admin::usage_summary(&store, &args.account, from, to).await?;
            store.close().await;
            if args.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "requests {}  input_tokens {}  output_tokens {}  cost_usd {}",
                    s.requests, s.input_tokens, s.output_tokens, s.cost_usd
                );
                for m in s.models {
                    println!(
                        "  {}: requests {}  input_tokens {}  output_tokens {}  cost_usd {}",
                        m.model, m.requests, m.input_tokens, m.output_tokens, m.cost_usd
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
