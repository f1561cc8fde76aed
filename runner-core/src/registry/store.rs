//! The directory registry as a registry server stores into it: blobs written as they
//! stream in and checked against their sha256, manifests committed under a precondition,
//! uploads of a crashed run swept away, and content scoped to organizations. For
//! `runner-registry` (feature `store`); users' code goes through
//! [`Registry`] instead.
//!
//! Content is stored once whoever sends it, but an organization may read (or be told it
//! exists) only content it has uploaded itself or that one of its models names: knowing
//! a sha256 is not enough. Each grant is an empty file `ROOT/grants/ORG/ab/SHA256`, and
//! the [sample](super::sample) of large content an organization sent is recorded in
//! `ROOT/samples/ORG/ab/SAMPLE`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::Digest;

/// For tools that check what the store holds (`runner-registry verify`).
pub use super::digest::hash_file;
pub use super::local::BlobWriter;
use super::local::{names_in, LocalRegistry};
use super::traits::{Expected, ModelSummary, Registry};
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::names::{validate_name, validate_sha256};

/// A [`LocalRegistry`] opened by the process that owns its directory.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    registry: LocalRegistry,
}

impl DirectoryStore {
    /// Opens (or creates) the registry directory at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<DirectoryStore> {
        Ok(DirectoryStore { registry: LocalRegistry::open(root)? })
    }

    /// The registry, for everything the [`Registry`] trait does.
    pub fn registry(&self) -> &LocalRegistry {
        &self.registry
    }

    /// Removes uploads left behind by a process that died mid-upload. Call it only when
    /// no other process uses this registry (the registry server owns its directory).
    pub fn clean_tmp(&self) -> Result<usize> {
        self.registry.clean_tmp()
    }

    /// The stored content with this sha256 that `organization` may read, if any (its
    /// size is checked too). Content only other organizations have is `None`.
    pub fn blob(&self, organization: &str, sha256: &str, size: Option<u64>) -> Result<Option<PathBuf>> {
        if !self.granted(organization, sha256)? {
            return Ok(None);
        }
        self.registry.blob(sha256, size)
    }

    /// [`DirectoryStore::blob`] for content a client will name in a manifest instead of
    /// sending it (the answer to its `HEAD`): touched, so that [`DirectoryStore::collect_garbage`]
    /// spares it for a grace period.
    pub fn reuse(&self, organization: &str, sha256: &str, size: Option<u64>) -> Result<Option<PathBuf>> {
        if !self.granted(organization, sha256)? {
            return Ok(None);
        }
        self.registry.reuse_blob(sha256, size)
    }

    /// The stored content with this sha256 whoever may read it (its size checked), for
    /// tools that own the whole directory, such as `runner-registry import`.
    pub fn content(&self, sha256: &str, size: Option<u64>) -> Result<Option<PathBuf>> {
        self.registry.blob(sha256, size)
    }

    /// `ROOT/KIND/ORG/ab/NAME`: one of an organization's records (grants, samples),
    /// named by a sha256.
    fn record_path(&self, kind: &str, organization: &str, name: &str) -> Result<PathBuf> {
        validate_name("organization", organization)?;
        validate_sha256(name)?;
        Ok(self.registry.root().join(kind).join(organization).join(&name[..2]).join(name))
    }

    /// Every record under `ROOT/KIND`, of every organization: its name and its path.
    fn records(&self, kind: &str) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.registry.root().join(kind);
        let mut records = Vec::new();
        for org in names_in(&dir)? {
            for prefix in names_in(&dir.join(&org))? {
                let folder = dir.join(&org).join(&prefix);
                records.extend(names_in(&folder)?.into_iter().map(|name| {
                    let path = folder.join(&name);
                    (name, path)
                }));
            }
        }
        Ok(records)
    }

    fn grant_path(&self, organization: &str, sha256: &str) -> Result<PathBuf> {
        self.record_path("grants", organization, sha256)
    }

    /// Whether `organization` may read the content with this sha256.
    pub fn granted(&self, organization: &str, sha256: &str) -> Result<bool> {
        let path = self.grant_path(organization, sha256)?;
        match fs::metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// Lets `organization` read the content with this sha256: call it once the
    /// organization has sent that content, checked against its sha256.
    pub fn grant(&self, organization: &str, sha256: &str) -> Result<()> {
        let path = self.grant_path(organization, sha256)?;
        let dir = path.parent().expect("a grant has a folder");
        fs::create_dir_all(dir).ctx("creating", dir)?;
        fs::File::create(&path).ctx("creating", &path)?;
        Ok(())
    }

    fn sample_path(&self, organization: &str, sample: &str) -> Result<PathBuf> {
        self.record_path("samples", organization, sample)
    }

    /// Records that `organization` sent content with this [sample](super::sample) and
    /// sha256: `ROOT/samples/ORG/ab/SAMPLE` holds the sha256 (the last content sent with
    /// that sample, should two share one).
    pub fn remember_sample(&self, organization: &str, sample: &str, sha256: &str) -> Result<()> {
        validate_sha256(sha256)?;
        let path = self.sample_path(organization, sample)?;
        let dir = path.parent().expect("a sample has a folder");
        fs::create_dir_all(dir).ctx("creating", dir)?;
        fs::write(&path, sha256).ctx("writing", &path)
    }

    /// Whether `organization` may read stored content with this [sample](super::sample).
    /// A record cut short by a crash, or of content since removed, is not.
    pub fn sample_known(&self, organization: &str, sample: &str) -> Result<bool> {
        let path = self.sample_path(organization, sample)?;
        let sha256 = match fs::read_to_string(&path) {
            Ok(sha256) => sha256,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("reading", &path, e)),
        };
        Ok(validate_sha256(&sha256).is_ok() && self.blob(organization, &sha256, None)?.is_some())
    }

    /// Grants every organization the content its ready models name (registries written
    /// before grants existed); idempotent. Returns the grants written.
    pub fn grant_existing(&self) -> Result<usize> {
        let mut granted = 0;
        for model in self.all_models()? {
            for file in model.manifest.iter().flat_map(|m| &m.files) {
                if !self.granted(&model.id.organization, &file.sha256)? {
                    self.grant(&model.id.organization, &file.sha256)?;
                    granted += 1;
                }
            }
        }
        Ok(granted)
    }

    /// Every model of every organization, uploading ones too.
    pub fn all_models(&self) -> Result<Vec<ModelSummary>> {
        let mut all = Vec::new();
        for org in names_in(&self.registry.root().join("orgs"))? {
            if validate_name("organization", &org).is_err() {
                continue;
            }
            for repository in self.registry.repositories(&org)? {
                all.extend(self.registry.models(&org, &repository)?);
            }
        }
        Ok(all)
    }

    /// Starts storing content; [`BlobWriter::finish`] checks it against the sha256 the
    /// sender declared and keeps nothing on a mismatch.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.registry.blob_writer()
    }

    /// Makes a model ready: writes its manifest last, after checking that the store holds
    /// every file it lists and that the model's organization may read each (it sent it,
    /// or another of its models names it). With `expected`, the current manifest must
    /// still be the one the registration started from (checked under a lock); otherwise
    /// nothing changes and the error is [`Error::Conflict`]. Content missing or not
    /// readable, or a number given back, is [`Error::Gone`] (see
    /// [`DirectoryStore::collect_garbage`] for why a collector cannot remove what a
    /// committed manifest names).
    pub fn commit_manifest(&self, manifest: &Manifest, expected: Option<&Expected>) -> Result<()> {
        let organization = &manifest.model.organization;
        self.registry.commit_manifest_if(manifest, expected, |sha256| self.granted(organization, sha256))
    }

    /// Holds [`DirectoryStore::collect_garbage`] off until the guard is dropped: take it
    /// before storing content and granting it, so that the collector never removes the
    /// grant of content it did not remove.
    pub fn hold_off_gc(&self) -> Result<std::fs::File> {
        self.registry.gc_lock(false)
    }

    /// Removes what no model needs any more, sparing everything touched within `grace`:
    /// blobs no ready model names, numbers whose registration was abandoned (uploading,
    /// untouched for `grace`), volumes of models that are gone, grants of removed
    /// content, and uploads a crashed process left in `tmp/`. With `dry_run`, reports
    /// what it would remove and removes nothing.
    ///
    /// Safe while registrations run in any process, by the order of the steps rather than
    /// by timing. The collector holds `ROOT/.gc.lock` exclusively for the whole sweep;
    /// every commit holds it shared from before it checks its contents until its
    /// manifest is written, and every upload while it stores content and grants it. So
    /// a manifest committed before the sweep is read by it, and its contents are spared;
    /// a commit after the sweep finds what was removed missing ([`Error::Gone`], nothing
    /// written), and `register` sends the contents again and commits again. Content a
    /// registration reuses (a client's `HEAD`) is touched; a blob is moved aside before
    /// it is removed and put back if it was touched meanwhile, and one touched after
    /// that is gone at its path, so the client sends it. A registration quieter than
    /// `grace` may have its number given back: its commit is [`Error::Gone`] too, and
    /// `register` takes a new number.
    pub fn collect_garbage(&self, grace: std::time::Duration, dry_run: bool) -> Result<Collected> {
        let root = self.registry.root().to_path_buf();
        let cutoff = std::time::SystemTime::now() - grace;
        let old = |path: &Path| -> Result<bool> {
            match fs::symlink_metadata(path) {
                Ok(meta) => Ok(meta.modified().ctx("reading the time of", path)? < cutoff),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(Error::io("reading", path, e)),
            }
        };
        let mut collected = Collected::default();
        // Exclusive until the sweep ends: every commit and every upload storing content
        // holds this lock shared, so what it names or grants is either on disk before the
        // manifests are read below, or checked again after the sweep (see
        // `LocalRegistry::commit_manifest_if`).
        let _exclusive = self.registry.gc_lock(true)?;
        // Abandoned numbers first: what they uploaded is then unreferenced, like any orphan.
        // The highest number of each repository is never given back: the next number
        // taken is one above it, so a number given back is never taken again, and a
        // late commit of its registration cannot land in someone else's reservation.
        let models = self.all_models()?;
        let mut highest = std::collections::HashMap::new();
        for model in &models {
            let top = highest.entry((&model.id.organization, &model.id.repository)).or_insert(0);
            *top = model.id.number.max(*top);
        }
        let mut named = std::collections::HashSet::new();
        let mut manifests = std::collections::HashSet::new();
        // When the oldest live reservation began (its folder's time: `create_model` makes
        // its lock with it): content sent or reused since may be about to be named by
        // the registration that keeps it alive (`keep_alive` touches its lock).
        let mut live_since: Option<std::time::SystemTime> = None;
        let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).ctx("reading the time of", path);
        for model in &models {
            let Some(manifest) = &model.manifest else {
                let id = &model.id;
                let dir = self.registry.model_dir(id)?;
                let lock = dir.join(".lock");
                let top = highest[&(&id.organization, &id.repository)] == id.number;
                if old(&dir)? && (!lock.exists() || old(&lock)?) {
                    if !top {
                        if !dry_run {
                            self.registry.discard(id)?;
                        }
                        collected.abandoned.push(id.to_string());
                    }
                } else if let Ok(began) = modified(&dir) {
                    live_since = Some(live_since.map_or(began, |since| since.min(began)));
                }
                continue;
            };
            named.extend(manifest.files.iter().map(|f| f.sha256.clone()));
            manifests.insert(manifest.sha256());
        }
        let spared = |path: &Path| -> Result<bool> {
            Ok(!old(path)? || live_since.is_some_and(|since| modified(path).is_ok_and(|time| time >= since)))
        };
        // Blobs no ready model names.
        let blobs = root.join("blobs/sha256");
        let trash = root.join("tmp");
        for prefix in names_in(&blobs)? {
            for sha256 in names_in(&blobs.join(&prefix))? {
                let path = blobs.join(&prefix).join(&sha256);
                if named.contains(&sha256) || spared(&path)? {
                    continue;
                }
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if !dry_run {
                    // Aside first; a registration that touched it meanwhile gets it back.
                    let aside = trash.join(format!("gc-{sha256}"));
                    fs::rename(&path, &aside).ctx("moving aside", &path)?;
                    if spared(&aside)? {
                        fs::rename(&aside, &path).ctx("putting back", &path)?;
                        continue;
                    }
                    fs::remove_file(&aside).ctx("removing", &aside)?;
                }
                collected.blobs += 1;
                collected.bytes += size;
            }
        }
        let stored = |sha256: &str| validate_sha256(sha256).is_ok() && blobs.join(&sha256[..2]).join(sha256).exists();
        // Grants of content that is gone.
        for (sha256, path) in self.records("grants")? {
            if !stored(&sha256) {
                if !dry_run {
                    fs::remove_file(&path).ctx("removing", &path)?;
                }
                collected.grants += 1;
            }
        }
        // Samples of content that is gone (each holds its content's sha256).
        for (_, path) in self.records("samples")? {
            if !stored(&fs::read_to_string(&path).unwrap_or_default()) && old(&path)? {
                if !dry_run {
                    fs::remove_file(&path).ctx("removing", &path)?;
                }
                collected.samples += 1;
            }
        }
        // Volumes (hard-linked views for loading) of manifests that are gone.
        let volumes = root.join("volumes");
        for volume in names_in(&volumes)? {
            let path = volumes.join(&volume);
            if !manifests.contains(&volume) && old(&path)? {
                if !dry_run {
                    fs::remove_dir_all(&path).ctx("removing", &path)?;
                }
                collected.volumes += 1;
            }
        }
        // What crashed processes left in tmp/: uploads, volumes being built.
        // An upload still being written holds a lock on its file (`blob_writer`): such a
        // file is in use, however old its last write.
        for name in names_in(&trash)? {
            let path = trash.join(&name);
            if name.starts_with("gc-") || !old(&path)? {
                continue;
            }
            let _unheld = match path.is_dir() {
                true => None,
                false => match unheld(&path)? {
                    Some(file) => Some(file),
                    None => continue,
                },
            };
            if !dry_run {
                let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("removing", &path, e)),
                }
            }
            collected.uploads += 1;
        }
        Ok(collected)
    }
}

