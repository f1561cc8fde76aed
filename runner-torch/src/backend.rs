//! The torch [`Backend`]: forward under no-grad, batching along dimension 0, checks
//! against the module's signature, and the V2 protocol.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use runner_core::{v2, Artifacts, Backend, Error, Props, Result, SaveDir};
use tch::Tensor;

use crate::json::{torch_error, DType, TensorData};
use crate::module::TorchModule;

/// What a module takes or returns: one tensor, a tuple of tensors, or a `Vec` of them.
pub trait Tensors: Sized + Send + 'static {
    /// The tensors, in order.
    fn into_tensors(self) -> Vec<Tensor>;
    /// Back from tensors, checking their number.
    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self>;
}

impl Tensors for Tensor {
    fn into_tensors(self) -> Vec<Tensor> {
        vec![self]
    }
    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self> {
        let [t] = arity::<1>(tensors)?;
        Ok(t)
    }
}

impl Tensors for Vec<Tensor> {
    fn into_tensors(self) -> Vec<Tensor> {
        self
    }
    fn from_tensors(tensors: Vec<Tensor>) -> Result<Self> {
        Ok(tensors)
    }
}

macro_rules! tuple_tensors {
    ($n:literal: $($t:ident),+) => {
        impl Tensors for ($(tensor_type!($t),)+) {
            fn into_tensors(self) -> Vec<Tensor> {
                let ($($t,)+) = self;
                vec![$($t),+]
            }
            fn from_tensors(tensors: Vec<Tensor>) -> Result<Self> {
                let [$($t),+] = arity::<$n>(tensors)?;
                Ok(($($t,)+))
            }
        }
    };
}
macro_rules! tensor_type {
    ($t:ident) => {
        Tensor
    };
}
tuple_tensors!(2: a, b);
tuple_tensors!(3: a, b, c);
tuple_tensors!(4: a, b, c, d);

fn arity<const N: usize>(tensors: Vec<Tensor>) -> Result<[Tensor; N]> {
    let found = tensors.len();
    tensors.try_into().map_err(|_| {
        Error::msg(format!(
            "expected {N} tensor{}, found {found}; the runner's tensor types must match what the module takes and returns",
            if N == 1 { "" } else { "s" }
        ))
    })
}

/// How inputs of different shapes are batched.
pub trait BatchPolicy: Send + Sync + 'static {
    /// Joins the `i`-th tensor of every input into one batch along dimension 0.
    fn join(tensors: &[&Tensor]) -> Result<Tensor>;
    /// Whether two inputs may share a forward pass.
    fn compatible(a: &[Tensor], b: &[Tensor]) -> bool;
}

/// Whether two inputs have as many tensors, each pair of one kind and one rank above 0 (a
/// batch dimension to join along), and `also` holds for each pair.
fn pairwise(a: &[Tensor], b: &[Tensor], also: impl Fn(&Tensor, &Tensor) -> bool) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| x.kind() == y.kind() && x.dim() > 0 && x.dim() == y.dim() && also(x, y))
}

/// Inputs are concatenated along dimension 0; inputs whose other dimensions differ go
/// through separate forward passes (never padded, so no input changes meaning).
#[derive(Debug)]
pub enum Concat {}

impl BatchPolicy for Concat {
    fn join(tensors: &[&Tensor]) -> Result<Tensor> {
        Tensor::f_cat(tensors, 0).map_err(torch_error)
    }
    fn compatible(a: &[Tensor], b: &[Tensor]) -> bool {
        pairwise(a, b, |x, y| x.size()[1..] == y.size()[1..])
    }
}

/// Inputs are padded with zeros at the end of each dimension to the largest in the
/// batch, then concatenated: for sequence models with an attention mask (token ids and
/// mask padded with 0), where padding does not change the result. Outputs are split back
/// along dimension 0 and keep the padded length.
#[derive(Debug)]
pub enum PadZeros {}

