//! Routes of one model: weighted power-of-two-choices balancing within a priority tier,
//! passive outlier ejection with a growing backoff, and the bookkeeping failover needs.
//!
//! A route is ejected after `EJECT_AFTER` consecutive retryable failures (connect errors,
//! 5xx, 429, timeouts) for a backoff that doubles with each ejection (1 s … 60 s) or for
//! the upstream's `Retry-After`; a success resets it. A higher tier is used only when no
//! route of a lower tier is healthy; when no route at all is healthy, the least recently
//! ejected one is still tried rather than failing every request (panic mode).
//!
//! This is a circuit breaker per route: closed (serving), open (ejected), and half-open
//! once the backoff ends — then a single trial request at a time goes through; its
//! success closes the circuit, its failure opens it again at once with a longer backoff.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use super::Provider;
use crate::time::now_ms;

const EJECT_AFTER: u32 = 3;
/// Latency differences below this are noise, not a reason to prefer a route.
const LATENCY_MARGIN_US: u64 = 5_000;
const BASE_BACKOFF_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 60_000;

/// One way to serve a model: a provider, its name for the model, a weight and a tier.
pub struct Target {
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    pub weight: u32,
    pub priority: u32,
    outstanding: AtomicU64,
    /// Exponentially weighted mean time to response headers, µs (0 until measured).
    latency_ewma_us: AtomicU64,
    failures: AtomicU32,
    ejections: AtomicU32,
    /// Times this route was taken out of rotation (for metrics).
    ejections_total: AtomicU64,
    ejected_until_ms: AtomicI64,
}

impl Target {
    pub fn new(
        provider: Arc<Provider>,
        upstream_model: String,
        weight: u32,
        priority: u32,
    ) -> Self {
        Self {
            provider,
            upstream_model,
            weight: weight.max(1),
            priority,
            outstanding: AtomicU64::new(0),
            latency_ewma_us: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejections_total: AtomicU64::new(0),
            ejected_until_ms: AtomicI64::new(0),
        }
    }

    pub fn healthy(&self, now: i64) -> bool {
        if self.ejected_until_ms.load(Ordering::Relaxed) > now {
            return false;
        }
        // Half-open: after an ejection only one trial request at a time.
        !self.half_open() || self.outstanding.load(Ordering::Relaxed) == 0
    }

    /// The backoff of an ejection has ended but no request has succeeded since.
    fn half_open(&self) -> bool {
        self.ejections.load(Ordering::Relaxed) > 0
    }

    /// What an operator sees of this route.
    pub fn health(&self, now: i64) -> serde_json::Value {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        let engine = self.provider.engine().map(|e| {
            serde_json::json!({
                "running": e.running(),
                "waiting": e.waiting(),
                "max_sequences": e.config.max_sequences,
                "max_queue": e.config.max_queue,
            })
        });
        serde_json::json!({
            "provider": self.provider.name(),
            "upstream_model": self.upstream_model,
            "weight": self.weight,
            "priority": self.priority,
            "region": self.provider.region(),
            "healthy": self.healthy(now),
            "ejected_until_ms": (until > now).then_some(until),
            "in_flight": self.outstanding.load(Ordering::Relaxed),
            "latency_ewma_us": self.latency_ewma_us.load(Ordering::Relaxed),
            "consecutive_failures": self.failures.load(Ordering::Relaxed),
            "ejections_total": self.ejections_total.load(Ordering::Relaxed),
            "engine": engine,
        })
    }

    /// Requests in flight on this route, divided by its weight (lower is better).
    fn load(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed) * 1_000 / u64::from(self.weight)
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Called by a started request just before it goes upstream: while other requests are
    /// in flight on this route, lets the runtime run what else is ready first (one turn),
    /// so the requests ready together are written upstream together after one poll of the
    /// I/O driver, not each between its own. On a loaded server that is fewer wake-ups and
    /// context switches a request (`docs/performance.md`, "Requests sent up together").
    /// Alone on the route, it returns at once: a turn would only add a poll.
    pub async fn take_turn(&self) {
        if self.outstanding.load(Ordering::Relaxed) > 1 {
            tokio::task::yield_now().await;
        }
    }

