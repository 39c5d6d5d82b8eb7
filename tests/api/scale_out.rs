//! Many instances acting as one: limits shared through Redis (and what happens when Redis
//! is gone), and three `instagen serve` processes sharing one store and one Redis.
//!
//! Each test uses its own Redis key prefix. Without Redis these tests are reported as
//! skipped (see `services.rs`), never silently green.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use instagen::config::{LimitsConfig, RedisFailure};
use instagen::keys::AuthedKey;
use instagen::limits::{KeyQuotas, Limiter, Refused};
use mock_upstream::{MockUpstream, Script};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::services::{REDIS_URL, redis_prefix, redis_up, skip};

fn redis_config(prefix: &str) -> LimitsConfig {
    LimitsConfig {
        redis_url: Some(REDIS_URL.to_owned()),
        redis_prefix: prefix.to_owned(),
        ..LimitsConfig::default()
    }
}

fn key(quotas: KeyQuotas) -> AuthedKey {
    AuthedKey {
        key_id: "k1".into(),
        account_id: "a1".into(),
        allowed_models: None,
        spend_limit_nanos: None,
        allowed_regions: None,
        limits: quotas,
        revoked: Default::default(),
    }
}

#[tokio::test]
async fn limits_held_in_redis_are_shared_by_every_limiter() {
    if !redis_up().await {
        return skip(
            "scale_out::limits_held_in_redis_are_shared_by_every_limiter",
            "Redis is not reachable at 127.0.0.1:6379",
        );
    }
    let prefix = redis_prefix();
    let (a, b) = (
        Limiter::new(redis_config(&prefix)).await,
        Limiter::new(redis_config(&prefix)).await,
    );
    let k = key(KeyQuotas {
        key_rpm: Some(5),
        max_concurrent: Some(2),
        account_tpm: Some(1_000),
        ..KeyQuotas::default()
    });
    // Requests per minute: five in all, whichever instance admits them.
    let mut admitted = Vec::new();
    for i in 0..8 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        match limiter.admit(&k, 10).await {
            Ok(adm) => admitted.push(adm),
            Err(r) => assert!(
                matches!(r.why, Refused::KeyRequests | Refused::KeyConcurrency),
                "{:?}",
                r.why
            ),
        }
        if admitted.len() == 2 {
            // Release the concurrency leases of the first two (on their instances).
            admitted.clear();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let refused = b.admit(&k, 10).await.err().unwrap();
    assert_eq!(refused.why, Refused::KeyRequests);
    let q = refused.headers.requests.unwrap();
    assert_eq!((q.limit, q.remaining), (5, 0));

    // Concurrency leases are global too.
    let k2 = key(KeyQuotas {
        max_concurrent: Some(1),
        ..KeyQuotas::default()
    });
    let k2 = AuthedKey {
        key_id: "k2".into(),
        ..k2
    };
    let held = a.admit(&k2, 1).await.unwrap();
    assert_eq!(
        b.admit(&k2, 1).await.err().unwrap().why,
        Refused::KeyConcurrency
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.admit(&k2, 1).await.is_ok());

    // In flight per IP, across both.
    let config = LimitsConfig {
        max_in_flight_per_ip: 3,
        ..redis_config(&prefix)
    };
    let (a, b) = (
        Limiter::new(config.clone()).await,
        Limiter::new(config).await,
    );
    let ip = Some("192.0.2.99".parse().unwrap());
    let leases = [
        a.enter(ip).await.unwrap(),
        b.enter(ip).await.unwrap(),
        a.enter(ip).await.unwrap(),
    ];
    assert_eq!(b.enter(ip).await.err().unwrap().why, Refused::IpInFlight);
    drop(leases);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.enter(ip).await.is_ok());
}

