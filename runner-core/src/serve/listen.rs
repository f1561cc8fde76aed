//! Accepting connections with limits: how long a client may take to send a request's
//! headers or to go on sending its body, how long a keep-alive connection may sit idle,
//! and how many connections are open at once. `axum::serve` sets none of these (it gives
//! hyper no timer, so even hyper's header timeout is off), and a client that opens a
//! connection and sends nothing holds it, and its file descriptor, for good.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::watch::{Checked, ResponseEnd, Watch};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Limits on the connections a server accepts. `Default` gives the documented defaults;
/// `serve` and `runner-registry serve` take each as a flag.
///
/// ```
/// use std::time::Duration;
/// use runner_core::serve::ConnectionLimits;
///
/// let limits = ConnectionLimits { header_timeout: Duration::from_secs(5), ..ConnectionLimits::default() };
/// assert_eq!(limits.max_connections, ConnectionLimits::default().max_connections);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers, counted from when the
    /// connection opens or the previous response was sent; so it is also how long an
    /// idle keep-alive connection stays open. Past it the connection is closed
    /// (default 20 s). For a new connection it is counted twice at most: once until the
    /// first bytes arrive, and again for the headers.
    pub header_timeout: Duration,
    /// How long a request body may go without a byte arriving; past it the request is
    /// answered 408 and the connection closed (default 60 s). A slow upload that keeps
    /// moving is never cut off.
    pub body_timeout: Duration,
    /// Connections open at once. Past it the server stops accepting until one closes,
    /// so the operating system's backlog holds new ones (default 10,000, or fewer when
    /// the process may open fewer files: the limit less 256 for everything else).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(60),
            max_connections: 10_000.min(open_files_allowed().saturating_sub(256).max(64)),
        }
    }
}

/// The [`ConnectionLimits`] as command-line flags (`--header-timeout`,
/// `--body-timeout`, `--max-connections`), defined once for every server binary: `serve`
/// and `runner-registry serve` flatten it into their arguments. Behind the `args`
/// feature, so that clap stays out of a crate that only serves.
///
/// ```
/// use clap::Parser;
/// use runner_core::serve::ConnectionArgs;
///
/// #[derive(Parser)]
/// struct Serve {
///     #[command(flatten)]
///     connections: ConnectionArgs,
/// }
///
/// let serve = Serve::parse_from(["serve", "--header-timeout", "5"]);
/// assert_eq!(serve.connections.limits().header_timeout.as_secs(), 5);
/// assert_eq!(serve.connections.limits().body_timeout.as_secs(), 60);
/// ```
#[cfg(feature = "args")]
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Seconds a client may take to send a request's headers, counted from when it
    /// connects or was last answered (so also how long an idle keep-alive connection
    /// stays open).
    #[arg(long, default_value_t = 20, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,

    /// Seconds a request body may go without a byte arriving (408 past it; an upload cut
    /// off so keeps nothing).
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,

    /// Connections open at once; past it new ones wait in the backlog [default: 10000, or
    /// the open-file limit less 256].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
}

#[cfg(feature = "args")]
impl ConnectionArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            max_connections: self
                .max_connections
                .map_or_else(|| ConnectionLimits::default().max_connections, |n| n as usize),
        }
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), or no limit where it cannot be read.
fn open_files_allowed() -> usize {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        limit.current.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    {
        usize::MAX
    }
}

/// Serves `service` on `listener` (HTTP/1.1, and HTTP/2 to clients that open with its
/// preface, as gRPC clients do) under `limits`, until `shutdown` completes; then stops
/// accepting and waits for the requests in flight. `TCP_NODELAY` is set on every
/// connection: responses are written whole, and small ones must not wait for Nagle's
/// algorithm. Each request carries its client's address, as axum's
/// `ConnectInfo<SocketAddr>`.
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use runner_core::serve::{serve_connections, ConnectionLimits};
///
/// # async fn run() -> std::io::Result<()> {
/// let router = Router::new().route("/", get(|| async { "hello" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// serve_connections(listener, router, ConnectionLimits::default(), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn serve_connections<S, B>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_connections_with(listener, service, limits, shutdown, true).await
}

