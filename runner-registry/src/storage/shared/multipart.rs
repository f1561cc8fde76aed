//! Multipart uploads, recorded so that one a killed replica leaves is aborted by `gc`.

use std::sync::Arc;

use bytes::Bytes;
use object_store::multipart::PartId;
use object_store::path::Path as ObjectPath;
use object_store::PutPayload;
use runner_core::Error;
use runner_core::Result;
use sqlx::postgres::PgPool;

use super::store::{db, store, Objects, SharedStore, PARTS_IN_FLIGHT};

/// A multipart upload in flight: recorded in `uploads` first, so that a replica killed
/// mid-upload leaves something the garbage collector can abort.
///
/// Dropped unfinished (the request's future dropped, as hyper does when an HTTP/2 client
/// resets its stream), it aborts itself in the background rather than wait for `gc`.
pub(super) struct Multipart {
    path: ObjectPath,
    id: String,
    parts: Vec<tokio::task::JoinHandle<object_store::Result<PartId>>>,
    done: Vec<PartId>,
    objects: Arc<dyn Objects>,
    pool: PgPool,
    /// Completed or aborted: nothing left to do when dropped.
    settled: bool,
}

impl Multipart {
    pub(super) async fn start(shared: &SharedStore, path: &ObjectPath) -> Result<Multipart> {
        let id = shared.objects.create_multipart(path).await.map_err(store)?;
        sqlx::query("INSERT INTO uploads (path, upload_id) VALUES ($1, $2)")
            .bind(path.as_ref())
            .bind(&id)
            .execute(&shared.pool)
            .await
            .map_err(db)?;
        Ok(Multipart {
            path: path.clone(),
            id,
            parts: Vec::new(),
            done: Vec::new(),
            objects: shared.objects.clone(),
            pool: shared.pool.clone(),
            settled: false,
        })
    }

    /// Sends one part in the background, first waiting for the oldest when
    /// [`PARTS_IN_FLIGHT`] are out.
    pub(super) async fn send(&mut self, shared: &SharedStore, part: Bytes) -> Result<()> {
        if self.parts.len() - self.done.len() >= PARTS_IN_FLIGHT {
            self.wait_one().await?;
        }
        let (objects, path, id, index) = (shared.objects.clone(), self.path.clone(), self.id.clone(), self.parts.len());
        self.parts.push(tokio::spawn(async move { objects.put_part(&path, &id, index, PutPayload::from(part)).await }));
        Ok(())
    }

    async fn wait_one(&mut self) -> Result<()> {
        let next = self.done.len();
        let part = (&mut self.parts[next])
            .await
            .map_err(|e| Error::msg(format!("a part upload failed: {e}")))?
            .map_err(store)?;
        self.done.push(part);
        Ok(())
    }

    pub(super) async fn complete(mut self, shared: &SharedStore) -> Result<()> {
        let result = async {
            while self.done.len() < self.parts.len() {
                self.wait_one().await?;
            }
            shared.objects.complete_multipart(&self.path, &self.id, std::mem::take(&mut self.done)).await.map_err(store)
        }
        .await;
        match result {
            Ok(_) => {
                self.settled = true;
                forget_upload(&shared.pool, self.path.as_ref(), &self.id).await
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Drops the parts sent; when that fails too, the collector aborts it later.
    pub(super) async fn abort(mut self) {
        if let Some(task) = self.start_abort() {
            let _ = task.await;
        }
    }

    /// Stops the parts in flight and aborts the upload in a task of its own: the
    /// request's future may be dropped meanwhile (hyper drops it when an HTTP/2 client
    /// resets its stream, just after the body fails), and the abort must still happen.
    /// `None` outside a runtime: the collector aborts it later.
    fn start_abort(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.settled = true;
        for part in &self.parts {
            part.abort();
        }
        let abort = abort_upload(self.objects.clone(), self.pool.clone(), self.path.clone(), self.id.clone());
        let task = tokio::runtime::Handle::try_current().ok().map(|runtime| runtime.spawn(abort));
        if task.is_none() {
            tracing::warn!(path = %self.path, "an unfinished multipart upload is left for gc to abort");
        }
        task
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if !self.settled {
            self.start_abort();
        }
    }
}

/// Aborts a multipart upload and forgets it; when the store refuses, the row stays for
/// the collector.
async fn abort_upload(objects: Arc<dyn Objects>, pool: PgPool, path: ObjectPath, id: String) {
    match objects.abort_multipart(&path, &id).await {
        Ok(()) => {
            let _ = forget_upload(&pool, path.as_ref(), &id).await;
        }
        Err(e) => tracing::warn!(%path, error = %e, "cannot abort a multipart upload; gc will"),
    }
}

/// Bytes that hold a permit until the last of them is dropped.
pub(super) struct Leased {
    pub(super) bytes: Bytes,
    pub(super) _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Leased {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

pub(super) async fn forget_upload(pool: &PgPool, path: &str, upload_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM uploads WHERE path = $1 AND upload_id = $2")
        .bind(path)
        .bind(upload_id)
        .execute(pool)
        .await
        .map_err(db)?;
    Ok(())
}
