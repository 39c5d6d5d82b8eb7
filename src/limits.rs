//! Limits and abuse protection: in-flight requests per client IP, failed authentications
//! per IP, and per key and per account requests per minute, tokens per minute and
//! concurrent requests.
//!
//! Counters live in this process, or — with `limits.redis_url` — in Redis, where every
//! instance shares them: one-minute sliding windows of one-second buckets in a Lua script
//! (one atomic check-and-add per subject, each subject's keys under one hash tag so Redis
//! Cluster can run it), and concurrency leases in sorted sets that expire on their own if
//! the instance holding them dies. When Redis cannot be reached, `on_redis_failure`
//! decides: fall back to this instance's own counters (and warn), or refuse with 503.
//!
//! Tokens per minute are reserved from an estimate when a request is admitted and
//! corrected to the actual count when its usage is known. Nothing here sees content.

pub mod redis;
pub mod window;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{LimitsConfig, RedisFailure};
use crate::keys::AuthedKey;
use crate::time::now_ms;
use window::{Verdict, Windows};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    IpInFlight,
    AuthBlocked,
    KeyRequests,
    KeyTokens,
    KeyConcurrency,
    AccountRequests,
    AccountTokens,
    /// Redis is unreachable and the limiter fails closed.
    Unavailable,
}

impl Refused {
    /// Every reason, for counters that list them all.
    pub const ALL: [Refused; 8] = [
        Refused::IpInFlight,
        Refused::AuthBlocked,
        Refused::KeyRequests,
        Refused::KeyTokens,
        Refused::KeyConcurrency,
        Refused::AccountRequests,
        Refused::AccountTokens,
        Refused::Unavailable,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            Refused::IpInFlight => "ip_in_flight_limit",
            Refused::AuthBlocked => "auth_failures_blocked",
            Refused::KeyRequests => "key_rpm_limit",
            Refused::KeyTokens => "key_tpm_limit",
            Refused::KeyConcurrency => "key_concurrency_limit",
            Refused::AccountRequests => "account_rpm_limit",
            Refused::AccountTokens => "account_tpm_limit",
            Refused::Unavailable => "limiter_unavailable",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refused::IpInFlight => "too many requests in flight from this address; retry shortly",
            Refused::AuthBlocked => {
                "too many failed authentications from this address; retry after the cool-down"
            }
            Refused::KeyRequests => "rate limit reached: requests per minute for this access key",
            Refused::KeyTokens => "rate limit reached: tokens per minute for this access key",
            Refused::KeyConcurrency => {
                "rate limit reached: concurrent requests for this access key"
            }
            Refused::AccountRequests => "rate limit reached: requests per minute for this account",
            Refused::AccountTokens => "rate limit reached: tokens per minute for this account",
            Refused::Unavailable => "the rate limiter is unavailable; retry shortly",
        }
    }
}

/// One limit as OpenAI's `x-ratelimit-*` headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    pub reset_s: u64,
}

/// The tightest request and token limits that applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
}

impl RateHeaders {
    fn note(slot: &mut Option<Quota>, q: Quota) {
        if slot.is_none_or(|s| q.remaining < s.remaining) {
            *slot = Some(q);
        }
    }
}

#[derive(Debug)]
pub struct Refusal {
    pub why: Refused,
    pub retry_after_s: u64,
    pub headers: RateHeaders,
}

impl Refusal {
    fn new(why: Refused, retry_after_s: u64) -> Self {
        Self {
            why,
            retry_after_s: retry_after_s.max(1),
            headers: RateHeaders::default(),
        }
    }
}

/// Holds one unit of a concurrency limit until dropped.
pub struct Lease {
    limiter: Arc<Limiter>,
    held: Held,
}

/// Where a lease's unit is held.
enum Held {
    /// An address's in-flight unit, in this instance's memory (every request takes one:
    /// kept by address, it costs no formatted name and no string hash).
    Ip(IpAddr),
    /// A named subject's unit, in this instance's memory.
    Local(String),
    /// A subject's unit in Redis, with the lease's id there.
    Remote(String, String),
}

impl Drop for Lease {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Held::Local(String::new())) {
            Held::Ip(ip) => give_back_unit(&self.limiter.ip_leases, &ip),
            Held::Local(subject) => give_back_unit(&self.limiter.leases, &subject),
            Held::Remote(subject, id) => {
                let limiter = self.limiter.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move { limiter.release_remote(&subject, &id).await });
                }
            }
        }
    }
}

/// Tokens reserved from an estimate; `settle` corrects them to the actual count.
pub struct TokenCharge {
    limiter: Arc<Limiter>,
    /// (subject, second the estimate was added at, remote?)
    reserved: Vec<(String, i64, bool)>,
    estimate: u64,
}

