//! InstaGen: a privacy-first LLM gateway with exact metering.
//!
//! # Layout
//! - [`config`]: the one typed `Config` (defaults < `instagen.toml` < `INSTAGEN__…` env).
//! - [`app`]: application state, router and the middleware order.
//! - [`serve`]: the accept loop — HTTP/1.1 and HTTP/2, header and body timeouts.
//! - [`tls`]: HTTPS with rustls; the certificate reloads on SIGHUP.
//! - [`api`]: HTTP only — `/v1` (OpenAI's routes, the Responses API, Anthropic's
//!   Messages API, a key's own requests and standing), the management API and its route
//!   table, health probes.
//! - [`error`]: `ApiError`, the one mapping from error to status and shape.
//! - [`keys`]: access-key format, keyed hashing, in-memory authentication, security events.
//! - [`limits`]: per-IP, per-key and per-account limits, in memory or Redis.
//! - [`gateway`]: the client wire formats, model → route, body rewriting and
//!   minimisation, provider adapters, failover, the stream relay.
//! - [`engine`]: the built-in CPU engine (GGUF models, its tokenizer).
//! - [`usage`]: usage records, the per-request meter, journal, batch writer, token
//!   counting, quarantine, exports.
//! - [`billing`]: money (integer nano-USD), prices, budgets (shared through Redis across
//!   instances), the hash-chained ledger.
//! - [`store`]: persistence behind one enum — SQLite or PostgreSQL.
//! - [`admin`]: account, key, usage, billing and alert operations shared by the API and the CLI.
//! - [`alerts`]: spend thresholds checked against the store, signed webhooks and SMTP email
//!   with retries and a delivery log, privacy-policy change notices.
//! - [`console`]: the web console at `/console`, its assets compiled in.
//! - [`secrets`]: provider credentials sealed at rest (AES-256-GCM under a master key).
//! - [`telemetry`]: what may be logged, and the metrics.
//! - [`bodybuf`]: large bodies in mappings that go back to the system when dropped.
//! - [`files`]: the data dir and the files in it are private to the server's user.
//! - [`time`]: clocks and RFC 3339 dates.
//!
//! [`run`] serves a config on a bound listener until `shutdown` resolves, then drains:
//! in-flight requests finish (within a grace period), every usage record is written.
//! Every background loop runs through `periodic`: tracked, and stopped on shutdown.

#![recursion_limit = "256"]

pub mod admin;
pub mod alerts;
pub mod api;
pub mod app;
pub mod billing;
pub mod bodybuf;
pub mod config;
pub mod console;
pub mod engine;
pub mod error;
pub mod files;
pub mod gateway;
pub mod idmap;
pub mod json;
pub mod keys;
pub mod limits;
pub mod secrets;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod usage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::AppState;
use crate::config::Config;
use crate::keys::{KeyCache, KeyHasher};
use crate::store::Store;
use crate::usage::{Journal, UsageSink};

/// How often the key table is refreshed from the store.
const KEY_REFRESH: Duration = Duration::from_millis(250);

/// Opens the configured store and the key hasher (used by `serve` and the CLI alike).
/// Runs `work` every `every` (the first time after `first`) as a task of `tasks`, until
/// `stop`: every background loop of the server has this one shape, is tracked, and ends on
/// shutdown. A slow run delays the next one instead of bunching them up.
fn periodic<F, Fut>(
    tasks: &TaskTracker,
    stop: &CancellationToken,
    first: Duration,
    every: Duration,
    mut work: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stop = stop.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => work().await,
            }
        }
    });
}

pub async fn open_store(config: &Config) -> anyhow::Result<(Store, KeyHasher)> {
    let secret =
        keys::load_or_create_secret(config.server.secret.as_ref(), &config.server.data_dir)
            .with_context(|| {
                format!(
                    "cannot read or create the key secret in {}",
                    config.server.data_dir.display()
                )
            })?;
    let store = Store::open(&config.store.url)
        .await
        .context("cannot open the store")?;
    Ok((store, KeyHasher::new(&secret)))
}

