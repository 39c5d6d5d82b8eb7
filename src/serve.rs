//! The HTTP server loop: accepts connections, serves HTTP/1.1 and HTTP/2 through hyper,
//! and protects itself from slow or hoarding clients.
//!
//! A client must send a request's headers within `header_read_timeout_ms` (no slowloris),
//! at most `max_connections` are served at once (more wait in the kernel's backlog), and
//! an HTTP/2 peer that stops answering pings is dropped. Shutdown stops accepting and
//! lets every connection finish its requests. With TLS the handshake happens on the
//! connection's own task, bounded by the same timeout as the headers.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection-level settings and protections.
#[derive(Clone)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    /// How a request body must arrive: see [`BodyPace`].
    pub body_pace: BodyPace,
    /// Largest request head hyper will buffer (the handlers answer 431 past half of it).
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// Serve HTTPS with this acceptor (HTTP/2 or HTTP/1.1 by ALPN).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: App,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let active = Arc::new(Active::default());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (builder, app, watcher) = (builder.clone(), app.clone(), graceful.watcher());
        let (active, pace) = (active.clone(), limits.body_pace);
        let (tls, handshake_timeout) = (limits.tls.clone(), limits.header_read_timeout);
        // A connection is tracked by `active` and the graceful-shutdown watcher it holds;
        // shutdown waits for both.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            match tls {
                None => serve_conn(&builder, stream, app, addr, watcher, active, pace).await,
                Some(acceptor) => {
                    // The handshake is bounded like the headers are.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            serve_conn(&builder, tls, app, addr, watcher, active, pace).await;
                        }
                        _ => tracing::debug!("TLS handshake failed or timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Tell every connection to finish (HTTP/1 closes when idle, HTTP/2 sends GOAWAY), then
    // wait for the requests in flight — not for idle connections a client keeps open.
    // Awaited below, within the grace period.
    #[allow(clippy::disallowed_methods)]
    let closing = tokio::spawn(graceful.shutdown());
    active.wait_idle().await;
    closing.abort();
}

/// Requests whose response has not been fully sent yet.
#[derive(Default)]
struct Active {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Active {
    fn enter(self: &Arc<Self>) -> ActiveGuard {
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        ActiveGuard(self.clone())
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

struct ActiveGuard(Arc<Active>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// A response body that counts as in flight until it is sent (or dropped).
struct Tracked {
    inner: axum::body::Body,
    _active: ActiveGuard,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one connection (plain or TLS) until it closes or shutdown has drained it.
async fn serve_conn<I>(
    builder: &Builder<TokioExecutor>,
    io: I,
    app: App,
    addr: std::net::SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
    active: Arc<Active>,
    pace: BodyPace,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The app for this connection, told the peer's address.
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let guard = active.enter();
        async move {
            let response = app
                .handle(
                    req.map(|body| axum::body::Body::new(PacedBody::new(body, pace))),
                    Some(addr),
                )
                .await;
            Ok::<_, Infallible>(response.map(|inner| Tracked {
                inner,
                _active: guard,
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let _ = watcher.watch(conn.into_owned()).await;
}

/// How fast a request body must arrive: all of it within `timeout` plus one second for
/// every `min_bytes_per_sec` received, so a small body gets `timeout` and a large upload
/// must keep a minimum rate. A body that stalls or trickles past that fails with
/// [`BodyTimedOut`], which the handlers answer with 408 and a closed connection.
#[derive(Clone, Copy, Debug)]
pub struct BodyPace {
    pub timeout: Duration,
    pub min_bytes_per_sec: u64,
}

/// The request body did not arrive in time (see [`BodyPace`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl BodyTimedOut {
    /// Whether a body read error was this timeout.
    pub fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut e = Some(error);
        while let Some(err) = e {
            if err.is::<BodyTimedOut>() {
                return true;
            }
            e = err.source();
        }
        false
    }
}

pin_project_lite::pin_project! {
    /// A request body held to its [`BodyPace`]. The clock starts, and the timer is armed,
    /// only when the body first has to be waited for: a body that came with its head (most
    /// JSON requests) is read without a clock read or a timer.
    struct PacedBody {
        #[pin]
        inner: Incoming,
        pace: BodyPace,
        received: u64,
        started: Option<tokio::time::Instant>,
        #[pin]
        deadline: Option<tokio::time::Sleep>,
    }
}

impl PacedBody {
    fn new(inner: Incoming, pace: BodyPace) -> Self {
        Self {
            inner,
            pace,
            received: 0,
            started: None,
            deadline: None,
        }
    }
}

/// How much longer than `timeout` a body of `received` bytes may take at `min_bytes_per_sec`.
fn earned(received: u64, min_bytes_per_sec: u64) -> Duration {
    Duration::from_millis(received.saturating_mul(1_000) / min_bytes_per_sec.max(1))
}

impl http_body::Body for PacedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let started = *this.started.get_or_insert_with(tokio::time::Instant::now);
                let allowed = this
                    .pace
                    .timeout
                    .saturating_add(earned(*this.received, this.pace.min_bytes_per_sec));
                // Past what the clock can hold: as good as never (a year is far beyond any
                // body a limit lets in).
                let due = started
                    .checked_add(allowed)
                    .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3_600));
                match this.deadline.as_mut().as_pin_mut() {
                    Some(sleep) if sleep.deadline() == due => {}
                    Some(sleep) => sleep.reset(due),
                    None => this.deadline.set(Some(tokio::time::sleep_until(due))),
                }
                match this.deadline.as_pin_mut().map(|sleep| sleep.poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                    _ => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_earns_a_second_for_every_min_bytes_per_sec_it_delivered() {
        assert_eq!(earned(0, 1_000), Duration::ZERO);
        assert_eq!(earned(1_000, 1_000), Duration::from_secs(1));
        assert_eq!(earned(2_500, 1_000), Duration::from_millis(2_500));
        // A rate of 0 is read as 1 byte a second; counts past u64 saturate, never wrap.
        assert_eq!(earned(3, 0), Duration::from_secs(3));
        assert_eq!(earned(u64::MAX, 1), Duration::from_millis(u64::MAX));
    }
}
