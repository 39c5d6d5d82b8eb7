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
use super::{Backlog, Journal, Sequenced, UsageRecord};
use crate::billing::budget::Budgets;
use crate::store::Store;

pub fn spawn_writer(
    store: Store,
    mut rx: mpsc::Receiver<Sequenced>,
    journal: Option<Arc<Journal>>,
    flush_interval: Duration,
    observers: Observers,
    backlog: Arc<Backlog>,
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
    let batch_size = backlog.batch_size;
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
            // already holds every record, so waiting risks nothing. The writer sleeps
            // through the interval instead of waiting on the queue, so a busy gateway's
            // records do not each wake it; it wakes early only when the senders say a
            // full batch is waiting.
            let deadline = tokio::time::Instant::now() + flush_interval;
            loop {
                while batch.len() < batch_size {
                    let Ok(m) = rx.try_recv() else { break };
                    last_seq = m.seq;
                    batch.push(m.record);
                }
                if batch.len() >= batch_size
                    || stop.is_cancelled()
                    || tokio::time::Instant::now() >= deadline
                {
                    break;
                }
                tokio::select! {
                    biased;
                    () = backlog.full.notified() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = stop.cancelled() => {}
                }
            }
            committer.write(&batch, last_seq).await;
            backlog.taken(batch.len());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::UsageSink;

    #[tokio::test]
    async fn a_full_batch_is_written_at_once_not_at_the_end_of_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = Store::open(&url).await.unwrap();
        let (tx, rx) = mpsc::channel(64);
        let backlog = Backlog::new(3);
        let stop = CancellationToken::new();
        let writer = spawn_writer(
            store.clone(),
            rx,
            None,
            Duration::from_secs(3600),
            Observers {
                budgets: None,
                metrics: None,
                quarantine: Arc::new(Quarantine::new(dir.path())),
            },
            backlog.clone(),
            stop.clone(),
        );
        let sink = UsageSink::new(tx, None, backlog);
        let record = |i: usize| UsageRecord {
            request_id: format!("req_{i}").into(),
            account_id: "acct".into(),
            key_id: "key".into(),
            endpoint: "chat.completions".into(),
            started_ms: 1_000,
            finished_ms: 1_001,
            status: 200,
            ..UsageRecord::default()
        };
        let stored = async |n: usize| {
            for _ in 0..500 {
                let rows = store.usage_records("acct", 0, 10_000).await.unwrap();
                if rows.len() == n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        };
        // Two records wait for the (hour-long) interval; the third fills the batch.
        for i in 0..2 {
            sink.reserve().unwrap().commit(record(i));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            store
                .usage_records("acct", 0, 10_000)
                .await
                .unwrap()
                .is_empty()
        );
        sink.reserve().unwrap().commit(record(2));
        assert!(stored(3).await, "a full batch waited for the interval");
        // The next full batch wakes the writer again.
        for i in 3..6 {
            sink.reserve().unwrap().commit(record(i));
        }
        assert!(stored(6).await, "the second full batch waited");
        stop.cancel();
        writer.await.unwrap();
    }
}
