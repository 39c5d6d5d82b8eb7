//! Usage records — the interaction log — and the pipeline that persists them off the request path.
//!
//! One [`UsageRecord`] per request that passed authentication: who, which model and
//! provider, status, tokens, cost and timings. Never content: every string field is an
//! id we generated, a configured name, or a fixed error-kind label.
//!
//! Flow: a request reserves a [`UsageSlot`] when it is admitted (no slot → 503, so a
//! record is never dropped); when it finishes, [`UsageSlot::commit`] appends the record
//! to the local journal (before the response's last byte) and hands it to the batch
//! writer, which inserts batches into the store and then trims the journal.

pub mod export;
mod journal;
mod meter;
pub mod quarantine;
pub mod tokens;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

pub use journal::Journal;
pub use meter::{Charged, MAX_TOKENS_PER_REQUEST, Meter, TokenCounts, TokenKinds};
pub use quarantine::{Quarantine, Quarantined, insert_isolating};
pub use writer::{Observers, spawn_writer};

/// One request's metadata as stored. Field names are the export's column names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageRecord {
    /// Shared with the request, the key and the route (`Arc<str>`): a record copies no id
    /// on its way to the store.
    pub request_id: Arc<str>,
    pub account_id: Arc<str>,
    pub key_id: Arc<str>,
    /// `chat.completions`, `completions`, `embeddings`, `audio.transcriptions`, `responses`
    /// or `messages` (shared: a record takes its label by reference count).
    pub endpoint: Arc<str>,
    /// The configured model id; `None` when the request named no configured model.
    pub model: Option<Arc<str>>,
    /// The configured provider name that served it.
    pub provider: Option<Arc<str>>,
    pub started_ms: i64,
    pub finished_ms: i64,
    /// HTTP status the client received (499: the client went away first).
    pub status: u16,
    /// A fixed label such as `upstream_timeout`; never a message.
    pub error_kind: Option<String>,
    pub stream: bool,
    /// The whole prompt, cache reads and writes included.
    pub input_tokens: u64,
    /// Part of the prompt read from the provider's cache.
    pub cached_input_tokens: u64,
    /// Part of the prompt written to the provider's cache for 5 minutes.
    #[serde(default)]
    pub cache_write_5m_tokens: u64,
    /// Part of the prompt written to the provider's cache for an hour.
    #[serde(default)]
    pub cache_write_1h_tokens: u64,
    /// The whole answer, reasoning included.
    pub output_tokens: u64,
    /// Part of the answer spent reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Tokens were counted by our tokenizer because the upstream reported none.
    pub estimated: bool,
    pub cost_nanos: i64,
    pub latency_us: u64,
    /// Time to the first content chunk (streams only).
    pub ttft_us: Option<u64>,
    /// Upstream attempts made (1 without failover; 0 when none was made).
    #[serde(default)]
    pub attempts: u32,
    /// The region of the provider that processed it, when configured.
    #[serde(default)]
    pub region: Option<String>,
}

/// A record with its journal sequence number, as the writer receives it.
#[derive(Debug)]
pub struct Sequenced {
    pub seq: u64,
    pub record: UsageRecord,
}

/// The queue is full: the request is refused (503) rather than its record risked.
#[derive(Debug, Clone, Copy)]
pub struct QueueFull;

/// How many records the writer has been sent and not yet taken into a written batch; the
/// sender whose record makes a full batch wakes the writer early (otherwise it sleeps
/// through its flush interval, and a busy gateway's records do not each wake it).
pub struct Backlog {
    queued: AtomicUsize,
    full: Notify,
    batch_size: usize,
}

impl Backlog {
    pub fn new(batch_size: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            full: Notify::new(),
            batch_size,
        })
    }

    fn sent(&self) {
        if self.queued.fetch_add(1, Ordering::Relaxed) + 1 == self.batch_size {
            self.full.notify_one();
        }
    }

    /// The writer took `n` records into a batch it has written.
    fn taken(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Room for one record in the writer's queue, reserved when the request is admitted.
pub struct Permit {
    permit: mpsc::OwnedPermit<Sequenced>,
    backlog: Arc<Backlog>,
}

impl Permit {
    fn send(self, sequenced: Sequenced) {
        self.permit.send(sequenced);
        self.backlog.sent();
    }
}

/// The sending side of the usage pipeline, shared by all requests.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<Sequenced>,
    journal: Option<Arc<Journal>>,
    seq: Arc<AtomicU64>,
    backlog: Arc<Backlog>,
    /// Admitted requests that have not committed their record yet ([`Open`]).
    open: Arc<AtomicUsize>,
}

