//! Logging setup: the single place that decides what may be logged and how.
//!
//! Rule: log lines carry typed metadata only (ids, model, counts, durations, status
//! codes, error kinds). Request and response bodies, header values and upstream error
//! bodies are never formatted into a log line, at any level including debug and trace.
//! Dependencies are capped at `info` even when our own level is `debug`, because
//! HTTP client and server crates may log header or body fragments at lower levels.

pub mod metrics;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Third-party crates whose debug/trace output could carry request bytes.
const CAPPED: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "sqlx",
    "tower",
    "axum",
];

/// Panics are logged with their location only: the default hook prints the message,
/// which may quote whatever input triggered it (a query string, a body).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            location,
            "panic (message withheld: it may quote request input)"
        );
    }));
}

/// Builds the filter: our level for InstaGen, at most `info` for the capped crates.
pub fn filter(level: &str) -> EnvFilter {
    let mut directives = level.to_owned();
    for c in CAPPED {
        directives.push_str(&format!(",{c}=info"));
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber writing to stderr. Safe to call more than once.
pub fn init(config: &LogConfig) {
    install_panic_hook();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&config.level))
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
