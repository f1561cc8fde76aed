//! Blocking directory calls, run off the async runtime.

use runner_core::{Error, Result};

/// Runs `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::msg(format!("a storage task failed: {e}")))?
}
