//! The append-only local journal that makes a finished request's record survive `kill -9`.
//!
//! Each record is appended as one JSON line (a `write(2)` into the page cache: a process
//! crash cannot lose it) before the response's last byte leaves. Lines committed close
//! together share one `write`: a request's line waits in memory until the request needs
//! it written, and whoever writes first writes every line waiting. The writer reports what
//! it committed and the journal drops what is safely in the store. At start, whatever a
//! crash left is replayed into the store by request id, so each record lands exactly once.
//! A torn last line (the crash hit mid-write, before any final byte was sent) is skipped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{Permit, Sequenced, UsageRecord};

/// Segments are sealed past this size and deleted once fully committed.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// The waiting lines' buffer starts at this size, and is given back for a new one once a
/// burst has grown it past `SPARE_BYTES`.
const PENDING_BYTES: usize = 4096;
const SPARE_BYTES: usize = 64 * 1024;

/// A fully committed open segment up to this size is truncated in place (cheap); a larger
/// one is replaced by a new segment and removed off the runtime.
const TRUNCATE_BYTES: u64 = 64 * 1024;

pub struct Journal {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// The last sequence number written (read without the lock).
    written: AtomicU64,
}

struct Inner {
    file: File,
    path: PathBuf,
    index: u64,
    /// Last sequence number handed out.
    seq: u64,
    /// Bytes in the current segment.
    bytes: u64,
    /// Sealed segments and the last sequence number each holds.
    sealed: VecDeque<(PathBuf, u64)>,
    /// Lines appended and not yet written (the buffer is reused).
    pending: Vec<u8>,
    /// Their records, sent to the writer once their lines are written.
    waiting: Vec<(Permit, Sequenced)>,
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("usage-{index:012}.jsonl"))
}

