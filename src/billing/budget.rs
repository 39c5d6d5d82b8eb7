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
//!
//! Across instances (with `limits.redis_url`), each reservation is also made in Redis,
//! atomically against what every instance has pending there (see `limits::redis`): an
//! instance's field holds its reservations, its settled costs, and each flushed cost for
//! [`FLUSH_DELAY`] more — until every instance's store figures (synced each second) have
//! it. So N instances together overrun a budget by at most one reservation.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::idmap::IdMap;
use crate::usage::UsageRecord;

mod shared;
mod sync;
use shared::Shared;
pub use sync::{SyncMark, sync_from_store};

/// How long a flushed cost stays pending in Redis: longer than every instance takes to
/// read it from the store (the sync runs each second, and retries at once when a commit
/// raced it).
pub const FLUSH_DELAY: Duration = Duration::from_millis(5_000);

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
    accounts: IdMap<String, Figures>,
    /// Key id → spend limit and spend in the current period (`stored` is spent).
    keys: IdMap<String, KeyLimit>,
    generation: u64,
    /// When a store snapshot was last applied.
    applied: Option<Instant>,
    /// Where the last applied sync read the store from, for the next one.
    mark: Option<SyncMark>,
}

pub struct Budgets {
    prepaid: bool,
    inner: Mutex<Inner>,
    shared: OnceLock<Shared>,
}

/// What the store says, read by the sync task.
pub struct Snapshot {
    /// (account id, balance in nano-USD).
    pub balances: Vec<(String, i64)>,
    /// (key id, limit, spent in the current period).
    pub key_spend: Vec<(String, i64, i64)>,
    /// Only what moved since the last sync: merged into the figures, not replacing them.
    pub partial: bool,
}

