//! What a growing tenant base costs: the same figures with 10 keys and with 100,000 keys in
//! 10,000 accounts (a third with rate and spend limits), on the store the suite runs on.
//!
//! A benchmark, not a gate: `cargo test --release --test api -- --ignored --nocapture
//! tenant_scale` (add `INSTAGEN_TEST_POSTGRES=postgres://…` for PostgreSQL). It prints
//! start-up time, idle CPU and RSS of a real server process, the cost of one cycle of each
//! background job that reads the tenant base, how long a key change takes to reach the
//! server's cache, and CPU per request at 64 concurrent clients.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use instagen::admin::Actor;
use instagen::config::Config;
use instagen::store::{KeyStatus, Store};
use mock_upstream::MockUpstream;

use crate::helpers::*;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// User plus system CPU time of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / TICKS
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Adds `accounts` accounts and `keys` keys (spread evenly over them; every third with rpm,
/// tpm and a monthly spend limit) in bulk, as a big tenant base would have them.
async fn seed(url: &str, accounts: u64, keys: u64) {
    let postgres = url.starts_with("postgres");
    let seq = |n: u64| {
        format!(
            "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < {n} - 1)"
        )
    };
    let accounts_sql = format!(
        "{} INSERT INTO accounts (id, name, created_ms, status, billing_id)
         SELECT 'acct_scale_' || n, 'tenant ' || n, 0, 'active', 'bill_scale_' || n FROM seq",
        seq(accounts)
    );
    let (hash, version) = if postgres {
        (
            "decode(md5(n::text) || md5((n + 1)::text), 'hex')",
            "nextval('api_keys_version_seq')".to_owned(),
        )
    } else {
        (
            "randomblob(32)",
            "(SELECT MAX(version) FROM api_keys) + 1 + n".to_owned(),
        )
    };
    let limited = "n % 3 = 0";
    let keys_sql = format!(
        "{} INSERT INTO api_keys (id, account_id, name, description, secret_hash, status,
             created_ms, updated_ms, rpm, tpm, spend_limit_nanos, spend_limit_period, version)
         SELECT 'key_scale_' || n, 'acct_scale_' || (n % {accounts}), 'key ' || n, '', {hash},
             'active', 0, 0,
             CASE WHEN {limited} THEN 600 END, CASE WHEN {limited} THEN 100000 END,
             CASE WHEN {limited} THEN 1000000000 END, CASE WHEN {limited} THEN 'month' END,
             {version}
         FROM seq",
        seq(keys)
    );
    for sql in [accounts_sql.as_str(), keys_sql.as_str(), "ANALYZE"] {
        exec_sql(url, sql).await;
    }
}

/// Mean time of `n` runs of `f`.
async fn mean<F: AsyncFnMut()>(n: u32, mut f: F) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        f().await;
    }
    t.elapsed() / n
}

struct Figures {
    startup: Duration,
    idle_cpu_pct: f64,
    idle_rss_kib: u64,
    key_load: Duration,
    key_refresh: Duration,
    budget_full: Duration,
    budget_partial: Duration,
    posting: Duration,
    key_change_seen: Duration,
    cpu_us_per_request: f64,
    rps: f64,
    rss_after_load_kib: u64,
}

