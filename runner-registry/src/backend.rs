//! Where a server keeps its registry: a directory on one machine, or PostgreSQL and an
//! object store shared by any number of replicas. The HTTP handlers speak to this one
//! type; each operation means the same on both.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use http_body_util::BodyExt;
use runner_core::registry::buffers::BufferPool;
use runner_core::registry::protocol::{ModelView, Stored};
use runner_core::registry::sample::Sampler;
use runner_core::registry::store::{BlobWriter, Collected, DirectoryStore};
use runner_core::registry::{Alias, AliasMove, AliasOptions, Expect};
use runner_core::{Error, ErrorKind, Expected, Manifest, ModelId, ModelSummary, Registry, Result};

use crate::blocking::blocking;
use crate::shared::SharedStore;
use crate::tokens::{Right, Token, Tokens};

/// A registry server's storage.
#[derive(Debug, Clone)]
pub enum Backend {
    /// One directory (blobs, manifests, grants and the token file), owned by one server.
    Directory {
        /// The registry in it.
        store: DirectoryStore,
        /// Its token file.
        tokens: Arc<Tokens>,
    },
    /// PostgreSQL for metadata and tokens, an S3-compatible store for content.
    Shared(SharedStore),
}

impl Backend {
    /// The directory backend at `data`, after sweeping what an earlier run left behind.
    pub fn directory(data: &std::path::Path) -> Result<Backend> {
        let store = DirectoryStore::open(data)?;
        // This process owns the directory: uploads cut off by a crash are dropped now.
        let removed = store.clean_tmp()?;
        if removed > 0 {
            tracing::info!(removed, "removed partial uploads left by an earlier run");
        }
        // Registries written before content was scoped: each organization reads what its
        // models name.
        let granted = store.grant_existing()?;
        if granted > 0 {
            tracing::info!(granted, "granted organizations the content their models name");
        }
        Ok(Backend::Directory { store, tokens: Arc::new(Tokens::load(data)?) })
    }

    /// A directory registry opened beside a server and registrations that may be running
    /// (`gc`, `verify`, `token`): what they are writing in `tmp/` is left alone.
    pub fn directory_beside_others(data: &std::path::Path) -> Result<Backend> {
        Ok(Backend::Directory { store: DirectoryStore::open(data)?, tokens: Arc::new(Tokens::load(data)?) })
    }

