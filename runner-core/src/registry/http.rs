//! The client of `runner-registry`: the same [`Registry`] over HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};

use super::alias::{Alias, AliasMove, AliasOptions, Expect};
use super::env::TOKEN_ENV;
use super::local::LocalRegistry;
use super::protocol::{
    path, AliasHistory, Aliases, Created, ErrorBody, ModelView, Models, ModelsQuery, Precondition, Repositories,
    SetAlias, Stored, MAX_FILE_SIZE_HEADER, MAX_PAGE, MAX_UNNAMED_SIZE_HEADER, SAMPLE_KNOWN_HEADER, SAMPLE_QUERY,
};
use super::traits::{check_staged, number_gone, Expected, ModelStatus, ModelSummary, Registry, Staging};
use crate::manifest::{FileEntry, FileOrigin, Manifest};
use crate::names::{validate_name, validate_volume_path, ModelId};
use crate::{Error, Result};

/// Models per page when looking for the newest ready one.
const LATEST_PAGE: usize = 20;

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

    /// Deletes a repository and every model in it.
    pub fn delete_repository(&self, organization: &str, repository: &str) -> Result<()> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        let what = format!("deleting repository `{repository}`");
        let path = path::repository(organization, repository);
        let response = self.send(|| self.request(Method::DELETE, &path), &what)?;
        self.check(response, &what).map(|_| ())
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
    ///
    /// Every request sent here is idempotent (GET, HEAD, PUT, DELETE; a commit's
    /// precondition makes a repeat of one that landed a success, see
    /// `HttpStaging::commit`): one whose connection was cut (a server that answered
    /// early, as with a 429, or restarted) is sent again.
    fn send(&self, build: impl Fn() -> RequestBuilder, what: &str) -> Result<Response> {
        self.send_while(build, what, |outcome| match outcome {
            Ok(response) => retry_hint(response.status(), response.headers()).0,
            Err(e) => e.is_connect() || e.is_timeout() || e.is_body() || e.is_request(),
        })
    }

    /// [`HttpRegistry::send`], trying again (up to five attempts) while `again` says an
    /// outcome is worth it.
    fn send_while(
        &self,
        build: impl Fn() -> RequestBuilder,
        what: &str,
        again: impl Fn(&reqwest::Result<Response>) -> bool,
    ) -> Result<Response> {
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            let outcome = build().send();
            let transient = again(&outcome);
            let asked = outcome.as_ref().ok().and_then(|response| retry_hint(response.status(), response.headers()).1);
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
        let (message, missing) = match response.json::<ErrorBody>() {
            Ok(body) => (body.error.message, body.error.missing),
            Err(_) => ("no details".to_string(), None),
        };
        match missing {
            // A commit naming what is gone: typed, so that `register` recovers.
            Some(missing) => Err(Error::Gone { missing, message: format!("{what}: {message}") }),
            None => Err(self.refused(status, &message, what)),
        }
    }

    /// The framework's error for an answer of `status` saying `message`.
    fn refused(&self, status: StatusCode, message: &str, what: &str) -> Error {
        match status {
            StatusCode::NOT_FOUND => Error::NotFound { what: "resource", message: format!("{what}: {message}") },
            StatusCode::CONFLICT => Error::Conflict { message: format!("{what}: {message}") },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::msg(format!(
                "{what}: {} refused the token ({message}); set {TOKEN_ENV} to a token for this organization",
                self.base
            )),
            _ => Error::msg(format!("{what}: {} answered {status}: {message}", self.base)),
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let response = self.send(|| self.request(Method::GET, path), what)?;
        self.check(response, what)?.json().map_err(|e| Error::msg(format!("{what}: unexpected answer: {e}")))
    }

    /// One page of a repository's models (`GET .../models?limit=N&before=M`).
    fn models_page(&self, organization: &str, repository: &str, page: ModelsQuery) -> Result<Models> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        self.get_json(&format!("{}{}", path::models(organization, repository), page.query()), "listing models")
    }

    fn view(&self, id: &ModelId) -> Result<Option<ModelView>> {
        let what = format!("reading {id}");
        let response = self.send(|| self.request(Method::GET, &path::model(id)), &what)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(self.check(response, &what)?.json().map_err(|e| Error::msg(format!("{what}: {e}")))?))
    }

    /// Downloads one file's content into the cache, verified.
    /// Downloads `file` into the cache unless it is there; `true` when it was downloaded
    /// (and so checked against its sha256 just now).
    fn download(&self, organization: &str, file: &FileEntry) -> Result<bool> {
        if self.cache.blob(&file.sha256, Some(file.size))?.is_some() {
            return Ok(false);
        }
        let what = format!("downloading `{}`", file.path);
        // A download cut off earlier continues where it stopped (HTTP Range).
        let mut writer = self.cache.resumable_blob_writer(&file.sha256)?;
        let have = writer.size();
        let path = path::blob(organization, &file.sha256);
        let response = self.send(
            || {
                let request = self.request(Method::GET, &path);
                if have > 0 {
                    request.header(reqwest::header::RANGE, format!("bytes={have}-"))
                } else {
                    request
                }
            },
            &what,
        )?;
        let mut response = self.check(response, &what)?;
        if have > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
            writer.restart()?;
        }
        let copied = response.copy_to(&mut writer).map_err(|e| Error::msg(format!("{what}: {e}")))?;
        self.received.fetch_add(copied, Ordering::Relaxed);
        writer.finish(&file.sha256).map_err(|e| match e {
            // The server's copy does not match the manifest: the same error as a corrupt
            // file in a directory registry, naming the file.
            Error::Checksum { expected, actual, .. } => Error::Checksum { path: file.path.clone(), expected, actual },
            other => Error::msg(format!("{what}: {other}")),
        })?;
        Ok(true)
    }
}

