//! Garbage collection of the shared registry, and why it loses nothing.
//!
//! What is shared: the rows `blobs (sha256, size, touched_at, deleting)`, `grants`,
//! `models`, `model_files`; the objects `blobs/sha256/AB/SHA256` and `uploads/*`; and
//! one advisory lock per content, `L(c)` ([`content_lock`]), held to the end of a
//! transaction. The steps that touch content `c`:
//!
//! - **upload** `U(c)`: streams the bytes to `c`'s key (a multipart upload, invisible
//!   until completed) or to `uploads/`; then, in one transaction holding `L(c)`
//!   exclusively: completes (or copies) the object, writes the row (`deleting = false`,
//!   touched now) and the grant.
//! - **reuse** `R(c)` (a `HEAD` or a `PUT` of stored content): one `UPDATE` that touches
//!   the row where `NOT deleting`, answering whether it is stored.
//! - **commit** `C(m)`: one transaction: `m`'s row locked; `L(c)` shared for every `c`
//!   it names (sorted, so two commits never wait on each other); then, in a statement
//!   of its own, the rows of those contents that are granted and `NOT deleting`; then
//!   `model_files` and the manifest. A content missing there refuses the whole commit
//!   ([`Error::Gone`], nothing written).
//! - **mark** `M(c)` (gc, first step): one transaction holding `L(c)` exclusively: an
//!   `UPDATE ... SET deleting = true` where `c` is unmarked, untouched for the grace
//!   period, named by no `model_files` row, and not sent since a live reservation of an
//!   organization that may read it began (one still `uploading` and touched within the
//!   grace period: `register` keeps its number touched every second while it works, so
//!   what it sent stays while it works, however long); committed before anything else.
//! - **delete** `D(c)` (gc, second step, for every marked row, including those a killed
//!   collector left): one transaction holding `L(c)` exclusively: re-reads the mark
//!   (gone: skip), deletes the object, then the row (grants and samples go with it).
//!
//! The invariant: an unmarked row has its complete object, and every `model_files` row
//! names an unmarked row. Each interleaving keeps it:
//!
//! - `C` and `M` of one content exclude each other through `L(c)`. If `C` holds it
//!   first, `M` waits until `C` has committed (or rolled back), and `M`'s `UPDATE`, a
//!   statement begun after that, sees `C`'s `model_files`: no mark. If `M` holds it
//!   first, `C` waits until the mark is committed, and its read, a statement begun after
//!   that, sees it: refused. This is the step the old collector lacked: it checked under
//!   a row lock with a snapshot taken before the commit it waited for, and deleted the
//!   object before anything noticed.
//! - `D` deletes an object only while its row is marked and committed so, and deletes
//!   the row after the object: a collector killed in between leaves a marked row with no
//!   object, which nothing reads (commits, reuse, downloads and samples all skip marked
//!   rows), and the next run finishes it.
//! - `U` of marked content (a client sending it again): `U` holds `L(c)` exclusively, so
//!   it runs wholly before or after a `D`. Before: it rewrites the object and clears the
//!   mark, and `D` re-reads the mark and skips. After: the row is gone, and `U` writes
//!   object and row afresh. A multipart upload in flight is not an object yet, so `D`
//!   cannot delete it; completing it is the part of `U` under the lock.
//! - `R` and `M` both update the row; PostgreSQL orders them by its row lock and checks
//!   the later one's `WHERE` again on the row the earlier one left (READ COMMITTED). `R`
//!   first: the row is touched now and no longer matches `M`. `M` first: `R` matches no
//!   unmarked row and answers "not stored", so the client sends the content (`U`).
//! - `R` long before `C` (a client told content exists, then slower than the grace
//!   period): `M` may run in between; `C` is then refused with the contents it lacks,
//!   and `register` sends them again and commits again.
//! - Model deletion, repository deletion and alias moves change only model and alias
//!   rows: a content they leave unnamed becomes a candidate for `M` like any other.
//! - Numbers: gc gives back a number still `uploading` after the grace period, unless
//!   it is its repository's highest (numbers are taken one above the highest, so one
//!   given back is never taken again), in a `DELETE ... WHERE state = 'uploading'` under
//!   the repository's row lock, which waits for a commit holding the model's row and
//!   then matches nothing. A commit after it finds no row: [`Error::Gone`] with the
//!   number, and `register` takes a new one.
//! - Objects under `uploads/` older than the grace period are deleted: a replica copies
//!   its own to the content's key within the transaction of its `U`, so only one a
//!   killed replica left is that old (with a grace of 0, an upload may fail, and be
//!   retried: nothing is half-visible).
//!
//! Errors reaching the database or the store are [`ErrorKind::Overloaded`] (HTTP 503,
//! which clients retry): the transaction is rolled back, so nothing is half-written.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use runner_core::registry::store::Collected;
use runner_core::ModelId;
use runner_core::Result;
use sqlx::Row;

