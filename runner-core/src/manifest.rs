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
    /// The API the runner answered when the model was registered (absent in manifests
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSignature>,
}

/// The API of a model's runner as callers see it: the JSON Schemas of its request and
/// response bodies (or the Rust type names, when the types do not implement
/// `schemars::JsonSchema`), and a fingerprint of both. Moving an alias to a model whose
/// fingerprint differs is refused unless forced, because callers of the alias would
/// break.
///
/// ```
/// use runner_core::ApiSignature;
/// use serde_json::json;
/// let v1 = ApiSignature::new(json!({"properties": {"x": {"type": "number"}}}), json!({"type": "number"}), Default::default());
/// let v2 = ApiSignature::new(json!({"properties": {"x": {"type": "string"}}}), json!({"type": "number"}), Default::default());
/// assert_ne!(v1.fingerprint, v2.fingerprint);
/// assert_eq!(v1.changes(&v2), ["input.properties.x.type: \"number\" became \"string\""]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiSignature {
    /// sha256 of the canonical JSON (keys sorted) of `input`, `output` and `definitions`.
    pub fingerprint: String,
    /// The request body: a JSON Schema, or `{"rust_type": "..."}`.
    pub input: serde_json::Value,
    /// The response body: a JSON Schema, or `{"rust_type": "..."}`.
    pub output: serde_json::Value,
    /// Schemas the two refer to (`$ref`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub definitions: BTreeMap<String, serde_json::Value>,
}

impl ApiSignature {
    /// A signature, its fingerprint computed.
    pub fn new(
        input: serde_json::Value,
        output: serde_json::Value,
        definitions: BTreeMap<String, serde_json::Value>,
    ) -> ApiSignature {
        use sha2::Digest;
        let mut canonical = String::new();
        for (name, value) in [("input", &input), ("output", &output)] {
            canonical.push_str(name);
            canonical.push('=');
            write_canonical(value, &mut canonical);
            canonical.push('\n');
        }
        for (name, value) in &definitions {
            canonical.push_str(&format!("definition {name}="));
            write_canonical(value, &mut canonical);
            canonical.push('\n');
        }
        let fingerprint = hex::encode(sha2::Sha256::digest(canonical.as_bytes()));
        ApiSignature { fingerprint, input, output, definitions }
    }

    /// What differs from `self` to `other`, one line per difference, each naming where
    /// (`input.properties.petal_width`, `output.type`, `definitions.Flower...`); empty
    /// when the fingerprints match.
    pub fn changes(&self, other: &ApiSignature) -> Vec<String> {
        let mut changes = Vec::new();
        if self.fingerprint == other.fingerprint {
            return changes;
        }
        diff("input", &self.input, &other.input, &mut changes);
        diff("output", &self.output, &other.output, &mut changes);
        let empty = serde_json::Value::Object(Default::default());
        let names: BTreeSet<&String> = self.definitions.keys().chain(other.definitions.keys()).collect();
        for name in names {
            match (self.definitions.get(name), other.definitions.get(name)) {
                (Some(_), None) => changes.push(format!("definitions.{name}: removed")),
                (None, Some(_)) => changes.push(format!("definitions.{name}: added")),
                (a, b) => diff(&format!("definitions.{name}"), a.unwrap_or(&empty), b.unwrap_or(&empty), &mut changes),
            }
        }
        if changes.is_empty() {
            // Same values, written differently (a fingerprint of another version).
            changes.push("the fingerprint differs".to_string());
        }
        changes
    }
}

/// Now, in RFC 3339 (UTC) to the microsecond, as manifests and alias histories write it
/// (and PostgreSQL keeps it: a timestamp read back compares equal).
pub(crate) fn now_rfc3339() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::now_utc().format(&format).expect("the current time formats as RFC 3339")
}

/// JSON with object keys sorted, whatever serde_json's map keeps.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Appends to `out` where `a` and `b` differ, by path.
fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let short = |v: &Value| {
        let text = v.to_string();
        if text.chars().count() > 60 {
            format!("{}...", text.chars().take(60).collect::<String>())
        } else {
            text
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let at = format!("{path}.{key}");
                match (x.get(key), y.get(key)) {
                    (Some(_), None) => out.push(format!("{at}: removed")),
                    (None, Some(v)) => out.push(format!("{at}: added ({})", short(v))),
                    (Some(p), Some(q)) => diff(&at, p, q, out),
                    (None, None) => {}
                }
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {} became {}", short(a), short(b))),
    }
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