/// A file of `tmp/` that no upload holds (`blob_writer` locks its file while it writes
/// it), locked by this process until the guard is dropped; `None` when an upload holds
/// it, or it is gone.
fn unheld(path: &Path) -> Result<Option<fs::File>> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("opening", path, e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("locking", path, e)),
    }
}

/// What placing a model or a repository's aliases into a directory did
/// ([`DirectoryStore::place_model`], [`DirectoryStore::place_aliases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Written.
    New,
    /// The same was there already (an earlier, interrupted run).
    Already,
    /// Something else is there; it was left as it is.
    Conflict,
}

impl DirectoryStore {
    /// Places a ready model under its own number (an export into this directory): its
    /// folder is made when missing, and its manifest committed as a fresh number's, so
    /// every file it lists must be stored already. A number that holds this manifest is
    /// [`Placed::Already`]; one holding another, [`Placed::Conflict`].
    pub fn place_model(&self, manifest: &Manifest) -> Result<Placed> {
        let dir = self.registry.model_dir(&manifest.model)?;
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        match fs::read(dir.join("manifest.json")) {
            Ok(bytes) => {
                let same = hex::encode(sha2::Sha256::digest(&bytes)) == manifest.sha256();
                return Ok(if same { Placed::Already } else { Placed::Conflict });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("reading", dir.join("manifest.json"), e)),
        }
        match self.registry.commit_manifest(manifest, Some(&Expected::Nothing)) {
            Ok(()) => Ok(Placed::New),
            Err(Error::Conflict { .. }) => Ok(Placed::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Places a repository's aliases and their whole history (an export into this
    /// directory), when the repository has none yet.
    pub fn place_aliases(
        &self,
        organization: &str,
        repository: &str,
        aliases: &[super::Alias],
        history: &[super::AliasMove],
    ) -> Result<Placed> {
        let book = super::alias::AliasBook {
            aliases: aliases.iter().map(|a| (a.name.clone(), a.number)).collect(),
            canaries: aliases.iter().filter_map(|a| Some((a.name.clone(), a.canary?))).collect(),
            history: history.to_vec(),
        };
        Ok(match self.registry.place_aliases(organization, repository, book)? {
            Some(true) => Placed::New,
            Some(false) => Placed::Already,
            None => Placed::Conflict,
        })
    }
}

/// What [`DirectoryStore::collect_garbage`] removed (or would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Collected {
    /// Blobs no ready model named.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Numbers whose registration was abandoned, given back.
    pub abandoned: Vec<String>,
    /// Grants of removed content.
    pub grants: usize,
    /// Samples of removed content (the directory backend's; the shared one's go with
    /// their content).
    pub samples: usize,
    /// Volumes of models that are gone.
    pub volumes: usize,
    /// Uploads a crashed process left behind.
    pub uploads: usize,
}
