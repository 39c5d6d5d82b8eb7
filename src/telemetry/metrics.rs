//! Prometheus metrics, kept in process and rendered in the text exposition format.
//!
//! Labels are bounded by construction: configured model ids, endpoint and route names
//! from fixed lists, status codes, provider names from config, limiter reasons from an
//! enum. No key id, account id, IP or content ever becomes a label. Request counters are
//! fed by the usage writer (one observation per usage record, off the request path);
//! HTTP counters by the request middleware; route health is read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::limits::Refused;
use crate::usage::UsageRecord;

/// Upstream usage reports rejected as implausible (past a model's token bound), process-wide:
/// counted where the report is read, which holds no handle on the registry.
pub static UPSTREAM_USAGE_REJECTED: AtomicU64 = AtomicU64::new(0);

/// Upper bounds (seconds) of the latency and time-to-first-token histograms.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum_us: u64,
}

impl Histogram {
    fn observe(&mut self, us: u64) {
        let s = us as f64 / 1e6;
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct ModelSeries {
    /// endpoint → status → requests.
    requests: BTreeMap<String, BTreeMap<u16, u64>>,
    input: u64,
    cached_input: u64,
    cache_write_5m: u64,
    cache_write_1h: u64,
    output: u64,
    reasoning: u64,
    cost_nanos: i128,
    latency: Histogram,
    ttft: Histogram,
}

#[derive(Default)]
pub struct Metrics {
    models: Mutex<BTreeMap<String, ModelSeries>>,
    /// HTTP responses: one row a route label (in `ROUTE_LABELS` order), counted without a lock.
    http: [HttpRow; ROUTE_LABELS.len()],
    /// Refusals by reason, in the order of `Refused::ALL`.
    limited: [AtomicU64; Refused::ALL.len()],
    /// Usage records set aside because the store would not take them.
    quarantined: AtomicU64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The route labels of `instagen_http_responses_total`: a fixed set, so a path a client
/// makes up never becomes a label.
pub const ROUTE_LABELS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/audio/transcriptions",
    "/v1/models",
    "/v1/models/{model}",
    "/v1/responses",
    "/v1/responses/{response_id}",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/key",
    "/v1/generations/{request_id}",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api",
    "/console",
    "unmatched",
];

/// A route label: an index into [`ROUTE_LABELS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLabel(usize);

impl RouteLabel {
    pub fn as_str(self) -> &'static str {
        ROUTE_LABELS.get(self.0).copied().unwrap_or("unmatched")
    }
}

/// The route label of a request path (see [`ROUTE_LABELS`]). A label's `{…}` segment
/// matches any one non-empty segment; everything under `/api/` is `/api`, the console's
/// pages are `/console`, and a stored-response id's sub-routes
/// (`/v1/responses/{response_id}/{action}`) count as its route.
pub fn route_label(path: &str) -> RouteLabel {
    let label = if path.starts_with("/api/") {
        "/api"
    } else if path == "/" || path.starts_with("/console") {
        "/console"
    } else if let Some(rest) = path.strip_prefix("/v1/responses/")
        && rest.split('/').count() <= 2
        && rest.split('/').all(|s| !s.is_empty())
    {
        "/v1/responses/{response_id}"
    } else {
        path
    };
    // Exact routes first (the inference routes are), then the patterns segment by segment.
    let found = ROUTE_LABELS.iter().position(|l| *l == label).or_else(|| {
        ROUTE_LABELS
            .iter()
            .position(|pattern| pattern.contains('{') && segments_match(pattern, label))
    });
    RouteLabel(found.unwrap_or(ROUTE_LABELS.len() - 1))
}

/// Whether `path` fits `pattern`, whose `{…}` segments match one non-empty segment each.
fn segments_match(pattern: &str, path: &str) -> bool {
    let (mut want, mut have) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) if w.starts_with('{') && !h.is_empty() => {}
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// Distinct statuses counted per route; more than this many is not a real server.
const STATUS_SLOTS: usize = 48;

/// One route's responses by status: a slot is claimed for a status by compare-and-swap on
/// first use, then counted with an atomic add — no lock on the response path.
struct HttpRow {
    statuses: [std::sync::atomic::AtomicU16; STATUS_SLOTS],
    counts: [AtomicU64; STATUS_SLOTS],
}

impl Default for HttpRow {
    fn default() -> Self {
        Self {
            statuses: [const { std::sync::atomic::AtomicU16::new(0) }; STATUS_SLOTS],
            counts: [const { AtomicU64::new(0) }; STATUS_SLOTS],
        }
    }
}

impl HttpRow {
    fn add(&self, status: u16) {
        for (slot, count) in self.statuses.iter().zip(&self.counts) {
            let held = match slot.load(Ordering::Acquire) {
                0 => match slot.compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => status,
                    Err(other) => other,
                },
                held => held,
            };
            if held == status {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }

    fn counts(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.statuses
            .iter()
            .zip(&self.counts)
            .map(|(s, c)| (s.load(Ordering::Acquire), c.load(Ordering::Relaxed)))
            .filter(|(s, _)| *s != 0)
    }
}

/// Gauges read at scrape time.
pub struct Gauges {
    pub usage_queue_depth: u64,
    pub usage_queue_capacity: u64,
    pub journal_bytes: u64,
    /// Tokio tasks alive (a leak shows as growth under steady load).
    pub alive_tasks: u64,
    /// `Gateway::route_health()`.
    pub routes: serde_json::Value,
}

impl Metrics {
    /// One finished request (from its usage record).
    pub fn observe(&self, r: &UsageRecord) {
        self.observe_all(std::slice::from_ref(r));
    }

