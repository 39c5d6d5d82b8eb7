//! Money, prices, the hash-chained ledger and budgets: exact integer nano-dollars, never floats.
//!
//! What a request costs is decided here and nowhere else. No I/O belongs in this module:
//! the store persists the ledger, the budget tracker is fed by the writer and a sync task.

pub mod budget;
pub mod ledger;
mod money;

pub use money::{MAX_PRICE_NANOS_PER_MTOK, Money, MoneyError, Price, cost_of};

/// A model's prices over time: a base price and scheduled changes, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceSchedule {
    pub base: Prices,
    /// (effective from, epoch-ms; prices).
    pub changes: Vec<(i64, Prices)>,
}

impl PriceSchedule {
    /// The prices in force at `ms`.
    pub fn at(&self, ms: i64) -> Prices {
        self.changes
            .iter()
            .rev()
            .find(|(from, _)| *from <= ms)
            .map_or(self.base, |(_, p)| *p)
    }
}

/// A model's prices, resolved from config once at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prices {
    pub input: Price,
    pub cached_input: Price,
    pub output: Price,
}

impl Prices {
    /// What `input`/`cached`/`output` tokens cost under these prices, rounded up once;
    /// `None` if it would not fit in `i64` nano-dollars.
    pub fn cost(&self, input: u64, cached: u64, output: u64) -> Option<Money> {
        cost_of(
            input,
            cached,
            output,
            self.input,
            self.cached_input,
            self.output,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_in_force_is_the_latest_change_not_in_the_future() {
        let p = |n| Prices {
            input: Price::from_nanos_per_mtok(n),
            cached_input: Price::from_nanos_per_mtok(n),
            output: Price::from_nanos_per_mtok(n),
        };
        let s = PriceSchedule {
            base: p(1),
            changes: vec![(100, p(2)), (200, p(3))],
        };
        assert_eq!(s.at(50), p(1));
        assert_eq!(s.at(100), p(2));
        assert_eq!(s.at(199), p(2));
        assert_eq!(s.at(10_000), p(3));
    }
}
