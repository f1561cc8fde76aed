//! The [`Registry`] trait every backend implements, and the types it speaks.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::alias::{no_such_alias, Alias, AliasMove, AliasOptions, Expect};
use crate::error::{Error, Result};
use crate::manifest::{FileEntry, FileOrigin, Manifest};
use crate::names::{ModelId, ModelRef, Version};

/// Whether a model can be served yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// Its number is taken but its manifest is not committed: invisible to loading.
    Uploading,
    /// Its manifest is committed: it can be loaded.
    Ready,
}

impl fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelStatus::Uploading => "uploading",
            ModelStatus::Ready => "ready",
        })
    }
}

/// A line of a repository listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Which model.
    pub id: ModelId,
    /// Uploading or ready.
    pub status: ModelStatus,
    /// Its manifest, once ready.
    pub manifest: Option<Manifest>,
}

/// A store of model repositories, numbered models and their files.
///
/// The protocol keeps half-registered models invisible: [`Registry::create_model`] takes
/// the next number (status `uploading`), [`Registry::stage`] uploads files, and
/// [`Staging::commit`] writes the manifest last, which makes the model `ready`.
/// Calls block; call them from `spawn_blocking` in async code.
pub trait Registry: Send + Sync + fmt::Debug {
    /// Where this registry lives, for messages (a path or a URL).
    fn location(&self) -> String;

    /// The repositories of an organization, sorted.
    fn repositories(&self, organization: &str) -> Result<Vec<String>>;

    /// The models of a repository (uploading ones too), sorted by number. A repository
    /// that does not exist is an error.
    fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>>;

    /// The status of a model, or `None` when the number does not exist.
    fn status(&self, id: &ModelId) -> Result<Option<ModelStatus>>;

    /// The committed manifest of a ready model.
    fn manifest(&self, id: &ModelId) -> Result<Manifest>;

    /// Atomically takes the next model number of a repository (creating the repository
    /// when needed). Concurrent callers get distinct, consecutive numbers.
    fn create_model(&self, organization: &str, repository: &str) -> Result<ModelId>;

    /// Gives back a number taken by [`Registry::create_model`] whose registration failed.
    /// Does nothing to a model that is ready.
    fn discard(&self, id: &ModelId) -> Result<()>;

    /// Keeps a number taken by [`Registry::create_model`] from being given back while
    /// its registration works: garbage collection gives back numbers untouched for its
    /// grace period, and spares content sent since a live reservation of the same
    /// organization began. [`RegisterModel::register`](crate::RegisterModel::register)
    /// calls it every second until it commits. A number that no longer exists is
    /// [`Error::Gone`]; a ready one is left as it is. Backends without a collector do
    /// nothing.
    fn keep_alive(&self, id: &ModelId) -> Result<()> {
        let _ = id;
        Ok(())
    }

    /// Deletes a model: it stops being visible at once (its manifest goes first). Its file
    /// contents stay stored while other models share them. A number that does not exist
    /// is [`Error::NotFound`].
    fn delete_model(&self, id: &ModelId) -> Result<()>;

    /// Starts (re)writing the files of an existing model number. Nothing becomes visible
    /// until [`Staging::commit`].
    fn stage(&self, id: &ModelId) -> Result<Box<dyn Staging + '_>>;

    /// Makes the files of a ready model available on local disk, every file checked
    /// against its size and sha256, and returns the volume's directory.
    fn fetch(&self, manifest: &Manifest) -> Result<PathBuf>;

    /// The aliases of a repository, sorted by name. A repository that does not exist is
    /// an error.
    fn aliases(&self, organization: &str, repository: &str) -> Result<Vec<Alias>>;