impl TokenCharge {
    pub fn settle(self, actual: u64) {
        let delta = i64::try_from(actual).unwrap_or(i64::MAX)
            - i64::try_from(self.estimate).unwrap_or(i64::MAX);
        if delta == 0 {
            return;
        }
        let now = now_ms() / 1000;
        let mut remote = Vec::new();
        for (subject, at, is_remote) in self.reserved {
            if is_remote {
                remote.push((subject, at));
            } else {
                self.limiter.windows.adjust(&subject, at, delta, now);
            }
        }
        if !remote.is_empty()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let limiter = self.limiter.clone();
            rt.spawn(async move {
                for (subject, at) in remote {
                    limiter.adjust_remote(&subject, at, delta).await;
                }
            });
        }
    }
}

/// What an admitted request carries: its headers, its concurrency lease, its token charge.
pub struct Admission {
    pub headers: RateHeaders,
    pub lease: Option<Lease>,
    pub charge: Option<TokenCharge>,
}

pub struct Limiter {
    config: LimitsConfig,
    windows: Windows,
    /// Local concurrency counts (key concurrency).
    leases: Mutex<HashMap<String, u32>>,
    /// Local in-flight counts by address.
    ip_leases: Mutex<crate::idmap::IdMap<IpAddr, u32>>,
    /// Local failed-authentication windows and blocks (until, ms).
    /// Subjects (`ip:…:auth`, `login:…`) blocked after repeated failures, until epoch-ms.
    blocked: Mutex<HashMap<String, i64>>,
    redis: Option<Arc<redis::RedisLimits>>,
    last_warning_ms: AtomicI64,
}

