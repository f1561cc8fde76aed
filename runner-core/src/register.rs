//! `register_model`: the Rust form of the seed's `register_model`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::artifacts::{expand_artifact, PlannedFile, SaveDir};
use crate::manifest::{now_rfc3339, FileOrigin, Manifest, SaveInfo, SaveType, DEFAULT_MODEL_FILE, MANIFEST_VERSION};
use crate::names::{validate_name, ModelId, DEFAULT_ORGANIZATION};
use crate::registry::Registry;
use crate::runner::{Runner, Saved};
use crate::{Error, Result};

/// Starts registering a model of runner `R` into `repository`.
///
/// The seed's arguments map to builder calls: `model_number` -> [`RegisterModel::number`],
/// `model_instance` -> [`RegisterModel::model`], `requirements` ->
/// [`RegisterModel::requirements`], `artifacts` -> [`RegisterModel::artifact`],
/// `organization_name` -> [`RegisterModel::organization`].
///
/// ```
/// use runner_core::{runner, register_model, LocalRegistry, Loaded};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Scale(f64);
/// pub struct Scaler;
///
/// #[runner(name = "scaler")]
/// impl Scaler {
///     fn predict(model: &Scale, data: Vec<f64>) -> Vec<f64> {
///         data.iter().map(|x| x * model.0).collect()
///     }
/// }
///
/// # fn main() -> runner_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let registry = LocalRegistry::open(dir.path())?;
/// let registered = register_model::<Scaler>("scaler")
///     .model(Scale(2.0))
///     .requirements(["nothing-else"])
///     .register(&registry)?;
/// assert_eq!(registered.manifest.model.number, 1);
///
/// let loaded = Loaded::<Scaler>::load(&registry, &"scaler:latest".parse()?)?;
/// assert_eq!(loaded.run(vec![1.0, 2.5])?, vec![2.0, 5.0]);
/// # Ok(()) }
/// ```
pub fn register_model<R: Runner>(repository: impl Into<String>) -> RegisterModel<R> {
    RegisterModel {
        repository: repository.into(),
        organization: DEFAULT_ORGANIZATION.to_string(),
        number: None,
        model: None,
        requirements: Vec::new(),
        artifacts: Vec::new(),
        base_dir: PathBuf::new(),
    }
}

/// A registration being set up; finish it with [`RegisterModel::register`].
#[must_use = "nothing is registered until `.register(&registry)` is called"]
pub struct RegisterModel<R: Runner> {
    repository: String,
    organization: String,
    number: Option<u64>,
    model: Option<R::Model>,
    requirements: Vec<String>,
    artifacts: Vec<(String, String)>,
    base_dir: PathBuf,
}

impl<R: Runner> std::fmt::Debug for RegisterModel<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterModel")
            .field("runner", &R::NAME)
            .field("organization", &self.organization)
            .field("repository", &self.repository)
            .field("number", &self.number)
            .field("model", &self.model.as_ref().map(|_| "..."))
            .field("requirements", &self.requirements)
            .field("artifacts", &self.artifacts)
            .finish()
    }
}

impl<R: Runner> RegisterModel<R> {
    /// Registers with runner `R2` instead, which serves the same model type with other
    /// hooks (e.g. a torch module with the pre- and post-processing of `R2`).
    pub fn runner<R2: Runner<Model = R::Model>>(self) -> RegisterModel<R2> {
        let RegisterModel { repository, organization, number, model, requirements, artifacts, base_dir } = self;
        RegisterModel { repository, organization, number, model, requirements, artifacts, base_dir }
    }

    /// Registers into this existing model number (replacing its contents atomically)
    /// instead of creating the next one.
    pub fn number(mut self, number: u64) -> Self {
        self.number = Some(number);
        self
    }

    /// Like [`RegisterModel::number`], with `None` meaning "create a new model".
    pub fn maybe_number(mut self, number: Option<u64>) -> Self {
        self.number = number;
        self
    }

    /// The model instance to save (required for a new model).
    pub fn model(mut self, model: R::Model) -> Self {
        self.model = Some(model);
        self
    }

    /// The organization (default: [`DEFAULT_ORGANIZATION`]).
    pub fn organization(mut self, organization: impl Into<String>) -> Self {
        self.organization = organization.into();
        self
    }