#[tokio::test]
async fn without_redis_limits_fail_open_to_local_counters_or_fail_closed() {
    let held = dead_addr();
    let dead = format!("redis://127.0.0.1:{}", held.port);
    let open = Limiter::new(LimitsConfig {
        redis_url: Some(dead.clone()),
        on_redis_failure: RedisFailure::FailOpen,
        ..LimitsConfig::default()
    })
    .await;
    let k = key(KeyQuotas {
        key_rpm: Some(2),
        ..KeyQuotas::default()
    });
    assert!(open.admit(&k, 1).await.is_ok());
    assert!(open.admit(&k, 1).await.is_ok());
    assert_eq!(
        open.admit(&k, 1).await.err().unwrap().why,
        Refused::KeyRequests,
        "fail open still enforces the limit, per instance"
    );

    // Fail closed: every request gets a clear 503 while Redis is away.
    let app = TestApp::spawn_with(move |c| {
        c.limits.redis_url = Some(dead);
        c.limits.on_redis_failure = RedisFailure::FailClosed;
    })
    .await;
    let resp = app.chat(&chat_body("hi")).await;
    assert_eq!(resp.headers()["retry-after"], "1");
    let err = openai_error(resp, 503).await;
    assert_eq!(err["error"]["code"], "limiter_unavailable");
    assert!(app.mock.requests().is_empty());
}

