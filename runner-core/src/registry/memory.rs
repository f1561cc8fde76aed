//! An in-memory registry, for fast tests of code that registers and loads models.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::alias::{aliased, local_user, Alias, AliasBook, AliasMove, AliasOptions, Expect};
use super::traits::{
    check_staged, contents_gone, no_such_repository, not_ready, number_gone, Expected, ModelStatus, ModelSummary,
    Registry, Staging,
};
use super::volume::{build_volume, missing_content};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{FileEntry, FileOrigin, Manifest};
use crate::names::{validate_name, validate_volume_path, ModelId};

/// A registry held in memory: every guarantee of [`Registry`], nothing on disk but the
/// volumes [`Registry::fetch`] hands out (in a temporary directory the registry owns and
/// removes when dropped).
///
/// Made for tests of user code: registering and loading against it costs no server and
/// no registry directory. Numbers are taken under one lock, so concurrent callers get
/// distinct, consecutive numbers; a model is invisible until its manifest is committed;
/// of two registrations of one number the first commit wins and the second gets
/// [`Error::Conflict`]. File contents are stored once per sha256
/// ([`MemoryRegistry::blob_count`]) and kept until the registry is dropped.
///
/// ```
/// use runner_core::{register_model, runner, Loaded, MemoryRegistry, Registry};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Offset(f64);
/// pub struct Adder;
///
/// #[runner(name = "adder")]
/// impl Adder {
///     fn predict(model: &Offset, data: f64) -> f64 {
///         data + model.0
///     }
/// }
///
/// # fn main() -> runner_core::Result<()> {
/// // In a unit test of your runner: no directory, no server.
/// let registry = MemoryRegistry::new();
/// register_model::<Adder>("adder").model(Offset(1.0)).register(&registry)?;
/// register_model::<Adder>("adder").model(Offset(1.0)).register(&registry)?;
/// assert_eq!(registry.latest("default", "adder")?.unwrap().number, 2);
/// assert_eq!(registry.blob_count(), 1, "the identical saved models are stored once");
///
/// let model = Loaded::<Adder>::load(&registry, &"adder:latest".parse()?)?;
/// assert_eq!(model.run(41.0)?, 42.0);
/// # Ok(()) }
/// ```
pub struct MemoryRegistry {
    state: Mutex<State>,
}

/// Organization -> repository -> number -> committed manifest (`None`: uploading).
type Repositories = BTreeMap<String, BTreeMap<String, BTreeMap<u64, Option<Manifest>>>>;

#[derive(Default)]
struct State {
    repositories: Repositories,
    /// Aliases by (organization, repository).
    aliases: BTreeMap<(String, String), AliasBook>,
    /// File contents by sha256.
    blobs: HashMap<String, Arc<Vec<u8>>>,
    /// Where fetched volumes are written; made at the first fetch.
    volumes: Option<tempfile::TempDir>,
}

impl fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryRegistry")
            .field("organizations", &state.repositories.keys().collect::<Vec<_>>())
            .field("blobs", &state.blobs.len())
            .field("volumes", &state.volumes.as_ref().map(|dir| dir.path().to_path_buf()))
            .finish()
    }
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry::new()
    }
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry { state: Mutex::new(State::default()) }
    }

    /// How many distinct file contents are stored: identical files, in one model or in
    /// several, count once.
    pub fn blob_count(&self) -> usize {
        self.lock().blobs.len()
    }

    /// Damages the stored content with this sha256 (flips a bit of its last byte; empty
    /// content gains a byte), so that fetching a model that lists it fails with
    /// [`Error::Checksum`]. For tests of code that must cope with a corrupt registry.
    /// Returns whether such content was stored.
    pub fn corrupt(&self, sha256: &str) -> bool {
        let mut state = self.lock();
        let Some(blob) = state.blobs.get_mut(sha256) else { return false };
        let bytes = Arc::make_mut(blob);
        match bytes.last_mut() {
            Some(last) => *last ^= 1,
            None => bytes.push(0),
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves no half-made change: every
        // change below is a single insert or remove.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn not_found(&self, id: &ModelId) -> Error {
        Error::NotFound { what: "model", message: format!("{id} does not exist in {}", self.location()) }
    }

    fn repository_exists(&self, state: &State, organization: &str, repository: &str) -> Result<()> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        if state.has_repository(organization, repository) {
            Ok(())
        } else {
            Err(no_such_repository(organization, repository, &self.location()))
        }
    }

    /// The directory fetched volumes go to, made on first use.
    fn volumes(&self) -> Result<PathBuf> {
        let mut state = self.lock();
        if state.volumes.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("runner-memory-registry-")
                .tempdir()
                .ctx("creating a folder in", std::env::temp_dir())?;
            state.volumes = Some(dir);
        }
        Ok(state.volumes.as_ref().expect("made above").path().to_path_buf())
    }
}

