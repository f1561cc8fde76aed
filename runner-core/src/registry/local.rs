//! The embedded local registry: a directory.
//!
//! ```text
//! ROOT/registry.json                     format marker
//! ROOT/blobs/sha256/ab/abcd...           file contents, by sha256 (shared, immutable)
//! ROOT/orgs/ORG/REPO/N/                  model N: its number is taken (uploading)
//! ROOT/orgs/ORG/REPO/N/manifest.json     committed last: model N is ready
//! ROOT/orgs/ORG/REPO/aliases.json        aliases and their history (replaced whole)
//! ROOT/volumes/MANIFEST-SHA/...          verified volume views for loading (hard links)
//! ROOT/tmp/                              uploads in flight
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::alias::{aliased, local_user, Alias, AliasBook, AliasMove, AliasOptions, Expect};
#[cfg(feature = "http-client")]
use super::digest::feed;
use super::digest::BUFFER;
use super::hashes::Seen;
use super::traits::{
    check_staged, contents_gone, no_such_repository, not_ready, number_gone, Expected, ModelStatus, ModelSummary,
    Registry, Staging,
};
use super::volume::{build_volume, missing_content};
use crate::error::IoContext;
use crate::manifest::{FileEntry, FileOrigin, Manifest};
use crate::names::{validate_name, validate_sha256 as check_sha256, validate_volume_path, ModelId};
use crate::{Error, Result};

const FORMAT: &str = "runner-local-registry/1";

/// A registry stored in a local directory; the default, no server needed.
///
/// Safe for concurrent use by many threads and processes on one machine: numbers are
/// taken with an atomic `mkdir`, files are written to temporary names and renamed into
/// place, and the manifest is renamed in last.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    root: PathBuf,
}

