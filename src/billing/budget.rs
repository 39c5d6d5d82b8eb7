//! Budgets that concurrent requests cannot bypass: reserve before forwarding, settle after.
//!
//! Each request reserves an upper estimate of its cost from its account's prepaid
//! balance (when `billing.prepaid` is on) and from its key's spend limit (when set),
//! under one lock, before the upstream is called; when it finishes the reservation is
//! replaced by the exact cost. So N concurrent requests can never together spend more
//! than the budget plus one reservation's worth.
//!
//! Figures: `stored` comes from the store (ledger − usage not yet posted; key spend in
//! the current period), refreshed every second by a sync task; `unflushed` is settled
//! cost whose records the writer has not committed yet (the writer moves it into
//! `stored` as it commits, bumping `generation` so a sync read that raced a commit is
//! discarded); `reserved` is in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::usage::UsageRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetError {
    /// The account's prepaid balance cannot cover the request.
    BalanceExhausted,
    /// The key's spend limit for its period is reached.
    KeyLimitReached,
}

#[derive(Default)]
struct Figures {
    stored: i64,
    unflushed: i64,
    reserved: i64,
}

struct KeyLimit {
    limit: i64,
    spent: Figures,
}

#[derive(Default)]
struct Inner {
    /// Account id → balance figures (`stored` is the balance).
    accounts: HashMap<String, Figures>,
    /// Key id → spend limit and spend in the current period (`stored` is spent).
    keys: HashMap<String, KeyLimit>,
    generation: u64,
}

pub struct Budgets {
    prepaid: bool,
    inner: Mutex<Inner>,
}

/// What the store says, read by the sync task.
pub struct Snapshot {
    /// (account id, balance in nano-USD).
    pub balances: Vec<(String, i64)>,
    /// (key id, limit, spent in the current period).
    pub key_spend: Vec<(String, i64, i64)>,
}