/// Config files for `n` server processes sharing the store (and secret) of the first.
fn instance_configs(root: &Path, mock_base: &str, prefix: &str, n: usize) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut store_line = None;
    for i in 0..n {
        let dir = root.join(format!("instance-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = write_process_config(&dir, mock_base, "info");
        let mut text = std::fs::read_to_string(&path).unwrap();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("url = "))
            .unwrap()
            .to_owned();
        match &store_line {
            None => store_line = Some(line),
            Some(shared) => text = text.replace(&line, shared),
        }
        text.push_str(&format!(
            "\n[limits]\nredis_url = \"{REDIS_URL}\"\nredis_prefix = \"{prefix}\"\nmax_in_flight_per_ip = 200\n"
        ));
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    paths
}

/// Waits until every instance's key table holds `key` (`GET /v1/key` uses none of its
/// limits), asking every 100 ms for up to five seconds.
async fn until_every_instance_knows(client: &reqwest::Client, bases: &[String], key: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for base in bases {
        loop {
            let resp = client
                .get(format!("{base}/v1/key"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            if resp.status() == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "{base} never knew the new key");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn post(client: &reqwest::Client, base: &str, key: &str, body: &Value) -> u16 {
    client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn three_instances_on_one_store_and_redis_act_as_one() {
    if !redis_up().await {
        return skip(
            "scale_out::three_instances_on_one_store_and_redis_act_as_one",
            "Redis is not reachable at 127.0.0.1:6379",
        );
    }
    let mock = MockUpstream::start().await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let prefix = redis_prefix();
    let configs = instance_configs(root.path(), &mock.base_url(), &prefix, 3);
    let (account, _key, store) = provision(&configs[0]).await;
    let servers: Vec<ServerProcess> = {
        let mut v = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            v.push(ServerProcess::start(c, &root.path().join(format!("server-{i}.log"))).await);
        }
        v
    };
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let client = reqwest::Client::new();

    // A key limited to 60 requests per minute, created through instance A.
    let resp: Value = client
        .post(format!("{}/api/v1/accounts/{account}/keys", bases[0]))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "sixty", "limits": {"rpm": 60}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (key_id, key) = (
        resp["key"]["id"].as_str().unwrap().to_owned(),
        resp["secret"].as_str().unwrap().to_owned(),
    );
    until_every_instance_knows(&client, &bases, &key).await;

    // 90 requests spread over the three, eight at a time: exactly 60 admitted.
    let key = Arc::new(key);
    let mut statuses = Vec::new();
    for batch in 0..12 {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..8 {
            let n = batch * 8 + i;
            if n >= 90 {
                break;
            }
            let (client, base, key) = (client.clone(), bases[n % 3].clone(), key.clone());
            set.spawn(async move { post(&client, &base, &key, &chat_body("x")).await });
        }
        statuses.extend(set.join_all().await);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (60, 30), "{statuses:?}");

    // Slow answers: 1000 concurrent requests from one address (cap 200) over three instances.
    mock.set_default(Script {
        // Long enough that all 1000 arrive while the first ones are still in flight.
        delay: Duration::from_millis(3_000),
        ..Script::default()
    });
    let mut set = tokio::task::JoinSet::new();
    let default_key = Arc::new(_key.clone());
    for n in 0..1000 {
        let (client, base, key) = (client.clone(), bases[n % 3].clone(), default_key.clone());
        set.spawn(async move { post(&client, &base, &key, &chat_body("x")).await });
    }
    let burst = set.join_all().await;
    let admitted = burst.iter().filter(|s| **s == 200).count();
    assert!(
        (1..=200).contains(&admitted),
        "at most the per-IP cap across instances: {burst:?}"
    );
    assert_eq!(admitted + burst.iter().filter(|s| **s == 429).count(), 1000);
    mock.set_default(Script::default());

    // Disabled through A: refused by B and C within a second.
    let resp = client
        .post(format!(
            "{}/api/v1/accounts/{account}/keys/{key_id}/disable",
            bases[0]
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let disabled_at = Instant::now();
    let mut served_meanwhile = 0;
    for base in &bases[1..] {
        loop {
            let s = post(&client, base, &key, &chat_body("x")).await;
            if s == 401 {
                break;
            }
            served_meanwhile += usize::from(s == 200);
            assert!(
                disabled_at.elapsed() < Duration::from_secs(1),
                "{base} still admits a disabled key"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Every served request is in the shared store exactly once.
    for s in servers {
        s.terminate();
    }
    let records = store.usage_records(&account, 0, i64::MAX).await.unwrap();
    let served = records.iter().filter(|r| r.status == 200).count();
    let total = 60 + admitted + served_meanwhile;
    assert_eq!(served, total, "usage totals equal the requests served");
    assert_eq!(
        mock.requests().len(),
        total,
        "the upstream saw exactly the served requests"
    );
}

/// A TCP proxy in front of PostgreSQL that a test can cut and restore.
struct Proxy {
    port: u16,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    async fn start() -> Arc<Self> {
        let port = free_port();
        let proxy = Arc::new(Proxy {
            port,
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        proxy.up().await;
        proxy
    }

    async fn up(self: &Arc<Self>) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let me = self.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                me.tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Refuses new connections and resets every open one.
    fn down(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test]
async fn an_unreachable_store_fails_fast_then_recovers_without_losing_a_record() {
    if let Err(why) = crate::services::postgres_up().await {
        return skip(
            "scale_out::an_unreachable_store_fails_fast_then_recovers_without_losing_a_record",
            &why,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let direct = create_database(crate::services::POSTGRES_SERVER, Some(dir.path())).await;
    let proxy = Proxy::start().await;
    let proxied = direct.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let app = TestApp::spawn_with(move |c| c.store.url = proxied).await;
    assert_eq!(app.chat(&chat_body("before")).await.status(), 200);

    // The database goes away. Requests already admitted still complete; their records wait
    // in the journal.
    proxy.down();
    let mut served = 1;
    let mut refused = 0;
    let ready = |app: &TestApp| {
        let (client, url) = (app.client.clone(), app.url("/readyz"));
        async move {
            client
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&app).await != 503 {
        assert!(Instant::now() < deadline, "/readyz never went unready");
        match app.chat(&chat_body("during")).await.status().as_u16() {
            200 => served += 1,
            503 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Unready: /v1 fails fast with a clear, retryable 503 (once the key refresh has seen
    // the store gone too: two misses, ~0.5 s, which a loaded machine may stretch).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (resp, took) = loop {
        let started = Instant::now();
        let resp = app.chat(&chat_body("refused")).await;
        if resp.status() == 503 || Instant::now() > deadline {
            break (resp, started.elapsed());
        }
        served += usize::from(resp.status() == 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(took < Duration::from_millis(500), "fail fast");
    assert_eq!(resp.headers()["retry-after"], "1");
    let err = openai_error(resp, 503).await;
    assert_eq!(err["error"]["code"], "store_unavailable");
    refused += 1;

    // It comes back: ready again, serving again, and every served request is stored once.
    proxy.up().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready(&app).await != 200 {
        assert!(Instant::now() < deadline, "/readyz never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.chat(&chat_body("after")).await.status(), 200);
    served += 1;
    let records = app.records(served).await;
    assert_eq!(
        records.iter().filter(|r| r.status == 200).count(),
        served,
        "{refused} refused, {served} served: every served request has its record"
    );
    assert_eq!(
        records.len(),
        served,
        "refusals before authentication leave no record"
    );
    drop(app);
    drop_database(&direct).await;
}

#[tokio::test]
async fn a_spend_limit_holds_across_three_instances_to_within_one_reservation() {
    if !redis_up().await {
        return skip(
            "scale_out::a_spend_limit_holds_across_three_instances_to_within_one_reservation",
            "Redis is not reachable at 127.0.0.1:6379",
        );
    }
    let mut body = chat_body("How much is one plus one?");
    body["max_tokens"] = json!(20);
    // Each request reports exactly what the gateway reserves for it: cost = reservation.
    let bytes = serde_json::to_vec(&body).unwrap().len() as u64;
    let (prompt, output) = (bytes / 3 + 16, 20);
    let reservation = test_cost(prompt, 0, output);
    let mock = MockUpstream::start().await.unwrap();
    mock.set_default(Script {
        // Slow enough that every request is in flight at once.
        delay: Duration::from_millis(700),
        reported_tokens: Some((prompt, output)),
        ..Script::default()
    });
    let root = tempfile::tempdir().unwrap();
    let prefix = redis_prefix();
    let configs = instance_configs(root.path(), &mock.base_url(), &prefix, 3);
    let (account, _key, store) = provision(&configs[0]).await;
    let mut servers = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        servers.push(ServerProcess::start(c, &root.path().join(format!("server-{i}.log"))).await);
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let client = reqwest::Client::new();
    // A lifetime limit of ten requests' worth.
    let limit = 10 * reservation;
    let resp: Value = client
        .post(format!("{}/api/v1/accounts/{account}/keys", bases[0]))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "capped", "limits": {
            "spend_limit_usd": instagen::billing::Money::from_nanos(limit).to_string()}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (key_id, key) = (
        resp["key"]["id"].as_str().unwrap().to_owned(),
        Arc::new(resp["secret"].as_str().unwrap().to_owned()),
    );
    until_every_instance_knows(&client, &bases, &key).await;

    // Sixty at once, twenty on each instance: each alone would admit ten.
    let mut set = tokio::task::JoinSet::new();
    for n in 0..60 {
        let (client, base, key, body) = (
            client.clone(),
            bases[n % 3].clone(),
            key.clone(),
            body.clone(),
        );
        set.spawn(async move { post(&client, &base, &key, &body).await });
    }
    let statuses = set.join_all().await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(admitted >= 1, "{statuses:?}");
    assert_eq!(
        admitted + statuses.iter().filter(|s| **s == 429).count(),
        60,
        "the rest are refused for the spend limit: {statuses:?}"
    );
    for s in servers {
        s.terminate();
    }
    let spent: i64 = store
        .usage_records(&account, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|r| *r.key_id == *key_id)
        .map(|r| r.cost_nanos)
        .sum();
    assert!(
        spent <= limit + reservation,
        "spent {spent} n$ of a {limit} n$ limit: more than one reservation ({reservation} n$) over, \
         {admitted} admitted"
    );
}