impl Registry for HttpRegistry {
    fn location(&self) -> String {
        format!("registry server {}", self.base)
    }

    fn repositories(&self, organization: &str) -> Result<Vec<String>> {
        validate_name("organization", organization)?;
        let answer: Repositories = self.get_json(&path::repositories(organization), "listing repositories")?;
        Ok(answer.repositories)
    }

    /// Every model, read a page of [`MAX_PAGE`] at a time, so that no answer grows with
    /// the repository.
    fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>> {
        let mut models = Vec::new();
        let mut page = ModelsQuery { limit: Some(MAX_PAGE), before: None };
        loop {
            let answer = self.models_page(organization, repository, page)?;
            for model in answer.models {
                models.push(model.into_summary(organization, repository)?);
            }
            match answer.next {
                Some(before) => page.before = Some(before),
                None => break,
            }
        }
        // Pages come newest first (a server without pages sends them all, oldest first).
        models.sort_by_key(|m| m.id.number);
        models.dedup_by_key(|m| m.id.number);
        Ok(models)
    }

    /// The newest ready model, from the newest pages only: one small request, unless
    /// the newest numbers are all still uploading.
    fn latest(&self, organization: &str, repository: &str) -> Result<Option<ModelId>> {
        let mut page = ModelsQuery { limit: Some(LATEST_PAGE), before: None };
        loop {
            let answer = self.models_page(organization, repository, page)?;
            let ready = answer.models.iter().filter(|m| m.status == ModelStatus::Ready).map(|m| m.number).max();
            if let Some(number) = ready {
                return Ok(Some(ModelId::new(organization, repository, number)?));
            }
            match answer.next {
                Some(before) => page.before = Some(before),
                None => return Ok(None),
            }
        }
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
        let what = format!("creating a model in `{repository}`");
        let path = path::models(organization, repository);
        // Retried only where no number was taken: no connection was made, or the server
        // answered that it could not (503, 429). A lost answer would take a second number.
        let response = self.send_while(
            || self.request(Method::POST, &path),
            &what,
            |outcome| match outcome {
                Ok(response) => matches!(response.status().as_u16(), 429 | 503),
                Err(e) => e.is_connect(),
            },
        )?;
        let answer: Created = self.check(response, &what)?.json().map_err(|e| Error::msg(format!("{what}: {e}")))?;
        ModelId::new(organization, repository, answer.number)
    }