    /// Points `alias` at the ready model `number` of the repository (creating the alias
    /// when needed), in one atomic step that also records the move in the alias's
    /// history. Refused with [`Error::Conflict`] when `options.expect` does not hold, or
    /// when the model's API fingerprint differs from the current target's and
    /// `options.force` is not set (the message names what changed).
    ///
    /// ```
    /// use runner_core::registry::{AliasOptions, Expect};
    /// use runner_core::{register_model, runner, MemoryRegistry, Registry};
    /// # #[derive(serde::Serialize, serde::Deserialize)] pub struct Offset(f64);
    /// # pub struct Adder;
    /// # #[runner(name = "adder")]
    /// # impl Adder { fn predict(model: &Offset, data: f64) -> f64 { data + model.0 } }
    /// # fn main() -> runner_core::Result<()> {
    /// let registry = MemoryRegistry::new();
    /// for offset in [1.0, 2.0] {
    ///     register_model::<Adder>("adder").model(Offset(offset)).register(&registry)?;
    /// }
    /// registry.set_alias("default", "adder", "prod", 1, &AliasOptions::default())?;
    /// // A rollout that expects `prod` at 1 moves it to 2; a second one expecting 1 is told.
    /// let rollout = AliasOptions { expect: Expect::Number(1), ..Default::default() };
    /// registry.set_alias("default", "adder", "prod", 2, &rollout)?;
    /// assert!(registry.set_alias("default", "adder", "prod", 2, &rollout).is_err());
    /// assert_eq!(registry.resolve(&"adder:prod".parse()?)?.number, 2);
    /// assert_eq!(registry.alias_history("default", "adder", Some("prod"))?.len(), 2);
    /// # Ok(()) }
    /// ```
    fn set_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        number: u64,
        options: &AliasOptions,
    ) -> Result<AliasMove>;

    /// Deletes `alias` when `expect` holds ([`Expect::Any`] or [`Expect::Number`]),
    /// recording it in its history. An alias that does not exist is [`Error::NotFound`].
    fn delete_alias(&self, organization: &str, repository: &str, alias: &str, expect: Expect) -> Result<AliasMove>;

    /// Every move of `alias` (of every alias of the repository with `None`), oldest first.
    fn alias_history(&self, organization: &str, repository: &str, alias: Option<&str>) -> Result<Vec<AliasMove>>;

    /// The number `alias` points at, if it exists.
    fn alias(&self, organization: &str, repository: &str, alias: &str) -> Result<Option<u64>> {
        Ok(self.alias_entry(organization, repository, alias)?.map(|a| a.number))
    }

    /// Where `alias` points, with its traffic split, if it exists.
    fn alias_entry(&self, organization: &str, repository: &str, alias: &str) -> Result<Option<Alias>> {
        Ok(self.aliases(organization, repository)?.into_iter().find(|a| a.name == alias))
    }

    /// The highest-numbered ready model of a repository, if any.
    fn latest(&self, organization: &str, repository: &str) -> Result<Option<ModelId>> {
        Ok(self
            .models(organization, repository)?
            .into_iter()
            .rev()
            .find(|m| m.status == ModelStatus::Ready)
            .map(|m| m.id))
    }

    /// Resolves `repo:number`, `repo:latest` or `repo:alias` to a ready model.
    fn resolve(&self, model: &ModelRef) -> Result<ModelId> {
        let id = match &model.version {
            Version::Number(n) => ModelId::new(&model.organization, &model.repository, *n)?,
            Version::Alias(alias) => {
                let number = self
                    .alias(&model.organization, &model.repository, alias)?
                    .ok_or_else(|| no_such_alias(&model.repository, alias))?;
                ModelId::new(&model.organization, &model.repository, number)?
            }
            Version::Latest => self.latest(&model.organization, &model.repository)?.ok_or_else(|| Error::NotFound {
                what: "model",
                message: format!(
                    "repository `{}` in {} has no ready model; register one first",
                    model.repository,
                    self.location()
                ),
            })?,
        };
        match self.status(&id)? {
            Some(ModelStatus::Ready) => Ok(id),
            Some(ModelStatus::Uploading) => Err(Error::NotFound {
                what: "model",
                message: format!(
                    "{id} is still uploading (or its registration was interrupted); it has no manifest yet"
                ),
            }),
            None => {
                Err(Error::NotFound { what: "model", message: format!("{id} does not exist in {}", self.location()) })
            }
        }
    }
}

