//! Tensors on the CPU in the wire's layout (the V2 protocol's: little-endian, row-major;
//! `BYTES` elements each a 4-byte length and its bytes), and their conversion to and from
//! ONNX Runtime values, one copy each way.

use bytes::Bytes;
use half::{bf16, f16};
use ort::value::{DynValue, TensorElementType, ValueType};
use runner_core::{v2, Error, Result};

/// The element type of a tensor, by its V2 protocol name (`FP32`, `INT64`, `BYTES`...).
///
/// These are the ONNX tensor types the protocol can carry; ONNX strings are `BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DataType {
    /// `BOOL` (ONNX `bool`)
    #[serde(rename = "BOOL")]
    Bool,
    /// `UINT8`
    #[serde(rename = "UINT8")]
    U8,
    /// `UINT16`
    #[serde(rename = "UINT16")]
    U16,
    /// `UINT32`
    #[serde(rename = "UINT32")]
    U32,
    /// `UINT64`
    #[serde(rename = "UINT64")]
    U64,
    /// `INT8`
    #[serde(rename = "INT8")]
    I8,
    /// `INT16`
    #[serde(rename = "INT16")]
    I16,
    /// `INT32`
    #[serde(rename = "INT32")]
    I32,
    /// `INT64`
    #[serde(rename = "INT64")]
    I64,
    /// `FP16` (ONNX `float16`)
    #[serde(rename = "FP16")]
    F16,
    /// `BF16` (ONNX `bfloat16`)
    #[serde(rename = "BF16")]
    BF16,
    /// `FP32` (ONNX `float`)
    #[serde(rename = "FP32")]
    F32,
    /// `FP64` (ONNX `double`)
    #[serde(rename = "FP64")]
    F64,
    /// `BYTES` (ONNX `string`): UTF-8 text.
    #[serde(rename = "BYTES")]
    Bytes,
}

const TYPES: [(DataType, &str, TensorElementType); 14] = [
    (DataType::Bool, "BOOL", TensorElementType::Bool),
    (DataType::U8, "UINT8", TensorElementType::Uint8),
    (DataType::U16, "UINT16", TensorElementType::Uint16),
    (DataType::U32, "UINT32", TensorElementType::Uint32),
    (DataType::U64, "UINT64", TensorElementType::Uint64),
    (DataType::I8, "INT8", TensorElementType::Int8),
    (DataType::I16, "INT16", TensorElementType::Int16),
    (DataType::I32, "INT32", TensorElementType::Int32),
    (DataType::I64, "INT64", TensorElementType::Int64),
    (DataType::F16, "FP16", TensorElementType::Float16),
    (DataType::BF16, "BF16", TensorElementType::Bfloat16),
    (DataType::F32, "FP32", TensorElementType::Float32),
    (DataType::F64, "FP64", TensorElementType::Float64),
    (DataType::Bytes, "BYTES", TensorElementType::String),
];

impl DataType {
    /// Its V2 protocol name, e.g. `FP32`.
    pub fn name(self) -> &'static str {
        TYPES.iter().find(|(d, ..)| *d == self).map(|(_, name, _)| *name).expect("every type is listed")
    }

    /// The type of a V2 name (case-insensitive), or an error listing the known ones.
    pub fn parse(name: &str) -> Result<DataType> {
        TYPES.iter().find(|(_, n, _)| n.eq_ignore_ascii_case(name)).map(|(d, ..)| *d).ok_or_else(|| {
            let known: Vec<&str> = TYPES.iter().map(|(_, n, _)| *n).collect();
            Error::invalid_input(format!("unknown datatype `{name}`; use one of {}", known.join(", ")))
        })
    }

    /// The type of an ONNX Runtime element type, if the protocol can carry it.
    pub fn of_onnx(ty: TensorElementType) -> Result<DataType> {
        TYPES.iter().find(|(.., t)| *t == ty).map(|(d, ..)| *d).ok_or_else(|| {
            Error::msg(format!(
                "ONNX tensors of type {ty} have no V2 datatype; serve graphs whose inputs and outputs are booleans, integers, floats or strings"
            ))
        })
    }

    /// The size of one element in bytes; `None` for `BYTES`.
    pub fn size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => Some(1),
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => Some(2),
            DataType::U32 | DataType::I32 | DataType::F32 => Some(4),
            DataType::U64 | DataType::I64 | DataType::F64 => Some(8),
            DataType::Bytes => None,
        }
    }

    /// A floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64)
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust element type of a [`Tensor`]: the numbers, `bool`, and `f16`/`bf16`.
pub trait Element: Copy + Send + Sync + 'static {
    /// Its datatype.
    const TYPE: DataType;
    /// Appends its little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
    /// Reads one from its little-endian bytes (exactly its size).
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! numbers {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl Element for $t {
            const TYPE: DataType = DataType::$d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("one element's bytes"))
            }
        }
    )*};
}
numbers!(u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    f16 => F16, bf16 => BF16, f32 => F32, f64 => F64);