    fn keep_alive(&self, id: &ModelId) -> Result<()> {
        let what = format!("keeping {id} reserved");
        let response = self.send(|| self.request(Method::PUT, &path::reservation(id)), &what)?;
        match response.status() {
            StatusCode::NOT_FOUND => Err(number_gone(id)),
            _ => self.check(response, &what).map(|_| ()),
        }
    }

    fn discard(&self, id: &ModelId) -> Result<()> {
        let what = format!("giving back {id}");
        let response = self.send(|| self.request(Method::DELETE, &path::reservation(id)), &what)?;
        self.check(response, &what).map(|_| ())
    }

    fn delete_model(&self, id: &ModelId) -> Result<()> {
        let what = format!("deleting {id}");
        let response = self.send(|| self.request(Method::DELETE, &path::model(id)), &what)?;
        self.check(response, &what).map(|_| ())
    }

    fn aliases(&self, organization: &str, repository: &str) -> Result<Vec<Alias>> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        let answer: Aliases = self.get_json(&path::aliases(organization, repository), "listing aliases")?;
        Ok(answer.aliases)
    }

    fn set_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        number: u64,
        options: &AliasOptions,
    ) -> Result<AliasMove> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        crate::names::validate_alias(alias)?;
        let what = format!("moving alias `{alias}` of `{repository}` to {number}");
        let body = SetAlias {
            number,
            expect: options.expect,
            force: options.force,
            canary: options.canary,
            reason: options.reason.clone(),
        };
        let path = path::alias(organization, repository, alias);
        // A retried move is safe: its compare-and-set makes a repeat a conflict, not a second move.
        let response = self.send(|| self.request(Method::PUT, &path).json(&body), &what)?;
        self.check(response, &what)?.json().map_err(|e| Error::msg(format!("{what}: unexpected answer: {e}")))
    }

    fn delete_alias(&self, organization: &str, repository: &str, alias: &str, expect: Expect) -> Result<AliasMove> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        crate::names::validate_alias(alias)?;
        let what = format!("deleting alias `{alias}` of `{repository}`");
        let mut path = path::alias(organization, repository, alias);
        match expect {
            Expect::Any => {}
            Expect::Number(n) => path.push_str(&format!("?expect={n}")),
            Expect::Unset => return Err(Error::invalid_input("deleting an alias cannot expect it to be unset")),
        }
        let response = self.send(|| self.request(Method::DELETE, &path), &what)?;
        self.check(response, &what)?.json().map_err(|e| Error::msg(format!("{what}: unexpected answer: {e}")))
    }

    fn alias_history(&self, organization: &str, repository: &str, alias: Option<&str>) -> Result<Vec<AliasMove>> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        let mut path = path::history(organization, repository);
        if let Some(alias) = alias {
            crate::names::validate_alias(alias)?;
            path.push_str(&format!("?alias={alias}"));
        }
        let answer: AliasHistory = self.get_json(&path, "reading the alias history")?;
        Ok(answer.moves)
    }

    fn stage(&self, id: &ModelId) -> Result<Box<dyn Staging + '_>> {
        if self.status(id)?.is_none() {
            return Err(number_gone(id));
        }
        let expected = Expected::of(self.view(id)?.and_then(|v| v.manifest).as_ref());
        Ok(Box::new(HttpStaging { registry: self, id: id.clone(), files: BTreeMap::new(), expected }))
    }

    fn fetch(&self, manifest: &Manifest) -> Result<PathBuf> {
        let mut downloaded = std::collections::BTreeSet::new();
        for file in &manifest.files {
            validate_volume_path(&file.path)?;
            if self.download(&manifest.model.organization, file)? {
                downloaded.insert(file.sha256.clone());
            }
        }
        // The cache builds and verifies the volume exactly as the local registry does,
        // except that what was just downloaded was checked on the way in: a cold download
        // is read and hashed once.
        self.cache.fetch_checked(manifest, &downloaded)
    }
}

