//! Money, prices, the hash-chained ledger and budgets: exact integer nano-dollars, never floats.
//!
//! What a request costs is decided here and nowhere else. No I/O belongs in this module:
//! the store persists the ledger, the budget tracker is fed by the writer and a sync task.

pub mod budget;
pub mod ledger;
mod money;

pub use money::{MAX_PRICE_NANOS_PER_MTOK, Money, MoneyError, Price, cost_of};

use crate::usage::TokenCounts;

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

/// A model's prices, one per kind of token, resolved from config once at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prices {
    pub input: Price,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input: Price,
    /// Input tokens written to the prompt cache for 5 minutes (Anthropic: 1.25× input).
    pub cache_write: Price,
    /// Input tokens written to the prompt cache for an hour (Anthropic: 2× input).
    pub cache_write_1h: Price,
    pub output: Price,
    /// Output tokens spent reasoning (a part of the output, billed at this price).
    pub reasoning: Price,
}

impl Prices {
    /// One price for every kind of token.
    pub fn flat(input: Price, output: Price) -> Self {
        Self {
            input,
            cached_input: input,
            cache_write: input,
            cache_write_1h: input,
            output,
            reasoning: output,
        }
    }

    /// What these tokens cost, each kind at its own price, rounded up once; `None` if it
    /// would not fit in `i64` nano-dollars. The parts of input (cache reads and writes)
    /// and of output (reasoning) are cut to what their whole holds, so no token is billed
    /// twice and none goes unbilled.
    pub fn cost(&self, t: &TokenCounts) -> Option<Money> {
        let k = t.kinds();
        cost_of(&[
            (k.uncached_input, self.input),
            (k.cached_input, self.cached_input),
            (k.cache_write_5m, self.cache_write),
            (k.cache_write_1h, self.cache_write_1h),
            (k.plain_output, self.output),
            (k.reasoning, self.reasoning),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prices_strategy() -> impl Strategy<Value = Prices> {
        proptest::array::uniform6(0i64..=MAX_PRICE_NANOS_PER_MTOK).prop_map(|p| Prices {
            input: Price::from_nanos_per_mtok(p[0]),
            cached_input: Price::from_nanos_per_mtok(p[1]),
            cache_write: Price::from_nanos_per_mtok(p[2]),
            cache_write_1h: Price::from_nanos_per_mtok(p[3]),
            output: Price::from_nanos_per_mtok(p[4]),
            reasoning: Price::from_nanos_per_mtok(p[5]),
        })
    }

    proptest! {
        /// A record's cost is the sum over its kinds of token at the prices in force when
        /// it was served, rounded up once (never down, never by a whole nano-dollar more),
        /// and its kinds add up to exactly its input and output.
        #[test]
        fn cost_is_the_sum_over_kinds_at_the_prices_in_force(
            counts in proptest::array::uniform6(0u64..=crate::usage::MAX_TOKENS_PER_REQUEST),
            base in prices_strategy(),
            later in prices_strategy(),
            change_at in 0i64..1_000,
            served_at in 0i64..1_000,
        ) {
            let t = TokenCounts {
                input: counts[0],
                cached_input: counts[1],
                cache_write_5m: counts[2],
                cache_write_1h: counts[3],
                output: counts[4],
                reasoning: counts[5],
                estimated: false,
            };
            let schedule = PriceSchedule { base, changes: vec![(change_at, later)] };
            let p = if served_at >= change_at { later } else { base };
            let k = t.kinds();
            prop_assert_eq!(
                k.uncached_input + k.cached_input + k.cache_write_5m + k.cache_write_1h,
                t.input
            );
            prop_assert_eq!(k.plain_output + k.reasoning, t.output);
            let exact: i128 = [
                (k.uncached_input, p.input),
                (k.cached_input, p.cached_input),
                (k.cache_write_5m, p.cache_write),
                (k.cache_write_1h, p.cache_write_1h),
                (k.plain_output, p.output),
                (k.reasoning, p.reasoning),
            ]
            .iter()
            .map(|&(n, price)| i128::from(n) * i128::from(price.nanos_per_mtok()))
            .sum();
            let cost = schedule.at(served_at).cost(&t).expect("bounded counts fit");
            // Inputs and outputs of at most 10^9 tokens at capped prices: at most 2·10^16 n$.
            prop_assert!(cost.nanos() <= 2 * 10_i64.pow(16));
            let charged = i128::from(cost.nanos()) * 1_000_000;
            prop_assert!(charged >= exact, "rounded down");
            prop_assert!(charged - exact < 1_000_000, "over-charged by a whole nano-dollar");
        }
    }

    #[test]
    fn each_kind_of_token_uses_its_own_price() {
        let usd = |s| Price::parse(s).unwrap();
        let prices = Prices {
            input: usd("1"),
            cached_input: usd("0.1"),
            cache_write: usd("1.25"),
            cache_write_1h: usd("2"),
            output: usd("4"),
            reasoning: usd("5"),
        };
        let t = TokenCounts {
            input: 1000,
            cached_input: 400,
            cache_write_5m: 100,
            cache_write_1h: 50,
            output: 30,
            reasoning: 10,
            estimated: false,
        };
        // 450×1 + 400×0.1 + 100×1.25 + 50×2 + 20×4 + 10×5 = 845 µ$ → 845_000 n$.
        assert_eq!(prices.cost(&t).unwrap().nanos(), 845_000);
        // Parts past their whole are cut to it: nothing is billed twice.
        let over = TokenCounts {
            cached_input: 5_000,
            reasoning: 99,
            ..t
        };
        // 1000×0.1 + 0×(the rest) + 30×5 = 250 µ$.
        assert_eq!(prices.cost(&over).unwrap().nanos(), 250_000);
    }

    #[test]
    fn the_price_in_force_is_the_latest_change_not_in_the_future() {
        let p = |n| Prices::flat(Price::from_nanos_per_mtok(n), Price::from_nanos_per_mtok(n));
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