    /// An active health check failed: out of rotation until a probe succeeds.
    pub fn probe_failed(&self) {
        if self.healthy(now_ms()) {
            self.ejections_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                provider = self.provider.name(),
                "route failed its health check"
            );
        }
        self.ejected_until_ms.store(i64::MAX, Ordering::Relaxed);
    }

    /// An active health check passed: back in rotation.
    pub fn probe_passed(&self) {
        if self.ejected_until_ms.load(Ordering::Relaxed) == i64::MAX {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Folds one time-to-headers measurement into the EWMA (α = 1/5).
    pub fn observe_latency(&self, us: u64) {
        let _ = self
            .latency_ewma_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    us.max(1)
                } else {
                    (old * 4 + us) / 5
                })
            });
    }

    /// A route passed over for being slow is not measured again, so its estimate would
    /// stand forever after one slow spike: each loss shrinks it by an eighth, until the
    /// route is picked again and measured afresh. A route that really is slow goes back
    /// to losing after one sample; a spike is forgotten after about eight losses.
    fn forget_latency(&self) {
        let _ = self
            .latency_ewma_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some((old - old / 8).max(1))
            });
    }

    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
    }

    /// A retryable failure; `retry_after_s` (from a 429/503) ejects at once for that long.
    pub fn failed(&self, retry_after_s: Option<u64>) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        if let Some(s) = retry_after_s {
            let until = now + i64::try_from(s.min(3_600) * 1_000).unwrap_or(MAX_BACKOFF_MS);
            self.ejections_total.fetch_add(1, Ordering::Relaxed);
            self.ejected_until_ms.fetch_max(until, Ordering::Relaxed);
            return;
        }
        // A failed half-open trial opens the circuit again at once.
        if n >= EJECT_AFTER || self.half_open() {
            let k = self.ejections.fetch_add(1, Ordering::Relaxed).min(6);
            let backoff = (BASE_BACKOFF_MS << k).min(MAX_BACKOFF_MS);
            self.ejections_total.fetch_add(1, Ordering::Relaxed);
            self.ejected_until_ms
                .store(now + backoff, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            tracing::warn!(
                provider = self.provider.name(),
                backoff_ms = backoff,
                "route ejected after consecutive failures"
            );
        }
    }
}

/// Keeps a route's outstanding count while a request uses it.
pub struct InFlight(Arc<Target>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b) | 1
}

fn random(below: usize) -> usize {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x % below as u64) as usize
    })
}

/// Picks a route: the lowest tier with a healthy route not yet tried; within it, the
/// less loaded (in-flight per weight) of two drawn at random with probability ∝ weight
/// (a tie keeps the first draw, so idle routes share traffic by weight).
pub fn pick(
    targets: &[Arc<Target>],
    tried: &[usize],
    eligible: impl Fn(&Target) -> bool,
) -> Option<usize> {
    let now = now_ms();
    let untried = |i: &usize| !tried.contains(i) && eligible(&targets[*i]);
    let usable = |i: &usize| untried(i) && targets[*i].healthy(now);
    let Some(tier) = (0..targets.len())
        .filter(usable)
        .map(|i| targets[i].priority)
        .min()
    else {
        // Panic mode: every untried route is ejected. Rather than fail outright, try the
        // one ejected longest ago in the lowest tier (a lone route keeps serving).
        return (0..targets.len()).filter(untried).min_by_key(|i| {
            (
                targets[*i].priority,
                targets[*i].ejected_until_ms.load(Ordering::Relaxed),
            )
        });
    };
    // Walked again rather than collected: most models have one route, and this runs on
    // every request.
    let candidates = || {
        (0..targets.len())
            .filter(usable)
            .filter(move |i| targets[*i].priority == tier)
    };
    let first = candidates().next()?;
    if candidates().nth(1).is_none() {
        return Some(first);
    }
    // Two distinct routes, each drawn with probability ∝ weight (the second among the rest).
    let draw = |skip: Option<usize>| {
        let total: u64 = candidates()
            .filter(|i| Some(*i) != skip)
            .map(|i| u64::from(targets[i].weight))
            .sum();
        let mut r = random(total.max(1) as usize) as u64;
        for i in candidates().filter(|i| Some(*i) != skip) {
            let w = u64::from(targets[i].weight);
            if r < w {
                return i;
            }
            r -= w;
        }
        first
    };
    let a = draw(None);
    let b = draw(Some(a));
    // A route more than twice (and 5 ms) as slow as the other loses outright; otherwise fewer
    // requests in flight per weight wins, and a tie keeps the weighted first draw.
    let (la, lb) = (
        targets[a].latency_ewma_us.load(Ordering::Relaxed),
        targets[b].latency_ewma_us.load(Ordering::Relaxed),
    );
    if la > 0 && lb > 0 {
        if la > 2 * lb && la - lb > LATENCY_MARGIN_US {
            targets[a].forget_latency();
            return Some(b);
        }
        if lb > 2 * la && lb - la > LATENCY_MARGIN_US {
            targets[b].forget_latency();
            return Some(a);
        }
    }
    Some(if targets[b].load() < targets[a].load() {
        b
    } else {
        a
    })
}