    /// Adds requirements recorded in the manifest.
    pub fn requirements<S: Into<String>>(mut self, requirements: impl IntoIterator<Item = S>) -> Self {
        self.requirements.extend(requirements.into_iter().map(Into::into));
        self
    }

    /// Adds an artifact: a local path and its path in the model volume. A trailing `*`
    /// on both sides uploads a whole folder, recursively: `("checkpoints/*", "ckpt/*")`.
    pub fn artifact(mut self, local: impl Into<String>, volume: impl Into<String>) -> Self {
        self.artifacts.push((local.into(), volume.into()));
        self
    }

    /// Relative local artifact paths are resolved against this folder (default: the
    /// current directory).
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = dir.into();
        self
    }

    /// Checks every rule, saves the model, uploads the files and commits the manifest.
    /// On error nothing becomes visible and a newly taken number is given back.
    pub fn register(self, registry: &dyn Registry) -> Result<Registered> {
        let RegisterModel { repository, organization, number, model, mut requirements, artifacts, base_dir } = self;
        for required in R::REQUIREMENTS {
            if !requirements.iter().any(|r| r == required) {
                requirements.push(required.to_string());
            }
        }
        let fail = |message: String| Error::Registration { repository: repository.clone(), message };
        validate_name("organization", &organization)?;
        validate_name("repository", &repository)?;
        if model.is_none() && !R::HOOKS.load_model {
            return Err(fail(format!(
                "runner `{}` has no model instance and does not override `load_model`, so nothing could be loaded; pass `.model(instance)` or override `load_model`",
                R::NAME
            )));
        }
        if number.is_none() && model.is_none() {
            return Err(fail(
                "a new model needs a model instance: pass `.model(instance)`, or `.number(N)` to register into an existing model".into(),
            ));
        }

        let (mapping, planned) = plan_artifacts(&base_dir, &artifacts)?;

        if let Some(n) = number {
            let id = ModelId::new(&organization, &repository, n)?;
            if registry.status(&id)?.is_none() {
                let latest = registry.latest(&organization, &repository).ok().flatten();
                return Err(fail(match latest {
                    Some(latest) => format!(
                        "model {n} does not exist (the latest is {}); omit the number to create model {}",
                        latest.number,
                        latest.number + 1
                    ),
                    None => format!("model {n} does not exist; omit the number to create the repository's first model"),
                }));
            }
        }

        // Save before taking a number, so a failing save_model burns nothing.
        let save_dir = SaveDir::temporary()?;
        let saved = match &model {
            Some(model) => R::save(model, &save_dir)?,
            None => Saved::Nothing,
        };
        let mut uploads: Vec<(PlannedFile, FileOrigin)> = Vec::new();
        let mut seen: BTreeSet<String> = planned.iter().map(|f| f.volume_path.clone()).collect();
        for file in save_dir.planned_files(saved == Saved::Default)? {
            let origin = if file.volume_path == DEFAULT_MODEL_FILE { FileOrigin::Model } else { FileOrigin::Saved };
            if !seen.insert(file.volume_path.clone()) {
                return Err(fail(format!(
                    "save_model wrote `{}`, which an artifact also uploads; rename one of them",
                    file.volume_path
                )));
            }
            uploads.push((file, origin));
        }
        uploads.extend(planned.into_iter().map(|f| (f, FileOrigin::Artifact)));

        let (mut id, fresh) = match number {
            Some(n) => (ModelId::new(&organization, &repository, n)?, false),
            None => (registry.create_model(&organization, &repository)?, true),
        };
        let mut attempt = 1;
        loop {
            let result = while_kept_alive(registry, &id, || {
                let mut staging = registry.stage(&id)?;
                let batch: Vec<_> =
                    uploads.iter().map(|(f, origin)| (f.volume_path.clone(), f.local.clone(), *origin)).collect();
                let mut files = staging.put_files(&batch)?;
                files.sort_by(|a, b| a.path.cmp(&b.path));
                let (save_type, props, path) = match &saved {
                    Saved::Default => (SaveType::Default, None, Some(DEFAULT_MODEL_FILE.to_string())),
                    Saved::Custom(props) => (SaveType::Custom, Some(props.clone()), None),
                    Saved::Nothing => (SaveType::None, None, None),
                };
                let manifest = Manifest {
                    manifest_version: MANIFEST_VERSION,
                    model: id.clone(),
                    runner: R::info(),
                    save: SaveInfo { save_type, path, props },
                    default_hooks: R::HOOKS.defaults(),
                    requirements: requirements.clone(),
                    artifacts: mapping.clone(),
                    files,
                    created_at: now_rfc3339(),
                    framework_version: env!("CARGO_PKG_VERSION").to_string(),
                    api: Some(crate::runner::api_signature::<R>()),
                };
                staging.commit(&manifest)?;
                Ok(manifest)
            });
            match result {
                Ok(manifest) => return Ok(Registered { manifest }),
                // A garbage collector ran during this registration and took what it had
                // sent (its grace period was shorter than the registration) or its number.
                // Nothing was committed: send again what is missing (the files are still
                // here) and commit again, under a new number if this one was given back.
                Err(Error::Gone { missing, message })
                    if attempt < REGISTER_ATTEMPTS && (missing.number.is_none() || fresh) =>
                {
                    attempt += 1;
                    #[cfg(feature = "http-client")]
                    tracing::info!(model = %id, attempt, contents = missing.contents.len(), number_gone = missing.number.is_some(), %message, "a garbage collector took what this registration sent; sending it again");
                    #[cfg(not(feature = "http-client"))]
                    let _ = message;
                    if missing.number.is_some() {
                        id = registry.create_model(&organization, &repository)?;
                    }
                }
                Err(e) => {
                    if fresh {
                        // Give the number back; nothing of this model was ever visible.
                        let _ = registry.discard(&id);
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// Tries of one registration whose commit finds what it sent collected ([`Error::Gone`]).
const REGISTER_ATTEMPTS: usize = 4;

/// How often a registration in flight keeps its number reserved.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `work` while a thread keeps `id` reserved ([`Registry::keep_alive`] every
/// [`KEEP_ALIVE`]), so that a garbage collector with a grace period shorter than the
/// registration neither gives back its number nor collects what it sent meanwhile.
fn while_kept_alive<T>(registry: &dyn Registry, id: &ModelId, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let stop = (std::sync::Mutex::new(false), std::sync::Condvar::new());
    std::thread::scope(|scope| {
        scope.spawn(|| loop {
            let stopped = stop.0.lock().unwrap_or_else(|e| e.into_inner());
            let (stopped, _) =
                stop.1.wait_timeout_while(stopped, KEEP_ALIVE, |stopped| !*stopped).unwrap_or_else(|e| e.into_inner());
            if *stopped {
                break;
            }
            drop(stopped);
            // A number given back is the commit's to report; other failures are retried
            // at the next beat.
            if matches!(registry.keep_alive(id), Err(Error::Gone { .. })) {
                break;
            }
        });
        let result = work();
        *stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        stop.1.notify_all();
        result
    })
}

/// Expands every artifact mapping; refuses two mappings that write the same volume path.
fn plan_artifacts(base: &Path, artifacts: &[(String, String)]) -> Result<(BTreeMap<String, String>, Vec<PlannedFile>)> {
    let mut mapping = BTreeMap::new();
    let mut files: Vec<PlannedFile> = Vec::new();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (local, remote) in artifacts {
        if mapping.insert(local.clone(), remote.clone()).is_some() {
            return Err(Error::Artifact {
                local: local.clone(),
                remote: remote.clone(),
                message: "this local path is mapped twice; give each local path once".into(),
            });
        }
        for file in expand_artifact(base, local, remote)? {
            if let Some(other) = owner.insert(file.volume_path.clone(), local.clone()) {
                return Err(Error::Artifact {
                    local: local.clone(),
                    remote: remote.clone(),
                    message: format!("volume path `{}` is also written by artifact `{other}`", file.volume_path),
                });
            }
            files.push(file);
        }
    }
    Ok((mapping, files))
}

/// What [`RegisterModel::register`] registered.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The committed manifest.
    pub manifest: Manifest,
}

impl Registered {
    /// The model's id.
    pub fn id(&self) -> &ModelId {
        &self.manifest.model
    }

    /// Total bytes of the volume's files.
    pub fn bytes(&self) -> u64 {
        self.manifest.total_bytes()
    }
}
