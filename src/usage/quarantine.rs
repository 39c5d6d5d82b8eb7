//! The usage quarantine: records the store cannot take, set aside so they never block the rest.
//!
//! A record is quarantined when it breaks a bound before any SQL runs ([`invalid`]) or when
//! the store refuses it on its own (a data error, found by halving the batch until the
//! refused record stands alone). Everything else in the batch is written. Quarantined
//! records go to `usage-quarantine.jsonl` in the data dir (mode 0600; metadata only, like
//! every usage record) with the time and a fixed reason; `instagen usage quarantine list`
//! shows them and `instagen usage quarantine retry` writes them again after a fix. Not for:
//! retrying a store that is down — the writer does that, the journal keeps the records.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{MAX_TOKENS_PER_REQUEST, UsageRecord};
use crate::billing::MAX_PRICE_NANOS_PER_MTOK;
use crate::store::{Store, StoreError};
use crate::time::now_ms;

/// The dearest record possible: three kinds of tokens at their bound and the top price.
pub const MAX_RECORD_COST_NANOS: i64 =
    3 * (MAX_TOKENS_PER_REQUEST as i64 / 1_000_000) * MAX_PRICE_NANOS_PER_MTOK;
// Sums of a hundred of the dearest records ($30 M each) still fit in i64.
const _: () = assert!(MAX_RECORD_COST_NANOS < i64::MAX / 100);

/// The last millisecond of the year 9999: no timestamp we write is later.
const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Longest id, model, provider or label a record may carry.
const MAX_TEXT: usize = 256;

/// One set-aside record, as the quarantine file holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Quarantined {
    pub quarantined_ms: i64,
    /// Why the store could not take it: a bound it broke, or the store's error.
    pub reason: String,
    pub record: UsageRecord,
}

/// Why `record` cannot be stored as it is, before any SQL runs.
pub fn invalid(record: &UsageRecord) -> Option<&'static str> {
    let texts = [
        Some(&*record.request_id),
        Some(&*record.account_id),
        Some(&*record.key_id),
        Some(&*record.endpoint),
        record.model.as_deref(),
        record.provider.as_deref(),
        record.error_kind.as_deref(),
        record.region.as_deref(),
    ];
    if record.request_id.is_empty() || record.account_id.is_empty() {
        Some("missing request or account id")
    } else if texts.into_iter().flatten().any(|t| t.len() > MAX_TEXT) {
        Some("text field longer than 256 bytes")
    } else if [
        record.input_tokens,
        record.cached_input_tokens,
        record.output_tokens,
    ]
    .iter()
    .any(|n| *n > MAX_TOKENS_PER_REQUEST)
    {
        Some("token count above the per-request bound")
    } else if !(0..=MAX_RECORD_COST_NANOS).contains(&record.cost_nanos) {
        Some("cost outside the possible range")
    } else if !(0..=MAX_TIME_MS).contains(&record.started_ms)
        || !(0..=MAX_TIME_MS).contains(&record.finished_ms)
    {
        Some("timestamp outside the possible range")
    } else if !(100..=599).contains(&record.status) {
        Some("status is not an HTTP status")
    } else if i64::try_from(record.latency_us).is_err()
        || record.ttft_us.is_some_and(|t| i64::try_from(t).is_err())
    {
        Some("duration outside the possible range")
    } else {
        None
    }
}

/// What [`insert_isolating`] did: rows inserted (replays of stored records insert none)
/// and the records set aside, by index into the input, with the reason.
#[derive(Debug, Default)]
pub struct Written {
    pub inserted: u64,
    pub refused: Vec<(usize, String)>,
}

impl Written {
    /// The refused records of `records` (the input this came from), ready for the file.
    pub fn set_aside(&self, records: &[UsageRecord]) -> Vec<Quarantined> {
        let now = now_ms();
        self.refused
            .iter()
            .map(|(i, reason)| Quarantined {
                quarantined_ms: now,
                reason: reason.clone(),
                record: records[*i].clone(),
            })
            .collect()
    }
}

/// Writes `records`, setting aside each one the store refuses on its own, so one bad record
/// never blocks the others. Fails only when the store itself fails (down, locked, …): then
/// nothing is set aside and the caller retries the whole batch (inserts are idempotent).
pub async fn insert_isolating(
    store: &Store,
    records: &[UsageRecord],
) -> Result<Written, StoreError> {
    let mut written = Written::default();
    let mut good: Vec<usize> = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        match invalid(r) {
            Some(why) => written.refused.push((i, why.to_owned())),
            None => good.push(i),
        }
    }
    if written.refused.is_empty() {
        match store.insert_usage(records).await {
            Ok(n) => {
                written.inserted = n;
                return Ok(written);
            }
            Err(e) if e.is_data_error() => {}
            Err(e) => return Err(e),
        }
    }
    // Halve until each refused record stands alone; the halves that go in are written.
    let mut pending: Vec<&[usize]> = vec![&good];
    let mut set_aside = Vec::new();
    while let Some(part) = pending.pop() {
        if part.is_empty() {
            continue;
        }
        let rows: Vec<UsageRecord> = part.iter().map(|&i| records[i].clone()).collect();
        match store.insert_usage(&rows).await {
            Ok(n) => written.inserted += n,
            Err(e) if e.is_data_error() => match part {
                [single] => {
                    let reason = e.to_string();
                    set_aside.push((
                        *single,
                        reason[..reason.floor_char_boundary(200)].to_owned(),
                    ));
                }
                _ => {
                    let (a, b) = part.split_at(part.len() / 2);
                    pending.push(b);
                    pending.push(a);
                }
            },
            Err(e) => return Err(e),
        }
    }
    written.refused.extend(set_aside);
    written.refused.sort_by_key(|(i, _)| *i);
    Ok(written)
}

