//! The ONNX [`Backend`]: inputs checked against the graph's signature, batching along
//! dimension 0, and the V2 protocol.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use runner_core::{v2, Artifacts, Backend, Error, Props, Result, SaveDir};

use crate::model::{OnnxModel, Tensors};
use crate::tensor::Tensor;

/// How requests are joined into one run.
pub trait BatchPolicy: Send + Sync + 'static {
    /// Whether tensors whose dimensions past the first differ are padded with zeros (at
    /// the end of each dimension) to the largest in the batch, rather than run apart.
    const PAD: bool;
}

/// Inputs are concatenated along dimension 0; inputs whose other dimensions differ run
/// apart (never padded, so no input changes meaning).
#[derive(Debug)]
pub enum Concat {}

impl BatchPolicy for Concat {
    const PAD: bool = false;
}

/// Inputs are padded with zeros to the largest in the batch, then concatenated: for
/// sequence models with an attention mask (token ids and mask padded with 0), where
/// padding does not change the result. Outputs keep the padded length.
#[derive(Debug)]
pub enum PadZeros {}

impl BatchPolicy for PadZeros {
    const PAD: bool = true;
}

/// The ONNX backend for `#[runner(backend = ...)]`: the model is an [`OnnxModel`], its
/// input and output are [`Tensors`] by name, and `P` says how requests are batched
/// ([`Concat`] or [`PadZeros`]).
///
/// ```no_run
/// use runner_core::{runner, Result};
/// use runner_onnx::{Onnx, Tensor, Tensors};
///
/// pub struct Flowers;
///
/// #[runner(name = "flowers", backend = Onnx, max_batch_size = 32, max_delay_ms = 2)]
/// impl Flowers {
///     fn preprocess_data(rows: Vec<[f32; 4]>) -> Result<Tensors> {
///         let n = rows.len() as i64;
///         Ok(Tensors::new().with("features", Tensor::from_vec([n, 4], rows.concat())?))
///     }
///     fn postprocess_data(outputs: Tensors) -> Result<Vec<i64>> {
///         outputs.get("label").ok_or_else(|| runner_core::Error::msg("no label"))?.to_vec::<i64>()
///     }
/// }
/// ```
pub struct Onnx<P = Concat>(PhantomData<fn(P)>);