impl Element for bool {
    const TYPE: DataType = DataType::Bool;
    fn put(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn get(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

/// A tensor on the CPU: its datatype, shape, and elements in the V2 protocol's binary
/// layout (little-endian, row-major; each `BYTES` element a 4-byte little-endian length
/// and its bytes).
///
/// ```
/// use runner_onnx::{DataType, Tensor};
/// let t = Tensor::from_vec([2, 2], vec![1.0f32, 2.0, 3.0, 4.0])?;
/// assert_eq!((t.datatype(), t.shape()), (DataType::F32, &[2i64, 2][..]));
/// assert_eq!(t.to_vec::<f32>()?, [1.0, 2.0, 3.0, 4.0]);
/// # Ok::<(), runner_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    datatype: DataType,
    shape: Vec<i64>,
    data: Bytes,
}

impl Tensor {
    /// A tensor of `values` in row-major order; their number must be the shape's.
    pub fn from_vec<T: Element>(shape: impl Into<Vec<i64>>, values: Vec<T>) -> Result<Tensor> {
        let shape = shape.into();
        let count = element_count(&shape)?;
        if count != values.len() {
            return Err(Error::invalid_input(format!(
                "shape {shape:?} holds {count} elements, but {} were given",
                values.len()
            )));
        }
        let mut data = Vec::with_capacity(values.len() * T::TYPE.size().unwrap_or(1));
        values.into_iter().for_each(|v| v.put(&mut data));
        Ok(Tensor { datatype: T::TYPE, shape, data: data.into() })
    }

    /// A `BYTES` tensor of strings in row-major order.
    pub fn from_strings<S: AsRef<str>>(shape: impl Into<Vec<i64>>, values: &[S]) -> Result<Tensor> {
        let shape = shape.into();
        let count = element_count(&shape)?;
        if count != values.len() {
            return Err(Error::invalid_input(format!(
                "shape {shape:?} holds {count} elements, but {} were given",
                values.len()
            )));
        }
        let mut data = Vec::new();
        for value in values {
            let bytes = value.as_ref().as_bytes();
            data.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            data.extend_from_slice(bytes);
        }
        Ok(Tensor { datatype: DataType::Bytes, shape, data: data.into() })
    }

    /// A tensor of `data` already in the wire layout, checked against the shape.
    pub fn from_raw(datatype: DataType, shape: impl Into<Vec<i64>>, data: Bytes) -> Result<Tensor> {
        let tensor = Tensor { datatype, shape: shape.into(), data };
        tensor.check()?;
        Ok(tensor)
    }

    /// Its datatype.
    pub fn datatype(&self) -> DataType {
        self.datatype
    }

    /// Its shape.
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// Its elements in the wire layout.
    pub fn raw(&self) -> &Bytes {
        &self.data
    }

    /// Its elements as `T`, which must be its datatype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if self.datatype != T::TYPE {
            return Err(Error::msg(format!(
                "the tensor holds {}, not {}; read it as its own type",
                self.datatype,
                T::TYPE
            )));
        }
        let size = T::TYPE.size().expect("elements have a size");
        Ok(self.data.chunks_exact(size).map(T::get).collect())
    }

    /// The elements of a `BYTES` tensor as text (each must be UTF-8).
    pub fn to_strings(&self) -> Result<Vec<String>> {
        if self.datatype != DataType::Bytes {
            return Err(Error::msg(format!("the tensor holds {}, not BYTES", self.datatype)));
        }
        v2::bytes_elements("tensor", &self.data)?
            .into_iter()
            .map(|b| {
                String::from_utf8(b.to_vec())
                    .map_err(|_| Error::invalid_input("a BYTES element is not UTF-8; ONNX strings must be text"))
            })
            .collect()
    }

