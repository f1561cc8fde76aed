//! An ONNX graph with its sessions, and the signature read from the graph itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use ort::session::Session;
use ort::value::ValueType;
use runner_core::{v2, Artifacts, Error, Props, Result, SaveDir, VolumeState};
use serde::{Deserialize, Serialize};

use crate::runtime::{Provider, SessionOptions};
use crate::tensor::{DataType, Tensor};

/// The file the graph is saved to in the model volume.
pub const MODEL_FILE: &str = "model.onnx";

/// One tensor of a graph's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The tensor's name in the graph (V2 clients address it by this name).
    pub name: String,
    /// Its element type.
    pub datatype: DataType,
    /// Its shape; `-1` for a symbolic or free dimension.
    pub shape: Vec<i64>,
    /// The names of its symbolic dimensions (`batch`, `sequence`), empty for fixed ones.
    #[serde(default)]
    pub dims: Vec<String>,
}

impl TensorSpec {
    /// Whether `shape` fits this spec.
    pub fn fits(&self, shape: &[i64]) -> bool {
        runner_core::v2::shape_fits(&self.shape, shape)
    }

    /// The shape as people write it: `[batch, 4]`.
    pub fn describe_shape(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .enumerate()
            .map(|(i, d)| match self.dims.get(i).filter(|s| !s.is_empty()) {
                Some(symbol) if *d < 0 => symbol.clone(),
                _ if *d < 0 => "-1".to_string(),
                _ => d.to_string(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    }

    fn metadata(&self) -> v2::TensorMetadata {
        v2::TensorMetadata {
            name: self.name.clone(),
            datatype: self.datatype.name().to_string(),
            shape: self.shape.clone(),
        }
    }
}

/// The inputs and outputs of a graph, as ONNX Runtime reads them from the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The inputs, in the graph's order.
    pub inputs: Vec<TensorSpec>,
    /// The outputs, in the graph's order.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// The V2 signature (platform `onnxruntime_onnx`, as Triton reports ONNX models).
    pub fn v2(&self) -> v2::Signature {
        v2::Signature {
            platform: "onnxruntime_onnx".into(),
            inputs: self.inputs.iter().map(TensorSpec::metadata).collect(),
            outputs: self.outputs.iter().map(TensorSpec::metadata).collect(),
        }
    }

    fn of(session: &Session) -> Result<Signature> {
        fn specs<'a>(outlets: impl Iterator<Item = (&'a str, &'a ValueType)>, what: &str) -> Result<Vec<TensorSpec>> {
            outlets
                .map(|(name, dtype)| match dtype {
                    ValueType::Tensor { ty, shape, dimension_symbols } => Ok(TensorSpec {
                        name: name.to_string(),
                        datatype: DataType::of_onnx(*ty).map_err(|e| Error::msg(format!("{what} `{name}`: {e}")))?,
                        shape: shape.iter().map(|d| if *d < 0 { -1 } else { *d }).collect(),
                        dims: dimension_symbols.iter().cloned().collect(),
                    }),
                    other => Err(Error::msg(format!(
                        "{what} `{name}` is {other:?}, not a tensor; runner-onnx serves graphs whose inputs and outputs are tensors (for skl2onnx classifiers, export with options={{\"zipmap\": False}})"
                    ))),
                })
                .collect()
        }
        Ok(Signature {
            inputs: specs(session.inputs().iter().map(|o| (o.name(), o.dtype())), "input")?,
            outputs: specs(session.outputs().iter().map(|o| (o.name(), o.dtype())), "output")?,
        })
    }
}

/// Named tensors: what an ONNX graph takes and returns, in the graph's order.
///
/// ```
/// use runner_onnx::{Tensor, Tensors};
/// let inputs = Tensors::new().with("x", Tensor::from_vec([1, 2], vec![1.0f32, 2.0])?);
/// assert_eq!(inputs.get("x").unwrap().shape(), [1, 2]);
/// # Ok::<(), runner_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tensors(Vec<(String, Tensor)>);

impl Tensors {
    /// No tensors.
    pub fn new() -> Tensors {
        Tensors(Vec::new())
    }

    /// Adds (or replaces) the tensor named `name`.
    pub fn with(mut self, name: impl Into<String>, tensor: Tensor) -> Tensors {
        self.insert(name, tensor);
        self
    }