impl<P: BatchPolicy> Backend for Onnx<P> {
    type Model = OnnxModel;
    type Input = Tensors;
    type Output = Tensors;
    const REQUIREMENTS: &'static [&'static str] = &["onnxruntime==1.31.*"];

    fn prepare(model: &OnnxModel, input: Tensors) -> Result<Tensors> {
        check(model, input)
    }

    fn predict(model: &OnnxModel, input: Tensors) -> Result<Tensors> {
        model.run(&input)
    }

    fn predict_batch(model: &OnnxModel, inputs: Vec<Tensors>) -> Result<Vec<Tensors>> {
        let specs = &model.signature().inputs;
        let batchable = !specs.is_empty() && specs.iter().all(|s| s.shape.first() == Some(&-1));
        // Groups of inputs that may share a run, in arrival order.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let joins = |group: &Vec<usize>| batchable && compatible::<P>(model, &inputs[group[0]], input);
            match groups.iter_mut().find(|g| joins(g)) {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        let mut outputs: BTreeMap<usize, Tensors> = BTreeMap::new();
        for group in groups {
            if let [alone] = group[..] {
                outputs.insert(alone, model.run(&inputs[alone])?);
                continue;
            }
            let first = &specs[0].name;
            let rows: Vec<i64> = group.iter().map(|&i| inputs[i].get(first).map_or(1, Tensor::rows)).collect();
            let joined = specs
                .iter()
                .map(|spec| {
                    let parts: Vec<&Tensor> = group
                        .iter()
                        .map(|&i| inputs[i].get(&spec.name).expect("prepare checked every input is there"))
                        .collect();
                    Ok((spec.name.clone(), Tensor::concat(&parts, P::PAD)?))
                })
                .collect::<Result<Tensors>>()?;
            let results = model.run(&joined)?;
            let total: i64 = rows.iter().sum();
            let mut split: Vec<Tensors> = group.iter().map(|_| Tensors::new()).collect();
            for (name, result) in results {
                if result.shape().first() != Some(&total) {
                    return Err(Error::msg(format!(
                        "batched output `{name}` has shape {:?}, whose first dimension is not the batch's {total} rows; serve this model unbatched",
                        result.shape()
                    )));
                }
                let mut start = 0;
                for (part, &n) in split.iter_mut().zip(&rows) {
                    part.insert(name.clone(), result.rows_slice(start, n));
                    start += n;
                }
            }
            for (i, tensors) in group.into_iter().zip(split) {
                outputs.insert(i, tensors);
            }
        }
        Ok(outputs.into_values().collect())
    }

    fn save(model: &OnnxModel, dir: &SaveDir) -> Result<Props> {
        model.save(dir)
    }

    fn load(props: Option<Props>, artifacts: &Artifacts) -> Result<OnnxModel> {
        OnnxModel::load_saved(props, artifacts)
    }

    fn v2_signature(model: &OnnxModel) -> Option<v2::Signature> {
        Some(model.signature().v2())
    }

    fn v2_decode(_model: &OnnxModel, inputs: Vec<v2::Tensor>) -> Result<Tensors> {
        let mut tensors = Tensors::new();
        for input in &inputs {
            if tensors.get(&input.name).is_some() {
                return Err(Error::invalid_input(format!("input `{}` is given twice", input.name)));
            }
            tensors.insert(input.name.clone(), Tensor::from_v2(input)?);
        }
        Ok(tensors)
    }

    fn v2_encode(_model: &OnnxModel, output: Tensors) -> Result<Vec<v2::Tensor>> {
        Ok(output.iter().map(|(name, tensor)| tensor.to_v2(name)).collect())
    }
}

/// Whether two checked inputs may share a run: every tensor of one datatype and rank,
/// and (without padding) equal past dimension 0.
fn compatible<P: BatchPolicy>(model: &OnnxModel, a: &Tensors, b: &Tensors) -> bool {
    model.signature().inputs.iter().all(|spec| match (a.get(&spec.name), b.get(&spec.name)) {
        (Some(x), Some(y)) => {
            x.datatype() == y.datatype()
                && x.datatype().size().is_some()
                && !x.shape().is_empty()
                && x.shape().len() == y.shape().len()
                && (P::PAD || x.shape()[1..] == y.shape()[1..])
        }
        _ => false,
    })
}

/// `input` checked against the graph's signature: every input there, none unknown, each
/// of its datatype (numbers cast where no value changes meaning) and shape. Errors name
/// the input, what the graph takes and what came.
fn check(model: &OnnxModel, mut input: Tensors) -> Result<Tensors> {
    let specs = &model.signature().inputs;
    let names = || specs.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ");
    if let Some((unknown, _)) = input.iter().find(|(name, _)| !specs.iter().any(|s| s.name == *name)) {
        return Err(Error::invalid_input(format!("unknown input `{unknown}`; the model takes {}", names())));
    }
    let mut checked = Tensors::new();
    for spec in specs {
        let takes = || format!("{} of shape {}", spec.datatype, spec.describe_shape());
        let tensor = input.remove(&spec.name).ok_or_else(|| {
            Error::invalid_input(format!("missing input `{}` ({}); the model takes {}", spec.name, takes(), names()))
        })?;
        if !spec.fits(tensor.shape()) {
            return Err(Error::invalid_input(format!(
                "input `{}` takes {}, but has shape {:?}",
                spec.name,
                takes(),
                tensor.shape()
            )));
        }
        let came = tensor.datatype();
        let tensor = tensor
            .cast(spec.datatype)
            .ok_or_else(|| Error::invalid_input(format!("input `{}` takes {}, but is {came}", spec.name, takes())))?;
        checked.insert(spec.name.clone(), tensor);
    }
    Ok(checked)
}