    /// The repositories of an organization.
    pub async fn repositories(&self, org: String) -> Result<Vec<String>> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().repositories(&org)).await
            }
            Backend::Shared(shared) => shared.repositories(&org).await,
        }
    }

    /// The organizations, sorted (for the browser without auth).
    pub async fn organizations(&self) -> Result<Vec<String>> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().organizations()).await
            }
            Backend::Shared(shared) => shared.organizations().await,
        }
    }

    /// The numbers taken in a repository, ascending, with no manifest read.
    pub async fn model_numbers(&self, org: String, repo: String) -> Result<Vec<u64>> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().model_numbers(&org, &repo)).await
            }
            Backend::Shared(shared) => shared.model_numbers(&org, &repo).await,
        }
    }

    /// The models of a repository.
    pub async fn models(&self, org: String, repo: String) -> Result<Vec<ModelSummary>> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().models(&org, &repo)).await
            }
            Backend::Shared(shared) => shared.models(&org, &repo).await,
        }
    }

    /// One model, or [`Error::NotFound`].
    pub async fn model(&self, id: ModelId) -> Result<ModelView> {
        let summary = match self {
            Backend::Directory { store, .. } => {
                let (store, id) = (store.clone(), id.clone());
                blocking(move || {
                    let registry = store.registry();
                    Ok(match registry.status(&id)? {
                        None => None,
                        Some(runner_core::ModelStatus::Uploading) => {
                            Some(ModelSummary { id, status: runner_core::ModelStatus::Uploading, manifest: None })
                        }
                        Some(status) => Some(ModelSummary { manifest: Some(registry.manifest(&id)?), id, status }),
                    })
                })
                .await?
            }
            Backend::Shared(shared) => shared.model(&id).await?,
        };
        summary.map(ModelView::of).ok_or_else(|| Error::NotFound { what: "model", message: format!("{id}") })
    }

    /// The models numbered `numbers` of a repository, in that order, read at once (for a
    /// page of a listing); one deleted meanwhile is left out.
    pub async fn views(&self, org: &str, repo: &str, numbers: &[u64]) -> Result<Vec<ModelView>> {
        let loads = numbers.iter().map(|&number| {
            let id = ModelId::new(org, repo, number);
            async move {
                match self.model(id?).await {
                    Ok(view) => Ok(Some(view)),
                    Err(Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        });
        let models = futures::future::try_join_all(loads).await?;
        Ok(models.into_iter().flatten().collect())
    }

    /// The aliases of a repository.
    pub async fn aliases(&self, org: String, repo: String) -> Result<Vec<Alias>> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().aliases(&org, &repo)).await
            }
            Backend::Shared(shared) => shared.aliases(&org, &repo).await,
        }
    }

    /// Moves (or creates) an alias; `by` is who asked, for its history.
    pub async fn set_alias(
        &self,
        org: String,
        repo: String,
        alias: String,
        number: u64,
        options: AliasOptions,
        by: String,
    ) -> Result<AliasMove> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().set_alias_by(&org, &repo, &alias, number, &options, &by)).await
            }
            Backend::Shared(shared) => shared.set_alias(&org, &repo, &alias, number, &options, &by).await,
        }
    }

    /// Deletes an alias when `expect` holds.
    pub async fn delete_alias(
        &self,
        org: String,
        repo: String,
        alias: String,
        expect: Expect,
        by: String,
    ) -> Result<AliasMove> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().delete_alias_by(&org, &repo, &alias, expect, &by)).await
            }
            Backend::Shared(shared) => shared.delete_alias(&org, &repo, &alias, expect, &by).await,
        }
    }

    /// The alias moves of a repository (of one alias).
    pub async fn alias_history(&self, org: String, repo: String, alias: Option<String>) -> Result<Vec<AliasMove>> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().alias_history(&org, &repo, alias.as_deref())).await
            }
            Backend::Shared(shared) => shared.alias_history(&org, &repo, alias.as_deref()).await,
        }
    }

    /// Takes the next number.
    pub async fn create_model(&self, org: String, repo: String) -> Result<ModelId> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().create_model(&org, &repo)).await
            }
            Backend::Shared(shared) => shared.create_model(&org, &repo).await,
        }
    }

    /// Deletes a model.
    pub async fn delete_model(&self, id: ModelId) -> Result<()> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().delete_model(&id)).await
            }
            Backend::Shared(shared) => shared.delete_model(&id).await,
        }
    }

    /// Deletes a repository and its models.
    pub async fn delete_repository(&self, org: String, repo: String) -> Result<()> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().delete_repository(&org, &repo)).await
            }
            Backend::Shared(shared) => shared.delete_repository(&org, &repo).await,
        }
    }

    /// Gives back an uploading number.
    pub async fn discard(&self, id: ModelId) -> Result<()> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.registry().discard(&id)).await
            }
            Backend::Shared(shared) => shared.discard(&id).await,
        }
    }

    /// Keeps an uploading number reserved (touched for garbage collection).
    pub async fn keep_alive(&self, id: ModelId) -> Result<()> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || runner_core::Registry::keep_alive(store.registry(), &id)).await
            }
            Backend::Shared(shared) => shared.keep_alive(&id).await,
        }
    }

    /// Makes a model ready, under `expected` when given.
    pub async fn commit(&self, manifest: Manifest, expected: Option<Expected>) -> Result<()> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.commit_manifest(&manifest, expected.as_ref())).await
            }
            Backend::Shared(shared) => shared.commit(&manifest, expected.as_ref()).await,
        }
    }

    /// The size of content the organization may read, touched for garbage collection
    /// (the answer to a client asking before it sends).
    pub async fn reuse(&self, org: String, sha256: String) -> Result<Option<u64>> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || {
                    Ok(store.reuse(&org, &sha256, None)?.map(|path| std::fs::metadata(path).map_or(0, |m| m.len())))
                })
                .await
            }
            Backend::Shared(shared) => shared.reuse(&org, &sha256).await,
        }
    }

    /// Stores an upload checked against `sha256` and grants it to the organization;
    /// `false` when the organization had it already. With the length the request
    /// declared, the sample of large content is recorded on the way.
    pub async fn put_blob(
        &self,
        org: String,
        sha256: String,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
    ) -> Result<bool> {
        match self {
            Backend::Directory { store, .. } => {
                receive_in_directory(store, org, Some(sha256), body, max_size, declared).await.map(|(_, new)| new)
            }
            Backend::Shared(shared) => shared.put_blob(&org, &sha256, body, max_size, declared).await,
        }
    }

    /// Whether the organization may read stored content with this
    /// [sample](runner_core::registry::sample).
    pub async fn sample_known(&self, org: String, sample: String) -> Result<bool> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.sample_known(&org, &sample)).await
            }
            Backend::Shared(shared) => shared.sample_known(&org, &sample).await,
        }
    }

    /// The largest content taken unnamed: the shared store copies it to its content's
    /// key with one S3 `CopyObject`, which S3 allows up to 5 GiB.
    pub fn max_unnamed_size(&self) -> u64 {
        match self {
            Backend::Directory { .. } => u64::MAX,
            Backend::Shared(_) => crate::shared::MAX_COPY,
        }
    }

    /// Stores an upload not named beforehand, under the sha256 of what arrived, and grants
    /// it to the organization; `false` when the organization had it already.
    pub async fn post_blob(
        &self,
        org: String,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
    ) -> Result<(Stored, bool)> {
        match self {
            Backend::Directory { store, .. } => receive_in_directory(store, org, None, body, max_size, declared).await,
            Backend::Shared(shared) => shared.receive_blob(&org, None, body, max_size, declared).await,
        }
    }

    /// Answers a download (with HTTP Range), or `None` when the organization may not
    /// read that content.
    pub async fn get_blob(&self, org: String, sha256: String, request: Request) -> Result<Option<Response>> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                let Some(path) = blocking(move || store.blob(&org, &sha256, None)).await? else { return Ok(None) };
                let response = tower::ServiceExt::oneshot(tower_http::services::ServeFile::new(path), request)
                    .await
                    .map_err(|e| Error::msg(e.to_string()))?;
                Ok(Some(response.map(Body::new)))
            }
            Backend::Shared(shared) => {
                let headers: HeaderMap = request.headers().clone();
                shared.get_blob(&org, &sha256, &headers).await
            }
        }
    }

    /// The stored token matching `presented`.
    pub async fn find_token(&self, presented: &str) -> Result<Option<Token>> {
        match self {
            Backend::Directory { tokens, .. } => Ok(tokens.find(presented)),
            Backend::Shared(shared) => shared.find_token(&crate::token_hash(presented)).await,
        }
    }

    /// Creates a token and returns it (only its hash is stored).
    pub async fn create_token(&self, org: &str, right: Right) -> Result<String> {
        match self {
            Backend::Directory { store, .. } => Tokens::create(store.registry().root(), org, right),
            Backend::Shared(shared) => shared.create_token(org, right).await,
        }
    }

    /// Removes what no model needs, sparing what was touched within `grace`.
    pub async fn collect_garbage(&self, grace: Duration, dry_run: bool) -> Result<Collected> {
        match self {
            Backend::Directory { store, .. } => {
                let store = store.clone();
                blocking(move || store.collect_garbage(grace, dry_run)).await
            }
            Backend::Shared(shared) => shared.collect_garbage(grace, dry_run).await,
        }
    }
}