    /// Adds (or replaces) the tensor named `name`.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = tensor,
            None => self.0.push((name, tensor)),
        }
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Takes out the tensor named `name`.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }

    /// The names and tensors, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.0.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for Tensors {
    type Item = (String, Tensor);
    type IntoIter = std::vec::IntoIter<(String, Tensor)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<S: Into<String>> FromIterator<(S, Tensor)> for Tensors {
    fn from_iter<I: IntoIterator<Item = (S, Tensor)>>(iter: I) -> Tensors {
        let mut tensors = Tensors::new();
        iter.into_iter().for_each(|(n, t)| tensors.insert(n, t));
        tensors
    }
}

/// An ONNX graph ready to serve: the file (and any external-data files beside it), the
/// signature ONNX Runtime reads from it, and the sessions that run it.
///
/// Load one with [`OnnxModel::load`] and register it with
/// [`register_onnx_model`](crate::register_onnx_model); the file is stored in the model
/// volume as it is (with its sha256, as every file of a volume). At serving time it is
/// loaded back with [`SessionOptions::from_env`].
///
/// ONNX Runtime runs one session on many threads, but `ort` asks for `&mut` to run one,
/// so a model holds a small pool: up to [`SessionOptions::sessions`] sessions, made as
/// concurrent requests need them (each holds its own copy of the weights).
pub struct OnnxModel {
    /// The graph file and files beside it: (local path, volume path).
    files: Vec<(PathBuf, String)>,
    options: SessionOptions,
    signature: Signature,
    provider: Provider,
    pool: Pool,
    /// The model volume, when loaded from a registry, and state built from it.
    volume: VolumeState,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("file", &self.files[0].0)
            .field("provider", &self.provider)
            .field("signature", &self.signature)
            .finish()
    }
}

impl OnnxModel {
    /// Loads the graph at `path` with the options of the environment
    /// ([`SessionOptions::from_env`]). A file `<path>.data` beside it (where
    /// `torch.onnx.export` writes external weights) is kept with it; name other
    /// external-data files with [`OnnxModel::with_file`].
    pub fn load(path: impl AsRef<Path>) -> Result<OnnxModel> {
        OnnxModel::load_with(path, SessionOptions::from_env()?)
    }

