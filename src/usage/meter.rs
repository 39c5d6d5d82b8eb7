//! The per-request meter: gathers what a request used and commits exactly one record.
//!
//! Created when a request is admitted, it is finished once — by the handler, by the
//! stream relay at the end of a stream, or by `Drop` when the client goes away first —
//! so every admitted request yields exactly one record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Durable, UsageRecord, UsageSlot};
use crate::billing::Prices;
use crate::billing::budget::Reservation;
use crate::keys::AuthedKey;
use crate::limits::TokenCharge;
use crate::time::now_ms;

/// The most tokens of one kind one request may be billed for, whatever anyone reports.
///
/// A model may set a tighter bound (`max_reported_tokens`, by default four times its
/// context length). With prices capped at [`crate::billing::MAX_PRICE_NANOS_PER_MTOK`],
/// the cost of any record stays far inside `i64` nano-dollars.
pub const MAX_TOKENS_PER_REQUEST: u64 = 1_000_000_000;

/// Tokens one request used, as the upstream reported them: `input` is the whole prompt
/// (cache reads and writes included) and `output` the whole answer (reasoning included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: u64,
    /// Part of `input` read from the provider's prompt cache.
    pub cached_input: u64,
    /// Part of `input` written to the prompt cache for 5 minutes.
    pub cache_write_5m: u64,
    /// Part of `input` written to the prompt cache for an hour.
    pub cache_write_1h: u64,
    pub output: u64,
    /// Part of `output` spent reasoning.
    pub reasoning: u64,
    /// Counted by us because the upstream reported no usage.
    pub estimated: bool,
}

/// A request's tokens split into disjoint kinds, each billed at its own price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenKinds {
    pub uncached_input: u64,
    pub cached_input: u64,
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub plain_output: u64,
    pub reasoning: u64,
}

impl TokenCounts {
    /// Whether every count is at most `bound`.
    pub fn within(&self, bound: u64) -> bool {
        [
            self.input,
            self.cached_input,
            self.cache_write_5m,
            self.cache_write_1h,
            self.output,
            self.reasoning,
        ]
        .iter()
        .all(|&n| n <= bound)
    }

    /// The disjoint kinds: each part cut to what its whole still holds (cache reads first,
    /// then 5-minute and 1-hour writes), so the kinds always add up to input and output.
    pub fn kinds(&self) -> TokenKinds {
        let cached_input = self.cached_input.min(self.input);
        let rest = self.input - cached_input;
        let cache_write_5m = self.cache_write_5m.min(rest);
        let rest = rest - cache_write_5m;
        let cache_write_1h = self.cache_write_1h.min(rest);
        let reasoning = self.reasoning.min(self.output);
        TokenKinds {
            uncached_input: rest - cache_write_1h,
            cached_input,
            cache_write_5m,
            cache_write_1h,
            plain_output: self.output - reasoning,
            reasoning,
        }
    }

    /// These counts with every part cut to its whole (as [`TokenCounts::kinds`] does).
    pub fn consistent(&self) -> Self {
        let k = self.kinds();
        Self {
            cached_input: k.cached_input,
            cache_write_5m: k.cache_write_5m,
            cache_write_1h: k.cache_write_1h,
            reasoning: k.reasoning,
            ..*self
        }
    }
}

/// What a request is billed: its cost, and whether its counts are our estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charged {
    pub cost: crate::billing::Money,
    pub estimated: bool,
}

pub struct Meter {
    slot: Option<UsageSlot>,
    /// Budget set aside for this request; settled with the exact cost in `finish`.
    reservation: Option<Reservation>,
    /// Tokens-per-minute reserved from an estimate; corrected to the actual count in `finish`.
    charge: Option<TokenCharge>,
    record: UsageRecord,
    started: Instant,
    prices: Prices,
}

impl Meter {
    pub fn new(
        slot: UsageSlot,
        request_id: &Arc<str>,
        key: &AuthedKey,
        endpoint: Arc<str>,
        (started, started_ms): (Instant, i64),
    ) -> Self {
        Self {
            slot: Some(slot),
            reservation: None,
            charge: None,
            record: UsageRecord {
                request_id: request_id.clone(),
                account_id: key.account_id.clone(),
                key_id: key.key_id.clone(),
                endpoint,
                started_ms,
                ..UsageRecord::default()
            },
            started,
            prices: Prices::default(),
        }
    }

    /// When the request arrived, in epoch milliseconds (its record's `started_ms`).
    pub fn started_ms(&self) -> i64 {
        self.record.started_ms
    }

    /// Names the configured model and provider that will serve the request (the provider
    /// is empty until a route is picked).
    pub fn route(
        &mut self,
        model: &Arc<str>,
        provider: Option<&Arc<str>>,
        prices: Prices,
        stream: bool,
    ) {
        static UNPICKED: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
        self.record.model = Some(model.clone());
        self.record.provider = Some(provider.unwrap_or(&UNPICKED).clone());
        self.record.stream = stream;
        self.prices = prices;
    }

    /// Holds a budget reservation until the request's exact cost is known.
    pub fn charge_tokens(&mut self, charge: Option<TokenCharge>) {
        self.charge = charge;
    }

    pub fn reserve(&mut self, reservation: Reservation) {
        self.reservation = Some(reservation);
    }

