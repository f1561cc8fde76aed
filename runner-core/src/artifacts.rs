//! Artifacts: the mapping given at registration, its expansion into files, and the
//! volume view handed to `load_model`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::manifest::{FileEntry, DEFAULT_MODEL_FILE, RESERVED_FILES};
use crate::names::validate_volume_path;
use crate::{Error, Result};

/// One file to upload: where it is and where it goes in the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// The file on local disk.
    pub local: PathBuf,
    /// Its path in the volume.
    pub volume_path: String,
}

/// Expands one artifact mapping (`local => remote`) into the files it uploads.
///
/// The seed's rules: a `*` may only stand as the whole last path component, on both
/// sides or on neither. `"dir/*" => "remote/*"` uploads every file below `dir`,
/// recursively, keeping relative paths. Remote paths may not escape the volume or use a
/// reserved name; symbolic links that point outside the local folder are refused.
/// Relative local paths are resolved against `base`.
pub fn expand_artifact(base: &Path, local: &str, remote: &str) -> Result<Vec<PlannedFile>> {
    let bad = |message: String| Error::Artifact { local: local.into(), remote: remote.into(), message };
    let local_glob = glob_prefix(local).map_err(|m| bad(format!("local side: {m}")))?;
    let remote_glob = glob_prefix(remote).map_err(|m| bad(format!("volume side: {m}")))?;
    let local_path = base.join(local_glob.unwrap_or(local));
    match (local_glob, remote_glob) {
        (None, None) => {
            check_remote(remote).map_err(&bad)?;
            let meta = std::fs::metadata(&local_path)
                .map_err(|e| bad(format!("cannot read {}: {e}", local_path.display())))?;
            if meta.is_dir() {
                return Err(bad(format!(
                    "{} is a directory; to upload a folder write `\"{}/*\" => \"{}/*\"`",
                    local_path.display(),
                    local.trim_end_matches('/'),
                    remote.trim_end_matches('/')
                )));
            }
            Ok(vec![PlannedFile { local: local_path, volume_path: remote.to_string() }])
        }
        (Some(_), Some(remote_prefix)) => {
            if !remote_prefix.is_empty() {
                check_remote(remote_prefix).map_err(&bad)?;
            }
            let root = std::fs::canonicalize(&local_path)
                .map_err(|e| bad(format!("cannot read folder {}: {e}", local_path.display())))?;
            if !root.is_dir() {
                return Err(bad(format!("{} is not a folder", local_path.display())));
            }
            let mut files = Vec::new();
            for (path, relative) in list_folder(&root).map_err(bad)? {
                let volume_path =
                    if remote_prefix.is_empty() { relative } else { format!("{remote_prefix}/{relative}") };
                check_remote(&volume_path).map_err(&bad)?;
                files.push(PlannedFile { local: path, volume_path });
            }
            if files.is_empty() {
                return Err(bad(format!("folder {} has no files", root.display())));
            }
            Ok(files)
        }
        (Some(_), None) | (None, Some(_)) => Err(bad(
            "a glob must stand on both sides or on neither, e.g. `\"checkpoints/*\" => \"checkpoints/*\"`".into(),
        )),
    }
}

/// Every file below `root` (canonical), recursively, with its `/`-separated relative
/// path, sorted. Symbolic links to files inside `root` are followed; links that point
/// outside it, or to folders, are refused.
fn list_folder(root: &Path) -> std::result::Result<Vec<(PathBuf, String)>, String> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", root.display()))?;
        let path = entry.path();
        let mut is_file = entry.file_type().is_file();
        if entry.path_is_symlink() {
            let target =
                std::fs::canonicalize(path).map_err(|e| format!("broken symbolic link {}: {e}", path.display()))?;
            if !target.starts_with(root) {
                return Err(format!(
                    "symbolic link {} points outside {} (to {}); copy the file into the folder instead",
                    path.display(),
                    root.display(),
                    target.display()
                ));
            }
            if target.is_dir() {
                return Err(format!(
                    "symbolic link {} points to a folder; only links to files are followed",
                    path.display()
                ));
            }
            is_file = true;
        }
        if !is_file {
            continue;
        }
        let relative = path.strip_prefix(root).expect("walkdir stays below its root");
        let relative = relative
            .to_str()
            .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        files.push((path.to_path_buf(), relative));
    }
    Ok(files)
}