    /// Loads the graph at `path` with `options`.
    pub fn load_with(path: impl AsRef<Path>, options: SessionOptions) -> Result<OnnxModel> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::msg(format!("{} is not a file; give the path of a .onnx file", path.display())));
        }
        let mut files = vec![(path.to_path_buf(), MODEL_FILE.to_string())];
        let data = PathBuf::from(format!("{}.data", path.display()));
        if data.is_file() {
            let name = data.file_name().expect("a file has a name").to_string_lossy().into_owned();
            files.push((data, name));
        }
        let (session, provider) = options.session(path)?;
        let signature = Signature::of(&session)?;
        let pool = Pool::new(session, options.sessions);
        Ok(OnnxModel { files, options, signature, provider, pool, volume: VolumeState::default() })
    }

    /// Keeps another file beside the graph (external data the graph names by its file
    /// name): it is saved next to `model.onnx` in the volume under the same name.
    pub fn with_file(mut self, path: impl AsRef<Path>) -> Result<OnnxModel> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .filter(|_| path.is_file())
            .ok_or_else(|| Error::msg(format!("{} is not a file", path.display())))?
            .to_string_lossy()
            .into_owned();
        if name == MODEL_FILE || self.files.iter().any(|(_, n)| *n == name) {
            return Err(Error::msg(format!("a file named `{name}` is already kept with this model")));
        }
        self.files.push((path.to_path_buf(), name));
        Ok(self)
    }

    /// The signature read from the graph.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The execution provider its sessions run on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The model volume's files, when the model was loaded from a registry.
    pub fn artifacts(&self) -> Option<&Artifacts> {
        self.volume.artifacts()
    }

    /// State built once per model from its volume and kept with it: a tokenizer or label
    /// names uploaded as artifacts, for hooks that take `(model: &OnnxModel, data)`.
    /// `init` runs on first use; later calls return the same value.
    ///
    /// ```no_run
    /// # fn hook(model: &runner_onnx::OnnxModel) -> runner_core::Result<()> {
    /// let labels = model.cached(|artifacts| Ok(artifacts.read_to_string("labels.txt")?))?;
    /// # Ok(()) }
    /// ```
    pub fn cached<T: Send + Sync + 'static>(&self, init: impl FnOnce(&Artifacts) -> Result<T>) -> Result<Arc<T>> {
        self.volume.cached(init)
    }

    /// Runs the graph on `inputs` (by name; every input of the signature must be there)
    /// and returns every output, in the graph's order.
    pub fn run(&self, inputs: &Tensors) -> Result<Tensors> {
        let values = self
            .signature
            .inputs
            .iter()
            .map(|spec| {
                let tensor = inputs
                    .get(&spec.name)
                    .ok_or_else(|| Error::invalid_input(format!("missing input `{}`", spec.name)))?;
                Ok((spec.name.as_str(), tensor.to_onnx()?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut session = self.pool.take(|| self.options.session(&self.files[0].0).map(|(s, _)| s))?;
        let outputs = session.run(values).map_err(|e| Error::msg(format!("the ONNX model failed: {e}")))?;
        outputs.iter().map(|(name, value)| Ok((name.to_string(), Tensor::from_onnx(name, &value)?))).collect()
    }

    /// Saves the graph (and the files beside it) and its signature into a model volume.
    pub(crate) fn save(&self, dir: &SaveDir) -> Result<Props> {
        for (local, volume) in &self.files {
            std::fs::copy(local, dir.file(volume)?)
                .map_err(|e| Error::msg(format!("cannot copy {} into the model volume: {e}", local.display())))?;
        }
        let mut props = Props::new();
        props.insert("format".into(), "onnx".into());
        props.insert("file".into(), MODEL_FILE.into());
        props.insert("signature".into(), serde_json::to_string(&self.signature).expect("signatures serialize"));
        Ok(props)
    }

    /// Loads what [`OnnxModel::save`] wrote, with [`SessionOptions::from_env`], and warms
    /// it up.
    pub(crate) fn load_saved(props: Option<Props>, artifacts: &Artifacts) -> Result<OnnxModel> {
        let props = props.unwrap_or_default();
        if props.get("format").map(String::as_str) != Some("onnx") {
            return Err(Error::msg(
                "this model was not saved by runner-onnx (its props have no `format: onnx`); register it with register_onnx_model",
            ));
        }
        let file = props.get("file").map_or(MODEL_FILE, String::as_str);
        let mut model = OnnxModel::load(artifacts.path(file)?)?;
        model.volume = VolumeState::new(artifacts.clone());
        model.warm_up();
        Ok(model)
    }

    /// Runs the graph once on zeros of the signature's shapes (free dimensions 1), so that
    /// ONNX Runtime's first, slow run is not a request's.
    fn warm_up(&self) {
        let inputs: Result<Tensors> = self
            .signature
            .inputs
            .iter()
            .map(|spec| {
                let shape: Vec<i64> = spec.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect();
                let count = shape.iter().product::<i64>() as usize;
                let tensor = match spec.datatype.size() {
                    Some(size) => Tensor::from_raw(spec.datatype, shape, vec![0u8; count * size].into()),
                    None => Tensor::from_strings(shape, &vec![""; count]),
                };
                tensor.map(|t| (spec.name.clone(), t))
            })
            .collect();
        if let Err(e) = inputs.and_then(|inputs| self.run(&inputs)) {
            tracing::debug!(error = %e, "warm-up run failed (a graph with data-dependent shapes); serving anyway");
        }
    }
}

/// The sessions of one model: idle ones are reused; a new one is made when all are busy
/// and fewer than `max` exist; past that, a run waits for one to come back.
///
/// Shared state: `idle` and `made` under one mutex. A taker either pops an idle session,
/// or counts one more made (under the lock, so never more than `max`) and builds it
/// outside the lock, or waits on `returned`. A session goes back to `idle` when its run
/// ends (the guard's drop, so a panicking run returns it too) and wakes one waiter. A
/// failed build uncounts itself and wakes a waiter, which then builds or waits in turn.
struct Pool {
    state: Mutex<PoolState>,
    returned: Condvar,
    max: usize,
}

struct PoolState {
    idle: Vec<Session>,
    made: usize,
}

impl Pool {
    fn new(first: Session, max: usize) -> Pool {
        Pool { state: Mutex::new(PoolState { idle: vec![first], made: 1 }), returned: Condvar::new(), max: max.max(1) }
    }

    fn take(&self, build: impl FnOnce() -> Result<Session>) -> Result<Lease<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(Lease { pool: self, session: Some(session) });
            }
            if state.made < self.max {
                state.made += 1;
                drop(state);
                return match build() {
                    Ok(session) => Ok(Lease { pool: self, session: Some(session) }),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(|p| p.into_inner()).made -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A session taken from the pool, given back when dropped.
struct Lease<'a> {
    pool: &'a Pool,
    session: Option<Session>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("held until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.state.lock().unwrap_or_else(|p| p.into_inner()).idle.push(session);
            self.pool.returned.notify_one();
        }
    }
}