impl LocalRegistry {
    /// Opens the registry at `root`, creating it when missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        for dir in ["blobs/sha256", "orgs", "volumes", "tmp"] {
            fs::create_dir_all(root.join(dir)).ctx("creating registry folder", root.join(dir))?;
        }
        let marker = root.join("registry.json");
        match fs::read_to_string(&marker) {
            Ok(text) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if value["format"] != FORMAT {
                    return Err(Error::msg(format!(
                        "{} is not a runner registry of format `{FORMAT}` (found {}); choose another --registry",
                        root.display(),
                        value["format"]
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut tmp = tempfile::NamedTempFile::new_in(root.join("tmp")).ctx("creating a file in", &root)?;
                writeln!(tmp, "{}", serde_json::json!({ "format": FORMAT })).ctx("writing", tmp.path())?;
                // Another process may create it at the same time: either copy is the same.
                tmp.persist(&marker).map_err(|e| Error::io("writing", &marker, e.error))?;
            }
            Err(e) => return Err(Error::io("reading", &marker, e)),
        }
        Ok(LocalRegistry { root })
    }

    /// Deletes a repository and every model in it (its aliases first, then each model's
    /// manifest first).
    pub fn delete_repository(&self, organization: &str, repository: &str) -> Result<()> {
        let dir = self.existing_repo_dir(organization, repository)?;
        self.change_aliases(organization, repository, |book| {
            book.aliases.clear();
            book.canaries.clear();
            Ok(())
        })?;
        for number in self.numbers(&dir)? {
            self.delete_model(&ModelId::new(organization, repository, number)?)?;
        }
        fs::remove_dir_all(&dir).ctx("removing", &dir)
    }

    /// Remembered file hashes (see [`super::hashes`]).
    pub(crate) fn hashes(&self) -> super::hashes::HashCache {
        super::hashes::HashCache::new(self.root.join("hashes"))
    }

    /// The organizations that have a repository, sorted.
    pub fn organizations(&self) -> Result<Vec<String>> {
        valid_names(&self.root.join("orgs"), "organization")
    }

    /// The numbers taken in a repository (ready and uploading), ascending, without
    /// reading a manifest: a listing page reads only the manifests it shows.
    pub fn model_numbers(&self, organization: &str, repository: &str) -> Result<Vec<u64>> {
        let dir = self.existing_repo_dir(organization, repository)?;
        self.numbers(&dir)
    }

    /// The registry's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many distinct file contents are stored: identical files, in one model or in
    /// several, count once.
    pub fn blob_count(&self) -> Result<usize> {
        let blobs = self.root.join("blobs/sha256");
        let mut count = 0;
        for prefix in fs::read_dir(&blobs).ctx("listing", &blobs)? {
            let prefix = prefix.ctx("listing", &blobs)?.path();
            count += fs::read_dir(&prefix).ctx("listing", &prefix)?.count();
        }
        Ok(count)
    }

    fn repo_dir(&self, organization: &str, repository: &str) -> Result<PathBuf> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        Ok(self.root.join("orgs").join(organization).join(repository))
    }

    pub(crate) fn model_dir(&self, id: &ModelId) -> Result<PathBuf> {
        Ok(self.repo_dir(&id.organization, &id.repository)?.join(id.number.to_string()))
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(&sha256[..2]).join(sha256)
    }

    /// Removes uploads left behind by a process that died mid-upload. Call it only when
    /// no other process uses this registry (the registry server owns its directory).
    #[cfg(feature = "store")]
    pub(crate) fn clean_tmp(&self) -> Result<usize> {
        let tmp = self.tmp();
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).ctx("listing", &tmp)? {
            let path = entry.ctx("listing", &tmp)?.path();
            let result = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            result.ctx("removing", &path)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The stored content with this sha256, if any (its size is checked too).
    pub(crate) fn blob(&self, sha256: &str, size: Option<u64>) -> Result<Option<PathBuf>> {
        check_sha256(sha256)?;
        let path = self.blob_path(sha256);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() && size.is_none_or(|size| meta.len() == size) => Ok(Some(path)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// [`LocalRegistry::blob`] for content about to be named by a new manifest instead of
    /// uploaded again: its modification time is set to now, which garbage collection
    /// reads as "in use by a registration in flight". Content that vanished meanwhile
    /// (collected) is `None`, so the caller uploads it.
    pub(crate) fn reuse_blob(&self, sha256: &str, size: Option<u64>) -> Result<Option<PathBuf>> {
        let Some(path) = self.blob(sha256, size)? else { return Ok(None) };
        match File::options().write(true).open(&path) {
            Ok(file) => {
                file.set_modified(std::time::SystemTime::now()).ctx("touching", &path)?;
                Ok(Some(path))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("touching", &path, e)),
        }
    }

    /// Starts storing content; [`BlobWriter::finish`] checks it against the sha256 the
    /// sender declared and keeps nothing on a mismatch.
    pub(crate) fn blob_writer(&self) -> Result<BlobWriter> {
        // Locked while it is written: garbage collection leaves a locked file in tmp/
        // alone, however old (see `DirectoryStore::collect_garbage`). Created and locked
        // under the collector's lock, so that no sweep finds it unlocked in between.
        let gc = self.gc_lock(false)?;
        let tmp = tempfile::NamedTempFile::new_in(self.tmp()).ctx("creating a file in", self.tmp())?;
        tmp.as_file().lock().ctx("locking", tmp.path())?;
        drop(gc);
        let tmp = io::BufWriter::with_capacity(BUFFER, tmp);
        Ok(BlobWriter {
            tmp: Some(tmp),
            hasher: Sha256::new(),
            size: 0,
            blobs: self.root.join("blobs/sha256"),
            keep: false,
        })
    }

    /// Like `blob_writer`, for content that may arrive in several tries:
    /// what an interrupted try wrote is kept (`tmp/partial-SHA256`) and continued, its
    /// bytes hashed again first. [`BlobWriter::size`] says how much is already there.
    #[cfg(feature = "http-client")]
    pub(crate) fn resumable_blob_writer(&self, sha256: &str) -> Result<BlobWriter> {
        check_sha256(sha256)?;
        let path = self.tmp().join(format!("partial-{sha256}"));
        let mut hasher = Sha256::new();
        let size = if path.exists() { feed(&path, &mut hasher, &mut io::sink())? } else { 0 };
        let file = File::options().create(true).append(true).open(&path).ctx("opening", &path)?;
        let temp_path = tempfile::TempPath::try_from_path(&path).ctx("opening", &path)?;
        let tmp = tempfile::NamedTempFile::from_parts(file, temp_path);
        let tmp = io::BufWriter::with_capacity(BUFFER, tmp);
        Ok(BlobWriter { tmp: Some(tmp), hasher, size, blobs: self.root.join("blobs/sha256"), keep: true })
    }

    /// [`Registry::fetch`], knowing that the contents named in `checked` were checked
    /// against their sha256 just now (downloaded into this cache): they are not read again.
    pub(crate) fn fetch_checked(&self, manifest: &Manifest, checked: &BTreeSet<String>) -> Result<PathBuf> {
        let hashes = self.hashes();
        build_volume(&self.root.join("volumes"), &self.tmp(), manifest, Some(&hashes), |file, target| {
            let blob = self.blob_path(&file.sha256);
            if !blob.is_file() {
                return Err(missing_content(manifest, file));
            }
            if fs::hard_link(&blob, target).is_err() {
                fs::copy(&blob, target).ctx("copying", &blob)?;
            }
            Ok(checked.contains(&file.sha256))
        })
    }

    /// Makes a model ready: writes its manifest last, after checking that the store holds
    /// every file it lists. The model's number must exist. With `expected`, the current
    /// manifest must still be the one the registration started from (checked under a
    /// lock); otherwise nothing changes and the error says so.
    pub(crate) fn commit_manifest(&self, manifest: &Manifest, expected: Option<&Expected>) -> Result<()> {
        self.commit_manifest_if(manifest, expected, |_| Ok(true))
    }

    /// [`LocalRegistry::commit_manifest`], counting as missing content that `readable`
    /// refuses (content of another organization, for the registry server).
    ///
    /// Garbage collection cannot remove what this names, by the order of the steps:
    /// the commit holds the collector's lock shared (`ROOT/.gc.lock`, `flock`) from
    /// before it checks its contents until its manifest is written, and the collector
    /// holds it exclusively from before it reads the manifests until it has moved the
    /// contents it removes out of `blobs/`. So either this commit ran first, and the
    /// collector's listing reads its manifest and spares its contents; or the collector
    /// ran first, and this commit sees what it removed (and its number, if it gave that
    /// back) as missing: [`Error::Gone`], nothing written.
    pub(crate) fn commit_manifest_if(
        &self,
        manifest: &Manifest,
        expected: Option<&Expected>,
        readable: impl Fn(&str) -> Result<bool>,
    ) -> Result<()> {
        manifest.validate()?;
        let _gc = self.gc_lock(false)?;
        let mut missing = Vec::new();
        for file in &manifest.files {
            if !readable(&file.sha256)? || self.blob(&file.sha256, Some(file.size))?.is_none() {
                missing.push((file.path.as_str(), file.sha256.as_str()));
            }
        }
        if !missing.is_empty() {
            return Err(contents_gone(&manifest.model, &missing));
        }
        let dir = self.model_dir(&manifest.model)?;
        let lock = self.model_lock(&manifest.model)?.ok_or_else(|| number_gone(&manifest.model))?;
        lock.lock().ctx("locking", dir.join(".lock"))?;
        // Given back (`discard` removes the folder under this lock) while this waited.
        if !dir.is_dir() {
            return Err(number_gone(&manifest.model));
        }
        if let Some(expected) = expected {
            let current = match fs::read(dir.join("manifest.json")) {
                Ok(bytes) => Expected::Manifest(hex::encode(Sha256::digest(&bytes))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Expected::Nothing,
                Err(e) => return Err(Error::io("reading", dir.join("manifest.json"), e)),
            };
            if &current != expected {
                return Err(Error::Conflict {
                    message: format!(
                        "{} was registered by someone else during this registration; nothing was changed: register again",
                        manifest.model
                    ),
                });
            }
        }
        replace_file(&dir, "manifest.json", &manifest.to_json())
    }

    /// The commit lock of model `id` (`.lock` in its folder, created when missing),
    /// opened but not locked; `None` when the folder is gone (given back, deleted).
    fn model_lock(&self, id: &ModelId) -> Result<Option<File>> {
        let path = self.model_dir(id)?.join(".lock");
        match open_lock(&path) {
            Ok(lock) => Ok(Some(lock)),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The garbage collector's lock (`ROOT/.gc.lock`), held until the file is dropped:
    /// shared by commits and by uploads storing content (any number at once), exclusive
    /// by the collector.
    pub(crate) fn gc_lock(&self, exclusive: bool) -> Result<File> {
        let path = self.root.join(".gc.lock");
        let lock = open_lock(&path)?;
        match exclusive {
            true => lock.lock(),
            false => lock.lock_shared(),
        }
        .ctx("locking", &path)?;
        Ok(lock)
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// [`Registry::set_alias`], recording `by` as who moved it (a registry server passes
    /// the token's name).
    pub fn set_alias_by(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        number: u64,
        options: &AliasOptions,
        by: &str,
    ) -> Result<AliasMove> {
        self.change_aliases(organization, repository, |book| {
            book.set(alias, number, options, by, |n| {
                let id = ModelId::new(organization, repository, n)?;
                self.manifest(&id).map_err(|e| match e {
                    Error::NotFound { .. } => not_ready(&id, &self.location()),
                    e => e,
                })
            })
        })
    }

    /// [`Registry::delete_alias`], recording `by` as who deleted it.
    pub fn delete_alias_by(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        expect: Expect,
        by: &str,
    ) -> Result<AliasMove> {
        self.change_aliases(organization, repository, |book| book.delete(repository, alias, expect, by))
    }

    /// The aliases of a repository as stored.
    fn alias_book(&self, organization: &str, repository: &str) -> Result<AliasBook> {
        read_aliases(&self.existing_repo_dir(organization, repository)?)
    }

    /// Runs `change` on a repository's aliases under its alias lock (held by every process
    /// that moves an alias or deletes a model), then replaces the file whole when they
    /// changed: readers see the old aliases or the new, never half.
    fn change_aliases<T>(
        &self,
        organization: &str,
        repository: &str,
        change: impl FnOnce(&mut AliasBook) -> Result<T>,
    ) -> Result<T> {
        let dir = self.existing_repo_dir(organization, repository)?;
        let _lock = lock_file(&dir.join(".aliases.lock"))?;
        let mut book = read_aliases(&dir)?;
        let before = book.clone();
        let out = change(&mut book)?;
        if book != before {
            let json = serde_json::to_vec_pretty(&book).expect("aliases always serialize");
            replace_file(&dir, "aliases.json", &json)?;
        }
        Ok(out)
    }

    /// Writes a repository's aliases and their history whole, when it has none yet;
    /// `Some(true)` when written, `Some(false)` when the same were there, `None` when
    /// others are.
    #[cfg(feature = "store")]
    pub(crate) fn place_aliases(&self, organization: &str, repository: &str, book: AliasBook) -> Result<Option<bool>> {
        self.change_aliases(organization, repository, |current| {
            Ok(match current.aliases.is_empty() && current.history.is_empty() {
                true => {
                    *current = book;
                    Some(true)
                }
                false => (*current == book).then_some(false),
            })
        })
    }

    fn existing_repo_dir(&self, organization: &str, repository: &str) -> Result<PathBuf> {
        let dir = self.repo_dir(organization, repository)?;
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(no_such_repository(organization, repository, &self.location()))
        }
    }

    fn numbers(&self, repo_dir: &Path) -> Result<Vec<u64>> {
        let mut numbers = Vec::new();
        for entry in fs::read_dir(repo_dir).ctx("listing", repo_dir)? {
            let entry = entry.ctx("listing", repo_dir)?;
            if let Some(n) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }
}

/// The entries of `dir` that are valid names of `what`, sorted; none when `dir` does not
/// exist.
fn valid_names(dir: &Path, what: &'static str) -> Result<Vec<String>> {
    Ok(names_in(dir)?.into_iter().filter(|name| validate_name(what, name).is_ok()).collect())
}

/// The entries of a folder, by name, sorted (none when it does not exist).
pub(crate) fn names_in(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry.ctx("listing", dir)?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Opens (creating it) and locks the lock file at `path`; unlocked when the file is dropped.
fn lock_file(path: &Path) -> Result<File> {
    let lock = open_lock(path)?;
    lock.lock().ctx("locking", path)?;
    Ok(lock)
}

/// Opens (creating it) the lock file at `path`, without locking it.
fn open_lock(path: &Path) -> Result<File> {
    File::options().create(true).truncate(false).write(true).open(path).ctx("opening", path)
}

/// Replaces `dir/name` whole with `bytes`, durably: a synced temporary file renamed over
/// it, then the folder synced. Readers see the old content or the new, never half.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir).ctx("creating a file in", dir)?;
    tmp.write_all(bytes).ctx("writing", tmp.path())?;
    tmp.as_file().sync_all().ctx("syncing", tmp.path())?;
    let target = dir.join(name);
    tmp.persist(&target).map_err(|e| Error::io("writing", &target, e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).ctx("syncing", dir)
}

/// The aliases stored in repository folder `dir` (no file yet: none).
fn read_aliases(dir: &Path) -> Result<AliasBook> {
    let path = dir.join("aliases.json");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::msg(format!("{} is not a valid alias file: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AliasBook::default()),
        Err(e) => Err(Error::io("reading", &path, e)),
    }
}

impl Registry for LocalRegistry {
    fn location(&self) -> String {
        format!("local registry {}", self.root.display())
    }

    fn repositories(&self, organization: &str) -> Result<Vec<String>> {
        validate_name("organization", organization)?;
        valid_names(&self.root.join("orgs").join(organization), "repository")
    }

    fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>> {
        let dir = self.existing_repo_dir(organization, repository)?;
        let mut models = Vec::new();
        for number in self.numbers(&dir)? {
            let id = ModelId::new(organization, repository, number)?;
            match self.manifest(&id) {
                Ok(manifest) => models.push(ModelSummary { id, status: ModelStatus::Ready, manifest: Some(manifest) }),
                Err(Error::NotFound { .. }) => {
                    models.push(ModelSummary { id, status: ModelStatus::Uploading, manifest: None })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(models)
    }

    fn status(&self, id: &ModelId) -> Result<Option<ModelStatus>> {
        let dir = self.model_dir(id)?;
        if dir.join("manifest.json").is_file() {
            Ok(Some(ModelStatus::Ready))
        } else if dir.is_dir() {
            Ok(Some(ModelStatus::Uploading))
        } else {
            Ok(None)
        }
    }

    fn manifest(&self, id: &ModelId) -> Result<Manifest> {
        let path = self.model_dir(id)?.join("manifest.json");
        match fs::read(&path) {
            Ok(bytes) => Manifest::from_json(id, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                what: "model",
                message: format!("{id} has no committed manifest in {}", self.location()),
            }),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    fn create_model(&self, organization: &str, repository: &str) -> Result<ModelId> {
        let dir = self.repo_dir(organization, repository)?;
        fs::create_dir_all(&dir).ctx("creating repository", &dir)?;
        let mut next = self.numbers(&dir)?.last().copied().unwrap_or(0) + 1;
        loop {
            // mkdir is atomic: of two processes trying the same number, one gets it and
            // the other moves on to the next.
            match fs::create_dir(dir.join(next.to_string())) {
                Ok(()) => {
                    // Its lock now, so that the folder's time stays when it began (what
                    // garbage collection reads as the start of a live reservation).
                    let lock = dir.join(next.to_string()).join(".lock");
                    match File::create(&lock) {
                        Ok(_) => return ModelId::new(organization, repository, next),
                        // Given back already by a collector with no grace: take another.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => next += 1,
                        Err(e) => return Err(Error::io("creating", &lock, e)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => next += 1,
                Err(e) => return Err(Error::io("creating model", dir.join(next.to_string()), e)),
            }
        }
    }

    fn keep_alive(&self, id: &ModelId) -> Result<()> {
        let lock = self.model_lock(id)?.ok_or_else(|| number_gone(id))?;
        lock.set_modified(std::time::SystemTime::now()).ctx("touching", self.model_dir(id)?.join(".lock"))
    }

    fn discard(&self, id: &ModelId) -> Result<()> {
        let dir = self.model_dir(id)?;
        if self.status(id)? != Some(ModelStatus::Uploading) {
            return Ok(());
        }
        // Under the commit lock: a commit in flight finishes first, and wins.
        // Discarded or deleted meanwhile: nothing to do.
        let Some(lock) = self.model_lock(id)? else { return Ok(()) };
        lock.lock().ctx("locking", dir.join(".lock"))?;
        if dir.join("manifest.json").exists() {
            return Ok(());
        }
        // No manifest: nothing of the model is visible. Its lock goes with it, and what a
        // refused or crashed commit left there (a lone `.lock` made the folder impossible
        // to give back before).
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing", &dir, e)),
        }
    }

    fn delete_model(&self, id: &ModelId) -> Result<()> {
        let dir = self.model_dir(id)?;
        if !dir.is_dir() {
            return Err(Error::NotFound {
                what: "model",
                message: format!("{id} does not exist in {}", self.location()),
            });
        }
        // Under the alias lock: no alias can be moved onto it meanwhile.
        self.change_aliases(&id.organization, &id.repository, |book| {
            let pointing = book.pointing_at(id.number);
            if !pointing.is_empty() {
                return Err(aliased(id, &pointing));
            }
            // The manifest goes first, so the model is never half-deleted and visible.
            match fs::remove_file(dir.join("manifest.json")) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", dir.join("manifest.json"), e)),
            }
            fs::remove_dir_all(&dir).ctx("removing", &dir)
        })
    }

    fn aliases(&self, organization: &str, repository: &str) -> Result<Vec<Alias>> {
        Ok(self.alias_book(organization, repository)?.list())
    }

    fn set_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        number: u64,
        options: &AliasOptions,
    ) -> Result<AliasMove> {
        self.set_alias_by(organization, repository, alias, number, options, &local_user())
    }

    fn delete_alias(&self, organization: &str, repository: &str, alias: &str, expect: Expect) -> Result<AliasMove> {
        self.delete_alias_by(organization, repository, alias, expect, &local_user())
    }

    fn alias_history(&self, organization: &str, repository: &str, alias: Option<&str>) -> Result<Vec<AliasMove>> {
        Ok(self.alias_book(organization, repository)?.history(alias))
    }

    fn stage(&self, id: &ModelId) -> Result<Box<dyn Staging + '_>> {
        if self.status(id)?.is_none() {
            return Err(number_gone(id));
        }
        let expected = match self.manifest(id) {
            Ok(manifest) => Expected::of(Some(&manifest)),
            Err(Error::NotFound { .. }) => Expected::Nothing,
            Err(e) => return Err(e),
        };
        Ok(Box::new(LocalStaging { registry: self, id: id.clone(), files: BTreeMap::new(), expected }))
    }

    fn fetch(&self, manifest: &Manifest) -> Result<PathBuf> {
        self.fetch_checked(manifest, &Default::default())
    }
}

struct LocalStaging<'a> {
    registry: &'a LocalRegistry,
    id: ModelId,
    files: BTreeMap<String, FileEntry>,
    expected: Expected,
}

impl Staging for LocalStaging<'_> {
    fn put_file(&mut self, volume_path: &str, local: &Path, origin: FileOrigin) -> Result<FileEntry> {
        validate_volume_path(volume_path)?;
        let hashes = self.registry.hashes();
        let known = hashes.cached(local);
        // Content already stored (this model registered before, or another model shares
        // the file): nothing to read or copy. It is touched, so that garbage collection,
        // which spares content touched within its grace period, keeps it until the commit.
        let stored = match &known {
            Some((sha256, size)) => self.registry.reuse_blob(sha256, Some(*size))?.is_some(),
            None => false,
        };
        let (sha256, size) = match known {
            Some(known) if stored => known,
            known => {
                // Read once: copied and hashed in one pass, then kept only if new.
                let before = Seen::now(local);
                let mut writer = self.registry.blob_writer()?;
                writer.append_file(local)?;
                let (sha256, size) = (writer.digest(), writer.size);
                let changed = || {
                    Error::msg(format!(
                        "{} changed while it was being registered; register again once it is no longer written to",
                        local.display()
                    ))
                };
                if known.is_some_and(|(expected, _)| expected != sha256) || Seen::now(local) != before {
                    return Err(changed());
                }
                if self.registry.reuse_blob(&sha256, Some(size))?.is_none() {
                    writer.finish(&sha256)?;
                }
                hashes.remember(local, before, &sha256, size);
                (sha256, size)
            }
        };
        let entry = FileEntry { path: volume_path.to_string(), size, sha256, origin };
        self.files.insert(volume_path.to_string(), entry.clone());
        Ok(entry)
    }

    fn commit(self: Box<Self>, manifest: &Manifest) -> Result<()> {
        check_staged(&self.id, &self.files, manifest)?;
        self.registry.commit_manifest(manifest, Some(&self.expected))
    }
}

/// Content being stored: hashed as it is written to a temporary file, which becomes the
/// blob only if its sha256 is the one declared.
#[derive(Debug)]
pub struct BlobWriter {
    tmp: Option<io::BufWriter<tempfile::NamedTempFile>>,
    hasher: Sha256,
    size: u64,
    blobs: PathBuf,
    /// Keep what was written when dropped unfinished (a resumable download).
    keep: bool,
}

impl Write for BlobWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.tmp.as_mut().expect("present until finished").write(bytes)?;
        self.hasher.update(&bytes[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.as_mut().expect("present until finished").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let (true, Some(tmp)) = (self.keep, self.tmp.take()) {
            if let Ok(file) = tmp.into_inner() {
                let _ = file.keep();
            }
        }
    }
}

impl BlobWriter {
    /// Bytes written so far.
    #[cfg(any(feature = "store", feature = "http-client"))]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the whole of `from`, copied by the kernel (`copy_file_range`: its bytes do
    /// not pass through this process), then hashes what landed in the temporary file
    /// (read back from the page cache, while the copy is being written to disk), so the
    /// hash is of exactly what is stored. A file is read from disk once, and written at
    /// the speed of `cp`.
    pub(crate) fn append_file(&mut self, from: &Path) -> Result<u64> {
        use std::io::{Read, Seek};
        let tmp = self.tmp.as_mut().expect("present until finished");
        tmp.flush().ctx("writing", tmp.get_ref().path())?;
        let mut source = File::open(from).ctx("opening", from)?;
        let copied = io::copy(&mut source, tmp.get_mut().as_file_mut()).ctx("copying", from)?;
        let path = tmp.get_ref().path();
        // The copy goes to disk while it is hashed: the later fsync finds it written.
        let written = tmp.get_ref().as_file().try_clone().ctx("opening", path)?;
        let syncing = std::thread::spawn(move || written.sync_data());
        let mut stored = File::open(path).ctx("opening", path)?;
        stored.seek(io::SeekFrom::Start(self.size)).ctx("reading", path)?;
        let mut buffer = vec![0; BUFFER];
        loop {
            let n = stored.read(&mut buffer).ctx("reading", path)?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buffer[..n]);
        }
        syncing.join().expect("the sync thread does not panic").ctx("syncing", path)?;
        self.size += copied;
        Ok(copied)
    }

    /// The temporary file, flushed: for syncing it in the background while writing goes
    /// on (what is written after the sync starts is synced by [`BlobWriter::finish`]).
    #[cfg(feature = "store")]
    pub fn file(&mut self) -> io::Result<File> {
        let tmp = self.tmp.as_mut().expect("present until finished");
        tmp.flush()?;
        tmp.get_ref().as_file().try_clone()
    }

    /// sha256 (lowercase hex) of what was written so far.
    pub(crate) fn digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Throws away what was written and starts again from nothing.
    #[cfg(feature = "http-client")]
    pub fn restart(&mut self) -> Result<()> {
        let tmp = self.tmp.as_mut().expect("present until finished");
        tmp.flush().ctx("writing", tmp.get_ref().path())?;
        let file = tmp.get_ref().as_file();
        file.set_len(0).ctx("truncating", tmp.get_ref().path())?;
        self.hasher = Sha256::new();
        self.size = 0;
        Ok(())
    }

    /// Appends `bytes` without hashing them, for a caller that hashes the same bytes on
    /// another thread (so that writing and hashing a large upload overlap) and finishes
    /// with [`BlobWriter::finish_hashed`]. Not to be mixed with [`Write`].
    #[cfg(feature = "store")]
    pub fn write_unhashed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tmp.as_mut().expect("present until finished").write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// [`BlobWriter::finish`] for content written with [`BlobWriter::write_unhashed`],
    /// whose sha256 the caller computed: `actual`.
    #[cfg(feature = "store")]
    pub fn finish_hashed(self, actual: String, expected: &str) -> Result<u64> {
        self.keep_as(actual, expected)
    }

    /// Stores the content if its sha256 is `expected`; otherwise keeps nothing and says so.
    pub fn finish(mut self, expected: &str) -> Result<u64> {
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        self.keep_as(actual, expected)
    }

    fn keep_as(mut self, actual: String, expected: &str) -> Result<u64> {
        let tmp = self.tmp.take().expect("present until finished");
        if actual != expected {
            // Dropped here: removed, even when resumable (it is not the content asked for).
            return Err(Error::Checksum { path: "upload".into(), expected: expected.to_string(), actual });
        }
        let tmp = tmp.into_inner().map_err(|e| Error::msg(format!("writing the upload: {}", e.error())))?;
        tmp.as_file().sync_all().ctx("syncing", tmp.path())?;
        let target = self.blobs.join(&expected[..2]).join(expected);
        let parent = target.parent().expect("blob paths have a parent");
        fs::create_dir_all(parent).ctx("creating", parent)?;
        tmp.persist(&target).map_err(|e| Error::io("storing", &target, e.error))?;
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(path: &Path) {
        let stamp = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        File::options().write(true).open(path).unwrap().set_modified(stamp).unwrap();
    }

    #[test]
    fn new_files_are_read_once_and_content_already_stored_is_not_kept_twice() {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
        let (first, copy) = (dir.path().join("a.bin"), dir.path().join("copy-of-a.bin"));
        fs::write(&first, b"weights").unwrap();
        fs::write(&copy, b"weights").unwrap();
        old(&first);
        old(&copy);
        let id = registry.create_model("default", "once").unwrap();
        let mut staging = registry.stage(&id).unwrap();
        let a = staging.put_file("a.bin", &first, FileOrigin::Saved).unwrap();
        assert_eq!(a.sha256, super::super::digest::hash_file(&first).unwrap().0);
        assert_eq!(registry.hashes().cached(&first), Some((a.sha256.clone(), 7)), "the pass that copied it hashed it");
        // The same bytes at a path never seen: copied and hashed in one pass, then found
        // stored already, so nothing new is kept.
        let b = staging.put_file("b.bin", &copy, FileOrigin::Saved).unwrap();
        assert_eq!(b.sha256, a.sha256);
        assert_eq!(registry.blob_count().unwrap(), 1);
        assert_eq!(fs::read_dir(registry.tmp()).map(|d| d.count()).unwrap_or(0), 0, "no copy left behind");
    }

    #[test]
    fn a_file_that_is_not_what_its_remembered_hash_says_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
        let file = dir.path().join("weights.bin");
        fs::write(&file, b"before").unwrap();
        old(&file);
        let before = Seen::now(&file);
        // Remembered with another hash (as if rewritten in place with its old size and
        // timestamp after it was hashed): the copy's own hash disagrees.
        registry.hashes().remember(&file, before, &"0".repeat(64), 6);
        let id = registry.create_model("default", "changed").unwrap();
        let error = registry.stage(&id).unwrap().put_file("w.bin", &file, FileOrigin::Saved).unwrap_err();
        assert!(error.to_string().contains("changed while it was being registered"), "{error}");
        assert_eq!(registry.blob_count().unwrap(), 0, "nothing kept");
    }
}
