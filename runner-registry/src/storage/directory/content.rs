//! Contents in the directory: uploads streamed to disk (receiving, writing and hashing
//! overlap), reuse, and downloads answered by tower-http's `ServeFile` (HTTP Range
//! included).

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http_body_util::BodyExt;
use runner_core::registry::buffers::BufferPool;
use runner_core::registry::protocol::Stored;
use runner_core::registry::sample::Sampler;
use runner_core::registry::store::{BlobWriter, DirectoryStore};
use runner_core::{Error, ErrorKind, Result};

use super::Directory;
use crate::blocking::blocking;
use crate::storage::Contents;

#[async_trait]
impl Contents for Directory {
    async fn reuse(&self, organization: &str, sha256: &str) -> Result<Option<u64>> {
        let (store, organization, sha256) = (self.store.clone(), organization.to_string(), sha256.to_string());
        blocking(move || {
            Ok(store.reuse(&organization, &sha256, None)?.map(|path| std::fs::metadata(path).map_or(0, |m| m.len())))
        })
        .await
    }

    async fn sample_known(&self, organization: &str, sample: &str) -> Result<bool> {
        let (store, organization, sample) = (self.store.clone(), organization.to_string(), sample.to_string());
        blocking(move || store.sample_known(&organization, &sample)).await
    }

    /// No limit: a directory names content once it is hashed, with no copy.
    fn max_unnamed_size(&self) -> u64 {
        u64::MAX
    }

    async fn receive(
        &self,
        organization: &str,
        expected: Option<&str>,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
    ) -> Result<(Stored, bool)> {
        let (organization, expected) = (organization.to_string(), expected.map(str::to_string));
        receive_in_directory(&self.store, organization, expected, body, max_size, declared).await
    }

    async fn download(&self, organization: &str, sha256: &str, request: Request) -> Result<Option<Response>> {
        let (store, organization, sha256) = (self.store.clone(), organization.to_string(), sha256.to_string());
        let Some(path) = blocking(move || store.blob(&organization, &sha256, None)).await? else { return Ok(None) };
        let response = tower::ServiceExt::oneshot(tower_http::services::ServeFile::new(path), request)
            .await
            .map_err(|e| Error::msg(e.to_string()))?;
        Ok(Some(response.map(Body::new)))
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