impl BatchPolicy for PadZeros {
    fn join(tensors: &[&Tensor]) -> Result<Tensor> {
        let sizes: Vec<Vec<i64>> = tensors.iter().map(|t| t.size()).collect();
        let rank = sizes[0].len();
        let max: Vec<i64> = (0..rank).map(|d| sizes.iter().map(|s| s[d]).max().unwrap_or(0)).collect();
        let padded = tensors
            .iter()
            .zip(&sizes)
            .map(|(t, size)| {
                // constant_pad_nd takes (before, after) pairs from the last dimension back.
                let pad: Vec<i64> = (1..rank).rev().flat_map(|d| [0, max[d] - size[d]]).collect();
                if pad.iter().all(|p| *p == 0) {
                    Ok(t.shallow_clone())
                } else {
                    t.f_constant_pad_nd(pad.as_slice())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(torch_error)?;
        Tensor::f_cat(&padded, 0).map_err(torch_error)
    }
    fn compatible(a: &[Tensor], b: &[Tensor]) -> bool {
        pairwise(a, b, |_, _| true)
    }
}

/// The torch backend for `#[runner(backend = ...)]`: the model is a [`TorchModule`],
/// `I` what `forward` takes and `O` what it returns ([`Tensors`]: a `Tensor`, a tuple or
/// a `Vec`), `P` how requests are batched ([`Concat`] or [`PadZeros`]).
///
/// ```no_run
/// use runner_core::runner;
/// use runner_torch::{Torch, TensorData};
/// use tch::Tensor;
///
/// pub struct Scaled;
///
/// #[runner(name = "scaled", backend = Torch)]
/// impl Scaled {
///     fn preprocess_data(data: TensorData) -> runner_core::Result<Tensor> {
///         Ok(data.to_tensor()? / 255.0)
///     }
///     fn postprocess_data(data: Tensor) -> runner_core::Result<Vec<i64>> {
///         Vec::<i64>::try_from(&data.argmax(-1, false)).map_err(|e| runner_core::Error::msg(e.to_string()))
///     }
/// }
/// ```
pub struct Torch<I = Tensor, O = Tensor, P = Concat>(PhantomData<fn(I, P) -> O>);

impl<I: Tensors, O: Tensors, P: BatchPolicy> Backend for Torch<I, O, P> {
    type Model = TorchModule;
    type Input = I;
    type Output = O;
    const REQUIREMENTS: &'static [&'static str] = &["torch==2.13.0"];

    fn prepare(model: &TorchModule, input: I) -> Result<I> {
        let specs = &model.signature().inputs;
        if specs.is_empty() {
            return Ok(input);
        }
        let tensors = input.into_tensors();
        if tensors.len() != specs.len() {
            return Err(Error::invalid_input(format!(
                "the model takes {} input tensor(s) ({}), got {}",
                specs.len(),
                specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
                tensors.len()
            )));
        }
        let checked = tensors
            .into_iter()
            .zip(specs)
            .map(|(tensor, spec)| {
                let shape = tensor.size();
                if !spec.fits(&shape) {
                    return Err(Error::invalid_input(format!(
                        "input `{}` has shape {shape:?}, but the model takes {:?} (-1: any size)",
                        spec.name, spec.shape
                    )));
                }
                let dtype = DType::of_kind(tensor.kind())?;
                if dtype == spec.dtype {
                    return Ok(tensor);
                }
                // Numbers cast within floats and within integers, and integers widen to floats
                // (JSON `1` for a float input); floats to integers and booleans are refused.
                let castable = match (spec.dtype.is_float(), dtype.is_float()) {
                    (true, _) => dtype != DType::Bool,
                    (false, false) => spec.dtype != DType::Bool && dtype != DType::Bool,
                    (false, true) => false,
                };
                if castable {
                    return tensor.f_to_kind(spec.dtype.kind()).map_err(torch_error);
                }
                Err(Error::invalid_input(format!(
                    "input `{}` is {dtype}, but the model takes {}; send {} values",
                    spec.name,
                    spec.dtype,
                    if spec.dtype == DType::Bool { "boolean" } else { "integer" }
                )))
            })
            .collect::<Result<Vec<_>>>()?;
        I::from_tensors(checked)
    }

    fn predict(model: &TorchModule, input: I) -> Result<O> {
        O::from_tensors(model.forward(input.into_tensors())?)
    }

    fn predict_batch(model: &TorchModule, inputs: Vec<I>) -> Result<Vec<O>> {
        let inputs: Vec<Vec<Tensor>> = inputs.into_iter().map(Tensors::into_tensors).collect();
        // Groups of inputs that may share a forward pass, in arrival order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            match groups.iter_mut().find(|g| P::compatible(&inputs[g[0]], input)) {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        let mut inputs: Vec<Option<Vec<Tensor>>> = inputs.into_iter().map(Some).collect();
        let mut outputs: BTreeMap<usize, O> = BTreeMap::new();
        for group in groups {
            if let [alone] = group[..] {
                let input = inputs[alone].take().expect("each input is in one group");
                outputs.insert(alone, O::from_tensors(model.forward(input)?)?);
                continue;
            }
            let members: Vec<&Vec<Tensor>> =
                group.iter().map(|&i| inputs[i].as_ref().expect("each input is in one group")).collect();
            // Every member has rank > 0 (Concat and PadZeros group only those with others).
            let rows: Vec<i64> = members.iter().map(|input| input.first().map_or(1, |t| t.size()[0])).collect();
            let joined = (0..members[0].len())
                .map(|k| P::join(&members.iter().map(|input| &input[k]).collect::<Vec<_>>()))
                .collect::<Result<Vec<_>>>()?;
            let results = model.forward(joined)?;
            let total: i64 = rows.iter().sum();
            let mut split: Vec<Vec<Tensor>> = group.iter().map(|_| Vec::with_capacity(results.len())).collect();
            for result in results {
                if result.size().first() != Some(&total) {
                    return Err(Error::msg(format!(
                        "a batched output has shape {:?}, whose first dimension is not the batch's {total} rows; batch only modules whose outputs keep the batch dimension first",
                        result.size()
                    )));
                }
                for (part, piece) in
                    split.iter_mut().zip(result.f_split_with_sizes(rows.as_slice(), 0).map_err(torch_error)?)
                {
                    part.push(piece);
                }
            }
            for (i, tensors) in group.into_iter().zip(split) {
                outputs.insert(i, O::from_tensors(tensors)?);
            }
        }
        Ok(outputs.into_values().collect())
    }

    fn save(model: &TorchModule, dir: &SaveDir) -> Result<Props> {
        model.save(dir)
    }

    fn load(props: Option<Props>, artifacts: &Artifacts) -> Result<TorchModule> {
        TorchModule::load_saved(props, artifacts)
    }

    fn v2_signature(model: &TorchModule) -> Option<v2::Signature> {
        Some(model.signature().v2())
    }

    fn v2_decode(model: &TorchModule, inputs: Vec<v2::Tensor>) -> Result<I> {
        let specs = &model.signature().inputs;
        let ordered: Vec<v2::Tensor> = if specs.is_empty() {
            inputs
        } else {
            let mut by_name: BTreeMap<String, v2::Tensor> = BTreeMap::new();
            for input in inputs {
                if !specs.iter().any(|s| s.name == input.name) {
                    return Err(Error::invalid_input(format!(
                        "unknown input `{}`; the model takes {}",
                        input.name,
                        specs.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ")
                    )));
                }
                if let Some(dup) = by_name.insert(input.name.clone(), input) {
                    return Err(Error::invalid_input(format!("input `{}` is given twice", dup.name)));
                }
            }
            specs
                .iter()
                .map(|s| {
                    by_name.remove(&s.name).ok_or_else(|| Error::invalid_input(format!("missing input `{}`", s.name)))
                })
                .collect::<Result<_>>()?
        };
        let tensors = ordered.iter().map(v2_tensor).collect::<Result<Vec<_>>>()?;
        I::from_tensors(tensors)
    }

    fn v2_encode(model: &TorchModule, output: O) -> Result<Vec<v2::Tensor>> {
        let specs = &model.signature().outputs;
        output
            .into_tensors()
            .iter()
            .enumerate()
            .map(|(i, tensor)| {
                let name = specs.get(i).map_or_else(|| format!("output__{i}"), |s| s.name.clone());
                v2_output(name, tensor)
            })
            .collect()
    }
}

/// An output tensor as a V2 tensor holding its bytes (little-endian, row-major), copied
/// once out of the tensor: binary outputs and gRPC send them as they are, JSON outputs
/// are written from them.
fn v2_output(name: String, tensor: &Tensor) -> Result<v2::Tensor> {
    let dtype = DType::of_kind(tensor.kind())?;
    let tensor = tensor.f_contiguous().map_err(torch_error)?;
    let tensor = if tensor.device() == tch::Device::Cpu {
        tensor
    } else {
        tensor.f_to_device(tch::Device::Cpu).map_err(torch_error)?
    };
    let count = tensor.numel();
    let mut raw = vec![0u8; count * tensor.kind().elt_size_in_bytes()];
    tensor.f_copy_data_u8(&mut raw, count).map_err(torch_error)?;
    let mut output = v2::Tensor::json(name, tensor.size(), dtype.v2_name(), serde_json::Value::Null);
    output.raw = Some(raw.into());
    Ok(output)
}

/// A V2 input as a CPU tensor: binary data (the binary tensor extension) straight into
/// the tensor in one copy, JSON data parsed and checked.
fn v2_tensor(input: &v2::Tensor) -> Result<Tensor> {
    let Some(raw) = &input.raw else { return TensorData::from_v2(input)?.to_tensor() };
    let dtype =
        DType::parse(&input.datatype).map_err(|e| Error::invalid_input(format!("input `{}`: {e}", input.name)))?;
    // The protocol layer checked that the bytes are the shape's element count times the
    // datatype's size; libtorch's element size is the same for every dtype it has.
    Tensor::f_from_data_size(raw, &input.shape, dtype.kind()).map_err(torch_error)
}
