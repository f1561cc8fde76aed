//! The timeouts of an HTTP/1.1 connection, kept by one watchdog timer per connection
//! instead of timers per request.
//!
//! hyper's header timeout and tower-http's body timeout each register a timer in tokio's
//! wheel and take it out again for every request: a lock, an allocation and a clock
//! reading or two each, which a small model's request pays on top of its own few
//! microseconds (the connection layer cost about 8 % of the throughput of `sum` at
//! c = 32). Here a request only writes deadlines into atomics its connection shares
//! ([`Watch`]); the connection's task sleeps until the earliest deadline it knows of, or
//! at most the shorter timeout, and then looks ([`Watch::check`]).
//!
//! Why no deadline is missed: every deadline is set at least the shorter timeout `T` after
//! the moment it is set; the watchdog wakes at least every `T`. So a deadline `d` set at
//! `s > c`, where `c` is the watchdog's last wake, is `d = s + timeout >= s + T > c + T`,
//! and the watchdog's next wake, at most `c + T`, comes before it and sees it.
//!
//! - Idle (the header timeout): from when the connection starts serving, and from when a
//!   response's body has been handed to hyper whole, until the next request's head has
//!   arrived. Past it the connection is dropped (closed), as hyper's own timer would.
//! - A request body (the body timeout): from when a read of it waits for bytes until the
//!   next bytes arrive. Past it the read fails with [`BodyTimedOut`], which the route
//!   answers 408 (the request body left unread then closes the connection).
//!
//! HTTP/1.1 serves one request at a time on a connection, so one slot of each suffices.
//! HTTP/2 connections keep the per-request body timer (their requests run at once) and
//! hyper's keep-alive pings.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

/// Deadlines of one HTTP/1.1 connection, as nanoseconds after `epoch` (0: none).
pub(crate) struct Watch {
    epoch: Instant,
    header_timeout: Duration,
    body_timeout: Duration,
    idle: AtomicU64,
    body: AtomicU64,
    body_expired: AtomicBool,
    body_waker: Mutex<Option<Waker>>,
    /// Whether the request now served has had its body read to the end (one request at a
    /// time: shared by the connection's requests, not allocated for each).
    pub(crate) body_read: AtomicBool,
}

/// What the watchdog found.
pub(crate) enum Checked {
    /// The connection sat idle past the header timeout: close it.
    Idle,
    /// Look again at this time.
    Next(Instant),
}

impl Watch {
    /// A connection starting to serve now: idle until its first request's head arrives.
    pub(crate) fn new(header_timeout: Duration, body_timeout: Duration) -> Arc<Watch> {
        let watch = Watch {
            epoch: Instant::now(),
            header_timeout,
            body_timeout,
            idle: AtomicU64::new(0),
            body: AtomicU64::new(0),
            body_expired: AtomicBool::new(false),
            body_waker: Mutex::new(None),
            body_read: AtomicBool::new(false),
        };
        watch.idle.store(watch.after(header_timeout), Ordering::Release);
        Arc::new(watch)
    }

    /// `timeout` from now, in nanoseconds after the epoch (never 0).
    fn after(&self, timeout: Duration) -> u64 {
        (Instant::now() + timeout).saturating_duration_since(self.epoch).as_nanos().max(1) as u64
    }

    fn at(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// A request's head arrived: the connection is not idle, and its body has no deadline
    /// yet.
    pub(crate) fn request_started(&self) {
        self.idle.store(0, Ordering::Release);
        self.body.store(0, Ordering::Release);
        self.body_expired.store(false, Ordering::Release);
    }

    /// A response's body was handed over whole: idle from now.
    pub(crate) fn response_ended(&self) {
        self.idle.store(self.after(self.header_timeout), Ordering::Release);
    }

    /// The first time the watchdog should look: now + the shorter timeout.
    pub(crate) fn first_look(&self) -> Instant {
        Instant::now() + self.header_timeout.min(self.body_timeout)
    }

    /// The watchdog's look at `now`: closes an idle connection past its deadline, fails a
    /// stalled body read past its own, and says when to look next.
    pub(crate) fn check(&self, now: Instant) -> Checked {
        let now_nanos = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let idle = self.idle.load(Ordering::Acquire);
        if idle != 0 && idle <= now_nanos {
            return Checked::Idle;
        }
        let body = self.body.load(Ordering::Acquire);
        if body != 0 && body <= now_nanos {
            self.body_expired.store(true, Ordering::Release);
            self.body.store(0, Ordering::Release);
            if let Some(waker) = self.body_waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
                waker.wake();
            }
        }
        let mut next = now + self.header_timeout.min(self.body_timeout);
        for deadline in [self.idle.load(Ordering::Acquire), self.body.load(Ordering::Acquire)] {
            if deadline != 0 {
                next = next.min(self.at(deadline));
            }
        }
        Checked::Next(next)
    }

    /// For a request body's read that is about to wait (`Pending`): fails it when its
    /// deadline passed, else makes sure a deadline is set and `cx` is woken at it.
    pub(crate) fn body_waits(&self, cx: &Context<'_>) -> Poll<BodyTimedOut> {
        if self.body_expired.swap(false, Ordering::AcqRel) {
            return Poll::Ready(BodyTimedOut(self.body_timeout));
        }
        {
            let mut waker = self.body_waker.lock().unwrap_or_else(|p| p.into_inner());
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        if self.body.load(Ordering::Acquire) == 0 {
            self.body.store(self.after(self.body_timeout), Ordering::Release);
        }
        Poll::Pending
    }

    /// Bytes of a request body arrived (or it ended): no deadline until it waits again (a
    /// deadline the watchdog found passed just as they came is forgiven).
    pub(crate) fn body_moved(&self) {
        if self.body.load(Ordering::Relaxed) != 0 {
            self.body.store(0, Ordering::Release);
        }
        if self.body_expired.load(Ordering::Relaxed) {
            self.body_expired.store(false, Ordering::Release);
        }
    }
}

/// A request body that went without a byte past the body timeout.
#[derive(Debug)]
pub struct BodyTimedOut(Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no byte of the body arrived for {} s", self.0.as_secs())
    }
}

