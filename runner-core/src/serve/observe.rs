//! Request ids and the access log, as a tower layer: no boxing and no clone of the
//! router per request (axum's `from_fn` middleware cost a quarter of the throughput of a
//! small model).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::response::Response;

use crate::engine::Instant;

const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Answers with `x-request-id` (the caller's, or `PREFIX-N`), and
/// logs each request: at debug level, and as a warning when the status is 5xx.
#[derive(Clone)]
pub struct ObserveLayer {
    /// One `Arc`: the service is cloned for every request (hyper-util's adapter does).
    ids: Arc<Ids>,
}

struct Ids {
    prefix: String,
    next: AtomicU64,
}

impl ObserveLayer {
    /// A layer numbering requests `PREFIX-1`, `PREFIX-2`...
    pub fn new(prefix: String) -> ObserveLayer {
        ObserveLayer { ids: Arc::new(Ids { prefix, next: AtomicU64::new(0) }) }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, layer: self.clone() }
    }
}

/// The service [`ObserveLayer`] wraps around another.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let id = match request.headers().get(HEADER) {
            Some(id) => id.clone(),
            None => request_id(&self.layer.ids.prefix, self.layer.ids.next.fetch_add(1, Ordering::Relaxed)),
        };
        let log = Log { id, started: Instant::now(), method: request.method().clone(), uri: request.uri().clone() };
        ObserveFuture { inner: self.inner.call(request), log: Some(log) }
    }
}

/// `PREFIX-N`, written on the stack: one allocation (the header's own), not three.
fn request_id(prefix: &str, n: u64) -> HeaderValue {
    let mut buffer = [0u8; 64];
    let start = prefix.len().min(buffer.len() - 21);
    buffer[..start].copy_from_slice(&prefix.as_bytes()[..start]);
    buffer[start] = b'-';
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let end = start + 1 + (digits.len() - at);
    buffer[start + 1..end].copy_from_slice(&digits[at..]);
    HeaderValue::from_bytes(&buffer[..end]).expect("a hex prefix and digits")
}

struct Log {
    id: HeaderValue,
    started: Instant,
    method: Method,
    uri: Uri,
}

pin_project_lite::pin_project! {
    /// The response future of [`Observe`].
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        log: Option<Log>,
    }
}

impl<F, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            other => return other,
        };
        let log = this.log.take().expect("polled after completion");
        let status = response.status().as_u16();
        if status >= 500 || tracing::enabled!(tracing::Level::DEBUG) {
            let latency_us = log.started.elapsed().as_micros() as u64;
            let request_id = log.id.to_str().unwrap_or("");
            let (method, path) = (log.method.as_str(), log.uri.path());
            if status >= 500 {
                tracing::warn!(request_id, method, path, status, latency_us, "request failed");
            } else {
                tracing::debug!(request_id, method, path, status, latency_us, "request");
            }
        }
        response.headers_mut().insert(HEADER, log.id);
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_the_prefix_and_the_number() {
        for n in [0, 7, 10, 12_345, u64::MAX] {
            assert_eq!(super::request_id("e4f86c93", n).to_str().unwrap(), format!("e4f86c93-{n}"));
        }
    }
}
