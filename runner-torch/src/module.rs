//! A TorchScript module with its device and (optional) tensor signature.

use std::path::Path;
use std::sync::{Arc, Once};

use runner_core::{Artifacts, Error, Props, Result, SaveDir, VolumeState};
use serde::{Deserialize, Serialize};
use tch::{CModule, Device, IValue, Tensor};

use crate::json::{torch_error, DType};

/// The file the module is saved to in the model volume.
pub const MODULE_FILE: &str = "model.pt";
/// Overrides the device modules are loaded on: `cpu`, `cuda` or `cuda:N`.
pub const DEVICE_ENV: &str = "RUNNER_TORCH_DEVICE";
/// Overrides libtorch's intra-op threads (default 1: the server runs requests in
/// parallel already).
pub const THREADS_ENV: &str = "RUNNER_TORCH_THREADS";

/// One tensor of a module's signature. `-1` in `shape` stands for any size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The tensor's name (V2 clients address inputs by it).
    pub name: String,
    /// Its element type.
    pub dtype: DType,
    /// Its shape; `-1` for a free dimension (the batch, a sequence length).
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// A spec; `shape` uses `-1` for free dimensions.
    pub fn new(name: impl Into<String>, dtype: DType, shape: impl Into<Vec<i64>>) -> TensorSpec {
        TensorSpec { name: name.into(), dtype, shape: shape.into() }
    }

    /// Whether `shape` fits this spec.
    pub fn fits(&self, shape: &[i64]) -> bool {
        runner_core::v2::shape_fits(&self.shape, shape)
    }

    fn metadata(&self) -> runner_core::v2::TensorMetadata {
        runner_core::v2::TensorMetadata {
            name: self.name.clone(),
            datatype: self.dtype.v2_name().to_string(),
            shape: self.shape.clone(),
        }
    }
}

/// The inputs and outputs a module declares; empty when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The inputs, in the order `forward` takes them.
    pub inputs: Vec<TensorSpec>,
    /// The outputs, in the order `forward` returns them.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    pub(crate) fn v2(&self) -> runner_core::v2::Signature {
        runner_core::v2::Signature {
            platform: "pytorch_torchscript".into(),
            inputs: self.inputs.iter().map(TensorSpec::metadata).collect(),
            outputs: self.outputs.iter().map(TensorSpec::metadata).collect(),
        }
    }
}

/// A TorchScript module ready to serve: the module, the device it runs on, and its
/// signature when declared.
///
/// Build one from a traced or scripted module (`CModule::create_by_tracing` in Rust, or
/// `torch.jit.trace(...).save("model.pt")` in Python) and register it with
/// [`register_torch_model`](crate::register_torch_model). At serving time it is loaded
/// back on [`TorchModule::default_device`], and `forward` runs under no-grad. A declared
/// [signature](TorchModule::input) lets the server check each request's shapes and dtypes
/// (422 naming the input), cast integer JSON to float inputs, answer V2 metadata and warm
/// the module up before the first request.
///
/// `tch::CModule` is `Send + Sync` and TorchScript's `forward` may run on many threads at
/// once, so one module serves every request thread without a lock.
pub struct TorchModule {
    module: CModule,
    device: Device,
    signature: Signature,
    /// The model volume, when loaded from a registry, and state built from it.
    volume: VolumeState,
}

impl std::fmt::Debug for TorchModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchModule").field("device", &self.device).field("signature", &self.signature).finish()
    }
}

impl TorchModule {
    /// Wraps a module that lives on `device`.
    pub fn new(module: CModule, device: Device) -> TorchModule {
        TorchModule { module, device, signature: Signature::default(), volume: VolumeState::default() }
    }