/// Bytes gathered per write of an upload into the directory.
const WRITE: usize = 1 << 20;
/// Gathered writes waiting for the thread that writes and hashes them, at most.
const CHUNKS_IN_FLIGHT: usize = 4;
/// Buffers of [`WRITE`] bytes, reused by every upload into the directory.
static WRITES: std::sync::LazyLock<BufferPool> =
    std::sync::LazyLock::new(|| BufferPool::new(WRITE, CHUNKS_IN_FLIGHT + 2));
/// Bytes of an upload between background syncs.
const SYNC_EVERY: u64 = 64 << 20;

/// Bytes of an upload read and dropped after the store failed, at most.
const DRAIN: u64 = 256 << 20;

/// Reads what is left of an upload the server already failed (up to `limit` bytes), so
/// that a client still sending reads the answer instead of a connection reset by a server
/// that closed with its bytes unread.
async fn drain(mut body: Body, limit: u64) {
    let mut read = 0u64;
    while read <= limit {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => return,
        }
    }
}

/// Streams the body into the directory, hashing as it goes; with `expected`, nothing is
/// kept unless the sha256 matches (and nothing is read when the organization has that
/// content already). With the `declared` length of large content, its sample is computed
/// on the way and recorded. Returns what was stored, and whether it is new to the
/// organization.
async fn receive_in_directory(
    store: &DirectoryStore,
    org: String,
    expected: Option<String>,
    body: Body,
    max_size: u64,
    declared: Option<u64>,
) -> Result<(Stored, bool)> {
    if let Some(sha256) = &expected {
        let (check, check_org, reader) = (sha256.clone(), org.clone(), store.clone());
        let known = blocking(move || match reader.reuse(&check_org, &check, None)? {
            Some(path) => Ok(Some(std::fs::metadata(&path).map_err(|e| Error::storing("stored content", e))?.len())),
            None => Ok(None),
        });
        if let Some(size) = known.await? {
            return Ok((Stored { sha256: sha256.clone(), size }, false));
        }
    }
    let writer_store = store.clone();
    let writer = blocking(move || writer_store.blob_writer()).await?;
    // The runtime receives frames (tens of KiB) and gathers them into 1 MiB chunks; one
    // blocking thread writes them while another hashes them: receiving, writing and
    // hashing overlap, where one thread writing and hashing was the upload's bottleneck
    // (about 650 MB/s). Every 64 MiB the writer starts a sync in the background, so that
    // the fsync that ends the upload finds little left.
    let (chunks, mut incoming) = tokio::sync::mpsc::channel::<bytes::Bytes>(CHUNKS_IN_FLIGHT);
    let (to_hash, mut hashes) = tokio::sync::mpsc::channel::<bytes::Bytes>(CHUNKS_IN_FLIGHT);
    let storing = tokio::task::spawn_blocking(move || -> std::io::Result<BlobWriter> {
        let mut writer = writer;
        let (mut written, mut synced) = (0u64, 0u64);
        let mut syncing: Option<std::thread::JoinHandle<std::io::Result<()>>> = None;
        // Each chunk's buffer goes back to the pool once both threads dropped it.
        while let Some(chunk) = incoming.blocking_recv() {
            writer.write_unhashed(&chunk)?;
            written += chunk.len() as u64;
            if written - synced >= SYNC_EVERY && syncing.as_ref().is_none_or(|s| s.is_finished()) {
                let file = writer.file()?;
                syncing = Some(std::thread::spawn(move || file.sync_data()));
                synced = written;
            }
        }
        if let Some(syncing) = syncing {
            let _ = syncing.join();
        }
        Ok(writer)
    });
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut sampler = declared.and_then(Sampler::new);
        while let Some(chunk) = hashes.blocking_recv() {
            sha2::Digest::update(&mut hasher, &chunk);
            if let Some(sampler) = sampler.as_mut() {
                sampler.update(&chunk);
            }
        }
        (hex::encode(sha2::Digest::finalize(hasher)), sampler.and_then(Sampler::finish))
    });
    let received = async move {
        let mut body = body;
        let mut pending = WRITES.take();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Error::serving(ErrorKind::BadRequest, format!("upload interrupted: {e}")))?;
            if let Ok(data) = frame.into_data() {
                received += data.len() as u64;
                if received > max_size {
                    return Err(Error::serving(ErrorKind::TooLarge, format!("files may be at most {max_size} bytes")));
                }
                pending.extend_from_slice(&data);
                if pending.len() >= WRITE {
                    let full = WRITES.bytes(std::mem::replace(&mut pending, WRITES.take()));
                    if to_hash.send(full.clone()).await.is_err() || chunks.send(full).await.is_err() {
                        // The writer stopped: its error is the answer.
                        drain(body, DRAIN).await;
                        return Ok(());
                    }
                }
            }
        }
        let last = WRITES.bytes(pending);
        let _ = (to_hash.send(last.clone()).await, chunks.send(last).await);
        Ok(())
    }
    .await;
    // Whatever happened, the writer is waited for: on an error it is dropped below, and
    // its temporary file with it.
    let writer = storing.await.map_err(|e| Error::msg(format!("a storage task failed: {e}")))?;
    let (actual, sample) = hashing.await.map_err(|e| Error::msg(format!("a hashing task failed: {e}")))?;
    received?;
    let writer = writer.map_err(|e| Error::storing("the upload", e))?;
    let store = store.clone();
    blocking(move || {
        let sha256 = expected.unwrap_or_else(|| actual.clone());
        // Stored and granted with the collector held off: it never removes this grant
        // while sparing the content, nor removes the content after checking it is absent.
        let _gc = store.hold_off_gc()?;
        let size = writer.finish_hashed(actual, &sha256)?;
        // Content sent unnamed may be content the organization had already.
        let new = !store.granted(&org, &sha256)?;
        store.grant(&org, &sha256)?;
        // Only a hint for later uploads: the content is stored whether or not it is kept.
        if let Some(Err(e)) = sample.map(|sample| store.remember_sample(&org, &sample, &sha256)) {
            tracing::warn!(%sha256, error = %e, "cannot record the sample of stored content");
        }
        Ok((Stored { sha256, size }, new))
    })
    .await
}
