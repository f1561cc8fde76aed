//! Choosing a registry by location: a directory or a URL.

#[cfg(feature = "http-client")]
use super::env::TOKEN_ENV;
use super::env::{DEFAULT_REGISTRY, REGISTRY_ENV};
#[cfg(feature = "http-client")]
use super::http::HttpRegistry;
use super::local::LocalRegistry;
use super::traits::Registry;
#[cfg(not(feature = "http-client"))]
use crate::error::Error;
use crate::error::Result;

/// Opens the registry at `location`: a directory path (created when missing), or the
/// `http(s)://` URL of a `runner-registry` server (token from [`TOKEN_ENV`](super::TOKEN_ENV)).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let registry = runner_core::open_registry(dir.path().to_str().unwrap()).unwrap();
/// assert!(registry.repositories("default").unwrap().is_empty());
/// ```
pub fn open_registry(location: &str) -> Result<Box<dyn Registry>> {
    if location.starts_with("http://") || location.starts_with("https://") {
        #[cfg(feature = "http-client")]
        return Ok(Box::new(HttpRegistry::new(location, std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()))?));
        #[cfg(not(feature = "http-client"))]
        return Err(Error::msg(format!(
            "{location} is a registry server, and this binary was built without runner-core's `http-client` feature; enable it (features = [\"http-client\"]) or use a directory"
        )));
    }
    Ok(Box::new(LocalRegistry::open(location)?))
}

/// The registry location chosen by `--registry`, else [`REGISTRY_ENV`], else
/// [`DEFAULT_REGISTRY`].
pub fn registry_location(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var(REGISTRY_ENV).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_REGISTRY.to_string())
}
