//! The hash-chained ledger: each entry commits to the one before it, so editing or
//! removing any entry breaks every hash after it. Pure functions; storage is elsewhere.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    /// Prepaid money added (positive).
    Credit,
    /// A period's metered usage posted (negative).
    Usage,
    /// An operator's correction (either sign).
    Adjustment,
}

impl LedgerKind {
    /// The stored and hashed name.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Credit => "credit",
            LedgerKind::Usage => "usage",
            LedgerKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "credit" => Some(LedgerKind::Credit),
            "usage" => Some(LedgerKind::Usage),
            "adjustment" => Some(LedgerKind::Adjustment),
            _ => None,
        }
    }
}

impl std::fmt::Display for LedgerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub seq: i64,
    pub ts_ms: i64,
    /// Opaque per-account billing id (never the account id, name or email).
    pub billing_id: String,
    pub kind: LedgerKind,
    /// Signed nano-USD: credits positive, usage charges negative.
    pub amount_nanos: i64,
    pub period_start_ms: Option<i64>,
    pub period_end_ms: Option<i64>,
    pub memo: String,
    pub prev_hash: String,
    pub hash: String,
}

/// SHA-256 over the previous hash and every field, unambiguously delimited.
pub fn entry_hash(e: &LedgerEntry) -> String {
    let mut h = Sha256::new();
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
    for part in [
        e.prev_hash.as_str(),
        &e.seq.to_string(),
        &e.ts_ms.to_string(),
        &e.billing_id,
        e.kind.as_str(),
        &e.amount_nanos.to_string(),
        &opt(e.period_start_ms),
        &opt(e.period_end_ms),
        &e.memo,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a new entry says; [`next`] chains it after the ledger's last entry.
pub struct Draft<'a> {
    pub ts_ms: i64,
    pub billing_id: &'a str,
    pub kind: LedgerKind,
    pub amount_nanos: i64,
    pub period: Option<(i64, i64)>,
    pub memo: &'a str,
}

/// The entry `draft` becomes after the tip — the last entry's `(seq, hash)`, `None` for an
/// empty ledger: the next sequence number, linked to the tip's hash, hashed. The stores
/// only persist what this returns.
pub fn next(tip: Option<(i64, String)>, draft: Draft<'_>) -> LedgerEntry {
    let (seq, prev_hash) = match tip {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let mut e = LedgerEntry {
        seq,
        ts_ms: draft.ts_ms,
        billing_id: draft.billing_id.to_owned(),
        kind: draft.kind,
        amount_nanos: draft.amount_nanos,
        period_start_ms: draft.period.map(|p| p.0),
        period_end_ms: draft.period.map(|p| p.1),
        memo: draft.memo.to_owned(),
        prev_hash,
        hash: String::new(),
    };
    e.hash = entry_hash(&e);
    e
}

/// What `verify` found wrong first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// An entry is missing before `seq` (sequence numbers must be 1, 2, 3, …).
    Gap { seq: i64 },
    /// The entry at `seq` does not point at its predecessor's hash.
    Unlinked { seq: i64 },
    /// The entry at `seq` was edited: its stored hash is not the hash of its fields.
    Tampered { seq: i64 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Gap { seq } => write!(f, "entry before seq {seq} is missing"),
            ChainBreak::Unlinked { seq } => {
                write!(f, "entry {seq} does not link to its predecessor")
            }
            ChainBreak::Tampered { seq } => write!(f, "entry {seq} was altered"),
        }
    }
}

/// Checks the whole chain in order; `Ok(n)` with the number of entries.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a LedgerEntry>) -> Result<usize, ChainBreak> {
    let mut prev = GENESIS.to_owned();
    let mut n = 0usize;
    for e in entries {
        n += 1;
        if e.seq != n as i64 {
            return Err(ChainBreak::Gap { seq: e.seq });
        }
        if e.prev_hash != prev {
            return Err(ChainBreak::Unlinked { seq: e.seq });
        }
        if entry_hash(e) != e.hash {
            return Err(ChainBreak::Tampered { seq: e.seq });
        }
        prev = e.hash.clone();
    }
    Ok(n)
}

