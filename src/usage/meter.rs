//! The per-request meter: gathers what a request used and commits exactly one record.
//!
//! Created when a request is admitted, it is finished once — by the handler, by the
//! stream relay at the end of a stream, or by `Drop` when the client goes away first —
//! so every admitted request yields exactly one record.

use std::time::Instant;

use super::{UsageRecord, UsageSlot};
use crate::billing::Prices;
use crate::billing::budget::Reservation;
use crate::keys::AuthedKey;
use crate::limits::TokenCharge;
use crate::time::now_ms;

/// Tokens one request used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    /// Counted by us because the upstream reported no usage.
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
        request_id: &str,
        key: &AuthedKey,
        endpoint: &'static str,
        started: Instant,
    ) -> Self {
        let elapsed_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(0);
        Self {
            slot: Some(slot),
            reservation: None,
            charge: None,
            record: UsageRecord {
                request_id: request_id.to_owned(),
                account_id: key.account_id.clone(),
                key_id: key.key_id.clone(),
                endpoint: endpoint.to_owned(),
                started_ms: now_ms() - elapsed_ms,
                ..UsageRecord::default()
            },
            started,
            prices: Prices::default(),
        }
    }

    /// Names the configured model and provider that will serve the request.
    pub fn route(&mut self, model: &str, provider: &str, prices: Prices, stream: bool) {
        self.record.model = Some(model.to_owned());
        self.record.provider = Some(provider.to_owned());
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

    /// Prices the tokens and commits the record; later calls do nothing.
    pub fn finish(&mut self, status: u16, error_kind: Option<&'static str>, tokens: TokenCounts) {
        let Some(slot) = self.slot.take() else { return };
        let mut record = std::mem::take(&mut self.record);
        record.finished_ms = now_ms();
        record.status = status;
        record.error_kind = error_kind.map(str::to_owned);
        record.input_tokens = tokens.input;
        record.cached_input_tokens = tokens.cached_input.min(tokens.input);
        record.output_tokens = tokens.output;
        record.estimated = tokens.estimated;
        record.cost_nanos = self
            .prices
            .cost(tokens.input, tokens.cached_input, tokens.output)
            .nanos();
        record.latency_us = micros(self.started);
        if let Some(r) = self.reservation.take() {
            r.settle(record.cost_nanos);
        }
        if let Some(c) = self.charge.take() {
            c.settle(tokens.input + tokens.output);
        }
        slot.commit(record);
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