/// [`serve_connections`], giving each request its client's address (axum's
/// `ConnectInfo<SocketAddr>`) only when `peers`: `serve`'s routes never read it, and
/// each request would pay an allocation for it.
pub(crate) async fn serve_connections_with<S, B>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
    peers: bool,
) -> io::Result<()>
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // HTTP/1.1's header and body timeouts are kept by a watchdog per connection
    // (`serve::watch`), not by hyper's timer per request.
    // An HTTP/2 connection may rightly sit idle (a gRPC channel does): pings find the
    // peers that are gone, and the connection cap bounds the rest.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let body_timeout = limits.body_timeout;
    let header_timeout = limits.header_timeout;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = service.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(http2) = first_bytes(&tcp, header_timeout).await else { return };
            let watch = (!http2).then(|| Watch::new(header_timeout, body_timeout));
            let service = PerRequest { service, body_timeout, peer: peers.then_some(peer), watch: watch.clone() };
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
            let connection = watcher.watch(connection.into_owned());
            let ended = match watch {
                None => connection.await,
                Some(watch) => match watched(connection, &watch).await {
                    Some(ended) => ended,
                    None => return,
                },
            };
            if let Err(e) = ended {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Drives an HTTP/1.1 `connection` with its watchdog: sleeps until the earliest deadline
/// `watch` knows of (at most the shorter timeout), and closes the connection (drops it)
/// when it sat idle past the header timeout. `None` when it was closed so.
fn watched<F: Future>(connection: F, watch: &Watch) -> Watched<'_, F> {
    let alarm = Arc::new(Alarm { rang: AtomicBool::new(true), task: std::sync::Mutex::new(None) });
    Watched {
        connection,
        sleep: tokio::time::sleep_until(watch.first_look()),
        watch,
        alarm_waker: std::task::Waker::from(alarm.clone()),
        alarm,
        task: None,
    }
}

/// The waker the watchdog's timer is polled with: it marks that the timer rang, then
/// wakes the connection's task. It keeps the task's waker until given another (an
/// `AtomicWaker` would give it up at the first wake).
struct Alarm {
    rang: AtomicBool,
    task: std::sync::Mutex<Option<std::task::Waker>>,
}

impl std::task::Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rang.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            task.wake_by_ref();
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`watched`]. The connection's task is woken for every read and write
    /// of every request; polling the timer each time (as `select!` does) re-registered its
    /// waker, a few atomic operations per request. The timer is given the [`Alarm`]'s
    /// waker instead, and polled only when the alarm rang (and once, to arm it).
    ///
    /// Why no alarm is lost: the task's waker is handed to the alarm before anything else
    /// in a poll (again only when it changed: `will_wake` compares two pointers, no atomic
    /// operation), and the alarm keeps it; the timer, when it fires, sets `rang` before it
    /// wakes that waker (under the alarm's lock, so never a waker being replaced), and the
    /// poll that wake causes swaps `rang` back and polls the timer. An alarm that rings
    /// during a poll, after `rang` was read, wakes the task again.
    struct Watched<'w, F> {
        #[pin]
        connection: F,
        #[pin]
        sleep: tokio::time::Sleep,
        watch: &'w Watch,
        alarm: Arc<Alarm>,
        alarm_waker: std::task::Waker,
        // The task's waker the alarm has now.
        task: Option<std::task::Waker>,
    }
}

impl<F: Future> Future for Watched<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let mut this = self.project();
        if !this.task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
            *this.alarm.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            *this.task = Some(cx.waker().clone());
        }
        if let std::task::Poll::Ready(ended) = this.connection.poll(cx) {
            return std::task::Poll::Ready(Some(ended));
        }
        if this.alarm.rang.swap(false, Ordering::AcqRel) {
            let mut alarm = std::task::Context::from_waker(this.alarm_waker);
            while this.sleep.as_mut().poll(&mut alarm).is_ready() {
                match this.watch.check(tokio::time::Instant::now()) {
                    Checked::Idle => return std::task::Poll::Ready(None),
                    Checked::Next(at) => this.sleep.as_mut().reset(at),
                }
            }
        }
        std::task::Poll::Pending
    }
}

/// What every request gets on its way in and out: its body read under the body timeout
/// (tower-http's `TimeoutBody`), and `Connection: close` on an HTTP/1.1 response whose
/// request body was not read to the end (a 413 for a declared length over the limit, a
/// 401 before the body). Hyper closes such a connection; without the header a client
/// would put it back in its pool, and its next request would fail on the closed socket.
/// Each request also carries the client's address, as axum's `ConnectInfo<SocketAddr>`,
/// where the server asked for it.
#[derive(Clone)]
struct PerRequest<S> {
    service: S,
    body_timeout: Duration,
    peer: Option<std::net::SocketAddr>,
    /// The watchdog of an HTTP/1.1 connection (HTTP/2: none; its bodies get a timer each).
    watch: Option<Arc<Watch>>,
}