    /// The size of dimension 0 (1 for a scalar).
    pub(crate) fn rows(&self) -> i64 {
        self.shape.first().copied().unwrap_or(1)
    }

    /// A V2 tensor named `name` holding these elements (no copy).
    pub fn to_v2(&self, name: impl Into<String>) -> v2::Tensor {
        let mut tensor = v2::Tensor::json(name, self.shape.clone(), self.datatype.name(), serde_json::Value::Null);
        tensor.raw = Some(self.data.clone());
        tensor
    }

    /// A V2 input as a tensor: its binary data as it came (no copy), or its JSON data
    /// converted.
    pub fn from_v2(tensor: &v2::Tensor) -> Result<Tensor> {
        let datatype = DataType::parse(&tensor.datatype)
            .map_err(|e| Error::invalid_input(format!("input `{}`: {e}", tensor.name)))?;
        let data = tensor.to_raw().map_err(|e| Error::invalid_input(e.to_string()))?;
        Tensor::from_raw(datatype, tensor.shape.clone(), data)
            .map_err(|e| Error::invalid_input(format!("input `{}`: {e}", tensor.name)))
    }

    /// This tensor converted to `datatype`, when no value changes meaning: integers and
    /// floats widen or narrow within their kind, integers become floats (JSON `1` for a
    /// float input). Floats to integers, and anything to or from booleans or strings, is
    /// refused.
    pub(crate) fn cast(self, datatype: DataType) -> Option<Tensor> {
        if self.datatype == datatype {
            return Some(self);
        }
        let numeric = |d: DataType| !matches!(d, DataType::Bool | DataType::Bytes);
        if !numeric(self.datatype) || !numeric(datatype) || (self.datatype.is_float() && !datatype.is_float()) {
            return None;
        }
        let name = "tensor";
        let mut wire = v2::Tensor::json(name, self.shape.clone(), self.datatype.name(), serde_json::Value::Null);
        wire.raw = Some(self.data);
        let json = wire.to_json().ok()?;
        let converted = v2::Tensor::json(name, self.shape.clone(), datatype.name(), json);
        Some(Tensor { datatype, shape: self.shape, data: converted.to_raw().ok()? })
    }

    fn check(&self) -> Result<()> {
        let count = element_count(&self.shape)?;
        match self.datatype.size() {
            Some(size) if count.checked_mul(size) == Some(self.data.len()) => Ok(()),
            Some(size) => Err(Error::invalid_input(format!(
                "{} of shape {:?} needs {} bytes, but has {}",
                self.datatype,
                self.shape,
                count.saturating_mul(size),
                self.data.len()
            ))),
            None => {
                let found = v2::bytes_elements("tensor", &self.data)?.len();
                if found == count {
                    Ok(())
                } else {
                    Err(Error::invalid_input(format!(
                        "BYTES of shape {:?} needs {count} elements, but holds {found}",
                        self.shape
                    )))
                }
            }
        }
    }

    /// An ONNX Runtime value holding these elements (one copy: into a buffer of the
    /// element type, which ONNX Runtime then uses in place).
    pub(crate) fn to_onnx(&self) -> Result<DynValue> {
        let shape: Vec<i64> = self.shape.clone();
        fn typed<T: Element + ort::value::PrimitiveTensorElementType + std::fmt::Debug>(
            shape: Vec<i64>,
            data: &[u8],
        ) -> Result<DynValue> {
            let size = T::TYPE.size().expect("elements have a size");
            let values: Vec<T> = data.chunks_exact(size).map(T::get).collect();
            ort::value::Tensor::from_array((shape, values)).map(|t| t.into_dyn()).map_err(onnx_error)
        }
        let data = &self.data[..];
        match self.datatype {
            DataType::Bool => typed::<bool>(shape, data),
            DataType::U8 => typed::<u8>(shape, data),
            DataType::U16 => typed::<u16>(shape, data),
            DataType::U32 => typed::<u32>(shape, data),
            DataType::U64 => typed::<u64>(shape, data),
            DataType::I8 => typed::<i8>(shape, data),
            DataType::I16 => typed::<i16>(shape, data),
            DataType::I32 => typed::<i32>(shape, data),
            DataType::I64 => typed::<i64>(shape, data),
            DataType::F16 => typed::<f16>(shape, data),
            DataType::BF16 => typed::<bf16>(shape, data),
            DataType::F32 => typed::<f32>(shape, data),
            DataType::F64 => typed::<f64>(shape, data),
            DataType::Bytes => {
                let strings = self.to_strings()?;
                ort::value::Tensor::from_string_array((shape, strings.as_slice()))
                    .map(|t| t.into_dyn())
                    .map_err(onnx_error)
            }
        }
    }

