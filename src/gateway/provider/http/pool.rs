//! The connection pool of one plain-HTTP upstream (a self-hosted engine): HTTP/1.1
//! connections kept open between requests, each lent to one exchange at a time and given
//! back when its response body has been read to the end.
//!
//! One pool serves one provider, so one host: no pool key to hash or compare, no waiter
//! task spawned per request to put a connection back (hyper-util's general pool does both
//! on every request). A connection whose response was dropped part-way goes back too:
//! hyper keeps it if the rest of the body was already there, else closes it, and a
//! checkout passes over a closed one. A request that never left on a reused connection (the
//! upstream had closed it while idle) is sent again on another; one that left is never
//! resent here. Connections idle past the timeout are closed at the next checkout or
//! give-back (an upstream's own keep-alive timeout, usually shorter, closes them sooner).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::http::{Request, Response, Uri};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;

type Sender = SendRequest<Full<Bytes>>;

/// Idle connections kept, at most; more are closed when given back.
const MAX_IDLE: usize = 1024;

/// Why an exchange failed before a response came.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("could not connect: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the exchange failed: {0}")]
    Http(#[source] hyper::Error),
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
    conn: Sender,
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

    /// An idle connection still open and not past the idle timeout.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle();
        while let Some(entry) = idle.pop_back() {
            if entry.since.elapsed() > self.idle_timeout {
                // The rest were given back earlier still.
                idle.clear();
                return None;
            }
            if !entry.conn.is_closed() {
                return Some(entry.conn);
            }
        }
        None
    }

    fn give_back(&self, conn: Sender) {
        if conn.is_closed() {
            return;
        }
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

    async fn connect(&self) -> Result<Sender, Failure> {
        let mut connector = self.connector.clone();
        let io = tower_service::Service::call(&mut connector, self.target.clone())
            .await
            .map_err(|e| Failure::Connect(Box::new(e)))?;
        let (conn, driver) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(Failure::Http)?;
        // Not on the task tracker: the connection's task ends by itself once its sender is
        // dropped (the pool's, or an exchange's) or the upstream closes it, as hyper-util's
        // pooled connections do.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::debug!(error = %e, "upstream connection closed with an error");
            }
        });
        Ok(conn)
    }

    /// Sends `request` (its URI absolute, its `Host` header set) on an idle connection or a
    /// new one; the response's body gives the connection back when read to its end.
    /// (An `async move` block, not an `async fn`, so that the request is held once: an
    /// async fn's `mut` argument takes its space twice.)
    pub fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Response<Body>, Failure>> + use<'_> {
        // HTTP/1.1 to an origin server names the path only.
        if let Some(path) = request.uri().path_and_query().cloned() {
            *request.uri_mut() = Uri::from(path);
        }
        async move {
            loop {
                let (mut conn, reused) = match self.take() {
                    Some(conn) => (conn, true),
                    // Boxed: rare, and its future would otherwise swell every exchange's.
                    None => (Box::pin(self.connect()).await?, false),
                };
                if let Err(e) = conn.ready().await {
                    if reused {
                        continue;
                    }
                    return Err(Failure::Http(e));
                }
                match conn.try_send_request(request).await {
                    Ok(response) => {
                        return Ok(response.map(|inner| Body {
                            inner,
                            home: Some((self.clone(), conn)),
                        }));
                    }
                    Err(mut e) => match e.take_message() {
                        // Never written: the upstream had closed this idle connection.
                        Some(unsent) if reused => request = unsent,
                        _ => return Err(Failure::Http(e.into_error())),
                    },
                }
            }
        }
    }
}

/// An upstream response's body; when it came through a `Pool`, the connection goes back
/// to the pool once the body has been read to its end, or when it is dropped.
pub struct Body {
    inner: Incoming,
    home: Option<(Arc<Pool>, Sender)>,
}

impl From<Incoming> for Body {
    fn from(inner: Incoming) -> Self {
        Self { inner, home: None }
    }
}

impl Body {
    fn done(&mut self) {
        if let Some((pool, conn)) = self.home.take() {
            pool.give_back(conn);
        }
    }
}

impl Drop for Body {
    /// Dropped before its end (a stream relayed up to its `[DONE]`, whose closing chunk
    /// had not arrived yet, or one the client left): hyper reads the rest if it is already
    /// there and keeps the connection, else closes it. Either way it goes back, and a
    /// checkout skips it once closed.
    fn drop(&mut self) {
        self.done();
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            None => this.done(),
            Some(Ok(_)) if this.inner.is_end_stream() => this.done(),
            Some(Err(_)) => this.home = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