async fn measure(accounts: u64, keys: u64) -> Figures {
    let mock = MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_process_config(dir.path(), &mock.base_url(), "warn");
    let (account, key, store) = provision(&config_path).await;
    let config = Config::load(Some(&config_path)).unwrap();
    let (_, hasher) = instagen::open_store(&config).await.unwrap();
    let second = instagen::admin::create_key(
        &store,
        &hasher,
        &Actor::cli(),
        &account,
        key_spec("changes"),
    )
    .await
    .unwrap();
    if keys > 0 {
        seed(&store_url_for(dir.path()), accounts, keys).await;
    }

    // Start-up: process start to a healthy /healthz, every key loaded.
    let t = Instant::now();
    let server = ServerProcess::start(&config_path, &dir.path().join("server.log")).await;
    let startup = t.elapsed();
    let pid = server.child.id();

    // Idle: settle, then 10 s of doing nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c0 = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu_pct = (cpu_seconds(pid) - c0) / 10.0 * 100.0;
    let idle_rss_kib = rss_kib(pid);

    // One cycle of each background job, run here against the same store.
    let (key_load, key_refresh) = {
        let cache = instagen::keys::KeyCache::new(hasher.clone());
        let t = Instant::now();
        cache.refresh(&store).await.unwrap();
        let load = t.elapsed();
        let refresh = mean(20, async || {
            cache.refresh(&store).await.unwrap();
        })
        .await;
        (load, refresh)
    };
    use instagen::billing::budget::{Budgets, sync_from_store};
    let budget_full = mean(3, async || {
        assert!(sync_from_store(&store, &Budgets::new(true)).await.unwrap());
    })
    .await;
    let budgets = Budgets::new(true);
    sync_from_store(&store, &budgets).await.unwrap();
    let budget_partial = mean(10, async || {
        assert!(!sync_from_store(&store, &budgets).await.unwrap(), "partial");
    })
    .await;
    let posting = mean(5, async || {
        store.post_usage().await.unwrap();
    })
    .await;

    // A key disabled by another process (the CLI), until the server refuses it.
    let client = reqwest::Client::new();
    let chat = |k: &str| {
        client
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(k)
            .json(&chat_body("hello"))
            .send()
    };
    assert_eq!(chat(second.secret.expose()).await.unwrap().status(), 200);
    let t = Instant::now();
    instagen::admin::set_key_status(
        &store,
        &Actor::cli(),
        &account,
        &second.id,
        KeyStatus::Disabled,
    )
    .await
    .unwrap();
    loop {
        if chat(second.secret.expose()).await.unwrap().status() == 401 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the change never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let key_change_seen = t.elapsed();

    // CPU per request: 64 clients for 5 s.
    let served = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(5);
    let c0 = cpu_seconds(pid);
    let t = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (client, served, key, url) = (
                client.clone(),
                served.clone(),
                key.clone(),
                format!("{}/v1/chat/completions", server.base),
            );
            tokio::spawn(async move {
                while Instant::now() < until {
                    let r = client
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&chat_body("hello"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let _ = r.bytes().await.unwrap();
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = t.elapsed().as_secs_f64();
    let n = served.load(Ordering::Relaxed) as f64;
    let cpu_us_per_request = (cpu_seconds(pid) - c0) / n * 1e6;
    let rss_after_load_kib = rss_kib(pid);
    server.terminate();
    drop_store(&store, dir.path()).await;
    Figures {
        startup,
        idle_cpu_pct,
        idle_rss_kib,
        key_load,
        key_refresh,
        budget_full,
        budget_partial,
        posting,
        key_change_seen,
        cpu_us_per_request,
        rps: n / elapsed,
        rss_after_load_kib,
    }
}

async fn drop_store(store: &Store, dir: &Path) {
    store.close().await;
    if test_postgres().is_some() {
        drop_database(&store_url_for(dir)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run by hand with --release"]
async fn tenant_scale_benchmark() {
    let store = if test_postgres().is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    // 10 keys: the provisioned two and eight more in 2 accounts.
    let small = measure(2, 8).await;
    let big = measure(10_000, 100_000).await;
    println!("BENCH tenant scale on {store} (per-cycle costs measured from a second connection)");
    println!("{:<34} {:>14} {:>14}", "", "10 keys", "100,000 keys");
    let row = |name: &str, a: String, b: String| println!("{name:<34} {a:>14} {b:>14}");
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    row("start-up to healthy", ms(small.startup), ms(big.startup));
    row(
        "idle CPU (% of a core)",
        format!("{:.2} %", small.idle_cpu_pct),
        format!("{:.2} %", big.idle_cpu_pct),
    );
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    row("idle RSS", mib(small.idle_rss_kib), mib(big.idle_rss_kib));
    row("key table: full load", ms(small.key_load), ms(big.key_load));
    row(
        "key refresh, nothing changed",
        ms(small.key_refresh),
        ms(big.key_refresh),
    );
    row(
        "budget sync: everything",
        ms(small.budget_full),
        ms(big.budget_full),
    );
    row(
        "budget sync: what moved (nothing)",
        ms(small.budget_partial),
        ms(big.budget_partial),
    );
    row(
        "usage posting, nothing new",
        ms(small.posting),
        ms(big.posting),
    );
    row(
        "key change seen by the server",
        ms(small.key_change_seen),
        ms(big.key_change_seen),
    );
    row(
        "CPU per request, c=64",
        format!("{:.1} µs", small.cpu_us_per_request),
        format!("{:.1} µs", big.cpu_us_per_request),
    );
    row(
        "requests/s, c=64",
        format!("{:.0}", small.rps),
        format!("{:.0}", big.rps),
    );
    row(
        "RSS after the load",
        mib(small.rss_after_load_kib),
        mib(big.rss_after_load_kib),
    );
}