    /// A batch of finished requests, as the usage writer stores them: one lock for the
    /// batch, and a model or endpoint seen before costs no allocation.
    pub fn observe_all(&self, records: &[UsageRecord]) {
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            let model = r.model.as_deref().unwrap_or("none");
            if !models.contains_key(model) {
                models.insert(model.to_owned(), ModelSeries::default());
            }
            let Some(s) = models.get_mut(model) else {
                continue;
            };
            if !s.requests.contains_key(&*r.endpoint) {
                s.requests.insert(r.endpoint.to_string(), BTreeMap::new());
            }
            if let Some(by_status) = s.requests.get_mut(&*r.endpoint) {
                *by_status.entry(r.status).or_insert(0) += 1;
            }
            s.input = s.input.saturating_add(r.input_tokens);
            s.cached_input = s.cached_input.saturating_add(r.cached_input_tokens);
            s.cache_write_5m = s.cache_write_5m.saturating_add(r.cache_write_5m_tokens);
            s.cache_write_1h = s.cache_write_1h.saturating_add(r.cache_write_1h_tokens);
            s.output = s.output.saturating_add(r.output_tokens);
            s.reasoning = s.reasoning.saturating_add(r.reasoning_tokens);
            s.cost_nanos += i128::from(r.cost_nanos);
            s.latency.observe(r.latency_us);
            if let Some(t) = r.ttft_us {
                s.ttft.observe(t);
            }
        }
    }

    /// One HTTP response, by route label (a fixed set) and status.
    pub fn http(&self, route: RouteLabel, status: u16) {
        if let Some(row) = self.http.get(route.0) {
            row.add(status);
        }
    }

    /// Usage records moved to the quarantine file.
    pub fn quarantined(&self, n: u64) {
        self.quarantined.fetch_add(n, Ordering::Relaxed);
    }

