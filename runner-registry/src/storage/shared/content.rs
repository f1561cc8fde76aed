//! Contents: uploads streamed into the object store and checked on the way, reuse of
//! stored content, and downloads (small ones from memory).

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, PutPayload};
use runner_core::registry::protocol::{parse_range, ByteRange, Stored};
use runner_core::registry::sample::Sampler;
use runner_core::Result;
use runner_core::{validate_name, validate_sha256, Error, ErrorKind};
use sha2::{Digest, Sha256};

use super::multipart::{Leased, Multipart};
use super::store::{
    blob_path, db, lock_content, missing, store, SharedStore, MAX_COPY, PART, PARTS_IN_FLIGHT, SMALL_CONTENT, UNNAMED,
};
use crate::storage::Contents;

#[async_trait]
impl Contents for SharedStore {
    /// The size of stored content `organization` may read, touched so that garbage
    /// collection spares it for its grace period (a client told it exists names it
    /// instead of sending it); `None` when it is not stored or not granted.
    async fn reuse(&self, organization: &str, sha256: &str) -> Result<Option<u64>> {
        validate_name("organization", organization)?;
        validate_sha256(sha256)?;
        let size: Option<i64> = sqlx::query_scalar(
            "UPDATE blobs b SET touched_at = now() FROM grants g
             WHERE b.sha256 = $2 AND g.sha256 = b.sha256 AND g.organization = $1 AND NOT b.deleting
             RETURNING b.size",
        )
        .bind(organization)
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(size.map(|s| s as u64))
    }