struct HttpStaging<'a> {
    registry: &'a HttpRegistry,
    id: ModelId,
    files: BTreeMap<String, FileEntry>,
    expected: Expected,
}

/// Uploads at once at most.
const PARALLEL_UPLOADS: usize = 4;

/// Counts bytes as the request body is read, for the progress bar.
struct Progress<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: std::io::Read> std::io::Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Whether an answer is worth another try (429, 502-504), and how long it asks to wait
/// (`Retry-After`, in seconds).
fn retry_hint(status: StatusCode, headers: &reqwest::header::HeaderMap) -> (bool, Option<Duration>) {
    let asked = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    (matches!(status.as_u16(), 429 | 502..=504), asked)
}

fn progress_bars() -> indicatif::MultiProgress {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::MultiProgress::new()
    } else {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    }
}

impl HttpRegistry {
    /// Uploads one file unless the server already has its content, streaming it from disk
    /// with a progress bar (a log line when stderr is not a terminal).
    fn upload(
        &self,
        organization: &str,
        volume_path: &str,
        local: &Path,
        origin: FileOrigin,
        bars: &Bars,
    ) -> Result<FileEntry> {
        validate_volume_path(volume_path)?;
        let what = format!("uploading {}", local.display());
        // A large file whose sha256 is not remembered is sampled (1 MiB read), and the
        // server asked whether the organization holds content with that sample. When not,
        // it is new: sent unnamed and hashed on the way, so the file is read once, and the
        // server answers the sha256 of what it received. Others are named first, so
        // content the server has is not sent again.
        let file = std::fs::File::open(local).map_err(|e| Error::io("opening", local, e))?;
        let size = file.metadata().map_err(|e| Error::io("reading", local, e))?.len();
        if size >= super::sample::MIN_SIZE && self.cache.hashes().cached(local).is_none() {
            if let Some(entry) =
                self.upload_unnamed(organization, volume_path, local, &file, size, origin, bars, &what)?
            {
                return Ok(entry);
            }
        }
        // The server hashes what it receives again and refuses a mismatch.
        let (sha256, size) = self.cache.hashes().hash(local)?;
        let path = path::blob(organization, &sha256);
        let known = self.send(|| self.request(Method::HEAD, &path), &what)?;
        if known.status() == StatusCode::NOT_FOUND {
            let limit = known.headers().get(MAX_FILE_SIZE_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if let Some(limit) = limit.filter(|limit| size > *limit) {
                return Err(Error::new(
                    crate::ErrorKind::TooLarge,
                    format!(
                        "{what}: {} accepts files of at most {limit} bytes (413 Payload Too Large), and this one has {size}",
                        self.base
                    ),
                ));
            }
            let bar = new_bar(bars, size, volume_path);
            let started = std::time::Instant::now();
            if size >= STREAMED {
                let sent = self.stream_file(Method::PUT, &path, local, size, &bar, false, &what)?;
                if !sent.status.is_success() {
                    return Err(self.refused(sent.status, &sent.message(), &what));
                }
            } else {
                let response = self.send(
                    || {
                        bar.reset();
                        let request =
                            self.request(Method::PUT, &path).header("content-type", "application/octet-stream");
                        match std::fs::File::open(local) {
                            Ok(file) => request
                                .body(reqwest::blocking::Body::sized(Progress { inner: file, bar: bar.clone() }, size)),
                            Err(_) => request,
                        }
                    },
                    &what,
                )?;
                self.check(response, &what)?;
            }
            self.uploaded(bars, &bar, volume_path, size, started);
        } else {
            self.check(known, &what)?;
            tracing::debug!(file = volume_path, "already stored, not sent");
        }
        Ok(FileEntry { path: volume_path.to_string(), size, sha256, origin })
    }

    /// Sends `local` unnamed (`POST` [`super::protocol::route::BLOBS`]), hashing it as it
    /// goes, and checks that the server received what was sent; remembers the sha256.
    /// `None` when the organization holds content with the file's sample (most likely
    /// this content), when the server takes no unnamed uploads, or none this large: then
    /// the file is named first.
    #[allow(clippy::too_many_arguments)]
    fn upload_unnamed(
        &self,
        organization: &str,
        volume_path: &str,
        local: &Path,
        file: &std::fs::File,
        size: u64,
        origin: FileOrigin,
        bars: &Bars,
        what: &str,
    ) -> Result<Option<FileEntry>> {
        let Some(sample) = super::sample::sample_file(file, size).map_err(|e| Error::io("reading", local, e))? else {
            return Ok(None);
        };
        // Asked first: a server from before unnamed uploads does not answer, and one on
        // S3 takes at most 5 GiB unnamed.
        let path = path::blobs(organization);
        let asked = self.send(|| self.request(Method::HEAD, &path).query(&[(SAMPLE_QUERY, &sample)]), what)?;
        let header = |name: &str| asked.headers().get(name).and_then(|v| v.to_str().ok().map(str::to_string));
        let limit = header(MAX_UNNAMED_SIZE_HEADER).and_then(|v| v.parse::<u64>().ok());
        let known = header(SAMPLE_KNOWN_HEADER);
        if !asked.status().is_success() || limit.is_none_or(|limit| size > limit) || known.as_deref() != Some("false") {
            tracing::debug!(file = volume_path, status = %asked.status(), ?limit, ?known, "not sent unnamed: named first");
            return Ok(None);
        }
        let before = super::hashes::Seen::now(local);
        let started = std::time::Instant::now();
        let bar = new_bar(bars, size, volume_path);
        let sent = self.stream_file(Method::POST, &path, local, size, &bar, true, what)?;
        if !sent.status.is_success() {
            return Err(self.refused(sent.status, &sent.message(), what));
        }
        let stored: Stored = serde_json::from_slice(&sent.body)
            .map_err(|e| Error::msg(format!("{what}: {} answered what is not a stored content: {e}", self.base)))?;
        let sha256 = sent.sha256.expect("hashed while sent");
        if stored.sha256 != sha256 || stored.size != sent.bytes {
            return Err(Error::msg(format!(
                "{what}: {} received {} bytes with sha256 {}, but {} bytes with sha256 {sha256} were sent: \
                 the connection corrupted them, or {} changed while it was sent; register again",
                self.base,
                stored.size,
                stored.sha256,
                sent.bytes,
                local.display()
            )));
        }
        if before.is_some() && super::hashes::Seen::now(local) != before {
            return Err(Error::msg(format!(
                "{what}: {} changed while it was being sent; nothing was committed: register again",
                local.display()
            )));
        }
        self.cache.hashes().remember(local, before, &sha256, sent.bytes);
        if sent.status == StatusCode::CREATED {
            self.uploaded(bars, &bar, volume_path, sent.bytes, started);
        } else {
            // The organization had it: stored once, though its bytes crossed the wire.
            bar.finish();
            self.sent.fetch_add(sent.bytes, Ordering::Relaxed);
        }
        Ok(Some(FileEntry { path: volume_path.to_string(), size: sent.bytes, sha256, origin }))
    }

    /// Counts an upload, and logs it when there is no progress bar.
    fn uploaded(&self, bars: &Bars, bar: &Bar, volume_path: &str, size: u64, started: std::time::Instant) {
        bar.finish();
        self.sent.fetch_add(size, Ordering::Relaxed);
        if bars.is_hidden() {
            let seconds = started.elapsed().as_secs_f64();
            let mib_per_s = size as f64 / 1048576.0 / seconds.max(1e-9);
            tracing::info!(file = volume_path, bytes = size, seconds, mib_per_s, "uploaded");
        }
    }
}

type Bars = indicatif::MultiProgress;
type Bar = indicatif::ProgressBar;

/// A progress bar for sending `size` bytes of `volume_path`.
fn new_bar(bars: &Bars, size: u64, volume_path: &str) -> Bar {
    let bar = bars.add(indicatif::ProgressBar::new(size));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:30!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} eta {eta}",
        )
        .expect("a valid template"),
    );
    bar.set_message(volume_path.to_string());
    bar
}

