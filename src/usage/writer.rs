//! The batch writer: drains the usage queue into the store in transactions, off the request path.
//!
//! Records are gathered for up to `flush_interval` (or `batch_size` of them) and written
//! in one transaction, so a busy gateway pays for one commit per batch, not per request. A failing store is retried with backoff;
//! nothing is dropped — the journal still holds every record until it is committed. A
//! record the store refuses on its own goes to the quarantine, and the rest of its batch
//! is written: one bad record never blocks the others.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::quarantine::{Quarantine, Quarantined, insert_isolating};
use super::{Journal, Sequenced, UsageRecord};
use crate::billing::budget::Budgets;
use crate::store::Store;

pub fn spawn_writer(
    store: Store,
    mut rx: mpsc::Receiver<Sequenced>,
    journal: Option<Arc<Journal>>,
    batch_size: usize,
    flush_interval: Duration,
    observers: Observers,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let committer = Committer {
        store,
        journal,
        quarantine: observers.quarantine,
        budgets: observers.budgets,
        metrics: observers.metrics,
        stop: stop.clone(),
    };
    // Tracked by its JoinHandle, which `run` awaits at shutdown after the last flush.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let mut batch: Vec<UsageRecord> = Vec::with_capacity(batch_size);
        loop {
            let first = tokio::select! {
                biased;
                msg = rx.recv() => msg,
                () = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut last_seq = first.seq;
            batch.push(first.record);
            // Gather more for up to `flush_interval` (or until the batch is full): one
            // transaction per batch costs far less than one per record, and the journal
            // already holds every record, so waiting risks nothing.
            let deadline = tokio::time::Instant::now() + flush_interval;
            while batch.len() < batch_size {
                match rx.try_recv() {
                    Ok(m) => {
                        last_seq = m.seq;
                        batch.push(m.record);
                    }
                    Err(_) => {
                        let next = tokio::select! {
                            biased;
                            m = rx.recv() => m,
                            () = tokio::time::sleep_until(deadline) => None,
                            () = stop.cancelled() => None,
                        };
                        match next {
                            Some(m) => {
                                last_seq = m.seq;
                                batch.push(m.record);
                            }
                            None => break,
                        }
                    }
                }
            }
            committer.write(&batch, last_seq).await;
            batch.clear();
        }
        // Stopping: write what is already queued, then leave the rest to the journal.
        let mut last_seq = 0;
        while let Ok(m) = rx.try_recv() {
            last_seq = m.seq;
            batch.push(m.record);
            if batch.len() == batch_size {
                committer.write(&batch, last_seq).await;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            committer.write(&batch, last_seq).await;
        }
    })
}

/// Who learns of every stored record besides the store.
pub struct Observers {
    /// Spend tracking for budgets and key spend limits.
    pub budgets: Option<Arc<Budgets>>,
    /// Prometheus request, token and cost counters.
    pub metrics: Option<Arc<crate::telemetry::metrics::Metrics>>,
    /// Where records the store refuses are set aside.
    pub quarantine: Arc<Quarantine>,
}

/// What a committed batch must update besides the store.
struct Committer {
    store: Store,
    journal: Option<Arc<Journal>>,
    quarantine: Arc<Quarantine>,
    budgets: Option<Arc<Budgets>>,
    metrics: Option<Arc<crate::telemetry::metrics::Metrics>>,
    stop: CancellationToken,
}

impl Committer {
    /// Writes one batch, retrying with backoff; gives up only at shutdown (the journal keeps it).
    async fn write(&self, batch: &[UsageRecord], last_seq: u64) {
        let (store, journal, budgets, stop) = (
            &self.store,
            self.journal.as_deref(),
            self.budgets.as_deref(),
            &self.stop,
        );
        let mut delay = Duration::from_millis(50);
        let mut attempts = 0u32;
        loop {
            let result = match insert_isolating(store, batch).await {
                Ok(written) => self.set_aside(written.set_aside(batch)).map(|()| written),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(written) => {
                    let stored: std::borrow::Cow<'_, [UsageRecord]> = if written.refused.is_empty()
                    {
                        std::borrow::Cow::Borrowed(batch)
                    } else {
                        let mut refused = written.refused.iter().map(|(i, _)| *i).peekable();
                        let kept = batch
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| refused.next_if_eq(i).is_none())
                            .map(|(_, r)| r.clone())
                            .collect();
                        std::borrow::Cow::Owned(kept)
                    };
                    if let Some(b) = budgets {
                        b.flushed(&stored);
                        if !written.refused.is_empty() {
                            let refused: Vec<UsageRecord> = written
                                .refused
                                .iter()
                                .filter_map(|(i, _)| batch.get(*i).cloned())
                                .collect();
                            b.refused(&refused);
                        }
                    }
                    if let Some(m) = &self.metrics {
                        m.observe_all(&stored);
                    }
                    if let Some(j) = journal {
                        j.committed(last_seq);
                    }
                    return;
                }
                Err(e) => {
                    attempts += 1;
                    tracing::error!(error = %e, records = batch.len(), attempts, "usage batch write failed; retrying");
                    if stop.is_cancelled() && attempts >= 3 {
                        tracing::error!(
                            records = batch.len(),
                            "giving up at shutdown; the journal keeps these records for the next start"
                        );
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Moves the refused records of `batch` to the quarantine; an error keeps the batch
    /// in the journal and retrying, since a record must not be dropped on the way.
    fn set_aside(&self, entries: Vec<Quarantined>) -> Result<(), String> {
        self.quarantine
            .keep(&entries, self.metrics.as_deref())
            .map_err(|e| format!("cannot write the usage quarantine: {e}"))
    }
}