/// For `dir/*` returns `Some("dir")`, for `*` `Some("")`, for a plain path `None`; a `*`
/// anywhere else is an error.
fn glob_prefix(path: &str) -> std::result::Result<Option<&str>, String> {
    let (prefix, glob) = match path.strip_suffix('*') {
        Some(prefix) if prefix.is_empty() || prefix.ends_with('/') => (prefix.trim_end_matches('/'), true),
        Some(_) => return Err(format!("`{path}`: `*` may only stand as the whole last path component, e.g. `dir/*`")),
        None => (path, false),
    };
    if prefix.contains('*') {
        return Err(format!("`{path}`: only a trailing `*` is allowed, as the whole last path component"));
    }
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(glob.then_some(prefix))
}

fn check_remote(path: &str) -> std::result::Result<(), String> {
    validate_volume_path(path).map_err(|e| e.to_string())?;
    if let Some(reserved) = RESERVED_FILES.iter().find(|r| **r == path) {
        return Err(format!("`{reserved}` is reserved by the framework; choose another volume path"));
    }
    Ok(())
}

/// A loaded model's volume, when it came from a registry, and state built once from it: a
/// tokenizer or label names uploaded as artifacts. Backends keep one in their model type
/// (runner-torch's `TorchModule`, runner-onnx's `OnnxModel`) so that hooks taking the model
/// reach it.
///
/// ```
/// use runner_core::VolumeState;
/// let state = VolumeState::default(); // not loaded from a registry
/// assert!(state.artifacts().is_none());
/// assert!(state.cached(|_| Ok(1u32)).unwrap_err().to_string().contains("no volume"));
/// ```
#[derive(Default)]
pub struct VolumeState {
    artifacts: Option<Artifacts>,
    /// Built by [`VolumeState::cached`], one value per type.
    cache: std::sync::Mutex<Vec<(std::any::TypeId, std::sync::Arc<dyn std::any::Any + Send + Sync>)>>,
}

impl std::fmt::Debug for VolumeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeState").field("artifacts", &self.artifacts.as_ref().map(Artifacts::root)).finish()
    }
}

impl VolumeState {
    /// State over the volume of a model loaded from a registry.
    pub fn new(artifacts: Artifacts) -> VolumeState {
        VolumeState { artifacts: Some(artifacts), cache: Default::default() }
    }

    /// The volume's files, when the model was loaded from a registry.
    pub fn artifacts(&self) -> Option<&Artifacts> {
        self.artifacts.as_ref()
    }

    /// The value of type `T` built from the volume: `init` runs on first use, later calls
    /// return the same value.
    pub fn cached<T: Send + Sync + 'static>(
        &self,
        init: impl FnOnce(&Artifacts) -> Result<T>,
    ) -> Result<std::sync::Arc<T>> {
        use std::any::TypeId;
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, value)) = cache.iter().find(|(id, _)| *id == TypeId::of::<T>()) {
            return Ok(value.clone().downcast::<T>().expect("cached by its type id"));
        }
        let artifacts = self.artifacts.as_ref().ok_or_else(|| {
            Error::msg("this model was not loaded from a registry, so it has no volume to build state from")
        })?;
        let value = std::sync::Arc::new(init(artifacts)?);
        cache.push((TypeId::of::<T>(), value.clone()));
        Ok(value)
    }
}

/// The model volume as `load_model` sees it: every artifact and saved file, opened by its
/// volume path, plus the artifact mapping given at registration.
///
/// ```no_run
/// # use runner_core::{Artifacts, Props, Result};
/// # struct Weights(Vec<u8>);
/// fn load_model(props: Option<Props>, artifacts: &Artifacts) -> Result<Weights> {
///     let bytes = artifacts.read("checkpoints/last.bin")?;
///     Ok(Weights(bytes))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Artifacts {
    root: PathBuf,
    mapping: BTreeMap<String, String>,
    files: BTreeMap<String, FileEntry>,
}

