//! Tensors as JSON, as [`OnnxRunner`](crate::OnnxRunner) reads and writes them: nested
//! arrays, or `{"shape", "datatype", "data"}`, by name. A runner of its own that keeps
//! this JSON and adds to it calls these from its hooks.

use runner_core::{v2, Error, Result};
use serde_json::{Map, Value};

use crate::model::{OnnxModel, Tensors};
use crate::tensor::{DataType, Tensor};

/// The request body as the graph's inputs: an object of tensors by input name, or (when
/// the graph has one input) that input's tensor alone. A tensor is nested arrays (its
/// shape is their nesting) or `{"shape": [..], "datatype": "FP32", "data": [..]}` (flat or
/// nested data; `datatype` defaults to the input's). Elements of nested arrays take the
/// input's datatype.
pub fn inputs(model: &OnnxModel, body: Value) -> Result<Tensors> {
    let specs = &model.signature().inputs;
    let by_name = match body {
        Value::Object(map) if specs.iter().any(|s| map.contains_key(&s.name)) || !is_explicit(&map) => map,
        single if specs.len() == 1 => Map::from_iter([(specs[0].name.clone(), single)]),
        _ => {
            let names: Vec<String> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
            return Err(Error::invalid_input(format!(
                "send an object of the model's inputs by name ({}), each nested arrays or {{\"shape\", \"datatype\", \"data\"}}",
                names.join(", ")
            )));
        }
    };
    by_name
        .into_iter()
        .map(|(name, value)| {
            // Unknown names are reported by the backend's check, with the known ones.
            let datatype = specs.iter().find(|s| s.name == name).map_or(DataType::F32, |s| s.datatype);
            let tensor = tensor(&name, value, datatype)?;
            Ok((name, tensor))
        })
        .collect()
}

fn is_explicit(map: &Map<String, Value>) -> bool {
    map.contains_key("data")
}

fn tensor(name: &str, value: Value, datatype: DataType) -> Result<Tensor> {
    let (shape, datatype, data) = match value {
        Value::Object(mut map) if is_explicit(&map) => {
            let datatype = match map.remove("datatype").or_else(|| map.remove("dtype")) {
                Some(Value::String(d)) => {
                    DataType::parse(&d).map_err(|e| Error::invalid_input(format!("input `{name}`: {e}")))?
                }
                Some(other) => {
                    return Err(Error::invalid_input(format!("input `{name}`: `datatype` is {other}, not a name")))
                }
                None => datatype,
            };
            let data = map.remove("data").unwrap_or(Value::Null);
            let shape = match map.remove("shape") {
                Some(shape) => serde_json::from_value::<Vec<i64>>(shape).map_err(|_| {
                    Error::invalid_input(format!("input `{name}`: `shape` must be a list of whole numbers"))
                })?,
                None => nested_shape(name, &data)?,
            };
            (shape, datatype, data)
        }
        Value::Object(_) => {
            return Err(Error::invalid_input(format!(
            "input `{name}` is an object without `data`; send nested arrays or {{\"shape\", \"datatype\", \"data\"}}"
        )))
        }
        nested => (nested_shape(name, &nested)?, datatype, nested),
    };
    let wire = v2::Tensor::json(name, shape.clone(), datatype.name(), data);
    let raw = wire.to_raw().map_err(|e| Error::invalid_input(e.to_string()))?;
    Tensor::from_raw(datatype, shape, raw).map_err(|e| Error::invalid_input(format!("input `{name}`: {e}")))
}

/// The shape of nested arrays, checking that every level is regular.
fn nested_shape(name: &str, value: &Value) -> Result<Vec<i64>> {
    let mut shape = Vec::new();
    let mut level = value;
    while let Value::Array(items) = level {
        shape.push(items.len() as i64);
        match items.first() {
            Some(first) => level = first,
            None => break,
        }
    }
    fn regular(value: &Value, shape: &[i64]) -> bool {
        match (value, shape.split_first()) {
            (Value::Array(items), Some((&n, rest))) => {
                items.len() as i64 == n && items.iter().all(|item| regular(item, rest))
            }
            (Value::Array(_), None) => false,
            (_, rest) => rest.is_none(),
        }
    }
    if regular(value, &shape) {
        Ok(shape)
    } else {
        Err(Error::invalid_input(format!(
            "input `{name}` is ragged: every row of nested arrays must have the same length (first rows give shape {shape:?})"
        )))
    }
}

/// The graph's outputs as an object of nested arrays by output name (strings for
/// `BYTES`).
pub fn outputs(outputs: Tensors) -> Result<Value> {
    outputs
        .iter()
        .map(|(name, tensor)| {
            let flat = tensor.to_v2(name).to_json()?;
            let Value::Array(items) = flat else { return Ok((name.to_string(), flat)) };
            Ok((name.to_string(), nest(&mut items.into_iter(), tensor.shape())))
        })
        .collect::<Result<Map<String, Value>>>()
        .map(Value::Object)
}

fn nest(items: &mut impl Iterator<Item = Value>, shape: &[i64]) -> Value {
    match shape.split_first() {
        None => items.next().unwrap_or(Value::Null),
        Some((&n, rest)) => Value::Array((0..n).map(|_| nest(items, rest)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_arrays_give_their_shape_and_ragged_ones_are_refused() {
        assert_eq!(nested_shape("x", &json!([[1, 2, 3], [4, 5, 6]])).unwrap(), [2, 3]);
        assert_eq!(nested_shape("x", &json!(7)).unwrap(), Vec::<i64>::new());
        assert_eq!(nested_shape("x", &json!([])).unwrap(), [0]);
        let ragged = nested_shape("x", &json!([[1, 2], [3]])).unwrap_err().to_string();
        assert!(ragged.contains("input `x` is ragged"), "{ragged}");
        assert!(nested_shape("x", &json!([[1, 2], 3])).is_err());
    }

    #[test]
    fn explicit_and_nested_tensors_read_alike() {
        let nested = tensor("x", json!([[1, 2], [3, 4]]), DataType::F32).unwrap();
        let explicit = tensor("x", json!({"shape": [2, 2], "data": [1, 2, 3, 4]}), DataType::F32).unwrap();
        assert_eq!(nested, explicit);
        assert_eq!(nested.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0]);
        let typed = tensor("x", json!({"shape": [2], "datatype": "INT64", "data": [1, 2]}), DataType::F32).unwrap();
        assert_eq!(typed.to_vec::<i64>().unwrap(), [1, 2]);
        let wrong = tensor("ids", json!([1.5]), DataType::I64).unwrap_err().to_string();
        assert!(wrong.contains("`ids`") && wrong.contains("1.5"), "{wrong}");
    }

    #[test]
    fn outputs_nest_by_shape() {
        let out = Tensors::new()
            .with("p", Tensor::from_vec([2, 2], vec![0.25f32, 0.75, 1.0, 0.0]).unwrap())
            .with("label", Tensor::from_strings([2], &["a", "b"]).unwrap());
        assert_eq!(outputs(out).unwrap(), json!({"p": [[0.25, 0.75], [1.0, 0.0]], "label": ["a", "b"]}));
    }
}