    /// The region of the provider that processes the request.
    pub fn set_region(&mut self, region: Option<&str>) {
        self.record.region = region.map(str::to_owned);
    }

    /// How many upstream attempts this request has made (failover).
    pub fn set_attempts(&mut self, n: usize) {
        self.record.attempts = u32::try_from(n).unwrap_or(u32::MAX);
    }

    /// Marks the first content reaching the client (once).
    pub fn first_token(&mut self) {
        if self.record.ttft_us.is_none() {
            self.record.ttft_us = Some(micros(self.started));
        }
    }

    pub fn is_finished(&self) -> bool {
        self.slot.is_none()
    }

    /// The upstream's reported counts if they are within the model's `bound`. Past it they
    /// are not billed (the caller bills our own count instead), and operators see which
    /// provider sent what: a warning with the numbers and a metric.
    pub fn admit_reported(&self, reported: TokenCounts, bound: u64) -> Option<TokenCounts> {
        if reported.within(bound) {
            return Some(reported);
        }
        crate::telemetry::metrics::UPSTREAM_USAGE_REJECTED.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            provider = self.record.provider.as_deref().unwrap_or(""),
            model = self.record.model.as_deref().unwrap_or(""),
            request_id = %self.record.request_id,
            reported_input = reported.input,
            reported_cached_input = reported.cached_input,
            reported_output = reported.output,
            bound,
            "upstream reported implausible token counts; billing our own count instead"
        );
        None
    }

    /// The counts a record takes for `tokens`, and their price at this request's prices.
    ///
    /// Counts reaching here are bounded (the gateway replaces implausible upstream counts
    /// with our own); a count past [`MAX_TOKENS_PER_REQUEST`] is a bug, cut to the bound
    /// and marked estimated rather than let an overflowing cost into the record.
    fn bill(&self, tokens: TokenCounts) -> (TokenCounts, Charged) {
        let tokens = if tokens.within(MAX_TOKENS_PER_REQUEST) {
            tokens
        } else {
            tracing::error!(
                request_id = %self.record.request_id,
                input = tokens.input,
                output = tokens.output,
                "token counts past the hard bound reached the meter; cut to the bound"
            );
            TokenCounts {
                input: tokens.input.min(MAX_TOKENS_PER_REQUEST),
                output: tokens.output.min(MAX_TOKENS_PER_REQUEST),
                estimated: true,
                ..tokens
            }
        };
        let tokens = tokens.consistent();
        // Cannot overflow: counts ≤ 10^9 and prices ≤ 10^13 n$/Mtok give at most 2·10^16 n$.
        let cost = self
            .prices
            .cost(&tokens)
            .unwrap_or(crate::billing::Money::from_nanos(i64::MAX));
        let estimated = tokens.estimated;
        (tokens, Charged { cost, estimated })
    }

    /// What `finish` would bill for `tokens`: the cost a client is shown before the record
    /// is committed (a stream's usage chunk comes before its end).
    pub fn quote(&self, tokens: TokenCounts) -> Charged {
        self.bill(tokens).1
    }

    /// Prices the tokens and commits the record, returning what was billed; later calls
    /// do nothing and return `None`.
    pub fn finish(
        &mut self,
        status: u16,
        error_kind: Option<&'static str>,
        tokens: TokenCounts,
    ) -> Option<Charged> {
        let (slot, record, charged) = self.close(status, error_kind, tokens)?;
        slot.commit(record);
        Some(charged)
    }

    /// As [`Meter::finish`], but the journal's write is left to the returned [`Durable`],
    /// which the caller awaits before the response goes out.
    pub fn finish_durable(
        &mut self,
        status: u16,
        error_kind: Option<&'static str>,
        tokens: TokenCounts,
    ) -> Option<Durable> {
        let (slot, record, _) = self.close(status, error_kind, tokens)?;
        Some(slot.commit_durable(record))
    }

    /// The finished record and its slot, the budget and token reservations settled.
    fn close(
        &mut self,
        status: u16,
        error_kind: Option<&'static str>,
        tokens: TokenCounts,
    ) -> Option<(UsageSlot, UsageRecord, Charged)> {
        let slot = self.slot.take()?;
        let (tokens, charged) = self.bill(tokens);
        let mut record = std::mem::take(&mut self.record);
        record.finished_ms = now_ms();
        record.status = status;
        record.error_kind = error_kind.map(str::to_owned);
        record.input_tokens = tokens.input;
        record.cached_input_tokens = tokens.cached_input;
        record.cache_write_5m_tokens = tokens.cache_write_5m;
        record.cache_write_1h_tokens = tokens.cache_write_1h;
        record.output_tokens = tokens.output;
        record.reasoning_tokens = tokens.reasoning;
        record.estimated = tokens.estimated;
        record.cost_nanos = charged.cost.nanos();
        record.latency_us = micros(self.started);
        if let Some(r) = self.reservation.take() {
            r.settle(record.cost_nanos);
        }
        if let Some(c) = self.charge.take() {
            c.settle(tokens.input + tokens.output);
        }
        Some((slot, record, charged))
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // The request's future was dropped before it finished: the client went away.
        self.finish(499, Some("client_closed"), TokenCounts::default());
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}