impl Limiter {
    /// Builds the limiter; with Redis configured it connects (and keeps retrying if Redis
    /// is down at start).
    pub async fn new(config: LimitsConfig) -> Arc<Self> {
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(
                redis::RedisLimits::connect(url, &config.redis_prefix, config.lease_ttl_secs).await,
            )),
            None => None,
        };
        Arc::new(Self {
            config,
            windows: Windows::default(),
            leases: Mutex::new(HashMap::new()),
            ip_leases: Mutex::new(crate::idmap::IdMap::default()),
            blocked: Mutex::new(HashMap::new()),
            redis,
            last_warning_ms: AtomicI64::new(0),
        })
    }

    /// The Redis connection every instance shares, when configured (budgets use it too).
    pub fn shared_redis(&self) -> Option<Arc<redis::RedisLimits>> {
        self.redis.clone()
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Forgets idle local windows; run every minute or so.
    pub fn sweep(&self) {
        let now = now_ms();
        self.windows.sweep(now / 1000);
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
    }

    /// A Redis call failed: fall back or refuse, as configured (and warn, at most every 10 s).
    fn redis_failed(&self, why: &redis::RedisError) -> Result<(), Refusal> {
        let now = now_ms();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now - last > 10_000
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                mode = ?self.config.on_redis_failure,
                error = %why,
                "redis is unreachable; limits fall back as configured"
            );
        }
        match self.config.on_redis_failure {
            RedisFailure::FailOpen => Ok(()),
            RedisFailure::FailClosed => Err(Refusal::new(Refused::Unavailable, 1)),
        }
    }

    async fn release_remote(&self, subject: &str, id: &str) {
        if let Some(r) = &self.redis {
            r.release(subject, id).await;
        }
    }

    async fn adjust_remote(&self, subject: &str, at: i64, delta: i64) {
        if let Some(r) = &self.redis {
            r.adjust(subject, at, delta).await;
        }
    }

    /// Takes one unit of `subject`'s concurrency limit `max`.
    async fn lease(
        self: &Arc<Self>,
        subject: String,
        max: u32,
        why: Refused,
    ) -> Result<Lease, Refusal> {
        if let Some(r) = &self.redis {
            match r.acquire(&subject, max).await {
                Ok(Some(id)) => {
                    return Ok(Lease {
                        limiter: self.clone(),
                        held: Held::Remote(subject, id),
                    });
                }
                Ok(None) => return Err(Refusal::new(why, 1)),
                Err(e) => {
                    self.redis_failed(&e)?;
                }
            }
        }
        self.lease_local(subject, max, why)
    }

    /// Takes one unit of `subject`'s concurrency limit `max` in this instance's memory.
    fn lease_local(
        self: &Arc<Self>,
        subject: String,
        max: u32,
        why: Refused,
    ) -> Result<Lease, Refusal> {
        if take_unit(&self.leases, &subject, max) {
            Ok(Lease {
                limiter: self.clone(),
                held: Held::Local(subject),
            })
        } else {
            Err(Refusal::new(why, 1))
        }
    }

    /// One check-and-add on a window: returns the verdict and whether it was remote.
    async fn window(
        &self,
        subject: &str,
        limit: u64,
        cost: u64,
    ) -> Result<(Verdict, i64, bool), Refusal> {
        if let Some(r) = &self.redis {
            match r.window(subject, limit, cost).await {
                Ok((v, at)) => return Ok((v, at, true)),
                Err(e) => {
                    self.redis_failed(&e)?;
                }
            }
        }
        let now = now_ms() / 1000;
        Ok((
            self.windows.check_and_add(subject, limit, cost, now),
            now,
            false,
        ))
    }

    /// Admits one more in-flight request from `ip` (none when no IP is known or the cap is 0).
    pub async fn enter(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Option<Lease>, Refusal> {
        let (Some(ip), max) = (ip, self.config.max_in_flight_per_ip) else {
            return Ok(None);
        };
        if max == 0 {
            return Ok(None);
        }
        // Every request enters: without Redis it is answered here, by address, and the
        // shared path is boxed so that this future (built and copied on each request)
        // stays small.
        if self.redis.is_some() {
            let subject = ip_subject(ip, ":inflight");
            return Box::pin(self.lease(subject, max, Refused::IpInFlight))
                .await
                .map(Some);
        }
        match take_unit(&self.ip_leases, &ip, max) {
            true => Ok(Some(Lease {
                limiter: self.clone(),
                held: Held::Ip(ip),
            })),
            false => Err(Refusal::new(Refused::IpInFlight, 1)),
        }
    }

    /// Refuses an IP that failed to authenticate too often.
    pub async fn check_blocked(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let Some(ip) = ip else { return Ok(()) };
        // Every request asks: without Redis, an empty block list answers without naming it.
        if self.redis.is_none()
            && self
                .blocked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        {
            return Ok(());
        }
        // Boxed: this future is built and copied on every request.
        Box::pin(self.check_subject(&ip_subject(ip, ":auth"))).await
    }

    /// Counts a failed authentication from `ip`; too many in a minute block it.
    pub async fn auth_failed(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        if self.failed(&ip_subject(ip, ":auth")).await {
            tracing::warn!(client_ip = %ip, "address blocked after repeated failed authentications");
        }
    }

    /// Refuses a subject (an address's authentications, a login email) that failed too
    /// often in the last minute, for `auth_block_secs`.
    pub async fn check_subject(&self, subject: &str) -> Result<(), Refusal> {
        if self.config.auth_failures_per_minute == 0 {
            return Ok(());
        }
        if let Some(r) = &self.redis {
            match r.blocked_for(subject).await {
                Ok(Some(secs)) => return Err(Refusal::new(Refused::AuthBlocked, secs)),
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.redis_failed(&e)?;
                }
            }
        }
        let now = now_ms();
        let until = self
            .blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subject)
            .copied();
        match until {
            Some(until) if until > now => Err(Refusal::new(
                Refused::AuthBlocked,
                u64::try_from((until - now + 999) / 1000).unwrap_or(1),
            )),
            _ => Ok(()),
        }
    }

    /// Counts one failure of `subject`; returns whether this one blocked it (in memory;
    /// with Redis the block is shared and this returns false).
    pub async fn failed(&self, subject: &str) -> bool {
        let limit = self.config.auth_failures_per_minute;
        if limit == 0 {
            return false;
        }
        if let Some(r) = &self.redis {
            match r
                .auth_failed(subject, limit, self.config.auth_block_secs)
                .await
            {
                Ok(()) => return false,
                Err(e) => {
                    if self.redis_failed(&e).is_err() {
                        return false;
                    }
                }
            }
        }
        let now = now_ms();
        let v = self
            .windows
            .check_and_add(subject, u64::from(limit) - 1, 1, now / 1000);
        if !v.admitted {
            let until = now + i64::try_from(self.config.auth_block_secs * 1000).unwrap_or(60_000);
            self.blocked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(subject.to_owned(), until);
            return true;
        }
        false
    }

    /// Checks a key's and its account's limits for one request of about `tokens` tokens.
    pub async fn admit(
        self: &Arc<Self>,
        key: &AuthedKey,
        tokens: u64,
    ) -> Result<Admission, Refusal> {
        let mut headers = RateHeaders::default();
        let mut reserved: Vec<(String, i64, bool)> = Vec::new();
        let mut requests: Vec<(String, i64, bool)> = Vec::new();
        for (limit, scope, id, what, cost, why) in checks(key, tokens) {
            let Some(limit) = limit else { continue };
            let subject = format!("{scope}:{id}:{what}");
            let (v, at, remote) = match self.window(&subject, limit, cost).await {
                Ok(x) => x,
                Err(refusal) => {
                    self.refund(requests, reserved, tokens).await;
                    return Err(refusal);
                }
            };
            let q = Quota {
                limit,
                remaining: v.remaining,
                reset_s: v.reset_s,
            };
            let slot = if what == "rpm" {
                &mut headers.requests
            } else {
                &mut headers.tokens
            };
            RateHeaders::note(slot, q);
            if !v.admitted {
                self.refund(requests, reserved, tokens).await;
                let mut refusal = Refusal::new(why, v.reset_s);
                refusal.headers = headers;
                return Err(refusal);
            }
            if what == "rpm" {
                requests.push((subject, at, remote));
            } else {
                reserved.push((subject, at, remote));
            }
        }
        let lease = match key.limits.max_concurrent {
            Some(max) => match self
                .lease(
                    format!("k:{}:conc", key.key_id),
                    max,
                    Refused::KeyConcurrency,
                )
                .await
            {
                Ok(lease) => Some(lease),
                Err(mut refusal) => {
                    self.refund(requests, reserved, tokens).await;
                    refusal.headers = headers;
                    return Err(refusal);
                }
            },
            None => None,
        };
        let charge = (!reserved.is_empty()).then(|| TokenCharge {
            limiter: self.clone(),
            reserved,
            estimate: tokens,
        });
        Ok(Admission {
            headers,
            lease,
            charge,
        })
    }

    /// What is left of the key's and its account's per-minute limits, the tightest of
    /// each kind, without using any of it (`GET /v1/key`).
    pub async fn remaining(&self, key: &AuthedKey) -> RateHeaders {
        let mut headers = RateHeaders::default();
        for (limit, scope, id, what, _, _) in checks(key, 0) {
            let Some(limit) = limit else { continue };
            let Ok((v, _, _)) = self.window(&format!("{scope}:{id}:{what}"), limit, 0).await else {
                continue;
            };
            let q = Quota {
                limit,
                remaining: v.remaining,
                reset_s: v.reset_s,
            };
            match what {
                "rpm" => RateHeaders::note(&mut headers.requests, q),
                _ => RateHeaders::note(&mut headers.tokens, q),
            }
        }
        headers
    }

    /// Gives back what a refused request had already taken from other windows.
    async fn refund(
        &self,
        requests: Vec<(String, i64, bool)>,
        reserved: Vec<(String, i64, bool)>,
        tokens: u64,
    ) {
        let now = now_ms() / 1000;
        let items = requests
            .into_iter()
            .map(|r| (r, 1))
            .chain(reserved.into_iter().map(|r| (r, tokens)));
        for ((subject, at, remote), cost) in items {
            let delta = -i64::try_from(cost).unwrap_or(0);
            if remote {
                self.adjust_remote(&subject, at, delta).await;
            } else {
                self.windows.adjust(&subject, at, delta, now);
            }
        }
    }
}