fn open_segment(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Segment files found in `dir`, oldest first.
fn existing_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(index) = name
            .strip_prefix("usage-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push((index, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// What a crash left behind: records to replay and the files to delete once they are stored.
pub struct Recovered {
    pub records: Vec<UsageRecord>,
    pub files: Vec<PathBuf>,
}

impl Journal {
    /// Opens the journal in `dir`, returning the records earlier runs left unstored.
    pub fn open(dir: &Path) -> std::io::Result<(Journal, Recovered)> {
        crate::files::private_dir(dir)?;
        let segments = existing_segments(dir)?;
        let mut records = Vec::new();
        for (_, path) in &segments {
            let reader = BufReader::new(File::open(path)?);
            for line in reader.split(b'\n') {
                let line = line?;
                if let Ok(record) = serde_json::from_slice::<UsageRecord>(&line) {
                    records.push(record);
                }
            }
        }
        let index = segments.last().map_or(0, |(i, _)| i + 1);
        let path = segment_path(dir, index);
        let file = open_segment(&path)?;
        let journal = Journal {
            dir: dir.to_owned(),
            inner: Mutex::new(Inner {
                file,
                path,
                index,
                seq: 0,
                bytes: 0,
                sealed: VecDeque::new(),
                pending: Vec::with_capacity(PENDING_BYTES),
                waiting: Vec::new(),
            }),
            written: AtomicU64::new(0),
        };
        let files = segments.into_iter().map(|(_, p)| p).collect();
        Ok((journal, Recovered { records, files }))
    }

    /// Bytes in the open segment (records not yet known to be stored, or not yet truncated).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the record's line in memory and returns its sequence number; the line is
    /// written, and the record sent to the writer, by [`Journal::write_through`].
    pub fn append(&self, record: UsageRecord, permit: Permit) -> u64 {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        write_line(&record, &mut inner.pending);
        inner.waiting.push((permit, Sequenced { seq, record }));
        seq
    }

    /// Appends the record, writes it with every line waiting, and sends it to the writer.
    #[cfg(test)]
    pub fn append_and_send(&self, record: UsageRecord, permit: Permit) {
        let seq = self.append(record, permit);
        self.write_through(seq);
    }

    /// Whether the line of `seq` is written.
    pub fn is_written(&self, seq: u64) -> bool {
        self.written.load(Ordering::Acquire) >= seq
    }

    /// Writes every waiting line (`seq`'s among them, unless already written) in one
    /// `write`, then sends their records to the writer in journal order, under one lock.
    /// Infallible by design: a write error is logged and the records still go to the writer.
    pub fn write_through(&self, seq: u64) {
        if self.is_written(seq) {
            return;
        }
        let mut inner = self.lock();
        if inner.waiting.is_empty() {
            return;
        }
        let Inner { pending, file, .. } = &mut *inner;
        match file.write_all(pending) {
            Ok(()) => {
                inner.bytes += inner.pending.len() as u64;
                if inner.bytes >= SEGMENT_BYTES
                    && let Err(e) = self.seal(&mut inner)
                {
                    tracing::error!(error = %e, "usage journal rotation failed");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "usage journal append failed; records go to the writer only")
            }
        }
        inner.pending.clear();
        for (permit, sequenced) in inner.waiting.drain(..) {
            permit.send(sequenced);
        }
        // A burst's buffers are not kept for good.
        if inner.pending.capacity() > SPARE_BYTES {
            inner.pending = Vec::with_capacity(PENDING_BYTES);
            inner.waiting = Vec::new();
        }
        self.written.store(inner.seq, Ordering::Release);
    }

    fn seal(&self, inner: &mut Inner) -> std::io::Result<()> {
        let next_index = inner.index + 1;
        let next_path = segment_path(&self.dir, next_index);
        let next = open_segment(&next_path)?;
        let old_path = std::mem::replace(&mut inner.path, next_path);
        inner.file = next;
        inner.index = next_index;
        inner.bytes = 0;
        let last = inner.seq;
        inner.sealed.push_back((old_path, last));
        Ok(())
    }

    /// Everything up to and including `seq` is in the store: drop it from the journal.
    ///
    /// Dropping a file frees its cached pages, about a millisecond for a full segment,
    /// and this runs on the writer's task: so the files go after the lock is released, on a
    /// blocking thread where there is a runtime (a crash before they go only leaves records
    /// that replay skips by request id). An open segment with more than `TRUNCATE_BYTES`
    /// is not truncated in place but replaced by a new one, dropped with the others.
    pub fn committed(&self, seq: u64) {
        let mut doomed = Vec::new();
        {
            let mut inner = self.lock();
            while inner.sealed.front().is_some_and(|(_, last)| *last <= seq) {
                doomed.extend(inner.sealed.pop_front().map(|(path, _)| path));
            }
            if inner.sealed.is_empty() && inner.seq <= seq && inner.bytes > 0 {
                if inner.bytes <= TRUNCATE_BYTES {
                    match inner.file.set_len(0) {
                        Ok(()) => inner.bytes = 0,
                        Err(e) => tracing::warn!(error = %e, "cannot truncate the usage journal"),
                    }
                } else {
                    match self.seal(&mut inner) {
                        Ok(()) => doomed.extend(inner.sealed.pop_back().map(|(path, _)| path)),
                        Err(e) => tracing::warn!(error = %e, "usage journal rotation failed"),
                    }
                }
            }
        }
        if doomed.is_empty() {
            return;
        }
        let remove = move || {
            for path in doomed {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(error = %e, "cannot remove a committed usage journal segment");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }

    /// Deletes files whose records were replayed into the store.
    pub fn remove_recovered(files: &[PathBuf]) {
        for f in files {
            if let Err(e) = std::fs::remove_file(f) {
                tracing::warn!(error = %e, "cannot remove a replayed usage journal segment");
            }
        }
    }
}

/// The record as one JSON line, byte for byte what `serde_json::to_writer` writes (replay
/// reads it with serde), at a fraction of the cost: keys are written as the literals they
/// are, and a string is escaped by serde only when it holds a byte that needs it.
fn write_line(record: &UsageRecord, out: &mut Vec<u8>) {
    // Destructured without `..`: a new field fails to compile here until it is written.
    let UsageRecord {
        request_id,
        account_id,
        key_id,
        endpoint,
        model,
        provider,
        started_ms,
        finished_ms,
        status,
        error_kind,
        stream,
        input_tokens,
        cached_input_tokens,
        cache_write_5m_tokens,
        cache_write_1h_tokens,
        output_tokens,
        reasoning_tokens,
        estimated,
        cost_nanos,
        latency_us,
        ttft_us,
        attempts,
        region,
    } = record;
    out.extend_from_slice(b"{\"request_id\":");
    text(out, Some(request_id));
    out.extend_from_slice(b",\"account_id\":");
    text(out, Some(account_id));
    out.extend_from_slice(b",\"key_id\":");
    text(out, Some(key_id));
    out.extend_from_slice(b",\"endpoint\":");
    text(out, Some(endpoint));
    out.extend_from_slice(b",\"model\":");
    text(out, model.as_deref());
    out.extend_from_slice(b",\"provider\":");
    text(out, provider.as_deref());
    int(out, ",\"started_ms\":", *started_ms);
    int(out, ",\"finished_ms\":", *finished_ms);
    int(out, ",\"status\":", *status);
    out.extend_from_slice(b",\"error_kind\":");
    text(out, error_kind.as_deref());
    out.extend_from_slice(b",\"stream\":");
    out.extend_from_slice(if *stream { b"true" } else { b"false" });
    int(out, ",\"input_tokens\":", *input_tokens);
    int(out, ",\"cached_input_tokens\":", *cached_input_tokens);
    int(out, ",\"cache_write_5m_tokens\":", *cache_write_5m_tokens);
    int(out, ",\"cache_write_1h_tokens\":", *cache_write_1h_tokens);
    int(out, ",\"output_tokens\":", *output_tokens);
    int(out, ",\"reasoning_tokens\":", *reasoning_tokens);
    out.extend_from_slice(b",\"estimated\":");
    out.extend_from_slice(if *estimated { b"true" } else { b"false" });
    int(out, ",\"cost_nanos\":", *cost_nanos);
    int(out, ",\"latency_us\":", *latency_us);
    match ttft_us {
        Some(t) => int(out, ",\"ttft_us\":", *t),
        None => out.extend_from_slice(b",\"ttft_us\":null"),
    }
    int(out, ",\"attempts\":", *attempts);
    out.extend_from_slice(b",\"region\":");
    text(out, region.as_deref());
    out.extend_from_slice(b"}\n");
}

/// `key` (with its comma and colon) and an integer.
fn int(out: &mut Vec<u8>, key: &str, n: impl itoa::Integer) {
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string (or `null`): copied as it is when no byte needs escaping (ids, names and
/// labels almost always), escaped by serde otherwise.
fn text(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(s) = value else {
        out.extend_from_slice(b"null");
        return;
    };
    if crate::json::write_str(out, s).is_err() {
        // Writing a `str` into a `Vec` cannot fail; keep the line valid JSON regardless.
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn line(record: &UsageRecord) -> Vec<u8> {
        let mut out = Vec::new();
        write_line(record, &mut out);
        out
    }

    /// The journal's files and their sizes, once every removal handed off has run.
    async fn files(dir: &Path, expected: usize) -> Vec<u64> {
        for _ in 0..200 {
            let sizes: Vec<u64> = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                // A file removed between the listing and its metadata is gone: skip it.
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .collect();
            if sizes.len() == expected {
                return sizes;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the journal never came down to {expected} file(s)");
    }

    #[tokio::test]
    async fn committed_records_leave_the_journal_small_or_large() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Sequenced>(100_000);
        let backlog = crate::usage::Backlog::new(1_000);
        let append = |n: usize| {
            let tx = tx.clone();
            let backlog = backlog.clone();
            let journal = &journal;
            async move {
                for i in 0..n {
                    let record = UsageRecord {
                        request_id: format!("req_{i:020}").into(),
                        ..UsageRecord::default()
                    };
                    let permit = Permit {
                        permit: tx.clone().reserve_owned().await.unwrap(),
                        backlog: backlog.clone(),
                    };
                    journal.append_and_send(record, permit);
                }
            }
        };
        // A few records: the segment is truncated in place.
        append(3).await;
        let seq = journal.lock().seq;
        journal.committed(seq);
        assert_eq!(files(dir.path(), 1).await, [0]);
        // Past TRUNCATE_BYTES: a fresh segment, the old one removed off the runtime.
        append(1_000).await;
        assert!(journal.bytes() > TRUNCATE_BYTES);
        let seq = journal.lock().seq;
        journal.committed(seq);
        assert_eq!(files(dir.path(), 1).await, [0]);
        assert_eq!(journal.bytes(), 0);
        // A sealed segment goes once committed; the open one keeps what is not yet.
        let sealed = usize::try_from(SEGMENT_BYTES).unwrap() / line(&UsageRecord::default()).len();
        append(sealed + 10).await;
        assert_eq!(files(dir.path(), 2).await.len(), 2, "one segment sealed");
        let last = journal.lock().seq;
        journal.committed(last - 5);
        let sizes = files(dir.path(), 1).await;
        assert!(sizes[0] > 0, "the open segment keeps the last records");
        journal.committed(last);
        assert_eq!(files(dir.path(), 1).await, [0]);
        rx.close();
    }

    /// A usage sink journaling into a new journal in `dir`, and the writer's end of it.
    fn journaled_sink(
        dir: &Path,
    ) -> (
        Arc<Journal>,
        crate::usage::UsageSink,
        tokio::sync::mpsc::Receiver<Sequenced>,
    ) {
        let (journal, _) = Journal::open(dir).unwrap();
        let journal = Arc::new(journal);
        let (tx, rx) = tokio::sync::mpsc::channel::<Sequenced>(16);
        let sink = crate::usage::UsageSink::new(
            tx,
            Some(journal.clone()),
            crate::usage::Backlog::new(1_000),
        );
        (journal, sink, rx)
    }

    fn record(id: &str) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            ..UsageRecord::default()
        }
    }

    #[tokio::test]
    async fn lines_committed_together_share_one_write_and_reach_the_writer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, sink, mut rx) = journaled_sink(dir.path());
        let first = sink.reserve().unwrap().commit_durable(record("req_a"));
        let second = sink.reserve().unwrap().commit_durable(record("req_b"));
        // Neither line is written, nor either record sent, until one is needed.
        assert_eq!(journal.bytes(), 0);
        assert!(!journal.is_written(1));
        assert!(rx.try_recv().is_err());
        first.written().await;
        assert!(
            journal.is_written(2),
            "the line waiting behind is written too"
        );
        let on_disk = std::fs::read_to_string(&journal.lock().path).unwrap();
        let ids: Vec<String> = on_disk
            .lines()
            .map(|l| {
                serde_json::from_str::<UsageRecord>(l)
                    .unwrap()
                    .request_id
                    .to_string()
            })
            .collect();
        assert_eq!(ids, ["req_a", "req_b"]);
        let sent: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok().map(|s| s.seq)).collect();
        assert_eq!(sent, [1, 2]);
        // Dropped unawaited (the client went away): the line is written all the same.
        drop(second);
        let third = sink.reserve().unwrap().commit_durable(record("req_c"));
        drop(third);
        assert!(journal.is_written(3));
        assert_eq!(rx.try_recv().unwrap().record.request_id.as_ref(), "req_c");
    }

    /// A commit lets the runtime run others before its `write` only while another admitted
    /// request may still commit a line to share it; alone, it writes at once.
    #[tokio::test]
    async fn a_commit_waits_a_turn_only_while_another_request_may_join_its_write() {
        use std::future::Future;
        use std::task::{Context, Waker};
        let dir = tempfile::tempdir().unwrap();
        let (journal, sink, _rx) = journaled_sink(dir.path());
        let mut cx = Context::from_waker(Waker::noop());

        let still_open = sink.reserve().unwrap();
        let first = sink.reserve().unwrap().commit_durable(record("req_a"));
        let mut waiting = std::pin::pin!(first.written());
        assert!(waiting.as_mut().poll(&mut cx).is_pending(), "waits a turn");
        assert!(!journal.is_written(1));
        // Meanwhile the other request commits: one write carries both lines.
        let second = still_open.commit_durable(record("req_b"));
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        assert!(
            journal.is_written(2),
            "the line committed meanwhile shares the write"
        );
        drop(second);

        // Nobody else admitted: ready on the first poll, the line written.
        let alone = sink.reserve().unwrap().commit_durable(record("req_c"));
        let mut at_once = std::pin::pin!(alone.written());
        assert!(at_once.as_mut().poll(&mut cx).is_ready());
        assert!(journal.is_written(3));
        // A slot given up without a record is no longer counted either.
        drop(sink.reserve().unwrap());
        let last = sink.reserve().unwrap().commit_durable(record("req_d"));
        assert!(std::pin::pin!(last.written()).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_journal_line_is_byte_for_byte_what_serde_writes() {
        let full = UsageRecord {
            request_id: "req_abc0000000001".into(),
            account_id: "acct_1".into(),
            key_id: "key_\"quoted\"\\back".into(),
            endpoint: "chat.completions".into(),
            model: Some("café/ünïcode\u{1}\n".into()),
            provider: Some("p".into()),
            started_ms: -5,
            finished_ms: i64::MAX,
            status: 499,
            error_kind: Some("upstream_timeout".into()),
            stream: true,
            input_tokens: u64::MAX,
            cached_input_tokens: 1,
            cache_write_5m_tokens: 2,
            cache_write_1h_tokens: 3,
            output_tokens: 4,
            reasoning_tokens: 5,
            estimated: true,
            cost_nanos: i64::MIN,
            latency_us: 6,
            ttft_us: Some(7),
            attempts: u32::MAX,
            region: Some("eu\t1".into()),
        };
        for record in [full.clone(), UsageRecord::default()] {
            let mut serde = serde_json::to_vec(&record).unwrap();
            serde.push(b'\n');
            let ours = line(&record);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde)
            );
            let back: UsageRecord = serde_json::from_slice(&ours).unwrap();
            assert_eq!(back, record);
        }
    }
}