/// A retry budget: each request earns a fifth of a retry, up to ten banked; a failover
/// spends one. A fleet that fails everything is retried at most ~20 % extra, not ×3.
pub struct RetryBudget {
    /// Milli-retries available.
    milli: std::sync::atomic::AtomicI64,
}

const RETRY_EARN_MILLI: i64 = 200;
const RETRY_COST_MILLI: i64 = 1_000;
const RETRY_CAP_MILLI: i64 = 10_000;

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            milli: std::sync::atomic::AtomicI64::new(RETRY_CAP_MILLI),
        }
    }
}

impl RetryBudget {
    pub fn deposit(&self) {
        let _ = self
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some((m + RETRY_EARN_MILLI).min(RETRY_CAP_MILLI))
            });
    }

    /// Takes one retry if the budget has it.
    pub fn withdraw(&self) -> bool {
        self.milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                (m >= RETRY_COST_MILLI).then_some(m - RETRY_COST_MILLI)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Arc<Target> {
        let config: crate::config::ProviderConfig =
            toml::from_str("name = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"")
                .unwrap();
        let provider = Arc::new(Provider::from_config(&config).unwrap());
        Arc::new(Target::new(provider, "m".into(), 1, 0))
    }

    #[test]
    fn a_route_passed_over_for_one_slow_spike_is_measured_again_and_wins_back_its_share() {
        let (slow, fast) = (target(), target());
        slow.observe_latency(40_000);
        fast.observe_latency(2_000);
        let targets = [slow.clone(), fast.clone()];
        let mut lost = 0;
        while pick(&targets, &[], |_| true) == Some(1) {
            lost += 1;
            assert!(lost < 32, "the slow route is never tried again");
        }
        assert!(lost >= 4, "a slow route still loses for a while ({lost})");
        // Measured afresh at its usual speed, it stays in the rotation.
        slow.observe_latency(2_000);
        let picked = (0..200)
            .filter(|_| pick(&targets, &[], |_| true) == Some(0))
            .count();
        assert!((60..=140).contains(&picked), "{picked} of 200");
    }

    #[tokio::test]
    async fn a_request_waits_a_turn_before_going_upstream_only_while_others_are_in_flight() {
        use std::future::Future;
        use std::task::{Context, Waker};
        let t = target();
        let mut cx = Context::from_waker(Waker::noop());
        let alone = t.start();
        assert!(
            std::pin::pin!(t.take_turn()).poll(&mut cx).is_ready(),
            "alone on the route it goes at once"
        );
        let other = t.start();
        let mut turn = std::pin::pin!(t.take_turn());
        assert!(turn.as_mut().poll(&mut cx).is_pending(), "waits one turn");
        assert!(turn.as_mut().poll(&mut cx).is_ready(), "and only one");
        drop(other);
        assert!(std::pin::pin!(t.take_turn()).poll(&mut cx).is_ready());
        drop(alone);
    }

    #[test]
    fn the_circuit_opens_half_opens_for_one_trial_and_closes_on_success() {
        let t = target();
        let now = now_ms();
        for _ in 0..EJECT_AFTER {
            t.failed(None);
        }
        assert!(!t.healthy(now), "open after consecutive failures");
        t.ejected_until_ms.store(0, Ordering::Relaxed); // the backoff has passed
        assert!(t.healthy(now), "half-open admits a trial");
        let trial = t.start();
        assert!(!t.healthy(now), "only one trial at a time");
        t.failed(None);
        drop(trial);
        let until = t.ejected_until_ms.load(Ordering::Relaxed);
        assert!(
            until > now + BASE_BACKOFF_MS,
            "a failed trial reopens, with a longer backoff"
        );
        t.ejected_until_ms.store(0, Ordering::Relaxed);
        let trial = t.start();
        t.succeeded();
        drop(trial);
        assert!(
            t.healthy(now) && !t.half_open(),
            "a successful trial closes the circuit"
        );
        let _a = t.start();
        assert!(t.healthy(now), "closed: concurrent requests again");
    }

    #[test]
    fn the_retry_budget_allows_a_burst_then_a_fifth_of_traffic() {
        let b = RetryBudget::default();
        assert_eq!((0..20).filter(|_| b.withdraw()).count(), 10, "ten banked");
        let mut granted = 0;
        for _ in 0..100 {
            b.deposit();
            if b.withdraw() {
                granted += 1;
            }
        }
        assert_eq!(granted, 20, "then one retry per five requests");
    }
}