/// One admitted request whose record is still to come, counted in the sink's `open`
/// until it commits or ends without a record (dropped either way).
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UsageSink {
    pub fn new(
        tx: mpsc::Sender<Sequenced>,
        journal: Option<Arc<Journal>>,
        backlog: Arc<Backlog>,
    ) -> Self {
        Self {
            tx,
            journal,
            seq: Arc::new(AtomicU64::new(0)),
            backlog,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Reserves room for one record; held for the life of the request.
    pub fn reserve(&self) -> Result<UsageSlot, QueueFull> {
        let permit = self.tx.clone().try_reserve_owned().map_err(|_| QueueFull)?;
        Ok(UsageSlot {
            permit: Permit {
                permit,
                backlog: self.backlog.clone(),
            },
            journal: self.journal.clone(),
            open: Open::new(&self.open),
            seq: self.seq.clone(),
        })
    }

    /// Free slots left (for readiness and metrics).
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// Bytes in the journal's open segment (0 without a journal).
    pub fn journal_bytes(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.bytes())
    }
}

/// Room for exactly one record in the pipeline.
pub struct UsageSlot {
    permit: Permit,
    journal: Option<Arc<Journal>>,
    open: Open,
    seq: Arc<AtomicU64>,
}

impl UsageSlot {
    /// Journals the record (when enabled) and hands it to the writer. Infallible by design:
    /// a journal write error is logged and the record still goes to the writer.
    pub fn commit(self, record: UsageRecord) {
        drop(self.commit_durable(record));
    }

    /// Commits the record with the journal's write put off: the returned [`Durable`] writes
    /// it, with every other record committed meanwhile, when awaited or dropped. A request
    /// awaits it before its response goes out, so concurrent requests share one `write`.
    pub fn commit_durable(self, record: UsageRecord) -> Durable {
        // Committed: this request has no line left to add to another's `write`, so it no
        // longer makes a commit wait its turn.
        let open = self.open.0.clone();
        drop(self.open);
        let journal = match self.journal {
            Some(journal) => {
                let seq = journal.append(record, self.permit);
                Some((journal, seq))
            }
            None => {
                let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
                self.permit.send(Sequenced { seq, record });
                None
            }
        };
        Durable { journal, open }
    }
}

/// A committed record whose journal line may still wait in memory: it is written (with
/// every line before it) by [`Durable::written`], or at the latest when this is dropped.
#[must_use = "a record is written to the journal when this is awaited or dropped"]
pub struct Durable {
    journal: Option<(Arc<Journal>, u64)>,
    /// The sink's count of admitted requests yet to commit.
    open: Arc<AtomicUsize>,
}

impl Durable {
    /// Returns when the response may go out; the record's journal line is written then,
    /// if no other's `write` took it already. While other admitted requests have yet to
    /// commit, it first lets the runtime run what else is ready (one turn): the records
    /// those requests commit share this one's `write`, and, journal or not, the responses
    /// of requests finishing together are written together after one poll of the
    /// runtime's I/O driver rather than each between polls of its own (on a loaded server,
    /// fewer wake-ups and context switches a request: `docs/performance.md`, "Requests
    /// sent up together"). Alone, it returns at once: a turn would cost a poll of the
    /// driver and of this request again, for nothing.
    pub async fn written(self) {
        if self.open.load(Ordering::Relaxed) > 0 {
            tokio::task::yield_now().await;
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        if let Some((journal, seq)) = &self.journal {
            journal.write_through(*seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    /// Without a journal too, a response waits one turn while another admitted request has
    /// yet to commit (responses finishing together go out together); alone, none.
    #[tokio::test]
    async fn without_a_journal_a_response_waits_a_turn_only_while_others_are_open() {
        let (tx, mut rx) = mpsc::channel::<Sequenced>(16);
        let sink = UsageSink::new(tx, None, Backlog::new(1_000));
        let mut cx = Context::from_waker(Waker::noop());
        let other = sink.reserve().unwrap();
        let first = sink
            .reserve()
            .unwrap()
            .commit_durable(UsageRecord::default());
        assert_eq!(rx.try_recv().unwrap().seq, 1, "the record is sent at once");
        let mut waiting = std::pin::pin!(first.written());
        assert!(waiting.as_mut().poll(&mut cx).is_pending(), "waits a turn");
        assert!(waiting.as_mut().poll(&mut cx).is_ready(), "and only one");
        // A slot given up without a record is no longer counted.
        drop(other);
        let alone = sink
            .reserve()
            .unwrap()
            .commit_durable(UsageRecord::default());
        assert!(std::pin::pin!(alone.written()).poll(&mut cx).is_ready());
        assert_eq!(rx.try_recv().unwrap().seq, 2);
    }
}