/// Buffers of 1 MiB that files are sent from, reused (fresh ones cost the client a sixth of
/// its time in page faults).
static READS: std::sync::LazyLock<super::buffers::BufferPool> =
    std::sync::LazyLock::new(|| super::buffers::BufferPool::new(1 << 20, 16));

/// Files at least this large are sent by [`HttpRegistry::stream_file`].
const STREAMED: u64 = 8 << 20;

/// The final answer to [`HttpRegistry::stream_file`].
struct Sent {
    status: StatusCode,
    body: bytes::Bytes,
    /// Bytes sent.
    bytes: u64,
    /// sha256 of the bytes sent, when asked for.
    sha256: Option<String>,
}

impl Sent {
    /// The error message of the body, or "no details".
    fn message(&self) -> String {
        serde_json::from_slice::<ErrorBody>(&self.body).map(|b| b.error.message).unwrap_or_else(|_| "no details".into())
    }
}

impl HttpRegistry {
    /// Sends the file at `local` as the body of `method` `path` in 1 MiB writes, hashing
    /// it on the way when `hash`, with the retries of [`HttpRegistry::send`]; returns the
    /// final answer, whatever its status. reqwest's blocking body moves 8 KiB at a time (a
    /// channel send and a socket write each): a 1 GiB upload spent 4 s of system time in
    /// the client and as much in the server. The async client streams the file instead,
    /// from a runtime on a thread of its own (so that a caller inside another runtime is
    /// fine).
    #[allow(clippy::too_many_arguments)]
    fn stream_file(
        &self,
        method: Method,
        path: &str,
        local: &Path,
        size: u64,
        bar: &Bar,
        hash: bool,
        what: &str,
    ) -> Result<Sent> {
        use sha2::Digest;
        let url = format!("{}{path}", self.base);
        let send = || -> Result<Sent> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::msg(format!("{what}: starting the upload: {e}")))?;
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| Error::msg(format!("building the HTTP client: {e}")))?;
            runtime.block_on(async {
                let mut delay = Duration::from_millis(200);
                for attempt in 1.. {
                    bar.reset();
                    let file = std::fs::File::open(local).map_err(|e| Error::io("opening", local, e))?;
                    let hashed = std::sync::Arc::new(std::sync::Mutex::new((sha2::Sha256::new(), 0u64)));
                    let hasher = hash.then(|| hashed.clone());
                    let chunks = futures_util::stream::unfold(file, move |mut file| {
                        let hasher = hasher.clone();
                        async move {
                            // A read of the page cache or the disk, on this upload's own
                            // thread, hashed while it is in the CPU's cache; into a
                            // reused buffer's spare capacity (nothing zeroed, no fresh
                            // pages).
                            use std::io::Read;
                            let mut buffer = READS.take();
                            match (&mut file).take(READS.capacity() as u64).read_to_end(&mut buffer) {
                                Ok(0) => None,
                                Ok(n) => {
                                    if let Some(hasher) = &hasher {
                                        let mut hasher = hasher.lock().expect("hasher lock");
                                        hasher.0.update(&buffer);
                                        hasher.1 += n as u64;
                                    }
                                    Some((Ok::<_, std::io::Error>(READS.bytes(buffer)), file))
                                }
                                Err(e) => Some((Err(e), file)),
                            }
                        }
                    });
                    let progress = bar.clone();
                    let counted = futures_util::StreamExt::inspect(chunks, move |chunk| {
                        if let Ok(chunk) = chunk {
                            progress.inc(chunk.len() as u64);
                        }
                    });
                    let mut request = client
                        .request(method.clone(), &url)
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .header(reqwest::header::CONTENT_LENGTH, size)
                        .body(reqwest::Body::wrap_stream(counted));
                    if let Some(token) = &self.token {
                        request = request.bearer_auth(token);
                    }
                    let outcome = request.send().await;
                    let (transient, asked) = match &outcome {
                        Ok(response) => retry_hint(response.status(), response.headers()),
                        // A connection closed while the body was sent: a server that
                        // answered early (429 before reading) or restarted; an upload
                        // by sha256, or unnamed, is safe to send again.
                        Err(e) => (e.is_connect() || e.is_timeout() || e.is_body() || e.is_request(), None),
                    };
                    if !transient || attempt == 5 {
                        let response =
                            outcome.map_err(|e| Error::msg(format!("{what}: cannot reach {}: {e}", self.base)))?;
                        let status = response.status();
                        let body = response.bytes().await.unwrap_or_default();
                        let (hasher, bytes) = std::mem::take(&mut *hashed.lock().expect("hasher lock"));
                        let sha256 = hash.then(|| hex::encode(hasher.finalize()));
                        return Ok(Sent { status, body, bytes: if hash { bytes } else { size }, sha256 });
                    }
                    tokio::time::sleep(asked.unwrap_or(delay).min(Duration::from_secs(30))).await;
                    delay *= 2;
                }
                unreachable!("the loop returns on its last attempt")
            })
        };
        std::thread::scope(|scope| {
            scope.spawn(send).join().unwrap_or_else(|_| Err(Error::msg("the upload thread panicked")))
        })
    }
}