fn check_id(id: &ModelId) -> Result<()> {
    validate_name("organization", &id.organization)?;
    validate_name("repository", &id.repository)
}

impl State {
    fn model(&self, id: &ModelId) -> Option<&Option<Manifest>> {
        self.repositories.get(&id.organization)?.get(&id.repository)?.get(&id.number)
    }

    fn model_mut(&mut self, id: &ModelId) -> Option<&mut Option<Manifest>> {
        self.repositories.get_mut(&id.organization)?.get_mut(&id.repository)?.get_mut(&id.number)
    }

    fn has_repository(&self, organization: &str, repository: &str) -> bool {
        self.repositories.get(organization).is_some_and(|repos| repos.contains_key(repository))
    }

    fn book(&mut self, organization: &str, repository: &str) -> &mut AliasBook {
        self.aliases.entry((organization.to_string(), repository.to_string())).or_default()
    }

    fn remove(&mut self, id: &ModelId) -> Option<Option<Manifest>> {
        self.repositories.get_mut(&id.organization)?.get_mut(&id.repository)?.remove(&id.number)
    }
}

impl Registry for MemoryRegistry {
    fn location(&self) -> String {
        format!("memory registry {:p}", self)
    }

    fn repositories(&self, organization: &str) -> Result<Vec<String>> {
        validate_name("organization", organization)?;
        let state = self.lock();
        Ok(state.repositories.get(organization).map(|repos| repos.keys().cloned().collect()).unwrap_or_default())
    }

    fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        let state = self.lock();
        let models = state
            .repositories
            .get(organization)
            .and_then(|repos| repos.get(repository))
            .ok_or_else(|| no_such_repository(organization, repository, &self.location()))?;
        models
            .iter()
            .map(|(number, manifest)| {
                Ok(ModelSummary {
                    id: ModelId::new(organization, repository, *number)?,
                    status: if manifest.is_some() { ModelStatus::Ready } else { ModelStatus::Uploading },
                    manifest: manifest.clone(),
                })
            })
            .collect()
    }

    fn status(&self, id: &ModelId) -> Result<Option<ModelStatus>> {
        check_id(id)?;
        Ok(self.lock().model(id).map(|m| if m.is_some() { ModelStatus::Ready } else { ModelStatus::Uploading }))
    }

    fn manifest(&self, id: &ModelId) -> Result<Manifest> {
        check_id(id)?;
        self.lock().model(id).cloned().flatten().ok_or_else(|| Error::NotFound {
            what: "model",
            message: format!("{id} has no committed manifest in {}", self.location()),
        })
    }

    fn create_model(&self, organization: &str, repository: &str) -> Result<ModelId> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        let mut state = self.lock();
        let models =
            state.repositories.entry(organization.to_string()).or_default().entry(repository.to_string()).or_default();
        let next = models.keys().next_back().map_or(1, |last| last + 1);
        models.insert(next, None);
        ModelId::new(organization, repository, next)
    }

    fn discard(&self, id: &ModelId) -> Result<()> {
        check_id(id)?;
        let mut state = self.lock();
        if matches!(state.model(id), Some(None)) {
            state.remove(id);
        }
        Ok(())
    }

    fn delete_model(&self, id: &ModelId) -> Result<()> {
        check_id(id)?;
        let mut state = self.lock();
        let pointing = state.book(&id.organization, &id.repository).pointing_at(id.number);
        if !pointing.is_empty() {
            return Err(aliased(id, &pointing));
        }
        match state.remove(id) {
            Some(_) => Ok(()),
            None => Err(self.not_found(id)),
        }
    }

    fn aliases(&self, organization: &str, repository: &str) -> Result<Vec<Alias>> {
        let mut state = self.lock();
        self.repository_exists(&state, organization, repository)?;
        Ok(state.book(organization, repository).list())
    }

    fn set_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        number: u64,
        options: &AliasOptions,
    ) -> Result<AliasMove> {
        let mut state = self.lock();
        self.repository_exists(&state, organization, repository)?;
        let state = &mut *state;
        let models = &state.repositories[organization][repository];
        let book = state.aliases.entry((organization.to_string(), repository.to_string())).or_default();
        book.set(alias, number, options, &local_user(), |n| {
            let id = ModelId::new(organization, repository, n)?;
            models.get(&n).cloned().flatten().ok_or_else(|| not_ready(&id, &self.location()))
        })
    }

    fn delete_alias(&self, organization: &str, repository: &str, alias: &str, expect: Expect) -> Result<AliasMove> {
        let mut state = self.lock();
        self.repository_exists(&state, organization, repository)?;
        state.book(organization, repository).delete(repository, alias, expect, &local_user())
    }

    fn alias_history(&self, organization: &str, repository: &str, alias: Option<&str>) -> Result<Vec<AliasMove>> {
        let mut state = self.lock();
        self.repository_exists(&state, organization, repository)?;
        Ok(state.book(organization, repository).history(alias))
    }

    fn stage(&self, id: &ModelId) -> Result<Box<dyn Staging + '_>> {
        check_id(id)?;
        let expected = match self.lock().model(id) {
            Some(manifest) => Expected::of(manifest.as_ref()),
            None => return Err(number_gone(id)),
        };
        Ok(Box::new(MemoryStaging { registry: self, id: id.clone(), files: BTreeMap::new(), expected }))
    }

    fn fetch(&self, manifest: &Manifest) -> Result<PathBuf> {
        // Every stored content is checked first, so corruption here is never hidden by a
        // volume written earlier.
        let mut contents = BTreeMap::new();
        for file in &manifest.files {
            let blob = self.lock().blobs.get(&file.sha256).cloned().ok_or_else(|| missing_content(manifest, file))?;
            let actual = hex::encode(Sha256::digest(blob.as_slice()));
            if actual != file.sha256 || blob.len() as u64 != file.size {
                return Err(Error::Checksum { path: file.path.clone(), expected: file.sha256.clone(), actual });
            }
            contents.insert(file.sha256.as_str(), blob);
        }
        // The volume on disk is checked too: the caller's code may have written into it.
        let volumes = self.volumes()?;
        build_volume(&volumes, &volumes, manifest, None, |file, target| {
            fs::write(target, contents[file.sha256.as_str()].as_slice()).ctx("writing", target)?;
            Ok(false)
        })
    }
}

struct MemoryStaging<'a> {
    registry: &'a MemoryRegistry,
    id: ModelId,
    files: BTreeMap<String, FileEntry>,
    expected: Expected,
}

impl Staging for MemoryStaging<'_> {
    fn put_file(&mut self, volume_path: &str, local: &Path, origin: FileOrigin) -> Result<FileEntry> {
        validate_volume_path(volume_path)?;
        let bytes = fs::read(local).ctx("reading", local)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let entry = FileEntry { path: volume_path.to_string(), size: bytes.len() as u64, sha256, origin };
        self.registry.lock().blobs.entry(entry.sha256.clone()).or_insert_with(|| Arc::new(bytes));
        self.files.insert(volume_path.to_string(), entry.clone());
        Ok(entry)
    }

    fn commit(self: Box<Self>, manifest: &Manifest) -> Result<()> {
        check_staged(&self.id, &self.files, manifest)?;
        manifest.validate()?;
        let registry = self.registry;
        let mut state = registry.lock();
        let missing: Vec<(&str, &str)> = manifest
            .files
            .iter()
            .filter(|file| state.blobs.get(&file.sha256).is_none_or(|blob| blob.len() as u64 != file.size))
            .map(|file| (file.path.as_str(), file.sha256.as_str()))
            .collect();
        if !missing.is_empty() {
            return Err(contents_gone(&self.id, &missing));
        }
        let current = state.model_mut(&self.id).ok_or_else(|| number_gone(&self.id))?;
        if Expected::of(current.as_ref()) != self.expected {
            return Err(Error::Conflict {
                message: format!(
                    "{} was registered by someone else during this registration; nothing was changed: register again",
                    self.id
                ),
            });
        }
        *current = Some(manifest.clone());
        Ok(())
    }
}