    /// A limiter refusal, by reason.
    pub fn limited(&self, reason: &str) {
        if let Some(i) = Refused::ALL.iter().position(|r| r.kind() == reason) {
            self.limited[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exposition text.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP instagen_requests_total Requests that passed authentication, by model, endpoint and status.\n# TYPE instagen_requests_total counter\n");
        for (model, s) in models.iter() {
            for ((endpoint, status), n) in s
                .requests
                .iter()
                .flat_map(|(e, by)| by.iter().map(move |(st, n)| ((e, st), n)))
            {
                let _ = writeln!(
                    out,
                    "instagen_requests_total{{model=\"{}\",endpoint=\"{}\",status=\"{status}\"}} {n}",
                    escape(model),
                    escape(endpoint)
                );
            }
        }
        out.push_str("# HELP instagen_tokens_total Tokens metered, by model and kind.\n# TYPE instagen_tokens_total counter\n");
        for (model, s) in models.iter() {
            let m = escape(model);
            for (kind, n) in [
                ("input", s.input),
                ("cached_input", s.cached_input),
                ("cache_write_5m", s.cache_write_5m),
                ("cache_write_1h", s.cache_write_1h),
                ("output", s.output),
                ("reasoning", s.reasoning),
            ] {
                let _ = writeln!(
                    out,
                    "instagen_tokens_total{{model=\"{m}\",kind=\"{kind}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP instagen_cost_usd_total Cost charged, USD (exact nano-dollar sums, rendered as decimals).\n# TYPE instagen_cost_usd_total counter\n");
        for (model, s) in models.iter() {
            let _ = writeln!(
                out,
                "instagen_cost_usd_total{{model=\"{}\"}} {}.{:09}",
                escape(model),
                s.cost_nanos / 1_000_000_000,
                (s.cost_nanos % 1_000_000_000).abs()
            );
        }
        out.push_str("# HELP instagen_request_duration_seconds Time from request to last byte.\n# TYPE instagen_request_duration_seconds histogram\n");
        for (model, s) in models.iter() {
            s.latency.render(
                &mut out,
                "instagen_request_duration_seconds",
                &format!("model=\"{}\"", escape(model)),
            );
        }
        out.push_str("# HELP instagen_time_to_first_token_seconds Time from request to the first generated token (streams).\n# TYPE instagen_time_to_first_token_seconds histogram\n");
        for (model, s) in models.iter() {
            s.ttft.render(
                &mut out,
                "instagen_time_to_first_token_seconds",
                &format!("model=\"{}\"", escape(model)),
            );
        }
        drop(models);
        out.push_str("# HELP instagen_http_responses_total HTTP responses by route and status.\n# TYPE instagen_http_responses_total counter\n");
        let mut http: Vec<_> = ROUTE_LABELS
            .iter()
            .zip(&self.http)
            .flat_map(|(route, row)| row.counts().map(move |(status, n)| ((*route, status), n)))
            .collect();
        http.sort();
        for ((route, status), n) in http {
            let _ = writeln!(
                out,
                "instagen_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP instagen_limiter_rejections_total Requests refused by a limit, by reason.\n# TYPE instagen_limiter_rejections_total counter\n");
        for (reason, n) in Refused::ALL.iter().zip(&self.limited) {
            let _ = writeln!(
                out,
                "instagen_limiter_rejections_total{{reason=\"{}\"}} {}",
                reason.kind(),
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP instagen_usage_quarantined_total Usage records the store refused, set aside in the quarantine file (`instagen usage quarantine list`).\n# TYPE instagen_usage_quarantined_total counter\ninstagen_usage_quarantined_total {}",
            self.quarantined.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP instagen_upstream_usage_rejected_total Upstream usage reports past a model's token bound, billed from our own count instead.\n# TYPE instagen_upstream_usage_rejected_total counter\ninstagen_upstream_usage_rejected_total {}",
            UPSTREAM_USAGE_REJECTED.load(Ordering::Relaxed)
        );
        out.push_str("# HELP instagen_route_healthy Whether a model's route is in rotation.\n# TYPE instagen_route_healthy gauge\n");
        let mut in_flight = String::new();
        let mut ejections = String::new();
        let mut engines = String::new();
        for model in gauges.routes.as_array().into_iter().flatten() {
            let m = escape(model["model"].as_str().unwrap_or(""));
            for r in model["routes"].as_array().into_iter().flatten() {
                let p = escape(r["provider"].as_str().unwrap_or(""));
                let labels = format!("model=\"{m}\",provider=\"{p}\"");
                let healthy = u8::from(r["healthy"].as_bool().unwrap_or(false));
                let _ = writeln!(out, "instagen_route_healthy{{{labels}}} {healthy}");
                let _ = writeln!(
                    in_flight,
                    "instagen_route_in_flight{{{labels}}} {}",
                    r["in_flight"].as_u64().unwrap_or(0)
                );
                let _ = writeln!(
                    ejections,
                    "instagen_route_ejections_total{{{labels}}} {}",
                    r["ejections_total"].as_u64().unwrap_or(0)
                );
                if let Some(e) = r["engine"].as_object() {
                    for state in ["running", "waiting"] {
                        let _ = writeln!(
                            engines,
                            "instagen_engine_sequences{{{labels},state=\"{state}\"}} {}",
                            e.get(state)
                                .and_then(serde_json::Value::as_u64)
                                .unwrap_or(0)
                        );
                    }
                }
            }
        }
        out.push_str("# HELP instagen_route_in_flight Requests in flight on a route.\n# TYPE instagen_route_in_flight gauge\n");
        out.push_str(&in_flight);
        out.push_str("# HELP instagen_route_ejections_total Times a route was taken out of rotation.\n# TYPE instagen_route_ejections_total counter\n");
        out.push_str(&ejections);
        if !engines.is_empty() {
            out.push_str("# HELP instagen_engine_sequences Requests on the built-in engine, generating or waiting for a sequence.\n# TYPE instagen_engine_sequences gauge\n");
            out.push_str(&engines);
        }
        let _ = writeln!(
            out,
            "# HELP instagen_usage_queue_depth Usage records waiting for the writer.\n# TYPE instagen_usage_queue_depth gauge\ninstagen_usage_queue_depth {}",
            gauges.usage_queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP instagen_usage_queue_capacity Usage records the queue holds.\n# TYPE instagen_usage_queue_capacity gauge\ninstagen_usage_queue_capacity {}",
            gauges.usage_queue_capacity
        );
        let _ = writeln!(
            out,
            "# HELP instagen_usage_journal_bytes Bytes in the usage journal's open segment.\n# TYPE instagen_usage_journal_bytes gauge\ninstagen_usage_journal_bytes {}",
            gauges.journal_bytes
        );
        let _ = writeln!(
            out,
            "# HELP instagen_tasks_alive Async tasks alive in the runtime.\n# TYPE instagen_tasks_alive gauge\ninstagen_tasks_alive {}",
            gauges.alive_tasks
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_bounded_series_with_exact_cost() {
        let m = Metrics::default();
        let r = UsageRecord {
            model: Some("m\"1".into()),
            endpoint: "chat.completions".into(),
            status: 200,
            input_tokens: 10,
            output_tokens: 5,
            cost_nanos: 1_500_000_001,
            latency_us: 30_000,
            ttft_us: Some(4_000),
            ..UsageRecord::default()
        };
        m.observe(&r);
        m.observe(&r);
        m.http(route_label("/v1/chat/completions"), 200);
        m.limited("key_rpm_limit");
        let text = m.render(&Gauges {
            usage_queue_depth: 3,
            usage_queue_capacity: 10,
            journal_bytes: 7,
            alive_tasks: 1,
            routes: serde_json::json!([]),
        });
        assert!(text.contains(
            "instagen_requests_total{model=\"m\\\"1\",endpoint=\"chat.completions\",status=\"200\"} 2"
        ));
        assert!(text.contains("instagen_cost_usd_total{model=\"m\\\"1\"} 3.000000002"));
        assert!(text.contains("instagen_tokens_total{model=\"m\\\"1\",kind=\"output\"} 10"));
        assert!(
            text.contains(
                "instagen_request_duration_seconds_bucket{model=\"m\\\"1\",le=\"0.05\"} 2"
            )
        );
        assert!(
            text.contains(
                "instagen_request_duration_seconds_bucket{model=\"m\\\"1\",le=\"0.025\"} 0"
            )
        );
        assert!(text.contains("instagen_limiter_rejections_total{reason=\"key_rpm_limit\"} 1"));
        assert!(text.contains("instagen_usage_queue_depth 3"));
        assert!(text.contains(
            "instagen_http_responses_total{route=\"/v1/chat/completions\",status=\"200\"} 1"
        ));
    }

    #[test]
    fn responses_are_counted_by_route_and_status_across_threads_without_a_lock() {
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u16 {
                        m.http(route_label("/v1/messages"), 200 + (i + t) % 5);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let row = &m.http[ROUTE_LABELS
            .iter()
            .position(|l| *l == "/v1/messages")
            .unwrap()];
        let counts: Vec<(u16, u64)> = row.counts().collect();
        assert_eq!(counts.len(), 5);
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 4000);
    }

    #[test]
    fn a_path_is_labelled_by_the_route_it_fits_and_a_made_up_one_is_unmatched() {
        let label = |path| route_label(path).as_str();
        for exact in [
            "/v1/chat/completions",
            "/v1/messages/count_tokens",
            "/healthz",
            "/metrics",
        ] {
            assert_eq!(label(exact), exact);
        }
        assert_eq!(label("/v1/models/gpt-4o"), "/v1/models/{model}");
        assert_eq!(
            label("/v1/generations/req_1"),
            "/v1/generations/{request_id}"
        );
        assert_eq!(label("/v1/responses/resp_1"), "/v1/responses/{response_id}");
        assert_eq!(
            label("/v1/responses/resp_1/cancel"),
            "/v1/responses/{response_id}"
        );
        assert_eq!(label("/api/v1/accounts/acc_1"), "/api");
        assert_eq!(label("/"), "/console");
        assert_eq!(label("/console/keys"), "/console");
        for made_up in [
            "/made/up",
            "/v1/models/",
            "/v1/models/a/b",
            "/v1/responses/",
            "/v1/responses/a/b/c",
            "/v1/chat/completions/",
            "",
        ] {
            assert_eq!(label(made_up), "unmatched", "{made_up}");
        }
    }
}