/// A stored running total that disagrees with the entries it sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalMismatch {
    pub billing_id: String,
    /// What the running total holds.
    pub stored: i64,
    /// What the entries sum to.
    pub entries: i64,
}

impl std::fmt::Display for TotalMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the running total of {} is {} nano-USD but its entries sum to {}",
            self.billing_id, self.stored, self.entries
        )
    }
}

/// Checks the running totals balances are read from (one per billing id) against the
/// entries: the chain protects the entries, this protects what is derived from them.
pub fn check_totals<'a>(
    entries: impl IntoIterator<Item = &'a LedgerEntry>,
    totals: &[(String, i64)],
) -> Result<(), TotalMismatch> {
    let mut sums: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for e in entries {
        let sum = sums.entry(e.billing_id.as_str()).or_default();
        *sum = sum.saturating_add(e.amount_nanos);
    }
    let stored: std::collections::BTreeMap<&str, i64> =
        totals.iter().map(|(b, n)| (b.as_str(), *n)).collect();
    for id in sums.keys().chain(stored.keys()) {
        let (s, e) = (
            stored.get(id).copied().unwrap_or(0),
            sums.get(id).copied().unwrap_or(0),
        );
        if s != e {
            return Err(TotalMismatch {
                billing_id: (*id).to_owned(),
                stored: s,
                entries: e,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_each_draft_after_the_tip_and_the_chain_verifies() {
        let mut entries: Vec<LedgerEntry> = Vec::new();
        for (i, amount) in [5_000_000_000i64, -1_234, 7].into_iter().enumerate() {
            let tip = entries.last().map(|e| (e.seq, e.hash.clone()));
            entries.push(next(
                tip,
                Draft {
                    ts_ms: 1_000 + i as i64,
                    billing_id: "b1",
                    kind: if amount > 0 {
                        LedgerKind::Credit
                    } else {
                        LedgerKind::Usage
                    },
                    amount_nanos: amount,
                    period: (amount < 0).then_some((0, 10)),
                    memo: "",
                },
            ));
        }
        assert_eq!(entries[0].prev_hash, GENESIS);
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(verify(&entries), Ok(3));
    }

    fn chain(n: i64) -> Vec<LedgerEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = LedgerEntry {
                    seq,
                    ts_ms: seq * 10,
                    billing_id: "bill_x".into(),
                    kind: LedgerKind::Credit,
                    amount_nanos: seq * 1000,
                    period_start_ms: None,
                    period_end_ms: None,
                    memo: String::new(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = entry_hash(&e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn edits_and_removals_are_detected() {
        let mut c = chain(5);
        c[2].amount_nanos += 1;
        assert_eq!(verify(&c), Err(ChainBreak::Tampered { seq: 3 }));
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c), Err(ChainBreak::Gap { seq: 3 }));
        let mut c = chain(5);
        c.pop();
        c[3].hash = "f".repeat(64);
        assert_eq!(verify(&c), Err(ChainBreak::Tampered { seq: 4 }));
        let mut c = chain(3);
        let last = c.len() - 1;
        c[last].prev_hash = GENESIS.into();
        c[last].hash = entry_hash(&c[last]);
        assert_eq!(verify(&c), Err(ChainBreak::Unlinked { seq: 3 }));
    }

    #[test]
    fn running_totals_must_equal_the_sum_of_their_entries() {
        let c = chain(3);
        let ok = [("bill_x".to_owned(), 6_000)];
        assert_eq!(check_totals(&c, &ok), Ok(()));
        let off = [("bill_x".to_owned(), 7_000)];
        assert_eq!(
            check_totals(&c, &off),
            Err(TotalMismatch {
                billing_id: "bill_x".into(),
                stored: 7_000,
                entries: 6_000
            })
        );
        // A total with no entries behind it, and entries with no total, are both wrong.
        let extra = [("bill_x".to_owned(), 6_000), ("bill_y".to_owned(), 5)];
        assert_eq!(
            check_totals(&c, &extra).map_err(|m| m.billing_id),
            Err("bill_y".into())
        );
        assert_eq!(check_totals(&c, &[]).map_err(|m| m.entries), Err(6_000));
    }
}
