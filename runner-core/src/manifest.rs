//! The manifest: what a model volume holds and how to serve it. Written last.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::{validate_sha256, validate_volume_path, ModelId};

/// Props: what `save_model` returns and `load_model` receives (string to string).
pub type Props = std::collections::BTreeMap<String, String>;

/// The manifest format this crate writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Reserved volume path of the manifest.
pub const MANIFEST_FILE: &str = "runner.manifest.json";
/// Reserved volume path of the model written by the default saver.
pub const DEFAULT_MODEL_FILE: &str = "runner.model.json";
/// Volume paths that artifacts and saved files may not use.
pub const RESERVED_FILES: &[&str] = &[MANIFEST_FILE, DEFAULT_MODEL_FILE];

/// Everything about one registered model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`] at the time of writing.
    pub manifest_version: u32,
    /// Which model this is.
    pub model: ModelId,
    /// The runner that serves it.
    pub runner: RunnerInfo,
    /// How the model was saved.
    pub save: SaveInfo,
    /// The hooks the runner left to the framework's defaults, sorted.
    pub default_hooks: Vec<String>,
    /// Requirements given at registration.
    pub requirements: Vec<String>,
    /// The artifact mapping given at registration (local path => volume path).
    pub artifacts: BTreeMap<String, String>,
    /// Every file of the volume, sorted by path.
    pub files: Vec<FileEntry>,
    /// When the model was registered (RFC 3339, UTC).
    pub created_at: String,
    /// The version of `runner-core` that wrote this manifest.
    pub framework_version: String,
}

/// The runner named in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInfo {
    /// The runner's name (`#[runner(name = ...)]`); serving looks it up by this name.
    pub name: String,
    /// The crate that defines it.
    pub crate_name: String,
    /// That crate's version.
    pub crate_version: String,
    /// The Rust type the runner is implemented on.
    pub rust_type: String,
}

/// How the model instance was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveType {
    /// The default saver wrote the instance to [`DEFAULT_MODEL_FILE`].
    Default,
    /// The runner's `save_model` saved it and returned props.
    Custom,
    /// Nothing was saved: `load_model` builds the model from artifacts.
    None,
}

/// The `save` section of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaveInfo {
    /// How it was saved.
    #[serde(rename = "type")]
    pub save_type: SaveType,
    /// The file the default saver wrote.
    pub path: Option<String>,
    /// What `save_model` returned, given back to `load_model`.
    pub props: Option<Props>,
}

/// Where a file of the volume came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOrigin {
    /// Written by the default saver.
    Model,
    /// Written by `save_model` into its directory.
    Saved,
    /// Uploaded from the artifact mapping.
    Artifact,
}

/// One file of a model volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the volume.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// Where it came from.
    pub origin: FileOrigin,
}

impl Manifest {
    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Parses and validates a manifest read from storage.
    pub fn from_json(model: &ModelId, bytes: &[u8]) -> Result<Manifest> {
        let bad = |message: String| Error::Manifest { model: model.to_string(), message };
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("{MANIFEST_FILE} is not a valid manifest: {e}")))?;
        if manifest.manifest_version != MANIFEST_VERSION {
            return Err(bad(format!(
                "manifest version {} is not supported (this runner-core {} reads version {MANIFEST_VERSION}); upgrade runner-core",
                manifest.manifest_version,
                env!("CARGO_PKG_VERSION")
            )));
        }
        if &manifest.model != model {
            return Err(bad(format!("it describes {}, not {model}", manifest.model)));
        }
        manifest.validate().map_err(|e| bad(e.to_string()))?;
        Ok(manifest)
    }

    /// Checks the internal consistency of the manifest: valid, unique file paths with
    /// well-formed checksums, and a save section that names an existing file.
    pub fn validate(&self) -> Result<()> {
        let mut seen = BTreeSet::new();
        for file in &self.files {
            validate_volume_path(&file.path)?;
            if !seen.insert(file.path.as_str()) {
                return Err(Error::msg(format!("file `{}` is listed twice", file.path)));
            }
            validate_sha256(&file.sha256)
                .map_err(|_| Error::msg(format!("file `{}` has a malformed sha256 `{}`", file.path, file.sha256)))?;
        }
        if self.runner.name.is_empty() {
            return Err(Error::msg("the runner name is empty"));
        }
        match (self.save.save_type, &self.save.path) {
            (SaveType::Default, Some(path)) if seen.contains(path.as_str()) => Ok(()),
            (SaveType::Default, _) => Err(Error::msg("save type is `default` but the saved model file is missing")),
            _ => Ok(()),
        }
    }

    /// sha256 of [`Manifest::to_json`]: identifies this exact manifest.
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.to_json()))
    }

    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        bytes.push(b'\n');
        bytes
    }
}
