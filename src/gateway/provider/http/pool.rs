//! The connection pool of one plain-HTTP upstream (a self-hosted engine): HTTP/1.1
//! connections kept open between requests, each lent to one exchange at a time and given
//! back when its response body has been read to the end.
//!
//! One pool serves one provider, so one host: no pool key to hash or compare, no waiter
//! task spawned per request to put a connection back (hyper-util's general pool does both
//! on every request), and no connection task either: the request's own task writes the
//! request and reads the answer (`h1`). A connection whose response was dropped part-way
//! goes back if the rest of the body was already in its socket, else it is closed. A
//! checkout passes over a connection the upstream has closed or sent anything on while
//! idle. A request that never left on a reused connection is sent again on another; one
//! that left, even in part, is never resent here. Connections idle past the timeout are
//! closed at the next checkout or give-back (an upstream's own keep-alive timeout, usually
//! shorter, closes them sooner).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{Response, Uri};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;

use super::h1::{self, Conn};

/// Idle connections kept, at most; more are closed when given back.
const MAX_IDLE: usize = 1024;

/// Why an exchange failed before a response came.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("could not connect: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the exchange failed: {0}")]
    Http(#[source] h1::Error),
}

pub struct Pool {
    connector: HttpConnector,
    /// `http://host:port`, what the connector dials.
    target: Uri,
    idle_timeout: Duration,
    /// Idle connections, the most recently used last (taken first: its socket is warm).
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    pub fn new(connector: HttpConnector, target: Uri, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            connector,
            target,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection still open, quiet and not past the idle timeout.
    fn take(&self) -> Option<Conn> {
        loop {
            let entry = {
                let mut idle = self.idle();
                let entry = idle.pop_back()?;
                if entry.since.elapsed() > self.idle_timeout {
                    // The rest were given back earlier still.
                    idle.clear();
                    return None;
                }
                entry
            };
            let mut conn = entry.conn;
            if conn.reusable() {
                return Some(conn);
            }
        }
    }

    fn give_back(&self, conn: Conn) {
        let now = Instant::now();
        let mut idle = self.idle();
        while idle
            .front()
            .is_some_and(|e| now.duration_since(e.since) > self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since: now });
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let mut connector = self.connector.clone();
        let io = tower_service::Service::call(&mut connector, self.target.clone())
            .await
            .map_err(|e| Failure::Connect(Box::new(e)))?;
        Ok(Conn::new(io.into_inner()))
    }

    /// Sends a request, its head written (`h1::encode`, its `Host` header set) with the
    /// body that follows it, on an idle connection or a new one; the response's body gives
    /// the connection back when read to its end. (An `async move` block, not an `async
    /// fn`, so that only what it sends is held.)
    #[allow(clippy::manual_async_fn)]
    pub fn send(
        self: &Arc<Self>,
        (head, body): (Vec<u8>, Bytes),
    ) -> impl Future<Output = Result<Response<Body>, Failure>> + use<'_> {
        async move {
            loop {
                let (mut conn, reused) = match self.take() {
                    Some(conn) => (conn, true),
                    // Boxed: rare, and its future would otherwise swell every exchange's.
                    None => (Box::pin(self.connect()).await?, false),
                };
                match conn.write(&head, &body).await {
                    Ok(()) => {}
                    // Never written: the upstream had closed this idle connection.
                    Err(None) if reused => continue,
                    Err(e) => return Err(Failure::Http(e.unwrap_or(h1::Error::Closed))),
                }
                let (response, framing, keep) = conn.read_head().await.map_err(Failure::Http)?;
                let home = Home(self.clone());
                return Ok(response.map(|()| Body {
                    inner: Inner::Plain(h1::Body::new(conn, framing, keep, home)),
                }));
            }
        }
    }
}

/// The pool a plain-HTTP connection goes back to.
pub struct Home(Arc<Pool>);

impl h1::Home for Home {
    fn take_back(self, conn: Conn) {
        self.0.give_back(conn);
    }
}

/// An upstream response's body: read from its connection in the reader's own task (plain
/// HTTP), or from hyper's connection task (HTTPS).
pub struct Body {
    inner: Inner,
}

enum Inner {
    Plain(h1::Body<Home>),
    Tls(Incoming),
}

impl From<Incoming> for Body {
    fn from(inner: Incoming) -> Self {
        Self {
            inner: Inner::Tls(inner),
        }
    }
}

/// Why an upstream body stopped short.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Plain(#[from] h1::Error),
    #[error(transparent)]
    Tls(#[from] hyper::Error),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.inner {
            Inner::Plain(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
            Inner::Tls(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Plain(b) => b.is_end_stream(),
            Inner::Tls(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Plain(b) => b.size_hint(),
            Inner::Tls(b) => b.size_hint(),
        }
    }
}
