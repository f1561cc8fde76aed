//! The client of `runner-registry`: the same [`Registry`] over HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::local::{hash_file, LocalRegistry};
use super::{ModelStatus, ModelSummary, Registry, Staging};
use crate::manifest::{FileEntry, FileOrigin, Manifest};
use crate::names::{validate_name, validate_volume_path, ModelId};
use crate::{Error, Result};

/// The environment variable holding the bearer token for an HTTP registry.
pub const TOKEN_ENV: &str = "RUNNER_REGISTRY_TOKEN";

/// A `runner-registry` server, used through the [`Registry`] trait: `register_model`,
/// `register`, `serve` and loading work unchanged against a URL.
///
/// Uploads send only content the server lacks (the client asks first, by sha256) and
/// stream files from disk. Downloads land in a local cache keyed by sha256 and are
/// verified before use, so loading the same model twice downloads nothing the second time.
#[derive(Debug)]
pub struct HttpRegistry {
    base: String,
    token: Option<String>,
    client: Client,
    cache: LocalRegistry,
    sent: AtomicU64,
    received: AtomicU64,
}

#[derive(Deserialize)]
struct ModelView {
    number: u64,
    status: ModelStatus,
    manifest: Option<Manifest>,
}

fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNNER_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("runner");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/runner"),
        None => std::env::temp_dir().join("runner-cache"),
    }
}

impl HttpRegistry {
    /// A client for the server at `url`, caching downloads in `RUNNER_CACHE` (default
    /// `~/.cache/runner`).
    pub fn new(url: &str, token: Option<String>) -> Result<HttpRegistry> {
        HttpRegistry::with_cache(url, token, &default_cache())
    }

    /// A client caching downloads in `cache`.
    pub fn with_cache(url: &str, token: Option<String>, cache: &Path) -> Result<HttpRegistry> {
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .build()
            .map_err(|e| Error::msg(format!("building the HTTP client: {e}")))?;
        Ok(HttpRegistry {
            base: url.trim_end_matches('/').to_string(),
            token,
            client,
            cache: LocalRegistry::open(cache)?,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    /// File bytes uploaded by this client so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// File bytes downloaded by this client so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends with up to five attempts for transient failures (connection errors, 429,
    /// 502-504), waiting as `Retry-After` asks or backing off exponentially.
    fn send(&self, build: impl Fn() -> RequestBuilder, what: &str) -> Result<Response> {
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            let outcome = build().send();
            let (transient, asked) = match &outcome {
                Ok(response) => (
                    matches!(response.status().as_u16(), 429 | 502..=504),
                    response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs),
                ),
                Err(e) => (e.is_connect() || e.is_timeout(), None),
            };
            if !transient || attempt == 5 {
                return outcome.map_err(|e| Error::msg(format!("{what}: cannot reach {}: {e}", self.base)));
            }
            std::thread::sleep(asked.unwrap_or(delay).min(Duration::from_secs(30)));
            delay *= 2;
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Turns an error response into the framework's error.
    fn check(&self, response: Response, what: &str) -> Result<Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: serde_json::Value = response.json().unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("no details").to_string();
        Err(match status {
            StatusCode::NOT_FOUND => Error::NotFound { what: "resource", message: format!("{what}: {message}") },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::msg(format!(
                "{what}: {} refused the token ({message}); set {TOKEN_ENV} to a token for this organization",
                self.base
            )),
            _ => Error::msg(format!("{what}: {} answered {status}: {message}", self.base)),
        })
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let response = self.send(|| self.request(Method::GET, path), what)?;
        self.check(response, what)?.json().map_err(|e| Error::msg(format!("{what}: unexpected answer: {e}")))
    }

    fn model_path(id: &ModelId) -> String {
        format!("/v1/orgs/{}/repos/{}/models/{}", id.organization, id.repository, id.number)
    }

    fn blob_path(organization: &str, sha256: &str) -> String {
        format!("/v1/orgs/{organization}/blobs/{sha256}")
    }

    fn view(&self, id: &ModelId) -> Result<Option<ModelView>> {
        let what = format!("reading {id}");
        let response = self.send(|| self.request(Method::GET, &Self::model_path(id)), &what)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(self.check(response, &what)?.json().map_err(|e| Error::msg(format!("{what}: {e}")))?))
    }

    /// Downloads one file's content into the cache, verified.
    fn download(&self, organization: &str, file: &FileEntry) -> Result<()> {
        if self.cache.blob(&file.sha256, Some(file.size))?.is_some() {
            return Ok(());
        }
        let what = format!("downloading `{}`", file.path);
        let response = self.send(|| self.request(Method::GET, &Self::blob_path(organization, &file.sha256)), &what)?;
        let mut response = self.check(response, &what)?;
        let mut writer = self.cache.blob_writer()?;
        let copied = response.copy_to(&mut writer).map_err(|e| Error::msg(format!("{what}: {e}")))?;
        self.received.fetch_add(copied, Ordering::Relaxed);
        writer.finish(&file.sha256).map_err(|e| Error::msg(format!("{what}: {e}")))?;
        Ok(())
    }
}

impl Registry for HttpRegistry {
    fn location(&self) -> String {
        format!("registry server {}", self.base)
    }

    fn repositories(&self, organization: &str) -> Result<Vec<String>> {
        validate_name("organization", organization)?;
        #[derive(Deserialize)]
        struct Answer {
            repositories: Vec<String>,
        }
        let answer: Answer = self.get_json(&format!("/v1/orgs/{organization}/repos"), "listing repositories")?;
        Ok(answer.repositories)
    }

    fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        #[derive(Deserialize)]
        struct Answer {
            models: Vec<ModelView>,
        }
        let answer: Answer =
            self.get_json(&format!("/v1/orgs/{organization}/repos/{repository}/models"), "listing models")?;
        answer
            .models
            .into_iter()
            .map(|m| {
                Ok(ModelSummary {
                    id: ModelId::new(organization, repository, m.number)?,
                    status: m.status,
                    manifest: m.manifest,
                })
            })
            .collect()
    }

    fn status(&self, id: &ModelId) -> Result<Option<ModelStatus>> {
        Ok(self.view(id)?.map(|v| v.status))
    }

    fn manifest(&self, id: &ModelId) -> Result<Manifest> {
        let manifest = self.view(id)?.and_then(|v| v.manifest).ok_or_else(|| Error::NotFound {
            what: "model",
            message: format!("{id} has no committed manifest in {}", self.location()),
        })?;
        if &manifest.model != id {
            return Err(Error::Manifest {
                model: id.to_string(),
                message: format!("the server sent the manifest of {}", manifest.model),
            });
        }
        manifest.validate().map_err(|e| Error::Manifest { model: id.to_string(), message: e.to_string() })?;
        Ok(manifest)
    }

    fn create_model(&self, organization: &str, repository: &str) -> Result<ModelId> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        #[derive(Deserialize)]
        struct Answer {
            number: u64,
        }
        let what = format!("creating a model in `{repository}`");
        let path = format!("/v1/orgs/{organization}/repos/{repository}/models");
        // Not retried: a lost answer would take a second number.
        let response = self.request(Method::POST, &path).send().map_err(|e| Error::msg(format!("{what}: {e}")))?;
        let answer: Answer = self.check(response, &what)?.json().map_err(|e| Error::msg(format!("{what}: {e}")))?;
        ModelId::new(organization, repository, answer.number)
    }

    fn discard(&self, id: &ModelId) -> Result<()> {
        let what = format!("giving back {id}");
        let response =
            self.send(|| self.request(Method::DELETE, &format!("{}/reservation", Self::model_path(id))), &what)?;
        self.check(response, &what).map(|_| ())
    }

    fn delete_model(&self, id: &ModelId) -> Result<()> {
        let what = format!("deleting {id}");
        let response = self.send(|| self.request(Method::DELETE, &Self::model_path(id)), &what)?;
        self.check(response, &what).map(|_| ())
    }

    fn stage(&self, id: &ModelId) -> Result<Box<dyn Staging + '_>> {
        if self.status(id)?.is_none() {
            return Err(Error::NotFound {
                what: "model",
                message: format!("{id} does not exist in {}", self.location()),
            });
        }
        Ok(Box::new(HttpStaging { registry: self, id: id.clone(), files: BTreeMap::new() }))
    }

    fn fetch(&self, manifest: &Manifest) -> Result<PathBuf> {
        for file in &manifest.files {
            validate_volume_path(&file.path)?;
            self.download(&manifest.model.organization, file)?;
        }
        // The cache builds and verifies the volume exactly as the local registry does.
        self.cache.fetch(manifest)
    }
}

struct HttpStaging<'a> {
    registry: &'a HttpRegistry,
    id: ModelId,
    files: BTreeMap<String, FileEntry>,
}

impl Staging for HttpStaging<'_> {
    fn put_file(&mut self, volume_path: &str, local: &Path, origin: FileOrigin) -> Result<FileEntry> {
        validate_volume_path(volume_path)?;
        let registry = self.registry;
        let (sha256, size) = hash_file(local)?;
        let path = HttpRegistry::blob_path(&self.id.organization, &sha256);
        let what = format!("uploading {}", local.display());
        let known = registry.send(|| registry.request(Method::HEAD, &path), &what)?;
        if known.status() == StatusCode::NOT_FOUND {
            let response = registry.send(
                || {
                    let file = std::fs::File::open(local);
                    let request =
                        registry.request(Method::PUT, &path).header("content-type", "application/octet-stream");
                    match file {
                        Ok(file) => request.body(reqwest::blocking::Body::sized(file, size)),
                        Err(_) => request,
                    }
                },
                &what,
            )?;
            registry.check(response, &what)?;
            registry.sent.fetch_add(size, Ordering::Relaxed);
        } else {
            registry.check(known, &what)?;
        }
        let entry = FileEntry { path: volume_path.to_string(), size, sha256, origin };
        self.files.insert(volume_path.to_string(), entry.clone());
        Ok(entry)
    }

    fn commit(self: Box<Self>, manifest: &Manifest) -> Result<()> {
        if manifest.model != self.id {
            return Err(Error::msg(format!(
                "manifest describes {}, but this upload is for {}",
                manifest.model, self.id
            )));
        }
        for file in &manifest.files {
            if self.files.get(&file.path) != Some(file) {
                return Err(Error::msg(format!("manifest lists `{}`, which was not uploaded as described", file.path)));
            }
        }
        let registry = self.registry;
        let what = format!("committing {}", self.id);
        let path = format!("{}/manifest", HttpRegistry::model_path(&self.id));
        let body = manifest.to_json();
        let response = registry.send(
            || registry.request(Method::PUT, &path).header("content-type", "application/json").body(body.clone()),
            &what,
        )?;
        registry.check(response, &what).map(|_| ())
    }
}
