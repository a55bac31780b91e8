//! The HTTP server under the router, with what axum's own `serve` leaves out: a cap on open
//! connections, a deadline for a request's headers, and an idle timeout on every connection
//! (voice sockets included). Without them, anyone can hold thousands of connections open by
//! sending nothing, or a header a byte at a time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::metrics::GatewayMetrics;

/// Limits on the connections themselves, below HTTP and WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// `HTTP_MAX_CONNECTIONS`: open connections (voice sockets included); beyond it, new
    /// connections wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// `HTTP_HEADER_READ_TIMEOUT_SECONDS`: the longest a client may take to send a request's
    /// headers; then the connection is closed.
    pub header_read_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_SECONDS`: a connection on which nothing was read or written for
    /// this long is closed (an idle keep-alive connection, a dead voice socket).
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and lets
/// the open HTTP connections finish (upgraded voice sockets are no longer HTTP connections:
/// the caller waits for those).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: GatewayMetrics,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics.connection_cap_reached.inc();
                tracing::warn!(
                    max = limits.max_connections,
                    "connection cap reached: new connections wait until one closes"
                );
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => {
                        slot.expect("the semaphore is never closed")
                    }
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Small messages both ways (20 ms audio frames up, acknowledgements and sentences
        // down): Nagle's algorithm would hold them back for the peer's delayed ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let io = TokioIo::new(Watched::new(
            stream,
            limits.idle_timeout,
            slot,
            metrics.http_connections.clone(),
        ));
        let service = hyper::service::service_fn(routed(router.clone(), peer));
        let connection =
            graceful.watch(builder.serve_connection_with_upgrades(io, service).into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The answer to one request, as hyper awaits it.
type Routed = Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

/// Each request on a connection from `peer`, through the router.
fn routed(router: Router, peer: SocketAddr) -> impl Fn(hyper::Request<Incoming>) -> Routed + Clone {
    move |mut request| {
        request.extensions_mut().insert(ConnectInfo(peer));
        Box::pin(router.clone().oneshot(request))
    }
}

/// A failed `accept`: out of file descriptors or memory, the listener backs off for a moment
/// rather than spinning; a connection reset before it was accepted is nothing.
async fn accept_failed(err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(err.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %err, "accept failed; backing off");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A TCP stream that holds a connection slot and closes itself (`TimedOut` on read) once
/// nothing has been read or written for the idle timeout.
///
/// Every read and write only notes the time (a voice socket does both fifty times a second);
/// the timer is moved on lazily, when it fires early, at most once per idle period.
struct Watched {
    stream: TcpStream,
    idle: Duration,
    /// When something was last read or written.
    last: Instant,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
    open: Gauge,
}

impl Watched {
    fn new(stream: TcpStream, idle: Duration, slot: OwnedSemaphorePermit, open: Gauge) -> Self {
        open.inc();
        let deadline = Box::pin(tokio::time::sleep(idle));
        Self { stream, idle, last: Instant::now(), deadline, _slot: slot, open }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Ready once the connection has been idle for the whole timeout; otherwise the timer is
    /// set to wake the reader when it might be.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let due = self.last + self.idle;
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            self.deadline.as_mut().reset(due);
        }
        Poll::Pending
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if result.is_ok() && buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.poll_idle(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle")))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