/// The quarantine file of one data dir.
pub struct Quarantine {
    path: PathBuf,
    /// Appends from the writer and a retry's swap must not interleave within this process.
    lock: Mutex<()>,
}

impl Quarantine {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("usage-quarantine.jsonl"),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends set-aside records (one JSON line each) and syncs them to disk.
    pub fn add(&self, entries: &[Quarantined]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(entries.len() * 512);
        for e in entries {
            serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = open_private(&self.path)?;
        file.write_all(&buf)?;
        file.sync_data()
    }

    /// Sets records aside: appends them, counts them and logs each (ids and the reason
    /// only). Used by the batch writer and by the journal replay at start.
    pub fn keep(
        &self,
        entries: &[Quarantined],
        metrics: Option<&crate::telemetry::metrics::Metrics>,
    ) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.add(entries)?;
        if let Some(m) = metrics {
            m.quarantined(entries.len() as u64);
        }
        for e in entries {
            tracing::error!(
                request_id = %e.record.request_id,
                account_id = %e.record.account_id,
                reason = %e.reason,
                "usage record refused by the store; quarantined (instagen usage quarantine list)"
            );
        }
        Ok(())
    }

    /// Every record in quarantine, oldest first (a line that does not parse is skipped).
    pub fn list(&self) -> std::io::Result<Vec<Quarantined>> {
        read_entries(&self.path)
    }

    /// Writes every quarantined record again; those still refused go back to quarantine.
    /// The file is moved aside first, so records quarantined meanwhile are not lost.
    pub async fn retry(&self, store: &Store) -> Result<RetryOutcome, RetryError> {
        let taking = self.path.with_extension("jsonl.retrying");
        {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            // A retry that died half-way left its file: take it up again first.
            if !taking.exists() {
                match std::fs::rename(&self.path, &taking) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok(RetryOutcome::default());
                    }
                    Err(e) => return Err(RetryError::Io(e)),
                }
            }
        }
        let entries = read_entries(&taking).map_err(RetryError::Io)?;
        let records: Vec<UsageRecord> = entries.iter().map(|e| e.record.clone()).collect();
        let written = insert_isolating(store, &records)
            .await
            .map_err(RetryError::Store)?;
        let still = written.set_aside(&records);
        self.add(&still).map_err(RetryError::Io)?;
        std::fs::remove_file(&taking).map_err(RetryError::Io)?;
        Ok(RetryOutcome {
            retried: records.len(),
            inserted: written.inserted,
            still_quarantined: still.len(),
        })
    }
}

/// What a retry did.
#[derive(Debug, Default, Serialize)]
pub struct RetryOutcome {
    pub retried: usize,
    /// Rows new to the store (a record already stored counts as retried, not inserted).
    pub inserted: u64,
    pub still_quarantined: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("quarantine file: {0}")]
    Io(std::io::Error),
    #[error("store: {0}")]
    Store(StoreError),
}

fn read_entries(path: &Path) -> std::io::Result<Vec<Quarantined>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        if let Ok(entry) = serde_json::from_slice::<Quarantined>(&line?) {
            out.push(entry);
        }
    }
    Ok(out)
}

fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> UsageRecord {
        UsageRecord {
            request_id: "r1".into(),
            account_id: "a1".into(),
            key_id: "k1".into(),
            endpoint: "chat.completions".into(),
            status: 200,
            started_ms: 1,
            finished_ms: 2,
            ..UsageRecord::default()
        }
    }

    #[test]
    fn records_past_a_bound_are_invalid_before_any_sql() {
        assert_eq!(invalid(&record()), None);
        let huge = UsageRecord {
            input_tokens: 1 << 62,
            ..record()
        };
        assert!(invalid(&huge).is_some());
        let saturated = UsageRecord {
            cost_nanos: i64::MAX,
            ..record()
        };
        assert!(invalid(&saturated).is_some());
        let negative = UsageRecord {
            cost_nanos: -1,
            ..record()
        };
        assert!(invalid(&negative).is_some());
    }

    #[test]
    fn quarantine_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path());
        assert!(q.list().unwrap().is_empty());
        let e = Quarantined {
            quarantined_ms: 5,
            reason: "x".into(),
            record: record(),
        };
        q.add(std::slice::from_ref(&e)).unwrap();
        assert_eq!(q.list().unwrap(), vec![e]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(q.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