    /// A tensor copied out of an ONNX Runtime output value (one copy).
    pub(crate) fn from_onnx(name: &str, value: &DynValue) -> Result<Tensor> {
        let ValueType::Tensor { ty, .. } = value.dtype() else {
            return Err(Error::msg(format!(
                "output `{name}` is a {:?}, not a tensor; serve graphs whose outputs are tensors (skl2onnx: disable ZipMap)",
                value.dtype()
            )));
        };
        let datatype = DataType::of_onnx(*ty)?;
        fn typed<T: Element + ort::value::PrimitiveTensorElementType>(value: &DynValue) -> Result<(Vec<i64>, Bytes)> {
            let (shape, values) = value.try_extract_tensor::<T>().map_err(onnx_error)?;
            let mut data = Vec::with_capacity(std::mem::size_of_val(values));
            values.iter().for_each(|v| v.put(&mut data));
            Ok((shape.to_vec(), data.into()))
        }
        let (shape, data) = match datatype {
            DataType::Bool => typed::<bool>(value)?,
            DataType::U8 => typed::<u8>(value)?,
            DataType::U16 => typed::<u16>(value)?,
            DataType::U32 => typed::<u32>(value)?,
            DataType::U64 => typed::<u64>(value)?,
            DataType::I8 => typed::<i8>(value)?,
            DataType::I16 => typed::<i16>(value)?,
            DataType::I32 => typed::<i32>(value)?,
            DataType::I64 => typed::<i64>(value)?,
            DataType::F16 => typed::<f16>(value)?,
            DataType::BF16 => typed::<bf16>(value)?,
            DataType::F32 => typed::<f32>(value)?,
            DataType::F64 => typed::<f64>(value)?,
            DataType::Bytes => {
                let (shape, strings) = value.try_extract_strings().map_err(onnx_error)?;
                return Tensor::from_strings(shape.to_vec(), &strings);
            }
        };
        Ok(Tensor { datatype, shape, data })
    }

    /// Tensors of one datatype and equal dimensions past the first, joined along
    /// dimension 0 (`pad`: shorter dimensions past the first are padded with zeros at
    /// their end first).
    pub(crate) fn concat(tensors: &[&Tensor], pad: bool) -> Result<Tensor> {
        let first = tensors[0];
        let rank = first.shape.len();
        let size = first.datatype.size().filter(|_| rank > 0).ok_or_else(|| {
            Error::msg("only tensors of numbers with a batch dimension can be batched; serve this runner unbatched")
        })?;
        let mut target = first.shape.clone();
        for t in tensors {
            if t.datatype != first.datatype || t.shape.len() != rank {
                return Err(Error::msg("tensors of different types or ranks cannot be batched together"));
            }
            if !pad && t.shape[1..] != first.shape[1..] {
                return Err(Error::msg("tensors of different shapes cannot be batched without padding"));
            }
            for (largest, &d) in target.iter_mut().zip(&t.shape).skip(1) {
                *largest = (*largest).max(d);
            }
        }
        target[0] = tensors.iter().map(|t| t.shape[0]).sum();
        let mut data = Vec::with_capacity(element_count(&target)? * size);
        for t in tensors {
            if t.shape[1..] == target[1..] {
                data.extend_from_slice(&t.data);
            } else {
                let mut own = target.clone();
                own[0] = t.shape[0];
                pad_into(&t.data, &t.shape, &own, size, &mut data);
            }
        }
        Ok(Tensor { datatype: first.datatype, shape: target, data: data.into() })
    }

    /// Rows `start..start + rows` of dimension 0 (no copy).
    pub(crate) fn rows_slice(&self, start: i64, rows: i64) -> Tensor {
        let row_bytes = self.data.len() / self.rows().max(1) as usize;
        let from = start as usize * row_bytes;
        let mut shape = self.shape.clone();
        shape[0] = rows;
        Tensor { datatype: self.datatype, shape, data: self.data.slice(from..from + rows as usize * row_bytes) }
    }
}

