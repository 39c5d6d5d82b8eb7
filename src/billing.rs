//! Money, prices, the hash-chained ledger and budgets: exact integer nano-dollars, never floats.
//!
//! What a request costs is decided here and nowhere else. No I/O belongs in this module:
//! the store persists the ledger, the budget tracker is fed by the writer and a sync task.

pub mod budget;
pub mod ledger;
mod money;

pub use money::{Money, Price, cost_of};

/// A model's prices, resolved from config once at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prices {
    pub input: Price,
    pub cached_input: Price,
    pub output: Price,
}

impl Prices {
    /// What `input`/`cached`/`output` tokens cost under these prices, rounded up once.
    pub fn cost(&self, input: u64, cached: u64, output: u64) -> Money {
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