impl Artifacts {
    /// A view of a materialized volume directory.
    pub fn new(root: PathBuf, mapping: BTreeMap<String, String>, files: &[FileEntry]) -> Self {
        let files = files.iter().map(|f| (f.path.clone(), f.clone())).collect();
        Artifacts { root, mapping, files }
    }

    /// The volume's directory on local disk (read-only: files may be shared between models).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The artifact mapping given at registration: local path => volume path (the seed's
    /// `artifacts` dict).
    pub fn mapping(&self) -> &BTreeMap<String, String> {
        &self.mapping
    }

    /// The volume paths of every file, sorted.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Size and checksum of a file, if the volume has it.
    pub fn entry(&self, volume_path: &str) -> Option<&FileEntry> {
        self.files.get(volume_path)
    }

    /// The local path of a file in the volume, or an error that lists what the volume has.
    pub fn path(&self, volume_path: &str) -> Result<PathBuf> {
        if self.files.contains_key(volume_path) {
            return Ok(self.root.join(volume_path));
        }
        let available: Vec<&str> = self.files().collect();
        Err(Error::NotFound {
            what: "file",
            message: format!(
                "the model volume has no `{volume_path}` (it has: {}); check the artifact mapping given at registration",
                if available.is_empty() { "no files".to_string() } else { available.join(", ") }
            ),
        })
    }

    /// The local paths of every file below a volume folder (`prefix/...`), sorted.
    pub fn dir(&self, prefix: &str) -> Vec<(String, PathBuf)> {
        let prefix = format!("{}/", prefix.trim_end_matches('/'));
        self.files.keys().filter(|p| p.starts_with(&prefix)).map(|p| (p.clone(), self.root.join(p))).collect()
    }

    /// Opens a file of the volume.
    pub fn open(&self, volume_path: &str) -> Result<File> {
        let path = self.path(volume_path)?;
        File::open(&path).ctx("opening", &path)
    }

    /// Reads a whole file of the volume.
    pub fn read(&self, volume_path: &str) -> Result<Vec<u8>> {
        let path = self.path(volume_path)?;
        std::fs::read(&path).ctx("reading", &path)
    }

    /// Reads a whole UTF-8 file of the volume.
    pub fn read_to_string(&self, volume_path: &str) -> Result<String> {
        let path = self.path(volume_path)?;
        std::fs::read_to_string(&path).ctx("reading", &path)
    }
}

/// The folder `save_model` may write files into. Everything in it is uploaded to the
/// model volume under the same relative path, and `load_model` opens it through
/// [`Artifacts`].
///
/// ```
/// # use runner_core::{Props, Result, SaveDir};
/// # struct Model { weights: Vec<u8> }
/// fn save_model(model: &Model, dir: &SaveDir) -> Result<Props> {
///     dir.write("weights.bin", &model.weights)?;
///     Ok(Props::from([("format".to_string(), "raw".to_string())]))
/// }
/// # let dir = SaveDir::temporary().unwrap();
/// # save_model(&Model { weights: vec![1, 2] }, &dir).unwrap();
/// # assert_eq!(std::fs::read(dir.path().join("weights.bin")).unwrap(), [1, 2]);
/// ```
#[derive(Debug)]
pub struct SaveDir {
    dir: tempfile::TempDir,
}