/// One per-minute window a request is checked against: (limit, scope, id, `rpm`/`tpm`,
/// cost, why a refusal).
type Check<'a> = (
    Option<u64>,
    &'static str,
    &'a str,
    &'static str,
    u64,
    Refused,
);

/// The per-minute windows a request of `key` costing `tokens` is checked against.
fn checks(key: &AuthedKey, tokens: u64) -> [Check<'_>; 4] {
    let l = &key.limits;
    [
        (l.key_rpm, "k", &key.key_id, "rpm", 1, Refused::KeyRequests),
        (
            l.account_rpm,
            "a",
            &key.account_id,
            "rpm",
            1,
            Refused::AccountRequests,
        ),
        (
            l.key_tpm,
            "k",
            &key.key_id,
            "tpm",
            tokens,
            Refused::KeyTokens,
        ),
        (
            l.account_tpm,
            "a",
            &key.account_id,
            "tpm",
            tokens,
            Refused::AccountTokens,
        ),
    ]
}

/// The limits that apply to one key (its own and its account's); `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyQuotas {
    pub key_rpm: Option<u64>,
    pub key_tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
    pub account_rpm: Option<u64>,
    pub account_tpm: Option<u64>,
}

impl KeyQuotas {
    /// Whether any limit applies (an unlimited key skips the limiter entirely).
    pub fn is_limited(&self) -> bool {
        *self != KeyQuotas::default()
    }
}