impl Staging for HttpStaging<'_> {
    fn put_file(&mut self, volume_path: &str, local: &Path, origin: FileOrigin) -> Result<FileEntry> {
        let entry = self.registry.upload(&self.id.organization, volume_path, local, origin, &progress_bars())?;
        self.files.insert(volume_path.to_string(), entry.clone());
        Ok(entry)
    }

    /// Up to four uploads at once; the first failure stops handing out more.
    fn put_files(&mut self, files: &[(String, PathBuf, FileOrigin)]) -> Result<Vec<FileEntry>> {
        let bars = progress_bars();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Result<FileEntry>>>> =
            files.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let (registry, organization) = (self.registry, self.id.organization.as_str());
        std::thread::scope(|scope| {
            for _ in 0..PARALLEL_UPLOADS.min(files.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((volume_path, local, origin)) = files.get(i) else { break };
                    let result = registry.upload(organization, volume_path, local, *origin, &bars);
                    let failed = result.is_err();
                    *results[i].lock().expect("result lock") = Some(result);
                    if failed {
                        next.store(files.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        let mut entries = Vec::with_capacity(files.len());
        for slot in results {
            match slot.into_inner().expect("result lock") {
                Some(Ok(entry)) => {
                    self.files.insert(entry.path.clone(), entry.clone());
                    entries.push(entry);
                }
                Some(Err(e)) => return Err(e),
                None => return Err(Error::msg("an upload failed; nothing was committed")),
            }
        }
        Ok(entries)
    }

    fn commit(self: Box<Self>, manifest: &Manifest) -> Result<()> {
        check_staged(&self.id, &self.files, manifest)?;
        let registry = self.registry;
        let what = format!("committing {}", self.id);
        let path = path::manifest(&self.id);
        let body = manifest.to_json();
        let (name, value) = Precondition::header(&self.expected);
        let response = registry.send(
            || {
                registry
                    .request(Method::PUT, &path)
                    .header("content-type", "application/json")
                    .header(name, &value)
                    .body(body.clone())
            },
            &what,
        )?;
        if response.status() == StatusCode::PRECONDITION_FAILED {
            // A retry of a commit whose first answer was lost (a replica or the database
            // restarting) finds its own manifest there: it is committed.
            let current = registry.view(&self.id)?.and_then(|view| view.manifest);
            if current.is_some_and(|current| current.sha256() == manifest.sha256()) {
                return Ok(());
            }
            return Err(Error::Conflict {
                message: format!(
                    "{} was registered by someone else during this registration; nothing was changed: register again",
                    self.id
                ),
            });
        }
        registry.check(response, &what).map(|_| ())
    }
}