use super::multipart::forget_upload;
use super::store::{blob_path, db, lock_content, number, store, SharedStore, UNNAMED};
use crate::storage::Collector;

/// Where model row `m` is a number garbage collection gives back: still uploading,
/// untouched for the grace period (seconds in parameter `$grace`), and not its
/// repository's highest (numbers are taken one above the highest, so one given back is
/// never taken again). Read by `gc` to choose, and again in the `DELETE` that gives back.
macro_rules! abandoned {
    ($grace:literal) => {
        concat!(
            "m.state = 'uploading' AND m.touched_at < now() - make_interval(secs => ",
            $grace,
            ") AND m.number < (SELECT max(n.number) FROM models n
                              WHERE n.organization = m.organization AND n.repository = m.repository)"
        )
    };
}

/// Where content row `b` is one garbage collection may delete: unmarked, untouched for
/// the grace period (seconds in parameter `$grace`), named by no model, and not sent
/// since a live reservation of an organization that may read it began (one still
/// uploading and touched within the grace period). Read by `gc` to choose, and again in
/// the `UPDATE` that marks.
macro_rules! collectable {
    ($grace:literal) => {
        concat!(
            "NOT b.deleting AND b.touched_at < now() - make_interval(secs => ",
            $grace,
            ") AND NOT EXISTS (SELECT 1 FROM model_files f WHERE f.sha256 = b.sha256)
              AND NOT EXISTS (SELECT 1 FROM models m JOIN grants g ON g.organization = m.organization
                              WHERE g.sha256 = b.sha256 AND m.state = 'uploading' AND b.touched_at >= m.created_at
                                AND m.touched_at >= now() - make_interval(secs => ",
            $grace,
            "))"
        )
    };
}

#[async_trait]
impl Collector for SharedStore {
    /// Removes what no model needs, sparing what was touched within `grace`: numbers
    /// whose registration was abandoned, content no model names (marked, then deleted),
    /// and multipart uploads a replica left unfinished. Safe while registrations run on
    /// any replica, whatever the grace: a registration it overtakes is refused, never
    /// made ready without its contents (see the module's notes). With `dry_run`, only
    /// reports.
    async fn collect_garbage(&self, grace: Duration, dry_run: bool) -> Result<Collected> {
        let seconds = grace.as_secs_f64();
        let mut collected = Collected::default();
        let abandoned =
            sqlx::query(concat!("SELECT organization, repository, number FROM models m WHERE ", abandoned!("$1")))
                .bind(seconds)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        for row in abandoned {
            let id = ModelId::new(row.get::<&str, _>(0), row.get::<&str, _>(1), row.get::<i64, _>(2) as u64)?;
            if dry_run || self.give_back_abandoned(&id, seconds).await? {
                collected.abandoned.push(id.to_string());
            }
        }
        // Content no model names, untouched for the grace period: marked, one at a time,
        // each in a transaction of its own that is committed before its object is touched.
        let orphans = sqlx::query(concat!("SELECT sha256, size FROM blobs b WHERE ", collectable!("$1")))
            .bind(seconds)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        for row in orphans {
            let (sha256, size): (String, i64) = (row.get(0), row.get(1));
            match dry_run {
                true => {
                    collected.blobs += 1;
                    collected.bytes += size as u64;
                }
                false => self.mark_for_deletion(&sha256, seconds).await?,
            }
        }
        if !dry_run {
            // Every marked content: those marked just now, and those of a collector that
            // died before it finished.
            let marked: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM blobs WHERE deleting")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            for sha256 in marked {
                if let Some((size, grants)) = self.delete_marked(&sha256).await? {
                    collected.blobs += 1;
                    collected.bytes += size;
                    collected.grants += grants;
                }
            }
        }
        let stale =
            sqlx::query("SELECT path, upload_id FROM uploads WHERE started_at < now() - make_interval(secs => $1)")
                .bind(seconds)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        for row in stale {
            let (path, upload_id): (String, String) = (row.get(0), row.get(1));
            if !dry_run {
                match self.objects.abort_multipart(&ObjectPath::from(path.as_str()), &upload_id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store(e)),
                }
                forget_upload(&self.pool, &path, &upload_id).await?;
            }
            collected.uploads += 1;
        }
        // Unnamed uploads completed by a replica that died before copying them to their
        // content's key (a finished one is deleted at once).
        let cutoff = std::time::SystemTime::now() - grace;
        let mut leftovers = self.objects.list(Some(&ObjectPath::from(UNNAMED)));
        while let Some(object) = leftovers.next().await {
            let object = object.map_err(store)?;
            if std::time::SystemTime::from(object.last_modified) >= cutoff {
                continue;
            }
            if !dry_run {
                match self.objects.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store(e)),
                }
            }
            collected.uploads += 1;
        }
        Ok(collected)
    }
}

