//! The API's shared state: how the server runs ([`Config`]), its storage, and the
//! per-token limits (requests per second, uploads in flight).

use std::sync::Arc;

use axum::http::StatusCode;

use super::error::{ApiError, ApiResult};
use crate::storage::Backend;

/// How the server runs (its storage is a [`Backend`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// `false` only when explicitly asked (`--no-auth`): every request may read and write
    /// every organization.
    pub auth: bool,
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    /// Requests per second allowed to each token (each client address without auth);
    /// past it the server answers 429 with `Retry-After`. `None`: no limit.
    pub rate_limit: Option<std::num::NonZeroU32>,
    /// File uploads one token may have in flight at once; past it the server answers 429
    /// with `Retry-After` (the client retries). Without auth there is no token to count
    /// by, and no cap. `None`: no limit.
    pub max_uploads_per_token: Option<std::num::NonZeroUsize>,
}

impl Default for Config {
    /// Auth on, 64 GiB files, no rate limit, 16 uploads per token.
    fn default() -> Self {
        Config {
            auth: true,
            max_file_size: 64 << 30,
            rate_limit: None,
            max_uploads_per_token: std::num::NonZeroUsize::new(16),
        }
    }
}

/// The uploads each token has in flight, for [`Config::max_uploads_per_token`].
pub(crate) struct Uploads {
    limit: Option<std::num::NonZeroUsize>,
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One upload in flight; counted until dropped (the body read, failed or abandoned).
pub(crate) struct UploadSlot<'a> {
    uploads: &'a Uploads,
    who: String,
}

impl Uploads {
    pub(crate) fn start(&self, who: &str) -> ApiResult<Option<UploadSlot<'_>>> {
        let Some(limit) = self.limit else { return Ok(None) };
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(who.to_string()).or_insert(0);
        if *count >= limit.get() {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_uploads",
                format!("{who} already has {count} uploads in flight, the most the server allows at once (--max-uploads-per-token); send this one when one of them ends"),
            )
            .retry_after(std::time::Duration::from_secs(1)));
        }
        *count += 1;
        Ok(Some(UploadSlot { uploads: self, who: who.to_string() }))
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.uploads.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.who) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.who);
            }
        }
    }
}

pub(crate) struct AppState {
    pub(crate) backend: Backend,
    pub(crate) auth: bool,
    pub(crate) max_file_size: u64,
    pub(crate) limiter: Option<governor::DefaultKeyedRateLimiter<String>>,
    pub(crate) uploads: Uploads,
}

impl AppState {
    /// Counts one request against `key`'s rate.
    pub(crate) fn throttle(&self, key: &str) -> ApiResult<()> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {} ms", wait.as_millis().max(1)),
            )
            .retry_after(wait)
        })
    }
}

impl AppState {
    /// The state of a server over `backend`, run as `config` says.
    pub(crate) fn new(backend: Backend, config: &Config) -> Arc<AppState> {
        let limiter =
            config.rate_limit.map(|per_second| governor::RateLimiter::keyed(governor::Quota::per_second(per_second)));
        let uploads = Uploads { limit: config.max_uploads_per_token, open: Default::default() };
        Arc::new(AppState { backend, auth: config.auth, max_file_size: config.max_file_size, limiter, uploads })
    }
}
