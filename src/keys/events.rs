//! Security events: failed authentications on `/v1` and failed logins, counted per hour.
//!
//! Counted per key id when the presented key names a real key (its account's owner sees
//! them), else per truncated client IP (operators see them). Recording is a non-blocking
//! send from the request path; a background task aggregates and writes once a second.
//! Only ids, kinds, truncated addresses and counts are kept — never the presented secret.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::AuthFailure;
use crate::store::{SecurityEvent, Store};
use crate::time::now_ms;

const HOUR_MS: i64 = 3_600_000;

/// An address with its host part cut off: IPv4 to /24, IPv6 to /48.
pub fn truncate_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return truncate_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

#[derive(Debug)]
pub struct Failed {
    kind: &'static str,
    key_id: Option<String>,
    account_id: Option<String>,
    client_ip: Option<String>,
}

pub struct SecurityEvents {
    tx: mpsc::Sender<Failed>,
    dropped: AtomicU64,
}

impl SecurityEvents {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Failed>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx,
                dropped: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Notes a refused authentication; never blocks (a flood beyond capacity is counted as dropped).
    pub fn record(&self, failure: &AuthFailure, client_ip: Option<IpAddr>) {
        let event = Failed {
            kind: failure.error.kind(),
            client_ip: match &failure.key_id {
                Some(_) => None,
                None => client_ip.map(truncate_ip),
            },
            key_id: failure.key_id.clone(),
            account_id: failure.account_id.clone(),
        };
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes a failed console/API login: one event by truncated address for operators and,
    /// when the email belongs to a user, one for each account they are a member of, which
    /// its owners see. Never the email or the password.
    pub fn login_failed(&self, client_ip: Option<IpAddr>, accounts: &[String]) {
        let operators = std::iter::once(Failed {
            kind: "login_failed",
            key_id: None,
            account_id: None,
            client_ip: client_ip.map(truncate_ip),
        });
        let owners = accounts.iter().map(|a| Failed {
            kind: "login_failed",
            key_id: None,
            account_id: Some(a.clone()),
            client_ip: None,
        });
        for event in operators.chain(owners) {
            if self.tx.try_send(event).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

type BucketKey = (i64, &'static str, Option<String>, Option<String>);

/// Aggregates events and writes them every second, and once more when stopping.
pub fn spawn_flusher(
    store: Store,
    mut rx: mpsc::Receiver<Failed>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    // Tracked by its JoinHandle, which `run` awaits at shutdown after the last flush.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let mut pending: HashMap<BucketKey, (Option<String>, i64)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let stopping = tokio::select! {
                Some(e) = rx.recv() => {
                    let bucket = now_ms() / HOUR_MS * HOUR_MS;
                    let slot = pending.entry((bucket, e.kind, e.key_id, e.client_ip)).or_insert((e.account_id, 0));
                    slot.1 += 1;
                    continue;
                }
                _ = tick.tick() => false,
                () = stop.cancelled() => true,
            };
            if stopping {
                while let Ok(e) = rx.try_recv() {
                    let bucket = now_ms() / HOUR_MS * HOUR_MS;
                    pending
                        .entry((bucket, e.kind, e.key_id, e.client_ip))
                        .or_insert((e.account_id, 0))
                        .1 += 1;
                }
            }
            if !pending.is_empty() {
                let events: Vec<SecurityEvent> = pending
                    .drain()
                    .map(
                        |((bucket_ms, kind, key_id, client_ip), (account_id, count))| {
                            SecurityEvent {
                                bucket_ms,
                                kind: kind.to_owned(),
                                key_id,
                                client_ip,
                                account_id,
                                count,
                            }
                        },
                    )
                    .collect();
                if let Err(e) = store.add_security_events(&events).await {
                    tracing::warn!(error = %e, events = events.len(), "cannot store security events");
                }
            }
            if stopping {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_truncated() {
        assert_eq!(
            truncate_ip("203.0.113.77".parse().unwrap()),
            "203.0.113.0/24"
        );
        assert_eq!(
            truncate_ip("2001:db8:1:2::5".parse().unwrap()),
            "2001:db8:1::/48"
        );
        assert_eq!(
            truncate_ip("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.0/24"
        );
    }
}