impl Budgets {
    pub fn new(prepaid: bool) -> Arc<Self> {
        Arc::new(Self {
            prepaid,
            inner: Mutex::new(Inner::default()),
            shared: OnceLock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `estimate` nano-USD for one request of `key` in `account`; `key_limit` is
    /// the key's spend cap as authentication knows it.
    pub fn reserve(
        self: &Arc<Self>,
        account_id: &Arc<str>,
        key_id: &Arc<str>,
        key_limit: Option<i64>,
        estimate: i64,
    ) -> Result<Reservation, BudgetError> {
        let (account, key) = (&**account_id, &**key_id);
        let estimate = estimate.max(0);
        let mut inner = self.lock();
        // The cap as authentication knows it applies from the first request, before the
        // next sync brings the period's spend.
        // Ids are copied only the first time they are seen: this runs on every request.
        match (key_limit, inner.keys.get_mut(key)) {
            (Some(limit), Some(k)) => k.limit = limit,
            (Some(limit), None) => {
                inner.keys.insert(
                    key.to_owned(),
                    KeyLimit {
                        limit,
                        spent: Figures::default(),
                    },
                );
            }
            (None, Some(_)) => {
                inner.keys.remove(key);
            }
            (None, None) => {}
        }
        if self.prepaid {
            let available = inner.accounts.get(account).map_or(0, |a| {
                a.stored
                    .saturating_sub(a.unflushed)
                    .saturating_sub(a.reserved)
            });
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
        match inner.accounts.get_mut(account) {
            Some(a) => a.reserved = a.reserved.saturating_add(estimate),
            None => {
                inner.accounts.insert(
                    account.to_owned(),
                    Figures {
                        reserved: estimate,
                        ..Figures::default()
                    },
                );
            }
        }
        if let Some(k) = inner.keys.get_mut(key) {
            k.spent.reserved = k.spent.reserved.saturating_add(estimate);
        }
        Ok(Reservation {
            budgets: self.clone(),
            account: account_id.clone(),
            key: key_id.clone(),
            amount: estimate,
            done: false,
            shared: Vec::new(),
        })
    }

    /// The writer committed these records: their cost is now in the store.
    pub fn flushed(&self, records: &[UsageRecord]) {
        // Every instance reads the store within a second: then the cost leaves Redis.
        self.unsettle(records, Some(Instant::now() + FLUSH_DELAY));
        let mut inner = self.lock();
        inner.generation += 1;
        for r in records.iter().filter(|r| r.cost_nanos != 0) {
            if let Some(a) = inner.accounts.get_mut(&*r.account_id) {
                a.unflushed = a.unflushed.saturating_sub(r.cost_nanos).max(0);
                a.stored = a.stored.saturating_sub(r.cost_nanos);
            }
            if let Some(k) = inner.keys.get_mut(&*r.key_id) {
                k.spent.unflushed = k.spent.unflushed.saturating_sub(r.cost_nanos).max(0);
                k.spent.stored = k.spent.stored.saturating_add(r.cost_nanos);
            }
        }
    }

    /// The store refused these records (they went to the quarantine): their cost leaves
    /// the figures, since no store total will ever hold it.
    pub fn refused(&self, records: &[UsageRecord]) {
        self.unsettle(records, None);
        let mut inner = self.lock();
        for r in records.iter().filter(|r| r.cost_nanos != 0) {
            if let Some(a) = inner.accounts.get_mut(&*r.account_id) {
                a.unflushed = a.unflushed.saturating_sub(r.cost_nanos).max(0);
            }
            if let Some(k) = inner.keys.get_mut(&*r.key_id) {
                k.spent.unflushed = k.spent.unflushed.saturating_sub(r.cost_nanos).max(0);
            }
        }
    }

    /// Takes written (or refused) records' settled costs back out of Redis, at `due`.
    fn unsettle(&self, records: &[UsageRecord], due: Option<Instant>) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        let mut settled = shared.settled.lock().unwrap_or_else(|p| p.into_inner());
        for r in records.iter().filter(|r| r.cost_nanos > 0) {
            for hash in [
                shared.redis.budget_hash(&r.account_id, None),
                shared.redis.budget_hash(&r.account_id, Some(&r.key_id)),
            ] {
                if let Some(left) = settled.get_mut(&hash) {
                    let take = r.cost_nanos.min(*left);
                    *left -= take;
                    if *left == 0 {
                        settled.remove(&hash);
                    }
                    shared.send(hash, -take, due);
                }
            }
        }
    }

    /// Whether the store's figures were applied within [`FLUSH_DELAY`] (else another
    /// instance's written costs may have left Redis before this one saw them).
    fn fresh(&self) -> bool {
        self.lock()
            .applied
            .is_some_and(|t| t.elapsed() < FLUSH_DELAY)
    }

    /// The current generation, read before a sync queries the store.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Where the last applied sync read the store from.
    fn mark(&self) -> Option<SyncMark> {
        self.lock().mark
    }

    /// Applies a snapshot read while `generation` was current; ignored if the writer
    /// committed in between (the next sync will be consistent).
    pub fn apply(&self, snapshot: Snapshot, generation: u64, mark: Option<SyncMark>) -> bool {
        let mut inner = self.lock();
        if inner.generation != generation {
            return false;
        }
        inner.applied = Some(Instant::now());
        if mark.is_some() {
            inner.mark = mark;
        }
        for (account, balance) in snapshot.balances {
            inner.accounts.entry(account).or_default().stored = balance;
        }
        if snapshot.partial {
            for (key, limit, spent) in snapshot.key_spend {
                let k = inner.keys.entry(key).or_insert_with(|| KeyLimit {
                    limit,
                    spent: Figures::default(),
                });
                k.limit = limit;
                k.spent.stored = spent;
            }
            return true;
        }
        let mut keys =
            IdMap::with_capacity_and_hasher(snapshot.key_spend.len(), Default::default());
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
    /// Shared with the authenticated key: no copy on the request path.
    account: Arc<str>,
    key: Arc<str>,
    amount: i64,
    done: bool,
    /// The Redis budget hashes this reservation is in (shared budgets).
    shared: Vec<String>,
}

impl Reservation {
    /// Replaces the reservation with the exact cost.
    pub fn settle(mut self, cost_nanos: i64) {
        self.done = true;
        self.budgets
            .release(&self.account, &self.key, self.amount, Some(cost_nanos));
        self.unshare(Some(cost_nanos));
    }

    /// Moves the shared fields from the reservation to the cost (or to nothing).
    fn unshare(&mut self, cost: Option<i64>) {
        let Some(shared) = self.budgets.shared.get() else {
            return;
        };
        let cost = cost.unwrap_or(0).max(0);
        if cost > 0 {
            let mut settled = shared.settled.lock().unwrap_or_else(|p| p.into_inner());
            for hash in &self.shared {
                let v = settled.entry(hash.clone()).or_default();
                *v = v.saturating_add(cost);
            }
        }
        for hash in self.shared.drain(..) {
            shared.send(hash, cost - self.amount, None);
        }
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
            self.unshare(None);
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
                partial: false,
            },
            g,
            None,
        );
        b
    }

    #[test]
    fn reservations_stop_at_the_balance() {
        let b = funded(1_000);
        let r1 = b
            .reserve(&Arc::from("a"), &Arc::from("k"), None, 600)
            .unwrap();
        assert_eq!(
            b.reserve(&Arc::from("a"), &Arc::from("k"), None, 600).err(),
            Some(BudgetError::BalanceExhausted)
        );
        r1.settle(100);
        assert_eq!(b.available("a"), 900);
        assert!(
            b.reserve(&Arc::from("a"), &Arc::from("k"), None, 600)
                .is_ok()
        );
    }

    #[test]
    fn unknown_accounts_have_no_balance_when_prepaid() {
        let b = Budgets::new(true);
        assert_eq!(
            b.reserve(&Arc::from("x"), &Arc::from("k"), None, 1).err(),
            Some(BudgetError::BalanceExhausted)
        );
        assert!(
            Budgets::new(false)
                .reserve(&Arc::from("x"), &Arc::from("k"), None, 1)
                .is_ok()
        );
    }

    #[test]
    fn key_limits_apply_even_without_prepaid() {
        let b = Budgets::new(false);
        let g = b.generation();
        b.apply(
            Snapshot {
                balances: vec![],
                key_spend: vec![("k".into(), 500, 300)],
                partial: false,
            },
            g,
            None,
        );
        assert_eq!(
            b.reserve(&Arc::from("a"), &Arc::from("k"), Some(500), 300)
                .err(),
            Some(BudgetError::KeyLimitReached)
        );
        assert!(
            b.reserve(&Arc::from("a"), &Arc::from("k"), Some(500), 200)
                .is_ok()
        );
    }

    #[test]
    fn a_cap_from_authentication_applies_before_any_sync() {
        let b = Budgets::new(false);
        assert_eq!(
            b.reserve(&Arc::from("a"), &Arc::from("new"), Some(100), 150)
                .err(),
            Some(BudgetError::KeyLimitReached)
        );
        assert!(
            b.reserve(&Arc::from("a"), &Arc::from("new"), Some(100), 100)
                .is_ok()
        );
    }

    #[test]
    fn a_sync_that_raced_a_commit_is_discarded() {
        let b = funded(1_000);
        let g = b.generation();
        b.flushed(&[]);
        assert!(!b.apply(
            Snapshot {
                balances: vec![("a".into(), 5)],
                key_spend: vec![],
                partial: false,
            },
            g,
            None,
        ));
        assert_eq!(b.available("a"), 1_000);
    }

    #[test]
    fn a_partial_sync_updates_what_moved_and_keeps_the_rest() {
        let b = Budgets::new(true);
        let snapshot =
            |balances: Vec<(&str, i64)>, keys: Vec<(&str, i64, i64)>, partial| Snapshot {
                balances: balances.into_iter().map(|(a, n)| (a.into(), n)).collect(),
                key_spend: keys.into_iter().map(|(k, l, n)| (k.into(), l, n)).collect(),
                partial,
            };
        let g = b.generation();
        let full = snapshot(
            vec![("a", 1_000), ("b", 2_000)],
            vec![("ka", 500, 100), ("kb", 500, 200)],
            false,
        );
        assert!(b.apply(full, g, None));
        let g = b.generation();
        assert!(b.apply(
            snapshot(vec![("a", 900)], vec![("ka", 500, 400)], true),
            g,
            None
        ));
        assert_eq!((b.available("a"), b.available("b")), (900, 2_000));
        assert_eq!(
            (b.key_spent("ka"), b.key_spent("kb")),
            (Some(400), Some(200))
        );
        // A full sync drops keys that no longer have a limit.
        let g = b.generation();
        assert!(b.apply(snapshot(vec![], vec![("ka", 500, 400)], false), g, None));
        assert_eq!(b.key_spent("kb"), None);
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
                    0 => if let Ok(r) = b.reserve(&Arc::from("a"), &Arc::from("k"), None, estimate) { open.push(r) },
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
