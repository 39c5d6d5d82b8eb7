//! The `instagen` command line: `serve`, `accounts`, `keys`, `usage`, `migrate`.
//!
//! A thin shell over the library: parse arguments, load config (exit 64 when it is
//! bad), call one library function, print the result.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use instagen::config::{Config, EmbeddedDefault};
use instagen::telemetry;

mod commands;

use commands::{Command, run_admin};

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
    // One worker is the main thread itself: a multi-thread runtime of one worker would
    // still run `block_on` apart on this thread and pay for stealing and waking between
    // the two (docs/performance.md, "One core, one thread").
    let mut builder = match config.server.workers() {
        1 => tokio::runtime::Builder::new_current_thread(),
        workers => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        }
    };
    let runtime = match builder
        .event_interval(config.server.event_interval)
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

async fn dispatch(command: Command, mut config: Config) -> anyhow::Result<ExitCode> {
    if let Command::Serve = command {
        match config.embedded_default() {
            EmbeddedDefault::NotNeeded => {}
            EmbeddedDefault::Serving(path) => tracing::info!(
                model = instagen::config::DEFAULT_MODEL_ID,
                file = %path.display(),
                "no models configured: serving the built-in model on the CPU engine"
            ),
            EmbeddedDefault::Missing(path) => tracing::warn!(
                file = %path.display(),
                "no models configured and the built-in model is not there: starting without \
                 models. Fetch it with `scripts/fetch-model.sh` (run where `instagen serve` \
                 runs), or configure providers and models in instagen.toml"
            ),
        }
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        instagen::run(config, listener, shutdown_signal()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let (store, hasher) = instagen::open_store(&config).await?;
    let result = run_admin(command, &store, &hasher, &config).await;
    store.close().await;
    result.map(|()| ExitCode::SUCCESS)
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
