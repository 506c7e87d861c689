//! Serving the router over TCP with the limits slow and idle clients must not get around
//! (README, HTTP API: "Slow clients"): a request's headers within 10 s, its whole body within 30 s of them, a
//! kept-alive connection closed after 60 s without a request, and at most `max_connections`
//! connections at once, the others waiting in the listen queue.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits for its
//! next request, so it would close idle connections after 10 s, and it closes without an
//! answer. So each connection has a watchdog here instead, told by the socket when a request
//! starts to arrive and by the service when its headers were read, its body ended and its
//! answer was made; a request that runs out of time is answered 408 before the close.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The most a connection reads ahead of its request, headers included.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How long clients may take, and how many are served at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From the first byte of a request (or the connection's opening) to its last header.
    pub header_timeout: Duration,
    /// From a request's last header to the end of its body.
    pub body_timeout: Duration,
    /// A kept-alive connection without a request for this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The limits the README documents (HTTP API, "Slow clients").
    pub fn new(max_connections: usize) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// every request in flight finish (idle connections close at once) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let closed = Arc::new(Notify::new());
    let trimmer = tokio::spawn(release_memory_after_closes(closed.clone()));
    loop {
        // A connection is accepted only once it can be served: the others wait in the
        // kernel's listen queue, where they cost us nothing.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = serve_connection(stream, remote, router.clone(), limits, shutdown.clone());
        let closed = closed.clone();
        connections.spawn(async move {
            connection.await;
            drop(permit);
            closed.notify_one();
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    trimmer.abort();
}

/// Gives what closed connections freed back to the system (`crate::memory`), `TRIM_AFTER`
/// after a close, so that connections closing in a burst cost one trim, and a server whose
/// connections keep closing trims at most once per `TRIM_AFTER`.
async fn release_memory_after_closes(closed: Arc<Notify>) {
    const TRIM_AFTER: Duration = Duration::from_secs(2);
    loop {
        closed.notified().await;
        tokio::time::sleep(TRIM_AFTER).await;
        let _ = tokio::task::spawn_blocking(crate::memory::release_free_memory).await;
    }
}

async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    // Out of file descriptors, most likely: retrying at once would spin.
    tracing::error!(%error, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched {
        stream,
        clock: clock.clone(),
        replacement: Replacement::None,
    });
    let service = ConnectionService {
        router,
        clock: clock.clone(),
        remote,
    };
    let mut conn = http1::Builder::new()
        .header_read_timeout(None)
        // hyper's read buffer grows to 400 KiB by default when reads fill it; what a
        // connection buffers beyond that is the body its handler reads (and caps).
        .max_buf_size(READ_BUFFER_BYTES)
        // Without it, headers that arrive in one large read can exceed the buffer's limit.
        .max_header_size(READ_BUFFER_BYTES)
        .serve_connection(io, service);
    let mut draining = false;
    loop {
        let changed = clock.changed.notified();
        let (deadline, expiry) = clock.deadline(&limits);
        tokio::select! {
            served = &mut conn => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = changed => {}
            () = tokio::time::sleep_until(deadline) => break expire(conn, expiry).await,
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
        }
    }
}

type Connection = http1::Connection<TokioIo<Watched>, ConnectionService>;

/// Closes a connection that ran out of time, with a 408 first when it has not been answered.
async fn expire(conn: Connection, expiry: Expiry) {
    let message = match expiry {
        Expiry::Idle | Expiry::Answered => return,
        Expiry::Head => "the request headers did not arrive in time",
        Expiry::Body => "the request body did not arrive in time",
    };
    // Not above debug: a slow-client attack would otherwise write a line per connection.
    tracing::debug!(reason = message, "closing a slow connection");
    // The request (if one started) is dropped with its connection, as when a client hangs up.
    let mut stream = conn.into_parts().io.into_inner().stream;
    let answer = closing_json_answer("408 Request Timeout", "request_timeout", message);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Closing with unread bytes would reset the connection, and the client could lose
        // the answer: read what is still coming for a moment.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Where a connection is, for its watchdog.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Kept alive, waiting for the first byte of the next request.
    Idle(Instant),
    /// Reading a request's headers, since its first byte (or since the connection opened).
    Head(Instant),
    /// Serving a request whose headers were read at `headers_at`.
    Request {
        headers_at: Instant,
        body_done: bool,
        answered: bool,
    },
}

/// What ran out when a deadline passed.
#[derive(Clone, Copy, Debug)]
enum Expiry {
    Idle,
    Head,
    Body,
    /// The body was late but the request was answered already.
    Answered,
}

/// A connection's phase, changed by its socket and its service, watched by its watchdog.
struct Clock {
    phase: Mutex<Phase>,
    changed: Notify,
}

/// Far enough ahead to mean "no deadline" (a handler still working on a complete request).
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

impl Clock {
    fn new() -> Clock {
        Clock {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Phase)) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut phase);
        drop(phase);
        self.changed.notify_one();
    }

    fn bytes_arrived(&self) {
        let idle = matches!(
            *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            Phase::Idle(_)
        );
        if idle {
            self.update(|phase| {
                if matches!(phase, Phase::Idle(_)) {
                    *phase = Phase::Head(Instant::now());
                }
            });
        }
    }

    /// Whether the connection is reading a request's headers: hyper writes nothing then but
    /// its own answer to headers it could not parse.
    fn reading_a_head(&self) -> bool {
        matches!(
            *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            Phase::Head(_)
        )
    }

    fn request_started(&self, body_done: bool) {
        self.update(|phase| {
            *phase = Phase::Request {
                headers_at: Instant::now(),
                body_done,
                answered: false,
            }
        });
    }

    fn body_done(&self) {
        self.update(|phase| {
            if let Phase::Request {
                body_done,
                answered,
                ..
            } = phase
            {
                *body_done = true;
                if *answered {
                    *phase = Phase::Idle(Instant::now());
                }
            }
        });
    }

    fn answered(&self) {
        self.update(|phase| {
            if let Phase::Request {
                body_done,
                answered,
                ..
            } = phase
            {
                *answered = true;
                if *body_done {
                    *phase = Phase::Idle(Instant::now());
                }
            }
        });
    }

    fn deadline(&self, limits: &Limits) -> (Instant, Expiry) {
        match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
            Phase::Idle(since) => (since + limits.idle_timeout, Expiry::Idle),
            Phase::Head(since) => (since + limits.header_timeout, Expiry::Head),
            Phase::Request {
                headers_at,
                body_done: false,
                answered,
            } => (
                headers_at + limits.body_timeout,
                if answered {
                    Expiry::Answered
                } else {
                    Expiry::Body
                },
            ),
            Phase::Request {
                body_done: true, ..
            } => (Instant::now() + NO_DEADLINE, Expiry::Answered),
        }
    }
}

