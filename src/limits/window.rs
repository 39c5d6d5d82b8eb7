//! Sliding one-minute windows in memory: sixty one-second buckets per subject, so a
//! limit holds over any minute (to the second), not per calendar minute.

use std::collections::HashMap;
use std::sync::Mutex;

const SECONDS: usize = 60;
const SHARDS: usize = 16;

#[derive(Clone)]
pub struct Window {
    counts: [i64; SECONDS],
    /// The last second the window was rolled to.
    head: i64,
}

impl Window {
    fn new(now: i64) -> Self {
        Self {
            counts: [0; SECONDS],
            head: now,
        }
    }

    fn slot(second: i64) -> usize {
        second.rem_euclid(SECONDS as i64) as usize
    }

    /// Forgets the buckets that left the window.
    fn roll(&mut self, now: i64) {
        if now <= self.head {
            return;
        }
        if now - self.head >= SECONDS as i64 {
            self.counts = [0; SECONDS];
        } else {
            for s in self.head + 1..=now {
                self.counts[Self::slot(s)] = 0;
            }
        }
        self.head = now;
    }

    fn used(&self) -> i64 {
        self.counts.iter().sum::<i64>().max(0)
    }

    /// Seconds until the oldest use in the window leaves it.
    fn reset_in(&self, now: i64) -> u64 {
        (now - SECONDS as i64 + 1..=now)
            .find(|s| self.counts[Self::slot(*s)] > 0)
            .map_or(1, |s| u64::try_from(s + SECONDS as i64 - now).unwrap_or(1))
    }
}

/// The outcome of one check-and-add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub admitted: bool,
    /// What is left of the limit after this use (0 when refused).
    pub remaining: u64,
    /// Seconds until capacity frees up.
    pub reset_s: u64,
}

/// Windows by subject, sharded so that unrelated keys rarely share a lock.
pub struct Windows {
    shards: Vec<Mutex<HashMap<String, Window>>>,
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

fn shard_of(subject: &str) -> usize {
    // FNV-1a: stable and cheap; the subject is an id we generated, not attacker-chosen text.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in subject.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

impl Windows {
    /// Adds `cost` to `subject` at second `now` if that keeps it within `limit`.
    pub fn check_and_add(&self, subject: &str, limit: u64, cost: u64, now: i64) -> Verdict {
        let mut shard = self.shards[shard_of(subject)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Look up before inserting: the common case allocates nothing.
        if !shard.contains_key(subject) {
            shard.insert(subject.to_owned(), Window::new(now));
        }
        let Some(w) = shard.get_mut(subject) else {
            return Verdict {
                admitted: true,
                remaining: limit,
                reset_s: 1,
            };
        };
        w.roll(now);
        let used = u64::try_from(w.used()).unwrap_or(0);
        if used.saturating_add(cost) > limit {
            return Verdict {
                admitted: false,
                remaining: limit.saturating_sub(used),
                reset_s: w.reset_in(now),
            };
        }
        w.counts[Window::slot(now)] += i64::try_from(cost).unwrap_or(i64::MAX);
        Verdict {
            admitted: true,
            remaining: limit - used - cost,
            reset_s: w.reset_in(now),
        }
    }

    /// Corrects what was added at second `at` by `delta` (a refund or an actual count).
    pub fn adjust(&self, subject: &str, at: i64, delta: i64, now: i64) {
        let mut shard = self.shards[shard_of(subject)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(w) = shard.get_mut(subject) {
            w.roll(now);
            if now - at < SECONDS as i64 {
                w.counts[Window::slot(at)] += delta;
            }
        }
    }

    /// Drops windows with nothing left in them (run now and then).
    pub fn sweep(&self, now: i64) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, w| {
                w.roll(now);
                w.used() > 0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_window_admits_its_limit_per_minute_and_frees_as_seconds_pass() {
        let w = Windows::default();
        for i in 0..60 {
            assert!(w.check_and_add("k", 60, 1, 1_000 + i / 10).admitted);
        }
        let refused = w.check_and_add("k", 60, 1, 1_005);
        assert!(!refused.admitted && refused.remaining == 0);
        assert_eq!(refused.reset_s, 55, "the first uses leave at 1060");
        assert!(!w.check_and_add("k", 60, 1, 1_059).admitted);
        let v = w.check_and_add("k", 60, 1, 1_060);
        assert!(v.admitted, "the first second's ten left the window");
        w.adjust("k", 1_060, -1, 1_060);
        w.sweep(2_000);
        assert!(w.check_and_add("k", 60, 60, 2_000).admitted);
    }

    proptest! {
        #[test]
        fn no_sixty_second_span_ever_holds_more_than_the_limit(
            steps in proptest::collection::vec((0i64..4, 1u64..5), 1..300),
            limit in 1u64..50,
        ) {
            let w = Windows::default();
            let mut now = 0i64;
            let mut admitted: Vec<(i64, u64)> = Vec::new();
            for (dt, cost) in steps {
                now += dt;
                if w.check_and_add("s", limit, cost, now).admitted {
                    admitted.push((now, cost));
                }
                let in_window: u64 = admitted.iter().filter(|(t, _)| now - t < 60).map(|(_, c)| c).sum();
                prop_assert!(in_window <= limit);
            }
        }
    }
}