    /// Whether `organization` may read stored content with this
    /// [sample](runner_core::registry::sample).
    async fn sample_known(&self, organization: &str, sample: &str) -> Result<bool> {
        validate_name("organization", organization)?;
        validate_sha256(sample)?;
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM samples s JOIN grants g ON g.organization = s.organization AND g.sha256 = s.sha256
             JOIN blobs b ON b.sha256 = s.sha256 AND NOT b.deleting
             WHERE s.organization = $1 AND s.sample = $2)",
        )
        .bind(organization)
        .bind(sample)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    /// The largest content taken unnamed: it is copied to its content's key with one S3
    /// `CopyObject`, which S3 allows up to 5 GiB.
    fn max_unnamed_size(&self) -> u64 {
        MAX_COPY
    }

    /// Streams an upload into the object store, hashing on the way: a small one in one
    /// `PUT`, a large one as a multipart upload whose parts go out while the next is
    /// received. The object is completed only when the sha256 matches, and aborted when
    /// it does not, when the client disconnects or the upload is too large. With no
    /// `expected` sha256, an upload is named by what arrives: a large one goes to a key of its own under `uploads/`, and is copied to
    /// its content's key once hashed (a copy inside the store, which moves no bytes
    /// through the replica) unless the store holds that content already. Returns what
    /// was stored, and whether it is new to the organization.
    async fn receive(
        &self,
        organization: &str,
        expected: Option<&str>,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
    ) -> Result<(Stored, bool)> {
        validate_name("organization", organization)?;
        if let Some(sha256) = expected {
            if let Some(size) = self.reuse(organization, sha256).await? {
                return Ok((Stored { sha256: sha256.to_string(), size }, false));
            }
        }
        let path = match expected {
            Some(sha256) => blob_path(sha256),
            None => ObjectPath::from(format!("{UNNAMED}/{}", hex::encode(rand::random::<[u8; 16]>()))),
        };
        let mut upload: Option<Multipart> = None;
        let received = self.read_body(&path, body, max_size, declared, &mut upload).await;
        let (first, size, actual, sample) = match received {
            Ok(done) => done,
            Err(e) => {
                if let Some(upload) = upload {
                    upload.abort().await;
                }
                return Err(e);
            }
        };
        if let Some(sha256) = expected.filter(|sha256| *sha256 != actual) {
            if let Some(upload) = upload {
                upload.abort().await;
            }
            return Err(Error::Checksum { path: format!("upload of {sha256}"), expected: sha256.to_string(), actual });
        }
        let sha256 = actual;
        // Completed under the content's lock: a collector deleting this content either
        // finished first (and the row is written again below) or waits for this one, and
        // then finds the mark cleared.
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_content(&mut tx, &sha256).await?;
        // Marked content is not stored, whatever the bucket holds: it is written again
        // below, and the mark cleared in this transaction.
        let stored = sqlx::query_scalar::<_, i64>("SELECT size FROM blobs WHERE sha256 = $1 AND NOT deleting")
            .bind(&sha256)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        let target = blob_path(&sha256);
        match upload {
            Some(upload) => {
                upload.complete(self).await?;
                if path != target {
                    let copied = match stored {
                        true => Ok(()),
                        false => self.objects.copy(&path, &target).await.map_err(store),
                    };
                    // Left behind only by a replica that dies here: `gc` deletes it.
                    if let Err(e) = self.objects.delete(&path).await {
                        tracing::warn!(%path, error = %e, "cannot delete an unnamed upload's object; gc will");
                    }
                    copied?;
                }
            }
            None if expected.is_none() && stored => {}
            None => self.objects.put(&target, PutPayload::from(first)).await.map(|_| ()).map_err(store)?,
        }
        let new = sqlx::query_scalar::<_, bool>("SELECT true FROM grants WHERE organization = $1 AND sha256 = $2")
            .bind(organization)
            .bind(&sha256)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_none();
        sqlx::query(
            "INSERT INTO blobs (sha256, size) VALUES ($1, $2)
             ON CONFLICT (sha256) DO UPDATE SET touched_at = now(), deleting = false",
        )
        .bind(&sha256)
        .bind(size as i64)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        grant(&mut *tx, organization, &sha256).await?;
        if let Some(sample) = sample {
            sqlx::query(
                "INSERT INTO samples (organization, sample, sha256) VALUES ($1, $2, $3)
                 ON CONFLICT (organization, sample) DO UPDATE SET sha256 = EXCLUDED.sha256",
            )
            .bind(organization)
            .bind(&sample)
            .bind(&sha256)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok((Stored { sha256, size }, new))
    }

    /// Answers a download: the whole content, or one byte range of it (`Range:
    /// bytes=A-B`, `bytes=A-`, `bytes=-N`), streamed from the store. `None` when the
    /// organization may not read it.
    async fn download(&self, organization: &str, sha256: &str, request: Request) -> Result<Option<Response>> {
        let headers = request.headers();
        let Some(size) = self.granted_size(organization, sha256).await? else { return Ok(None) };
        if let Some((signer, ttl)) = &self.presign {
            let url = signer.signed_url(Method::GET, &blob_path(sha256), *ttl).await.map_err(store)?;
            let location = HeaderValue::from_str(url.as_str()).map_err(|e| Error::msg(format!("a signed URL: {e}")))?;
            let headers = [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
            return Ok(Some((StatusCode::TEMPORARY_REDIRECT, headers).into_response()));
        }
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| parse_range(v, size));
        let (status, start, end) = match range {
            None | Some(ByteRange::Ignored) => (StatusCode::OK, 0, size),
            Some(ByteRange::Part(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
            Some(ByteRange::Unsatisfiable) => {
                return Ok(Some(
                    (
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                        format!("the range asked for lies outside the content's {size} bytes"),
                    )
                        .into_response(),
                ));
            }
        };
        let options = GetOptions { range: Some(GetRange::Bounded(start..end)), ..Default::default() };
        let body = match (start, end) {
            (0, 0) => Body::empty(),
            // Small content (a model's own file, a config) is answered from memory once
            // read: a warm model's downloads cost the store nothing.
            _ if size <= SMALL_CONTENT => {
                Body::from(self.small_content(sha256, size).await?.slice(start as usize..end as usize))
            }
            _ => {
                let got = self.objects.get_opts(&blob_path(sha256), options).await.map_err(|e| missing(e, sha256))?;
                Body::from_stream(got.into_stream())
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        if status == StatusCode::PARTIAL_CONTENT {
            let range = format!("bytes {start}-{}/{size}", end - 1);
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).expect("ascii"));
        }
        Ok(Some(response))
    }
}

impl SharedStore {
    /// The size of stored content `organization` may read, untouched.
    pub(super) async fn granted_size(&self, organization: &str, sha256: &str) -> Result<Option<u64>> {
        validate_name("organization", organization)?;
        validate_sha256(sha256)?;
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM blobs b JOIN grants g ON g.sha256 = b.sha256 AND g.organization = $1
             WHERE b.sha256 = $2 AND NOT b.deleting",
        )
        .bind(organization)
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(size.map(|s| s as u64))
    }

    /// Reads the body: returns the bytes of a small upload (not yet stored), the size,
    /// the sha256, and the sample of large content whose length was `declared`. A large
    /// one is sent as parts into `upload` as it arrives.
    async fn read_body(
        &self,
        path: &ObjectPath,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
        upload: &mut Option<Multipart>,
    ) -> Result<(Bytes, u64, String, Option<String>)> {
        let mut stream = body.into_data_stream();
        let mut hasher = Sha256::new();
        let mut sampler = declared.and_then(Sampler::new);
        let mut size = 0u64;
        // Parts are filled to exactly PART bytes, in buffers reused from upload to upload:
        // fresh 8 MiB allocations by the hundred fragment glibc's arenas, and a replica's
        // peak RSS grew to several times the parts in flight. A part's buffer comes back
        // only when the HTTP client's connection drops the body it sent, which can be
        // after the part's answer: each buffer holds one of this upload's permits, so a
        // new one is taken only once an earlier one is back.
        let live = Arc::new(tokio::sync::Semaphore::new(PARTS_IN_FLIGHT + 1));
        let lease = || async { live.clone().acquire_owned().await.expect("the semaphore is never closed") };
        let mut permit = lease().await;
        let mut buffer = self.parts.take();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::serving(ErrorKind::BadRequest, format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > max_size {
                return Err(Error::serving(ErrorKind::TooLarge, format!("files may be at most {max_size} bytes")));
            }
            hasher.update(&chunk);
            if let Some(sampler) = sampler.as_mut() {
                sampler.update(&chunk);
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = rest.len().min(PART - buffer.len());
                buffer.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buffer.len() == PART {
                    let full = self.parts.bytes(std::mem::take(&mut buffer));
                    let part = Bytes::from_owner(Leased { bytes: full, _permit: permit });
                    if upload.is_none() {
                        *upload = Some(Multipart::start(self, path).await?);
                    }
                    upload.as_mut().expect("started").send(self, part).await?;
                    permit = lease().await;
                    buffer = self.parts.take();
                }
            }
        }
        let buffer = self.parts.bytes(buffer);
        if let Some(upload) = upload.as_mut() {
            if !buffer.is_empty() {
                upload.send(self, buffer.clone()).await?;
            }
        }
        Ok((buffer, size, hex::encode(hasher.finalize()), sampler.and_then(Sampler::finish)))
    }

    /// Small content, from memory or read whole from the store. Kept only when its
    /// sha256 checks; damaged content is logged and answered as it is, like large
    /// content (streamed unchecked): the client checks every download and names the
    /// file in its error.
    async fn small_content(&self, sha256: &str, size: u64) -> Result<Bytes> {
        if let Some(content) = self.small.get(sha256) {
            return Ok(content);
        }
        let got = self.objects.get(&blob_path(sha256)).await.map_err(|e| missing(e, sha256))?;
        let content = got.bytes().await.map_err(store)?;
        let actual = hex::encode(Sha256::digest(&content));
        if actual == sha256 && content.len() as u64 == size {
            self.small.insert(sha256.to_string(), content.clone());
        } else {
            tracing::error!(%sha256, size, actual, held = content.len(), "content is damaged in the object store");
        }
        Ok(content)
    }
}

/// Lets `organization` read the content with this sha256 (idempotent).
pub(super) async fn grant<'e>(executor: impl sqlx::PgExecutor<'e>, organization: &str, sha256: &str) -> Result<()> {
    sqlx::query(
        "WITH org AS (INSERT INTO organizations (name) VALUES ($1) ON CONFLICT DO NOTHING)
         INSERT INTO grants (organization, sha256) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(organization)
    .bind(sha256)
    .execute(executor)
    .await
    .map_err(db)?;
    Ok(())
}