impl SaveDir {
    /// A fresh, empty, temporary folder, removed when dropped.
    pub fn temporary() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("runner-save-")
            .tempdir()
            .ctx("creating a temporary folder in", std::env::temp_dir())?;
        Ok(SaveDir { dir })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The local path for a volume path inside the folder (parent folders are created).
    pub fn file(&self, volume_path: &str) -> Result<PathBuf> {
        validate_volume_path(volume_path)?;
        let path = self.dir.path().join(volume_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        Ok(path)
    }

    /// Writes a whole file.
    pub fn write(&self, volume_path: &str, bytes: impl AsRef<[u8]>) -> Result<()> {
        let path = self.file(volume_path)?;
        std::fs::write(&path, bytes).ctx("writing", &path)
    }

    /// Creates a file to write into.
    pub fn create(&self, volume_path: &str) -> Result<File> {
        let path = self.file(volume_path)?;
        File::create(&path).ctx("creating", &path)
    }

    /// Every file written so far, as planned uploads, sorted by volume path. Reserved
    /// names are refused, except the default saver's file when `default_saved`.
    pub(crate) fn planned_files(&self, default_saved: bool) -> Result<Vec<PlannedFile>> {
        let root = std::fs::canonicalize(self.dir.path()).ctx("reading", self.dir.path())?;
        let bad = |message: String| Error::msg(format!("save_model wrote a file the volume cannot hold: {message}"));
        let mut files = Vec::new();
        for (local, volume_path) in list_folder(&root).map_err(bad)? {
            if !(default_saved && volume_path == DEFAULT_MODEL_FILE) {
                check_remote(&volume_path).map_err(bad)?;
            }
            files.push(PlannedFile { local, volume_path });
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ckpt/sub")).unwrap();
        std::fs::write(dir.path().join("ckpt/a.bin"), b"a").unwrap();
        std::fs::write(dir.path().join("ckpt/sub/b.bin"), b"b").unwrap();
        std::fs::write(dir.path().join("model.pt"), b"m").unwrap();
        dir
    }

    fn volume_paths(files: Vec<PlannedFile>) -> Vec<String> {
        files.into_iter().map(|f| f.volume_path).collect()
    }

    #[test]
    fn plain_and_glob() {
        let dir = tree();
        assert_eq!(
            volume_paths(expand_artifact(dir.path(), "model.pt", "weights/model.pt").unwrap()),
            ["weights/model.pt"]
        );
        assert_eq!(
            volume_paths(expand_artifact(dir.path(), "ckpt/*", "checkpoints/*").unwrap()),
            ["checkpoints/a.bin", "checkpoints/sub/b.bin"]
        );
        assert_eq!(volume_paths(expand_artifact(dir.path(), "ckpt/*", "*").unwrap()), ["a.bin", "sub/b.bin"]);
    }

    #[test]
    fn glob_rules() {
        let dir = tree();
        for (local, remote, needle) in [
            ("ckpt/*", "checkpoints", "both sides or on neither"),
            ("model.pt", "x/*", "both sides or on neither"),
            ("ckpt/*.bin", "x/*", "whole last path component"),
            ("ck*/a.bin", "x", "only a trailing `*`"),
            ("ckpt", "ckpt", "is a directory"),
            ("missing.pt", "m.pt", "cannot read"),
        ] {
            let err = expand_artifact(dir.path(), local, remote).unwrap_err().to_string();
            assert!(err.contains(needle), "{local} => {remote}: {err}");
        }
    }

    #[test]
    fn traversal_and_reserved() {
        let dir = tree();
        for remote in ["../x", "/abs/x", "a/../../x"] {
            let err = expand_artifact(dir.path(), "model.pt", remote).unwrap_err().to_string();
            assert!(err.contains("volume path"), "{remote}: {err}");
        }
        let err = expand_artifact(dir.path(), "model.pt", "runner.manifest.json").unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
        let err = expand_artifact(dir.path(), "ckpt/*", "../*").unwrap_err().to_string();
        assert!(err.contains("`..`"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_outside_are_refused() {
        let dir = tree();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("ckpt/link")).unwrap();
        let err = expand_artifact(dir.path(), "ckpt/*", "c/*").unwrap_err().to_string();
        assert!(err.contains("points outside"), "{err}");
        std::fs::remove_file(dir.path().join("ckpt/link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("ckpt/a.bin"), dir.path().join("ckpt/inside")).unwrap();
        assert_eq!(
            volume_paths(expand_artifact(dir.path(), "ckpt/*", "c/*").unwrap()),
            ["c/a.bin", "c/inside", "c/sub/b.bin"]
        );
    }
}
