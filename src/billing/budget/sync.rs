//! Budget sync: the store's balances and key spend into the tracker, reading only what
//! moved between full reads.

use std::time::{Duration, Instant};

use super::{Budgets, Snapshot};
use crate::store::Scope;

/// The store's clock and key version as the last applied sync read them, its UTC day,
/// and when it last read everything.
#[derive(Debug, Clone, Copy)]
pub struct SyncMark {
    clock_ms: i64,
    key_version: i64,
    day_start_ms: i64,
    full_at: Instant,
}

/// How far before the previous sync a partial one looks: a batch stamped up to this long
/// before it committed is still seen (and anything slower by the next full sync).
const STAMP_MARGIN_MS: i64 = 10_000;

/// How often a sync reads every account and key rather than what moved (and at every new
/// UTC day, when daily limits start again).
const FULL_SYNC_EVERY: Duration = Duration::from_secs(60);

/// Reloads balances and key spend from the store into the budget tracker: everything at
/// the first sync, at least every [`FULL_SYNC_EVERY`] and at each new UTC day; otherwise
/// only the accounts and keys whose figures moved (stamped since shortly before the last
/// sync) or that were edited, so an idle tenant costs nothing. Returns whether it read
/// everything.
pub async fn sync_from_store(
    store: &crate::store::Store,
    budgets: &Budgets,
) -> Result<bool, crate::store::StoreError> {
    let mut full = false;
    // A commit racing the read discards the snapshot; try again at once, a few times, so
    // the figures stay fresh under a busy writer.
    for _ in 0..4 {
        let generation = budgets.generation();
        let previous = budgets.mark();
        let now = crate::time::now_ms();
        let day = crate::time::day_start_ms(now);
        let month = crate::time::month_start_ms(now);
        // Read before the figures: whatever commits after them is stamped later.
        let (clock_ms, key_version) = store.change_marks().await?;
        let since = previous
            .filter(|m| m.day_start_ms == day && m.full_at.elapsed() < FULL_SYNC_EVERY)
            .map(|m| crate::store::Since {
                since_ms: m.clock_ms.saturating_sub(STAMP_MARGIN_MS),
                key_version: m.key_version,
            });
        full = since.is_none();
        let scope = since.map_or(Scope::All, Scope::Moved);
        let snapshot = Snapshot {
            balances: store.balances(scope).await?,
            key_spend: store.key_spend(day, month, scope).await?,
            partial: !full,
        };
        let mark = SyncMark {
            clock_ms,
            key_version,
            day_start_ms: day,
            full_at: match previous {
                Some(p) if !full => p.full_at,
                _ => Instant::now(),
            },
        };
        if budgets.apply(snapshot, generation, Some(mark)) {
            break;
        }
    }
    Ok(full)
}