impl std::error::Error for BodyTimedOut {}

pin_project_lite::pin_project! {
    /// A response body that tells its connection's [`Watch`] when it has been handed over
    /// whole (the connection is idle from then on): at its last frame, or when hyper drops
    /// it unsent (a `HEAD`, a client gone).
    pub(crate) struct ResponseEnd<B> {
        #[pin]
        body: B,
        watch: Option<Arc<Watch>>,
    }

    impl<B> PinnedDrop for ResponseEnd<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(watch) = this.project().watch.take() {
                watch.response_ended();
            }
        }
    }
}

impl<B> ResponseEnd<B> {
    pub(crate) fn new(body: B, watch: Option<Arc<Watch>>) -> ResponseEnd<B> {
        ResponseEnd { body, watch }
    }
}

impl<B: axum::body::HttpBody> axum::body::HttpBody for ResponseEnd<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.body.as_mut().poll_frame(cx));
        if frame.is_none() || this.body.is_end_stream() {
            if let Some(watch) = this.watch.take() {
                watch.response_ended();
            }
        }
        Poll::Ready(frame)
    }

    /// Says only: a body hyper finds ended and does not poll is dropped, which tells the
    /// watch once (hyper may ask this more than once per response).
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        Waker::from(Arc::new(Noop))
    }

    #[test]
    fn an_idle_connection_expires_and_a_busy_one_does_not() {
        let start = Instant::now();
        let watch = Watch::new(Duration::from_secs(2), Duration::from_secs(5));
        let Checked::Next(next) = watch.check(start) else { panic!("idle at once") };
        assert!(next >= start + Duration::from_secs(2) && next < start + Duration::from_millis(2100), "{next:?}");
        assert!(matches!(watch.check(start + Duration::from_millis(2100)), Checked::Idle));
        watch.request_started();
        assert!(matches!(watch.check(start + Duration::from_secs(60)), Checked::Next(_)), "busy, not idle");
        let ended = Instant::now();
        watch.response_ended();
        assert!(matches!(watch.check(ended + Duration::from_millis(1900)), Checked::Next(_)));
        assert!(matches!(watch.check(ended + Duration::from_millis(2100)), Checked::Idle));
    }

    #[test]
    fn a_stalled_body_fails_at_its_deadline_and_a_moving_one_does_not() {
        let watch = Watch::new(Duration::from_secs(20), Duration::from_secs(2));
        watch.request_started();
        let waker = noop_waker();
        let cx = Context::from_waker(&waker);
        let waited = Instant::now();
        assert!(watch.body_waits(&cx).is_pending());
        let Checked::Next(next) = watch.check(waited + Duration::from_millis(1500)) else { panic!() };
        assert!(next >= waited + Duration::from_secs(2) && next < waited + Duration::from_millis(2100), "{next:?}");
        // Bytes arrived: the deadline goes; the watchdog then finds nothing due.
        watch.body_moved();
        watch.check(waited + Duration::from_secs(3));
        assert!(watch.body_waits(&cx).is_pending(), "a body that moved does not fail");
        let waited = Instant::now();
        watch.check(waited + Duration::from_millis(2100));
        assert!(matches!(watch.body_waits(&cx), Poll::Ready(BodyTimedOut(_))), "stalled past its deadline");
    }

    #[test]
    fn a_deadline_set_between_looks_is_seen_in_time() {
        // The watchdog looks at least every shorter timeout; a deadline is at least that
        // far from when it is set, so the next look comes before it (see the module notes).
        let watch = Watch::new(Duration::from_secs(3), Duration::from_secs(2));
        watch.request_started();
        let looked = Instant::now();
        let Checked::Next(next) = watch.check(looked) else { panic!() };
        assert!(next <= looked + Duration::from_secs(2));
        let waker = noop_waker();
        assert!(watch.body_waits(&Context::from_waker(&waker)).is_pending());
        let deadline = watch.at(watch.body.load(Ordering::Acquire));
        assert!(deadline > next, "the body's deadline {deadline:?} comes after the next look {next:?}");
    }

    #[test]
    fn a_connection_is_idle_only_once_its_response_is_handed_over_whole() {
        use axum::body::HttpBody;
        let watch = Watch::new(Duration::from_secs(2), Duration::from_secs(2));
        watch.request_started();
        let mut body = Box::pin(ResponseEnd::new(
            http_body_util::Full::new(axum::body::Bytes::from_static(b"answer")),
            Some(watch.clone()),
        ));
        // Sending, however long it takes: never idle.
        assert!(matches!(watch.check(Instant::now() + Duration::from_secs(60)), Checked::Next(_)));
        let waker = noop_waker();
        let frame = body.as_mut().poll_frame(&mut Context::from_waker(&waker));
        assert!(matches!(frame, Poll::Ready(Some(Ok(_)))));
        let ended = Instant::now();
        assert!(matches!(watch.check(ended + Duration::from_millis(2100)), Checked::Idle), "idle once sent");
        // A body dropped unsent (a HEAD response) ends the response too.
        watch.request_started();
        drop(ResponseEnd::new(http_body_util::Empty::<axum::body::Bytes>::new(), Some(watch.clone())));
        assert!(matches!(watch.check(Instant::now() + Duration::from_millis(2100)), Checked::Idle));
    }
}