/// Serves `config` on `listener` until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    files::private_dir(&config.server.data_dir).with_context(|| {
        format!(
            "cannot create data dir {}",
            config.server.data_dir.display()
        )
    })?;
    let (store, hasher) = open_store(&config).await?;
    let master_key = match (&config.server.master_key, &config.server.master_key_file) {
        (Some(key), _) => Some(secrets::MasterKey::from_hex(key.expose())?),
        (None, Some(path)) => Some(secrets::MasterKey::from_file(path)?),
        (None, None) => None,
    };

    let metrics = Arc::new(telemetry::metrics::Metrics::default());
    // Replay what a crash left in the journal before taking traffic. A record the store
    // refuses goes to the quarantine; only a store that cannot be reached stops the start.
    let quarantine = Arc::new(usage::Quarantine::new(&config.server.data_dir));
    let journal = if config.usage.journal {
        let (journal, recovered) = Journal::open(&config.server.data_dir.join("journal"))
            .context("cannot open the usage journal")?;
        if !recovered.records.is_empty() {
            let written = usage::insert_isolating(&store, &recovered.records)
                .await
                .context("cannot replay the usage journal")?;
            let set_aside = written.set_aside(&recovered.records);
            quarantine
                .keep(&set_aside, Some(&metrics))
                .context("cannot write the usage quarantine")?;
            tracing::info!(
                found = recovered.records.len(),
                inserted = written.inserted,
                quarantined = set_aside.len(),
                "replayed usage journal"
            );
        }
        Journal::remove_recovered(&recovered.files);
        Some(Arc::new(journal))
    } else {
        None
    };

    let alerts = Arc::new(
        alerts::Alerts::new(&config, store.clone(), hasher.clone())
            .context("cannot set up [email]")?,
    );
    let keys = Arc::new(KeyCache::new(hasher));
    keys.refresh(&store)
        .await
        .context("cannot load access keys")?;

    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let store_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let catalog = Arc::new(
        gateway::catalog::Catalog::load(
            config.providers.clone(),
            config.models.clone(),
            master_key,
            &store,
            tasks.clone(),
            stop.clone(),
        )
        .await
        .context("cannot build the gateway")?,
    );
    let budgets = billing::budget::Budgets::new(config.billing.prepaid);
    billing::budget::sync_from_store(&store, &budgets)
        .await
        .context("cannot load balances")?;
    let (tx, rx) = mpsc::channel(config.usage.queue_capacity);
    let backlog = usage::Backlog::new(config.usage.batch_size);
    let writer = usage::spawn_writer(
        store.clone(),
        rx,
        journal.clone(),
        Duration::from_millis(config.usage.flush_interval_ms),
        usage::Observers {
            budgets: Some(budgets.clone()),
            metrics: Some(metrics.clone()),
            quarantine: quarantine.clone(),
        },
        backlog.clone(),
        stop.clone(),
    );
    {
        let (keys, store, catalog, store_up) = (
            keys.clone(),
            store.clone(),
            catalog.clone(),
            store_up.clone(),
        );
        let failures = Arc::new(std::sync::atomic::AtomicU32::new(0));
        periodic(&tasks, &stop, Duration::ZERO, KEY_REFRESH, move || {
            let (keys, store, catalog, store_up, failures) = (
                keys.clone(),
                store.clone(),
                catalog.clone(),
                store_up.clone(),
                failures.clone(),
            );
            async move {
                use std::sync::atomic::Ordering::Relaxed;
                // The refresh doubles as the store's health check: two misses in a row
                // (~0.5 s) and /v1 fails fast with 503 until it answers again.
                match tokio::time::timeout(Duration::from_secs(2), keys.refresh(&store)).await {
                    Ok(Ok(_)) => {
                        failures.store(0, Relaxed);
                        if !store_up.swap(true, Relaxed) {
                            tracing::info!("store reachable again");
                        }
                    }
                    _ => {
                        if failures.fetch_add(1, Relaxed) + 1 == 2 {
                            store_up.store(false, Relaxed);
                            tracing::error!(
                                "store unreachable; refusing /v1 requests until it returns"
                            );
                        }
                        return;
                    }
                }
                // Provider changes made through another instance.
                if let Err(e) = catalog.refresh(&store, false).await {
                    tracing::warn!(error = %e, "provider reload failed; serving the last good providers");
                }
            }
        });
    }
    {
        let (budgets, store) = (budgets.clone(), store.clone());
        periodic(
            &tasks,
            &stop,
            Duration::ZERO,
            Duration::from_secs(1),
            move || {
                let (budgets, store) = (budgets.clone(), store.clone());
                async move {
                    if let Err(e) = billing::budget::sync_from_store(&store, &budgets).await {
                        tracing::warn!(error = %e, "budget sync failed; keeping the last figures");
                    }
                }
            },
        );
    }
    {
        let store = store.clone();
        let every = Duration::from_secs(config.billing.post_interval_secs.max(1));
        periodic(&tasks, &stop, every, every, move || {
            let store = store.clone();
            async move {
                match store.post_usage().await {
                    Ok(n) if n > 0 => tracing::debug!(entries = n, "posted usage to the ledger"),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "posting usage to the ledger failed; will retry")
                    }
                }
            }
        });
    }
    if config.usage.retention_days > 0 {
        let store = store.clone();
        let keep_ms = i64::try_from(config.usage.retention_days.saturating_mul(86_400_000))
            .unwrap_or(i64::MAX);
        periodic(
            &tasks,
            &stop,
            Duration::ZERO,
            Duration::from_secs(3600),
            move || {
                let store = store.clone();
                async move {
                    match store.purge(time::now_ms().saturating_sub(keep_ms)).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(records = n, "purged per-request records past retention")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "retention purge failed; will retry"),
                    }
                }
            },
        );
    }
    {
        // A new privacy-policy version is told to every user once, at the first start with it.
        let alerts = alerts.clone();
        match alerts.notice_privacy().await {
            Ok(n) if n > 0 => tracing::info!(users = n, "queued privacy-policy change notices"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot queue privacy-policy notices; will retry at next start")
            }
        }
        let every = Duration::from_millis(alerts.config().check_interval_ms.max(100));
        periodic(&tasks, &stop, every, every, move || {
            let alerts = alerts.clone();
            async move {
                if let Err(e) = alerts.check().await {
                    tracing::warn!(error = %e, "checking alerts failed; will retry");
                }
            }
        });
    }
    {
        let alerts = alerts.clone();
        let every = Duration::from_millis(alerts.config().deliver_interval_ms.max(50));
        periodic(&tasks, &stop, every, every, move || {
            let alerts = alerts.clone();
            async move {
                if let Err(e) = alerts.deliver().await {
                    tracing::warn!(error = %e, "delivering alerts failed; will retry");
                }
            }
        });
    }
    if config.usage.warm_tokenizer {
        tasks.spawn_blocking(usage::tokens::warm);
    }

    let client_ip_header = match &config.limits.client_ip_header {
        Some(name) => Some(
            axum::http::HeaderName::try_from(name.as_str())
                .context("limits.client_ip_header is not a valid header name")?,
        ),
        None => None,
    };
    let limiter = limits::Limiter::new(config.limits.clone()).await;
    if let Some(redis) = limiter.shared_redis() {
        // Budgets hold across every instance sharing this Redis.
        let run = budgets
            .share(redis, stop.clone())
            .context("cannot name this instance for the shared budgets")?;
        tasks.spawn(run);
    }
    {
        let limiter = limiter.clone();
        periodic(
            &tasks,
            &stop,
            Duration::ZERO,
            Duration::from_secs(60),
            move || {
                limiter.sweep();
                std::future::ready(())
            },
        );
    }
    let (security, security_rx) = keys::SecurityEvents::new(4096);
    let security_flusher = keys::spawn_flusher(store.clone(), security_rx, stop.clone());
    let state = Arc::new(AppState {
        keys,
        security,
        budgets,
        reserve_output_tokens: config.billing.default_reserve_output_tokens,
        accounts: config.accounts.clone(),
        privacy: config.privacy.clone(),
        catalog: catalog.clone(),
        usage: UsageSink::new(tx, journal, backlog),
        store: store.clone(),
        max_body_bytes: config.server.max_body_bytes,
        max_header_bytes: config.server.max_header_bytes,
        limits: limiter,
        client_ip_header,
        store_up,
        secure_cookies: config.server.secure_cookies || config.server.tls.is_some(),
        metrics,
        metrics_public: config.server.metrics_listen.is_some(),
        usage_queue_capacity: config.usage.queue_capacity,
        alerts,
    });
    if let Some(addr) = config.server.metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind server.metrics_listen {addr}"))?;
        let (router, stop) = (app::metrics_router(state.clone()), stop.clone());
        tasks.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
    }
    let router = app::router(state);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, models = config.models.len(), "instagen listening");

    let tls_acceptor = match &config.server.tls {
        Some(t) => {
            let (acceptor, cert) = tls::acceptor(&t.cert, &t.key).map_err(anyhow::Error::msg)?;
            spawn_cert_reloader(&tasks, &stop, cert);
            Some(acceptor)
        }
        None => None,
    };
    let draining = CancellationToken::new();
    let serve = {
        let draining = draining.clone();
        serve::serve(
            listener,
            router,
            serve::ConnLimits {
                header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
                body_pace: serve::BodyPace {
                    timeout: Duration::from_millis(config.server.body_timeout_ms),
                    min_bytes_per_sec: config.server.body_min_bytes_per_sec,
                },
                // hyper refuses heads past twice the cap with a bare 431; between the
                // cap and that, the handlers answer 431 in the API's shape.
                max_header_bytes: config.server.max_header_bytes.saturating_mul(2),
                max_connections: config.server.max_connections,
                tls: tls_acceptor,
            },
            async move {
                shutdown.await;
                draining.cancel();
            },
        )
    };
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    tokio::select! {
        () = serve => {},
        () = async { draining.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = config.server.shutdown_grace_ms, "in-flight requests outlived the grace period; closing");
        }
    }

    tracing::info!("draining usage records");
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    let _ = security_flusher.await;
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "usage writer ended abnormally; the journal keeps its records");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Reloads the TLS certificate on SIGHUP (new handshakes get it; open connections stay).
fn spawn_cert_reloader(
    tasks: &TaskTracker,
    stop: &CancellationToken,
    cert: Arc<tls::ReloadableCert>,
) {
    #[cfg(unix)]
    {
        let stop = stop.clone();
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; certificate reload is off");
            return;
        };
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    got = hup.recv() => {
                        if got.is_none() { break; }
                        match cert.reload() {
                            Ok(()) => tracing::info!("TLS certificate reloaded"),
                            Err(e) => tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one"),
                        }
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = (tasks, stop, cert);
    }
}