/// The socket, telling the clock when bytes arrive, and answering in JSON where hyper would
/// answer a request it could not parse (a malformed request line or header, or headers over
/// `READ_BUFFER_BYTES`) with an empty 400, 414 or 431 of its own: every error the service
/// sends is JSON, also those that never reach the router.
struct Watched {
    stream: TcpStream,
    clock: Arc<Clock>,
    replacement: Replacement,
}

/// Where the replacement of hyper's own answer stands.
enum Replacement {
    /// Nothing replaced: writes pass through.
    None,
    /// Writing the JSON answer in place of hyper's.
    Writing { answer: Vec<u8>, written: usize },
    /// Written; what hyper still writes of its answer is dropped (it closes the connection
    /// after such an answer).
    Done,
}

/// How every answer that hyper may write on its own begins: 400, 414 or 431.
const CLIENT_ERROR_HEAD: &[u8] = b"HTTP/1.1 4";

/// The JSON answer that replaces hyper's answer in `written`, when `written` starts one: a
/// 400, 414 or 431 head without a content type, written before any request was read (the
/// router's answers all have a content type, and are written once a request was read).
fn replace_automatic_answer(written: &[u8]) -> Option<Vec<u8>> {
    let head_end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&written[..head_end]).ok()?;
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let has_content_type = head
        .lines()
        .any(|line| line.to_ascii_lowercase().starts_with("content-type:"));
    if has_content_type {
        return None;
    }
    let (status_line, code, message) = match status {
        "400" => (
            "400 Bad Request",
            "bad_request",
            "the request line or a header is malformed",
        ),
        "414" => (
            "414 URI Too Long",
            "uri_too_long",
            "the request target is too long",
        ),
        "431" => (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            "the request headers are over 64 KiB or 100 fields",
        ),
        _ => return None,
    };
    Some(closing_json_answer(status_line, code, message).into_bytes())
}

/// A whole HTTP/1.1 error answer, written by hand where no router answers, after which the
/// connection closes.
fn closing_json_answer(status_line: &str, code: &str, message: &str) -> String {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\n\
         x-content-type-options: nosniff\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if matches!(this.replacement, Replacement::None)
            && buf.starts_with(CLIENT_ERROR_HEAD)
            && this.clock.reading_a_head()
            && let Some(answer) = replace_automatic_answer(buf)
        {
            tracing::debug!("answering an unparsable request in JSON");
            this.replacement = Replacement::Writing { answer, written: 0 };
        }
        match &mut this.replacement {
            Replacement::None => Pin::new(&mut this.stream).poll_write(cx, buf),
            Replacement::Writing { answer, written } => {
                while *written < answer.len() {
                    match Pin::new(&mut this.stream).poll_write(cx, &answer[*written..]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                        }
                        Poll::Ready(Ok(n)) => *written += n,
                        other => return other,
                    }
                }
                this.replacement = Replacement::Done;
                Poll::Ready(Ok(buf.len()))
            }
            Replacement::Done => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        // Every answer but a client error passes as it is, without a look at the clock.
        if matches!(self.replacement, Replacement::None) && !first.starts_with(CLIENT_ERROR_HEAD) {
            return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        }
        // A partial write is allowed: one slice at a time, through the replacement.
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The router, for one connection: tells the clock about each request.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    clock: Arc<Clock>,
    remote: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let body_done = request.body().is_end_stream();
        self.clock.request_started(body_done);
        let clock = self.clock.clone();
        let mut request = request.map(|body| {
            Body::new(WatchedBody {
                inner: body,
                clock: clock.clone(),
                done: body_done,
            })
        });
        // What `into_make_service_with_connect_info` would add, for handlers that need the
        // client's address.
        request.extensions_mut().insert(ConnectInfo(self.remote));
        let mut router = self.router.clone();
        Box::pin(async move {
            let response = tower_service::Service::call(&mut router, request).await;
            clock.answered();
            response
        })
    }
}

/// A request body, telling the clock when it has ended (or was given up on: hyper then
/// closes the connection after the answer).
struct WatchedBody {
    inner: Incoming,
    clock: Arc<Clock>,
    done: bool,
}

impl WatchedBody {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.clock.body_done();
        }
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.inner.is_end_stream() {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.finish();
    }
}
