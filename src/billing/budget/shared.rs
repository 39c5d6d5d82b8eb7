//! The budgets shared by every instance through Redis: each reservation made there too,
//! and this instance's fields kept true by a queue of changes and a heartbeat.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{Either, Ready, ready};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{BudgetError, Budgets, Reservation};
use crate::limits::redis::{BUDGET_STALE_MS, BudgetCheck, RedisLimits};

/// The Redis side of the budgets: this instance's name there, and the queue of changes
/// to its fields (applied in order by [`run_shared`]).
pub(super) struct Shared {
    pub(super) redis: Arc<RedisLimits>,
    instance: String,
    tx: mpsc::Sender<Delta>,
    /// What this instance truly has pending in each hash: its shared reservations,
    /// settled costs not yet written, and written costs not yet due to leave. The
    /// heartbeat writes it outright, so a change lost on the way heals within seconds.
    truth: Mutex<HashMap<String, i64>>,
    /// Settled costs on each hash not written yet (what a written record takes back).
    pub(super) settled: Mutex<HashMap<String, i64>>,
    last_warning_ms: std::sync::atomic::AtomicI64,
}

/// A reservation's round trip to Redis (see [`Budgets::reserve_shared`]).
pub type SharedReserve<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<Reservation, BudgetError>> + Send + 'a>>;

/// A change to this instance's field of one budget hash, now or when `due`.
struct Delta {
    hash: String,
    amount: i64,
    due: Option<Instant>,
}

impl Budgets {
    /// Shares the budgets with every instance through `redis`; the returned future applies
    /// this instance's changes there and keeps its fields alive, until `stop`.
    pub fn share(
        self: &Arc<Self>,
        redis: Arc<RedisLimits>,
        stop: CancellationToken,
    ) -> Result<impl Future<Output = ()> + use<>, std::io::Error> {
        let (tx, rx) = mpsc::channel(65_536);
        let instance = crate::keys::random_id(16)?;
        let _ = self.shared.set(Shared {
            redis: redis.clone(),
            instance: instance.clone(),
            tx,
            truth: Mutex::new(HashMap::new()),
            settled: Mutex::new(HashMap::new()),
            last_warning_ms: std::sync::atomic::AtomicI64::new(0),
        });
        Ok(run_shared(self.clone(), redis, instance, rx, stop))
    }

    /// Reserves as [`Budgets::reserve`] does, then — shared — against what every instance
    /// has pending. Without an answer from Redis this instance's own check stands.
    ///
    /// Not an `async fn`: without shared budgets (or nothing to share for this account and
    /// key) the answer is ready at once, and only the Redis round trip is a future of its
    /// own, boxed, so the request's future does not carry its space.
    pub fn reserve_shared<'a>(
        self: &'a Arc<Self>,
        account_id: &'a Arc<str>,
        key_id: &'a Arc<str>,
        key_limit: Option<i64>,
        estimate: i64,
    ) -> Either<Ready<Result<Reservation, BudgetError>>, SharedReserve<'a>> {
        let reservation = match self.reserve(account_id, key_id, key_limit, estimate) {
            Ok(reservation) => reservation,
            Err(e) => return Either::Left(ready(Err(e))),
        };
        let (account, key) = (&**account_id, &**key_id);
        let Some(shared) = self.shared.get() else {
            return Either::Left(ready(Ok(reservation)));
        };
        let (balance, key_figures) = {
            let inner = self.lock();
            (
                self.prepaid
                    .then(|| inner.accounts.get(account).map_or(0, |a| a.stored)),
                inner.keys.get(key).map(|k| (k.limit, k.spent.stored)),
            )
        };
        if balance.is_none() && key_figures.is_none() {
            return Either::Left(ready(Ok(reservation)));
        }
        Either::Right(Box::pin(self.reserve_in_redis(
            shared,
            reservation,
            (account, key),
            estimate,
            (balance, key_figures),
        )))
    }

    /// The shared half of [`Budgets::reserve_shared`]: the reservation checked in Redis
    /// against every instance's pending amounts.
    async fn reserve_in_redis(
        &self,
        shared: &Shared,
        mut reservation: Reservation,
        (account, key): (&str, &str),
        estimate: i64,
        (balance, key_figures): (Option<i64>, Option<(i64, i64)>),
    ) -> Result<Reservation, BudgetError> {
        let check = BudgetCheck {
            account,
            key,
            instance: &shared.instance,
            estimate: estimate.max(0),
            balance,
            key_limit: key_figures,
        };
        let mut hashes = Vec::with_capacity(2);
        if balance.is_some() {
            hashes.push(shared.redis.budget_hash(account, None));
        }
        if key_figures.is_some() {
            hashes.push(shared.redis.budget_hash(account, Some(key)));
        }
        // Counted in the truth before the script runs: a heartbeat written meanwhile then
        // errs on the side of more pending, never less.
        for hash in &hashes {
            shared.move_truth(hash, estimate.max(0));
        }
        let undo = |shared: &Shared| {
            for hash in &hashes {
                shared.move_truth(hash, -estimate.max(0));
            }
        };
        if !self.fresh() {
            shared.warn("the store's figures are older than the shared budgets' flush delay");
        }
        match shared.redis.budget_reserve(&check).await {
            Ok(0) => {
                reservation.shared = hashes;
                Ok(reservation)
            }
            Ok(1) => {
                undo(shared);
                Err(BudgetError::BalanceExhausted)
            }
            Ok(_) => {
                undo(shared);
                Err(BudgetError::KeyLimitReached)
            }
            Err(e) => {
                // The script may have run: the heartbeat writes the truth (without it) over it.
                undo(shared);
                shared.warn(&format!(
                    "redis is unreachable ({e}); budgets hold per instance until it answers"
                ));
                Ok(reservation)
            }
        }
    }
}