/// Takes one of `key`'s `max` units from local concurrency `counts`, if one is left.
fn take_unit<K, Q, S>(counts: &Mutex<HashMap<K, u32, S>>, key: &Q, max: u32) -> bool
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
    S: std::hash::BuildHasher,
{
    let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
    match counts.get_mut(key) {
        Some(n) if *n >= max => false,
        Some(n) => {
            *n += 1;
            true
        }
        None if max == 0 => false,
        None => {
            counts.insert(key.to_owned(), 1);
            true
        }
    }
}

/// Gives one of `key`'s units back to local concurrency `counts`; forgets a key at zero.
fn give_back_unit<K, Q, S>(counts: &Mutex<HashMap<K, u32, S>>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
    S: std::hash::BuildHasher,
{
    let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// `ip:<address><suffix>`, the subject an address's counters go by: every request names
/// its address's in-flight lease, so an IPv4 address is written without `fmt` (as
/// `Display` writes it: dotted decimal).
fn ip_subject(ip: IpAddr, suffix: &str) -> String {
    let mut s = String::with_capacity(48 + suffix.len());
    s.push_str("ip:");
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(itoa::Buffer::new().format(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(s, "{v6}");
        }
    }
    s.push_str(suffix);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(quotas: KeyQuotas) -> AuthedKey {
        AuthedKey {
            key_id: "key1".into(),
            account_id: "acct1".into(),
            allowed_models: None,
            spend_limit_nanos: None,
            allowed_regions: None,
            limits: quotas,
            revoked: Default::default(),
        }
    }

    #[tokio::test]
    async fn key_and_account_limits_refuse_with_headers_and_refund_partial_admissions() {
        let limiter = Limiter::new(LimitsConfig::default()).await;
        let k = key(KeyQuotas {
            key_rpm: Some(3),
            account_tpm: Some(100),
            max_concurrent: Some(2),
            ..KeyQuotas::default()
        });
        let a = limiter.admit(&k, 40).await.unwrap();
        assert_eq!(
            a.headers.requests,
            Some(Quota {
                limit: 3,
                remaining: 2,
                reset_s: 60
            })
        );
        assert_eq!(a.headers.tokens.unwrap().remaining, 60);
        let b = limiter.admit(&k, 40).await.unwrap();
        // A third concurrent request is refused, and gives back its request and tokens.
        let refused = limiter.admit(&k, 10).await.err().unwrap();
        assert_eq!(refused.why, Refused::KeyConcurrency);
        drop(a);
        // Tokens: 80 used; 30 more would exceed 100 — refused, its request refunded.
        let refused = limiter.admit(&k, 30).await.err().unwrap();
        assert_eq!(refused.why, Refused::AccountTokens);
        assert_eq!(refused.headers.tokens.unwrap().remaining, 20);
        // Settling the first two at their actual (smaller) usage frees tokens.
        b.charge.unwrap().settle(10);
        let c = limiter.admit(&k, 30).await.unwrap();
        assert_eq!(c.headers.requests.unwrap().remaining, 0);
        let refused = limiter.admit(&k, 1).await.err().unwrap();
        assert_eq!(refused.why, Refused::KeyRequests);
        assert!(refused.retry_after_s >= 59);
    }

    #[tokio::test]
    async fn failed_authentications_block_only_that_address() {
        let limiter = Limiter::new(LimitsConfig {
            auth_failures_per_minute: 3,
            ..LimitsConfig::default()
        })
        .await;
        let (bad, good): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..2 {
            limiter.auth_failed(Some(bad)).await;
            assert!(limiter.check_blocked(Some(bad)).await.is_ok());
        }
        limiter.auth_failed(Some(bad)).await;
        let refusal = limiter.check_blocked(Some(bad)).await.err().unwrap();
        assert_eq!(refusal.why, Refused::AuthBlocked);
        assert!(refusal.retry_after_s > 50);
        assert!(limiter.check_blocked(Some(good)).await.is_ok());
    }

    #[tokio::test]
    async fn in_flight_per_ip_is_capped_and_released() {
        let limiter = Limiter::new(LimitsConfig {
            max_in_flight_per_ip: 2,
            ..LimitsConfig::default()
        })
        .await;
        let ip = Some("198.51.100.7".parse().unwrap());
        let a = limiter.enter(ip).await.unwrap();
        let _b = limiter.enter(ip).await.unwrap();
        assert_eq!(
            limiter.enter(ip).await.err().unwrap().why,
            Refused::IpInFlight
        );
        drop(a);
        assert!(limiter.enter(ip).await.is_ok());
    }

    #[test]
    fn an_address_subject_reads_as_display_writes_the_address() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_subject(ip, ":inflight"), format!("ip:{ip}:inflight"));
        }
    }
}