impl SharedStore {
    /// Gives back a number still uploading after the grace period, unless it is its
    /// repository's highest: the next number is taken one above the highest, so a number
    /// given back is never taken again (a late commit of its registration is refused,
    /// never made into someone else's reservation). Under the repository's row lock, as
    /// numbers are taken; the `DELETE` waits for a commit holding the model's row, and
    /// then matches nothing.
    async fn give_back_abandoned(&self, id: &ModelId, grace_seconds: f64) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT 1 FROM repositories WHERE organization = $1 AND name = $2 FOR UPDATE")
            .bind(&id.organization)
            .bind(&id.repository)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let given = sqlx::query(concat!(
            "DELETE FROM models m WHERE m.organization = $1 AND m.repository = $2 AND m.number = $3 AND ",
            abandoned!("$4")
        ))
        .bind(&id.organization)
        .bind(&id.repository)
        .bind(number(id))
        .bind(grace_seconds)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(given == 1)
    }

    /// The first step of deleting content: marks it, if it is still unnamed, untouched
    /// for `grace_seconds`, and not sent since a live reservation of an organization
    /// that may read it began (a registration in flight keeps its number touched, and
    /// may be about to name it), in a transaction that holds its lock exclusively.
    /// The check is a statement after the lock, so it reads every commit that held the
    /// lock before (its model's files are visible); a commit after this one reads the
    /// mark and refuses the content. A touch (`reuse`) racing this `UPDATE` either comes
    /// first, and the row no longer matches when PostgreSQL checks it again after the
    /// row lock, or comes after, and matches no marked row (`NOT deleting`).
    async fn mark_for_deletion(&self, sha256: &str, grace_seconds: f64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_content(&mut tx, sha256).await?;
        sqlx::query(concat!("UPDATE blobs b SET deleting = true WHERE b.sha256 = $1 AND ", collectable!("$2")))
            .bind(sha256)
            .bind(grace_seconds)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// The second step: deletes marked content's object, then its row (with its grants
    /// and samples), under its lock; `None` when it is no longer marked (an upload of
    /// the same content cleared the mark and wrote the object again). A collector killed
    /// between the two leaves the row marked, and the next run finishes it.
    async fn delete_marked(&self, sha256: &str) -> Result<Option<(u64, usize)>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_content(&mut tx, sha256).await?;
        let row = sqlx::query(
            "SELECT size, EXISTS (SELECT 1 FROM model_files f WHERE f.sha256 = b.sha256) FROM blobs b
             WHERE sha256 = $1 AND deleting",
        )
        .bind(sha256)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let (size, named): (i64, bool) = (row.get(0), row.get(1));
        if named {
            // Cannot happen: commits refuse marked content under this lock. Should it
            // anyway, the content is kept.
            tracing::error!(%sha256, "content marked for deletion is named by a model; it is kept");
            sqlx::query("UPDATE blobs SET deleting = false WHERE sha256 = $1")
                .bind(sha256)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(None);
        }
        match self.objects.delete(&blob_path(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store(e)),
        }
        self.small.remove(sha256);
        let grants = sqlx::query("DELETE FROM grants WHERE sha256 = $1")
            .bind(sha256)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        sqlx::query("DELETE FROM blobs WHERE sha256 = $1").bind(sha256).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some((size as u64, grants as usize)))
    }
}