impl Shared {
    /// Queues a change of this instance's field; the truth moves now, or when it is due.
    pub(super) fn send(&self, hash: String, amount: i64, due: Option<Instant>) {
        if due.is_none() {
            self.move_truth(&hash, amount);
        }
        if self.tx.try_send(Delta { hash, amount, due }).is_err() {
            // The heartbeat writes the truth outright: Redis catches up within seconds.
            tracing::debug!("the shared budget queue is full; the heartbeat will catch up");
        }
    }

    /// A warning, at most every ten seconds.
    fn warn(&self, message: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::time::now_ms();
        if now - self.last_warning_ms.load(Relaxed) > 10_000 {
            self.last_warning_ms.store(now, Relaxed);
            tracing::warn!("{message}");
        }
    }

    fn move_truth(&self, hash: &str, amount: i64) {
        let mut truth = self.truth.lock().unwrap_or_else(|p| p.into_inner());
        let v = truth.entry(hash.to_owned()).or_default();
        *v = v.saturating_add(amount);
    }
}

/// Applies this instance's changes to its Redis budget fields (several queued changes
/// to one field as one call; written costs when due) and, every few seconds, writes each
/// field's true value outright, which also says the instance is alive.
async fn run_shared(
    budgets: Arc<Budgets>,
    redis: Arc<RedisLimits>,
    instance: String,
    mut rx: mpsc::Receiver<Delta>,
    stop: CancellationToken,
) {
    let mut delayed: VecDeque<Delta> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let beat_every = Duration::from_millis(u64::try_from(BUDGET_STALE_MS / 6).unwrap_or(5_000));
    let mut last_beat = Instant::now();
    let adjust = async |moves: HashMap<String, i64>| {
        for (hash, amount) in moves.into_iter().filter(|(_, a)| *a != 0) {
            if let Err(e) = redis.budget_adjust(&hash, &instance, amount).await {
                tracing::debug!(error = %e, "cannot move a shared budget field; the heartbeat will");
            }
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            d = rx.recv() => {
                let Some(d) = d else { break };
                let mut moves: HashMap<String, i64> = HashMap::new();
                let mut take = |d: Delta| match d.due {
                    Some(_) => delayed.push_back(d),
                    None => *moves.entry(d.hash).or_default() += d.amount,
                };
                take(d);
                while let Ok(d) = rx.try_recv() {
                    take(d);
                }
                adjust(moves).await;
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let mut moves: HashMap<String, i64> = HashMap::new();
                while delayed.front().is_some_and(|d| d.due.is_some_and(|t| t <= now)) {
                    if let Some(d) = delayed.pop_front() {
                        if let Some(shared) = budgets.shared.get() {
                            shared.move_truth(&d.hash, d.amount);
                        }
                        *moves.entry(d.hash).or_default() += d.amount;
                    }
                }
                adjust(moves).await;
                if last_beat.elapsed() >= beat_every {
                    last_beat = now;
                    let truth: Vec<(String, i64)> = match budgets.shared.get() {
                        Some(shared) => {
                            let mut t = shared.truth.lock().unwrap_or_else(|p| p.into_inner());
                            let all = t.iter().map(|(h, v)| (h.clone(), *v)).collect();
                            t.retain(|_, v| *v != 0);
                            all
                        }
                        None => Vec::new(),
                    };
                    for (hash, value) in truth {
                        if let Err(e) = redis.budget_set(&hash, &instance, value).await {
                            tracing::debug!(error = %e, "cannot write a shared budget field");
                        }
                    }
                }
            }
        }
    }
}