impl<S, B> tower::Service<Request<Incoming>> for PerRequest<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseEnd<B>>;
    type Error = Infallible;
    type Future = PerRequestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        use axum::body::HttpBody;
        let http1 = request.version() <= axum::http::Version::HTTP_11;
        let ended = request.body().is_end_stream();
        // Two handles, one for the body and one for the answer: each is an atomic
        // increment and decrement, which a small model's request pays for each.
        let (tracker, body_tracker) = match &self.watch {
            Some(watch) => {
                watch.request_started();
                watch.body_read.store(ended, Ordering::Release);
                (Tracker::Watched(watch.clone()), Tracker::Watched(watch.clone()))
            }
            None => {
                let read = Arc::new(AtomicBool::new(ended));
                (Tracker::Own(read.clone()), Tracker::Own(read))
            }
        };
        let body_timeout = self.body_timeout;
        let mut request = request.map(|body| match body_tracker {
            Tracker::Watched(_) => Body::new(ReadToEnd { body, tracker: body_tracker }),
            Tracker::Own(_) => Body::new(tower_http::timeout::TimeoutBody::new(
                body_timeout,
                ReadToEnd { body, tracker: body_tracker },
            )),
        });
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        }
        PerRequestFuture { answer: self.service.call(request), http1, tracker: Some(tracker) }
    }
}

/// Where a request records that its body was read to the end, and who keeps the body's
/// timeout.
enum Tracker {
    /// HTTP/1.1: the connection's watchdog, whose flag the request uses (one request at a
    /// time) and which keeps its deadlines.
    Watched(Arc<Watch>),
    /// HTTP/2: a flag of the request's own (its body has a timer of its own).
    Own(Arc<AtomicBool>),
}

impl Tracker {
    fn read(&self) -> &AtomicBool {
        match self {
            Tracker::Watched(watch) => &watch.body_read,
            Tracker::Own(read) => read,
        }
    }

    fn watch(&self) -> Option<&Watch> {
        match self {
            Tracker::Watched(watch) => Some(watch),
            Tracker::Own(_) => None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`PerRequest`]: the service's, then `Connection: close` when
    /// an HTTP/1.1 request body was left unread. A named future, not a boxed one: no
    /// allocation per request.
    struct PerRequestFuture<F> {
        #[pin]
        answer: F,
        http1: bool,
        tracker: Option<Tracker>,
    }
}

impl<F, B> Future for PerRequestFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<ResponseEnd<B>>, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = std::task::ready!(this.answer.poll(cx));
        let tracker = this.tracker.take().expect("polled after completion");
        if *this.http1 && !tracker.read().load(Ordering::Acquire) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let watch = match tracker {
            Tracker::Watched(watch) => Some(watch),
            Tracker::Own(_) => None,
        };
        std::task::Poll::Ready(Ok(response.map(|body| ResponseEnd::new(body, watch))))
    }
}

pin_project_lite::pin_project! {
    /// A request body that records when it has been read to the end, and, on an HTTP/1.1
    /// connection, keeps the body timeout with the connection's watchdog: a read that
    /// waits sets the deadline, bytes that arrive clear it.
    struct ReadToEnd {
        #[pin]
        body: Incoming,
        tracker: Tracker,
    }
}

impl axum::body::HttpBody for ReadToEnd {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = match this.body.as_mut().poll_frame(cx) {
            std::task::Poll::Ready(frame) => frame,
            std::task::Poll::Pending => {
                return match this.tracker.watch().map(|watch| watch.body_waits(cx)) {
                    Some(std::task::Poll::Ready(timed_out)) => std::task::Poll::Ready(Some(Err(timed_out.into()))),
                    _ => std::task::Poll::Pending,
                };
            }
        };
        if let Some(watch) = this.tracker.watch() {
            watch.body_moved();
        }
        if frame.is_none() || this.body.is_end_stream() {
            this.tracker.read().store(true, Ordering::Release);
        }
        std::task::Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The first bytes of HTTP/2's connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until `tcp` has sent enough to tell its protocol (which hyper-util then reads
/// with no timer at all), for at most `timeout`: whether it is HTTP/2, or `None` when it
/// sent nothing in time or closed. Only peeks: the bytes stay for hyper.
async fn first_bytes(tcp: &TcpStream, timeout: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return None,
        };
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == buf.len() {
            return Some(true);
        }
        // Part of the HTTP/2 preface: peek answers at once while those bytes wait, so
        // look again shortly for the rest.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(5))).await.is_err() {
            return None;
        }
    }
}

/// An error from `accept`: one connection's (it was reset before it was accepted) is
/// skipped; others (out of file descriptors) are logged and waited out, as
/// `axum::serve` does, rather than spinning.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!("cannot accept a connection: {e}; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
