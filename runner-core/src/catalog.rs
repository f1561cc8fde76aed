//! The runners compiled into this binary, collected by `inventory`.

use std::path::PathBuf;

use crate::load::{DynModel, Loaded};
use crate::manifest::Manifest;
use crate::names::ModelRef;
use crate::register::{register_model, Registered};
use crate::registry::Registry;
use crate::runner::Runner;
use crate::{Error, Result};

/// A runner as the binaries see it: its name, defaults, and type-erased entry points.
/// Every `#[runner]` submits one.
pub struct RunnerEntry {
    /// The runner's name.
    pub name: &'static str,
    /// The Rust type it is implemented on.
    pub rust_type: fn() -> &'static str,
    /// Repository it registers into by default.
    pub default_repository: fn() -> &'static str,
    /// Whether `#[runner(model = ...)]` names a builder, so `register` can create a model.
    pub has_builder: fn() -> bool,
    pub(crate) load: fn(Manifest, PathBuf) -> Result<Box<dyn DynModel>>,
    pub(crate) register_defaults: fn(&dyn Registry, &RegisterOptions) -> Result<Registered>,
}

impl std::fmt::Debug for RunnerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerEntry").field("name", &self.name).field("rust_type", &(self.rust_type)()).finish()
    }
}

/// Overrides for registering a runner with its declared defaults.
#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    /// Register into this existing number instead of creating one.
    pub number: Option<u64>,
    /// Organization (default: [`crate::DEFAULT_ORGANIZATION`]).
    pub organization: Option<String>,
    /// Repository (default: the runner's declared repository).
    pub repository: Option<String>,
}

impl RunnerEntry {
    /// The entry for runner `R`. Not public API: used by generated code.
    #[doc(hidden)]
    pub const fn of<R: Runner>() -> Self {
        RunnerEntry {
            name: R::NAME,
            rust_type: std::any::type_name::<R>,
            default_repository: || R::defaults().repository,
            has_builder: || R::defaults().build_model.is_some(),
            load: |manifest, volume| Ok(Box::new(Loaded::<R>::from_volume(manifest, volume)?)),
            register_defaults: register_defaults::<R>,
        }
    }

    /// Registers a model with this runner's declared defaults, building the instance
    /// with the declared `model = ...` builder.
    pub fn register(&self, registry: &dyn Registry, options: &RegisterOptions) -> Result<Registered> {
        (self.register_defaults)(registry, options)
    }
}

fn register_defaults<R: Runner>(registry: &dyn Registry, options: &RegisterOptions) -> Result<Registered> {
    let defaults = R::defaults();
    let repository = options.repository.clone().unwrap_or_else(|| defaults.repository.to_string());
    let mut registration = register_model::<R>(repository.clone())
        .maybe_number(options.number)
        .requirements(defaults.requirements.iter().copied())
        .base_dir(defaults.base_dir);
    if let Some(org) = &options.organization {
        registration = registration.organization(org.clone());
    }
    for (local, remote) in defaults.artifacts {
        registration = registration.artifact(*local, *remote);
    }
    match defaults.build_model {
        Some(build) => {
            let model = build().map_err(|e| Error::from_hook(crate::Hook::BuildModel, e))?;
            registration = registration.model(model);
        }
        None if options.number.is_none() => {
            // Unavailable: registering every runner skips it (the built-in torch runner
            // is registered from code, with a module).
            return Err(Error::Unavailable(format!(
                "runner `{}` declares no model builder, and a new model of `{repository}` needs an instance; add `model = path::to::fn` to its #[runner(...)], register from code, or pass --number to register into an existing model",
                R::NAME
            )));
        }
        None => {}
    }
    registration.register(registry)
}

inventory::collect!(RunnerEntry);

/// Every runner compiled into this binary, sorted by name.
pub fn runners() -> Vec<&'static RunnerEntry> {
    let mut all: Vec<&'static RunnerEntry> = inventory::iter::<RunnerEntry>.into_iter().collect();
    all.sort_by_key(|r| r.name);
    all
}

/// The runner called `name`; the error is the comma-separated list of available names.
pub fn find_runner(name: &str) -> std::result::Result<&'static RunnerEntry, String> {
    let all = runners();
    all.iter().find(|r| r.name == name).copied().ok_or_else(|| {
        if all.is_empty() {
            "none".to_string()
        } else {
            all.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        }
    })
}

/// Loads a model with whichever runner of this binary its manifest names.
///
/// Fails with [`Error::RunnerNotFound`], naming the runner and listing those available,
/// when the binary does not contain it.
pub fn load_any(registry: &dyn Registry, model: &ModelRef) -> Result<Box<dyn DynModel>> {
    let id = registry.resolve(model)?;
    let manifest = registry.manifest(&id)?;
    let entry = find_runner(&manifest.runner.name).map_err(|available| Error::RunnerNotFound {
        model: id.to_string(),
        runner: manifest.runner.name.clone(),
        available,
    })?;
    let volume = registry.fetch(&manifest)?;
    (entry.load)(manifest, volume)
}