    /// Loads a TorchScript file on `device`.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<TorchModule> {
        let path = path.as_ref();
        let mut module = CModule::load_on_device(path, device)
            .map_err(|e| Error::msg(format!("cannot load the TorchScript module {}: {e}", path.display())))?;
        module.f_set_eval().map_err(torch_error)?;
        Ok(TorchModule::new(module, device))
    }

    /// Declares an input (in `forward`'s order). `-1` in `shape` is a free dimension.
    pub fn input(mut self, name: impl Into<String>, dtype: DType, shape: impl Into<Vec<i64>>) -> TorchModule {
        self.signature.inputs.push(TensorSpec::new(name, dtype, shape));
        self
    }

    /// Declares an output (in `forward`'s order).
    pub fn output(mut self, name: impl Into<String>, dtype: DType, shape: impl Into<Vec<i64>>) -> TorchModule {
        self.signature.outputs.push(TensorSpec::new(name, dtype, shape));
        self
    }

    /// The declared signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The device the module runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The underlying module.
    pub fn module(&self) -> &CModule {
        &self.module
    }

    /// The model volume's files, when the module was loaded from a registry.
    pub fn artifacts(&self) -> Option<&Artifacts> {
        self.volume.artifacts()
    }

    /// State built once per model from its volume and kept with it: a tokenizer or label
    /// names uploaded as artifacts, for hooks that take `(model: &TorchModule, data)`.
    /// `init` runs on first use; later calls return the same value.
    ///
    /// ```no_run
    /// # fn hook(model: &runner_torch::TorchModule) -> runner_core::Result<()> {
    /// let labels = model.cached(|artifacts| Ok(artifacts.read_to_string("labels.txt")?))?;
    /// # Ok(()) }
    /// ```
    pub fn cached<T: Send + Sync + 'static>(&self, init: impl FnOnce(&Artifacts) -> Result<T>) -> Result<Arc<T>> {
        self.volume.cached(init)
    }

    /// The device to serve on: [`DEVICE_ENV`] when set, else CUDA when available, else
    /// the CPU.
    pub fn default_device() -> Result<Device> {
        match std::env::var(DEVICE_ENV) {
            Ok(name) => parse_device(&name),
            Err(_) => Ok(Device::cuda_if_available()),
        }
    }

    /// `forward` on `inputs` (moved to the module's device) under no-grad; the outputs
    /// come back on the CPU, a tuple or list flattened in order.
    pub fn forward(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let device = self.device;
        let inputs =
            inputs
                .into_iter()
                .map(|t| {
                    if t.device() == device {
                        Ok(IValue::Tensor(t))
                    } else {
                        t.f_to_device(device).map(IValue::Tensor)
                    }
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(torch_error)?;
        let output = tch::no_grad(|| self.module.forward_is(&inputs))
            .map_err(|e| Error::msg(format!("the module's forward failed: {e}")))?;
        let mut tensors = Vec::new();
        flatten(output, &mut tensors)?;
        tensors
            .into_iter()
            .map(|t| if t.device() == Device::Cpu { Ok(t) } else { t.f_to_device(Device::Cpu) })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(torch_error)
    }

    /// Saves the module and its signature into a model volume.
    pub(crate) fn save(&self, dir: &SaveDir) -> Result<Props> {
        let path = dir.file(MODULE_FILE)?;
        self.module.save(&path).map_err(|e| Error::msg(format!("cannot save the TorchScript module: {e}")))?;
        let mut props = Props::new();
        props.insert("format".into(), "torchscript".into());
        props.insert("file".into(), MODULE_FILE.into());
        props.insert("signature".into(), serde_json::to_string(&self.signature).expect("signatures serialize"));
        Ok(props)
    }

    /// Loads what [`TorchModule::save`] wrote, on [`TorchModule::default_device`], and
    /// warms it up when the signature is known.
    pub(crate) fn load_saved(props: Option<Props>, artifacts: &Artifacts) -> Result<TorchModule> {
        let props = props.unwrap_or_default();
        if props.get("format").map(String::as_str) != Some("torchscript") {
            return Err(Error::msg(
                "this model was not saved by runner-torch (its props have no `format: torchscript`); register it with register_torch_model",
            ));
        }
        let file = props.get("file").map_or(MODULE_FILE, String::as_str);
        let signature: Signature = match props.get("signature") {
            Some(json) => {
                serde_json::from_str(json).map_err(|e| Error::msg(format!("bad signature in the props: {e}")))?
            }
            None => Signature::default(),
        };
        configure_threads();
        let device = TorchModule::default_device()?;
        let mut module = TorchModule::load(artifacts.path(file)?, device)?;
        module.signature = signature;
        module.volume = VolumeState::new(artifacts.clone());
        module.warm_up();
        Ok(module)
    }

    /// Runs `forward` on zeros of the declared shapes (free dimensions 1) a few times, so
    /// the profiling executor's first, slow runs are not a request's.
    fn warm_up(&self) {
        if self.signature.inputs.is_empty() {
            return;
        }
        for _ in 0..3 {
            let inputs = self
                .signature
                .inputs
                .iter()
                .map(|spec| {
                    let shape: Vec<i64> = spec.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect();
                    Tensor::zeros(shape.as_slice(), (spec.dtype.kind(), Device::Cpu))
                })
                .collect();
            if let Err(e) = self.forward(inputs) {
                tracing::warn!(error = %e, "warm-up forward failed; serving anyway");
                return;
            }
        }
    }
}

/// Sets libtorch's intra-op threads once per process: [`THREADS_ENV`], default 1.
fn configure_threads() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let threads = std::env::var(THREADS_ENV).ok().and_then(|v| v.parse::<i32>().ok()).filter(|n| *n > 0);
        tch::set_num_threads(threads.unwrap_or(1));
    });
}

/// `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    let bad = || Error::msg(format!("{DEVICE_ENV}=`{name}` is not a device; use `cpu`, `cuda` or `cuda:N`"));
    match name.trim() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(Error::msg(format!("{DEVICE_ENV}=cuda but no CUDA device is available")))
            }
        }
        other => {
            let n: usize = other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).ok_or_else(bad)?;
            let available = tch::Cuda::device_count() as usize;
            if n >= available {
                return Err(Error::msg(format!("{DEVICE_ENV}=`{name}` but {available} CUDA device(s) are available")));
            }
            Ok(Device::Cuda(n))
        }
    }
}

fn flatten(value: IValue, out: &mut Vec<Tensor>) -> Result<()> {
    match value {
        IValue::Tensor(t) => out.push(t),
        IValue::Tuple(values) | IValue::GenericList(values) => {
            for v in values {
                flatten(v, out)?;
            }
        }
        IValue::TensorList(tensors) => out.extend(tensors),
        other => {
            return Err(Error::msg(format!(
                "the module returned a {other:?}; runner-torch serves modules that return tensors, or tuples or lists of them"
            )))
        }
    }
    Ok(())
}