/// Copies `data` of `shape` into a region of `target` (same rank, every dimension as
/// large or larger) at its start, zeros elsewhere.
fn pad_into(data: &[u8], shape: &[i64], target: &[i64], size: usize, out: &mut Vec<u8>) {
    if shape.len() == 1 {
        out.extend_from_slice(data);
        out.resize(out.len() + (target[0] - shape[0]) as usize * size, 0);
        return;
    }
    let inner: usize = shape[1..].iter().product::<i64>() as usize * size;
    let inner_target: usize = target[1..].iter().product::<i64>() as usize * size;
    for row in 0..shape[0] as usize {
        pad_into(&data[row * inner..(row + 1) * inner], &shape[1..], &target[1..], size, out);
    }
    // Rows past this tensor's own (only in dimensions after the first).
    let missing = (target[0] - shape[0]) as usize;
    out.resize(out.len() + missing * inner_target, 0);
}

fn element_count(shape: &[i64]) -> Result<usize> {
    shape.iter().try_fold(1usize, |count, &d| {
        let d = usize::try_from(d)
            .map_err(|_| Error::invalid_input(format!("shape {shape:?} has a negative dimension")))?;
        count.checked_mul(d).ok_or_else(|| Error::invalid_input(format!("shape {shape:?} is too large")))
    })
}

pub(crate) fn onnx_error(e: impl std::fmt::Display) -> Error {
    Error::msg(format!("ONNX Runtime: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_round_trip_in_the_wire_layout() {
        let t = Tensor::from_vec([3], vec![1i64, -2, 3]).unwrap();
        assert_eq!(t.raw().len(), 24);
        assert_eq!(t.to_vec::<i64>().unwrap(), [1, -2, 3]);
        assert!(t.to_vec::<f32>().unwrap_err().to_string().contains("holds INT64, not FP32"));
        let s = Tensor::from_strings([2], &["héllo", ""]).unwrap();
        assert_eq!(s.to_strings().unwrap(), ["héllo", ""]);
        assert!(Tensor::from_vec([2, 2], vec![1.0f32]).unwrap_err().to_string().contains("holds 4 elements"));
        assert!(Tensor::from_raw(DataType::F32, [2], Bytes::from_static(&[0; 7])).is_err());
    }

    #[test]
    fn casts_keep_meaning_or_are_refused() {
        let ints = Tensor::from_vec([2], vec![1i64, 2]).unwrap();
        assert_eq!(ints.clone().cast(DataType::F32).unwrap().to_vec::<f32>().unwrap(), [1.0, 2.0]);
        let floats = Tensor::from_vec([1], vec![1.5f64]).unwrap();
        assert!(floats.clone().cast(DataType::I64).is_none());
        assert_eq!(floats.cast(DataType::F32).unwrap().to_vec::<f32>().unwrap(), [1.5]);
        assert!(Tensor::from_vec([1], vec![true]).unwrap().cast(DataType::I64).is_none());
    }

    #[test]
    fn concat_pads_with_zeros_at_the_end_of_each_dimension() {
        let a = Tensor::from_vec([1, 2], vec![1i64, 2]).unwrap();
        let b = Tensor::from_vec([2, 3], vec![3i64, 4, 5, 6, 7, 8]).unwrap();
        assert!(Tensor::concat(&[&a, &b], false).is_err());
        let joined = Tensor::concat(&[&a, &b], true).unwrap();
        assert_eq!(joined.shape(), [3, 3]);
        assert_eq!(joined.to_vec::<i64>().unwrap(), [1, 2, 0, 3, 4, 5, 6, 7, 8]);
        assert_eq!(joined.rows_slice(1, 2).to_vec::<i64>().unwrap(), [3, 4, 5, 6, 7, 8]);
        let c = Tensor::from_vec([1, 2, 1], vec![1i64, 2]).unwrap();
        let d = Tensor::from_vec([1, 1, 2], vec![3i64, 4]).unwrap();
        assert_eq!(Tensor::concat(&[&c, &d], true).unwrap().to_vec::<i64>().unwrap(), [1, 0, 2, 0, 3, 4, 0, 0]);
    }
}