/// The error for a repository that does not exist in `location` (a registry's
/// [`Registry::location`]).
pub fn no_such_repository(organization: &str, repository: &str, location: &str) -> Error {
    Error::NotFound {
        what: "repository",
        message: format!("`{repository}` does not exist in organization `{organization}` of {location}"),
    }
}

/// [`Error::Gone`] for a commit of `model` whose number no longer exists.
pub fn number_gone(model: &ModelId) -> Error {
    Error::Gone {
        missing: crate::error::Missing { number: Some(model.number), contents: Vec::new() },
        message: format!(
            "{model} does not exist (given back by garbage collection after its grace period, or removed during the upload); nothing was changed: register again for a new number"
        ),
    }
}

/// [`Error::Gone`] for a commit of `model` listing `files` (volume path, sha256)
/// whose contents its organization may not read.
pub fn contents_gone(model: &ModelId, files: &[(&str, &str)]) -> Error {
    let mut contents: Vec<String> = files.iter().map(|(_, sha256)| sha256.to_string()).collect();
    contents.sort();
    contents.dedup();
    let listed: Vec<String> = files.iter().map(|(path, sha256)| format!("`{path}` (sha256 {sha256})")).collect();
    Error::Gone {
        missing: crate::error::Missing { number: None, contents },
        message: format!(
            "the manifest of {model} lists {}, whose content organization `{}` has not uploaded or no longer holds (collected after its grace period); nothing was changed: upload it first",
            listed.join(", "),
            model.organization
        ),
    }
}

/// The error for a model number that is not ready (uploading, or not there) in `location`.
pub fn not_ready(id: &ModelId, location: &str) -> Error {
    Error::NotFound { what: "model", message: format!("{id} is not a ready model of {location}") }
}

/// What a commit expects to replace, so that of two registrations of one number one wins
/// and the other is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The model has no manifest yet (a fresh number).
    Nothing,
    /// The manifest whose JSON has this sha256.
    Manifest(String),
}

impl Expected {
    /// What a model's current manifest is, as a precondition.
    pub fn of(manifest: Option<&Manifest>) -> Expected {
        match manifest {
            None => Expected::Nothing,
            Some(manifest) => Expected::Manifest(manifest.sha256()),
        }
    }
}

/// Files being uploaded into one model. Dropping it without [`Staging::commit`] abandons
/// the upload; nothing of it becomes visible.
pub trait Staging: Send {
    /// Uploads one file to `volume_path`, computing its size and sha256.
    fn put_file(&mut self, volume_path: &str, local: &Path, origin: FileOrigin) -> Result<FileEntry>;

    /// Uploads several files (the HTTP client sends them in parallel, with progress);
    /// entries come back in the order given.
    fn put_files(&mut self, files: &[(String, PathBuf, FileOrigin)]) -> Result<Vec<FileEntry>> {
        files.iter().map(|(volume_path, local, origin)| self.put_file(volume_path, local, *origin)).collect()
    }

    /// Writes the manifest, making the model ready. Every file the manifest lists must
    /// have been uploaded through this staging.
    fn commit(self: Box<Self>, manifest: &Manifest) -> Result<()>;
}

/// Checks, before a commit, that `manifest` describes model `id` and lists exactly the
/// files uploaded through this staging (`staged`).
pub(crate) fn check_staged(
    id: &ModelId,
    staged: &std::collections::BTreeMap<String, FileEntry>,
    manifest: &Manifest,
) -> Result<()> {
    if &manifest.model != id {
        return Err(Error::msg(format!("manifest describes {}, but this upload is for {id}", manifest.model)));
    }
    for file in &manifest.files {
        if staged.get(&file.path) != Some(file) {
            return Err(Error::msg(format!("manifest lists `{}`, which was not uploaded as described", file.path)));
        }
    }
    Ok(())
}