impl Budgets {
    pub fn new(prepaid: bool) -> Arc<Self> {
        Arc::new(Self {
            prepaid,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `estimate` nano-USD for one request of `key` in `account`; `key_limit` is
    /// the key's spend cap as authentication knows it.
    pub fn reserve(
        self: &Arc<Self>,
        account: &str,
        key: &str,
        key_limit: Option<i64>,
        estimate: i64,
    ) -> Result<Reservation, BudgetError> {
        let estimate = estimate.max(0);
        let mut inner = self.lock();
        // The cap as authentication knows it applies from the first request, before the
        // next sync brings the period's spend.
        match key_limit {
            Some(limit) => {
                inner
                    .keys
                    .entry(key.to_owned())
                    .or_insert_with(|| KeyLimit {
                        limit,
                        spent: Figures::default(),
                    })
                    .limit = limit;
            }
            None => {
                inner.keys.remove(key);
            }
        }
        if self.prepaid {
            let a = inner.accounts.entry(account.to_owned()).or_default();
            let available = a
                .stored
                .saturating_sub(a.unflushed)
                .saturating_sub(a.reserved);
            if available <= 0 || available < estimate {
                return Err(BudgetError::BalanceExhausted);
            }
        }
        if let Some(k) = inner.keys.get(key) {
            let spent = k
                .spent
                .stored
                .saturating_add(k.spent.unflushed)
                .saturating_add(k.spent.reserved);
            if spent >= k.limit || spent.saturating_add(estimate) > k.limit {
                return Err(BudgetError::KeyLimitReached);
            }
        }
        let account_figures = inner.accounts.entry(account.to_owned()).or_default();
        account_figures.reserved = account_figures.reserved.saturating_add(estimate);
        if let Some(k) = inner.keys.get_mut(key) {
            k.spent.reserved = k.spent.reserved.saturating_add(estimate);
        }
        Ok(Reservation {
            budgets: self.clone(),
            account: account.to_owned(),
            key: key.to_owned(),
            amount: estimate,
            done: false,
        })
    }

    /// The writer committed these records: their cost is now in the store.
    pub fn flushed(&self, records: &[UsageRecord]) {
        let mut inner = self.lock();
        inner.generation += 1;
        for r in records.iter().filter(|r| r.cost_nanos != 0) {
            if let Some(a) = inner.accounts.get_mut(&r.account_id) {
                a.unflushed = a.unflushed.saturating_sub(r.cost_nanos).max(0);
                a.stored = a.stored.saturating_sub(r.cost_nanos);
            }
            if let Some(k) = inner.keys.get_mut(&r.key_id) {
                k.spent.unflushed = k.spent.unflushed.saturating_sub(r.cost_nanos).max(0);
                k.spent.stored = k.spent.stored.saturating_add(r.cost_nanos);
            }
        }
    }

    /// The current generation, read before a sync queries the store.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Applies a snapshot read while `generation` was current; ignored if the writer
    /// committed in between (the next sync will be consistent).
    pub fn apply(&self, snapshot: Snapshot, generation: u64) -> bool {
        let mut inner = self.lock();
        if inner.generation != generation {
            return false;
        }
        for (account, balance) in snapshot.balances {
            inner.accounts.entry(account).or_default().stored = balance;
        }
        let mut keys = HashMap::with_capacity(snapshot.key_spend.len());
        for (key, limit, spent) in snapshot.key_spend {
            let old = inner.keys.remove(&key);
            let (unflushed, reserved) =
                old.map_or((0, 0), |k| (k.spent.unflushed, k.spent.reserved));
            keys.insert(
                key,
                KeyLimit {
                    limit,
                    spent: Figures {
                        stored: spent,
                        unflushed,
                        reserved,
                    },
                },
            );
        }
        inner.keys = keys;
        true
    }

    /// Whether accounts pay from a prepaid balance.
    pub fn prepaid(&self) -> bool {
        self.prepaid
    }

    /// What the key has spent in its limit's period as this instance sees it (stored,
    /// settled but not yet stored, in flight); `None` for a key without a limit.
    pub fn key_spent(&self, key: &str) -> Option<i64> {
        let inner = self.lock();
        inner.keys.get(key).map(|k| {
            k.spent
                .stored
                .saturating_add(k.spent.unflushed)
                .saturating_add(k.spent.reserved)
        })
    }

    /// Balance available to new requests (tests, API).
    pub fn available(&self, account: &str) -> i64 {
        let inner = self.lock();
        inner.accounts.get(account).map_or(0, |a| {
            a.stored
                .saturating_sub(a.unflushed)
                .saturating_sub(a.reserved)
        })
    }

    fn release(&self, account: &str, key: &str, amount: i64, cost: Option<i64>) {
        let mut inner = self.lock();
        if let Some(a) = inner.accounts.get_mut(account) {
            a.reserved = a.reserved.saturating_sub(amount);
            if let Some(c) = cost {
                a.unflushed = a.unflushed.saturating_add(c);
            }
        }
        if let Some(k) = inner.keys.get_mut(key) {
            k.spent.reserved = k.spent.reserved.saturating_sub(amount).max(0);
            if let Some(c) = cost {
                k.spent.unflushed = k.spent.unflushed.saturating_add(c);
            }
        }
    }
}

/// Money set aside for one request; settled with the exact cost, or released on drop.
pub struct Reservation {
    budgets: Arc<Budgets>,
    account: String,
    key: String,
    amount: i64,
    done: bool,
}

impl Reservation {
    /// Replaces the reservation with the exact cost.
    pub fn settle(mut self, cost_nanos: i64) {
        self.done = true;
        self.budgets
            .release(&self.account, &self.key, self.amount, Some(cost_nanos));
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.budgets
                .release(&self.account, &self.key, self.amount, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn funded(balance: i64) -> Arc<Budgets> {
        let b = Budgets::new(true);
        let g = b.generation();
        b.apply(
            Snapshot {
                balances: vec![("a".into(), balance)],
                key_spend: vec![],
            },
            g,
        );
        b
    }

    #[test]
    fn reservations_stop_at_the_balance() {
        let b = funded(1_000);
        let r1 = b.reserve("a", "k", None, 600).unwrap();
        assert_eq!(
            b.reserve("a", "k", None, 600).err(),
            Some(BudgetError::BalanceExhausted)
        );
        r1.settle(100);
        assert_eq!(b.available("a"), 900);
        assert!(b.reserve("a", "k", None, 600).is_ok());
    }

    #[test]
    fn unknown_accounts_have_no_balance_when_prepaid() {
        let b = Budgets::new(true);
        assert_eq!(
            b.reserve("x", "k", None, 1).err(),
            Some(BudgetError::BalanceExhausted)
        );
        assert!(Budgets::new(false).reserve("x", "k", None, 1).is_ok());
    }

    #[test]
    fn key_limits_apply_even_without_prepaid() {
        let b = Budgets::new(false);
        let g = b.generation();
        b.apply(
            Snapshot {
                balances: vec![],
                key_spend: vec![("k".into(), 500, 300)],
            },
            g,
        );
        assert_eq!(
            b.reserve("a", "k", Some(500), 300).err(),
            Some(BudgetError::KeyLimitReached)
        );
        assert!(b.reserve("a", "k", Some(500), 200).is_ok());
    }

    #[test]
    fn a_cap_from_authentication_applies_before_any_sync() {
        let b = Budgets::new(false);
        assert_eq!(
            b.reserve("a", "new", Some(100), 150).err(),
            Some(BudgetError::KeyLimitReached)
        );
        assert!(b.reserve("a", "new", Some(100), 100).is_ok());
    }

    #[test]
    fn a_sync_that_raced_a_commit_is_discarded() {
        let b = funded(1_000);
        let g = b.generation();
        b.flushed(&[]);
        assert!(!b.apply(
            Snapshot {
                balances: vec![("a".into(), 5)],
                key_spend: vec![]
            },
            g
        ));
        assert_eq!(b.available("a"), 1_000);
    }

    proptest! {
        /// However reservations and settlements interleave, what was admitted never
        /// spends more than the balance plus one reservation.
        #[test]
        fn concurrent_admissions_never_exceed_the_budget_plus_one_reservation(
            balance in 1i64..100_000,
            ops in proptest::collection::vec((1i64..5_000, 0u8..3), 1..200),
        ) {
            let b = funded(balance);
            let mut open = Vec::new();
            let mut spent = 0i64;
            for (estimate, action) in ops {
                match action {
                    0 => if let Ok(r) = b.reserve("a", "k", None, estimate) { open.push(r) },
                    _ => if let Some(r) = open.pop() {
                        let cost = r.amount() * i64::from(action) / 2;
                        spent += cost;
                        r.settle(cost);
                    },
                }
                prop_assert!(spent <= balance, "spent {spent} of {balance}");
            }
        }
    }
}
