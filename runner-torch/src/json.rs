//! Tensors as JSON: nested arrays, or `{"shape", "dtype", "data"}`.

use std::fmt;

use runner_core::{v2, Error, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The element type of a tensor on the wire.
///
/// Parsed from the usual names: `float32`/`float`/`f32`/`FP32`, `float64`/`double`/`FP64`,
/// `float16`/`half`/`FP16`, `bfloat16`/`BF16`, `int64`/`long`/`INT64`, `int32`/`int`,
/// `int16`, `int8`, `uint8`, `bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `BOOL`
    Bool,
    /// `UINT8`
    U8,
    /// `INT8`
    I8,
    /// `INT16`
    I16,
    /// `INT32`
    I32,
    /// `INT64`
    I64,
    /// `FP16`
    F16,
    /// `BF16`
    BF16,
    /// `FP32`
    F32,
    /// `FP64`
    F64,
}

const DTYPES: [(DType, &str, &str, &[&str]); 10] = [
    (DType::Bool, "bool", "BOOL", &["boolean"]),
    (DType::U8, "uint8", "UINT8", &["u8", "byte"]),
    (DType::I8, "int8", "INT8", &["i8", "char"]),
    (DType::I16, "int16", "INT16", &["i16", "short"]),
    (DType::I32, "int32", "INT32", &["i32", "int"]),
    (DType::I64, "int64", "INT64", &["i64", "long"]),
    (DType::F16, "float16", "FP16", &["f16", "half"]),
    (DType::BF16, "bfloat16", "BF16", &["bf16"]),
    (DType::F32, "float32", "FP32", &["f32", "float"]),
    (DType::F64, "float64", "FP64", &["f64", "double"]),
];

impl DType {
    /// Parses a dtype name (case-insensitive), PyTorch, NumPy or V2 style.
    pub fn parse(name: &str) -> Result<DType> {
        let lower = name.to_ascii_lowercase();
        DTYPES
            .iter()
            .find(|(_, torch, v2, aliases)| {
                *torch == lower || v2.eq_ignore_ascii_case(&lower) || aliases.contains(&lower.as_str())
            })
            .map(|(dtype, ..)| *dtype)
            .ok_or_else(|| {
                let known: Vec<&str> = DTYPES.iter().map(|(_, torch, ..)| *torch).collect();
                Error::invalid_input(format!("unknown dtype `{name}`; use one of {}", known.join(", ")))
            })
    }

    /// The PyTorch-style name, e.g. `float32`.
    pub fn name(self) -> &'static str {
        DTYPES.iter().find(|(d, ..)| *d == self).map(|(_, name, ..)| *name).expect("every dtype is listed")
    }

    /// The V2 protocol name, e.g. `FP32`.
    pub fn v2_name(self) -> &'static str {
        DTYPES.iter().find(|(d, ..)| *d == self).map(|(_, _, name, _)| *name).expect("every dtype is listed")
    }

    /// The tch kind.
    pub fn kind(self) -> Kind {
        match self {
            DType::Bool => Kind::Bool,
            DType::U8 => Kind::Uint8,
            DType::I8 => Kind::Int8,
            DType::I16 => Kind::Int16,
            DType::I32 => Kind::Int,
            DType::I64 => Kind::Int64,
            DType::F16 => Kind::Half,
            DType::BF16 => Kind::BFloat16,
            DType::F32 => Kind::Float,
            DType::F64 => Kind::Double,
        }
    }

    /// The dtype of a tch kind, if it has a wire form.
    pub fn of_kind(kind: Kind) -> Result<DType> {
        Ok(match kind {
            Kind::Bool => DType::Bool,
            Kind::Uint8 => DType::U8,
            Kind::Int8 => DType::I8,
            Kind::Int16 => DType::I16,
            Kind::Int => DType::I32,
            Kind::Int64 => DType::I64,
            Kind::Half => DType::F16,
            Kind::BFloat16 => DType::BF16,
            Kind::Float => DType::F32,
            Kind::Double => DType::F64,
            other => return Err(Error::msg(format!("tensors of kind {other:?} have no JSON form"))),
        })
    }

    /// A floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for DType {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        DType::parse(&name).map_err(de::Error::custom)
    }
}

/// The elements, flat, row-major.
#[derive(Debug, Clone, PartialEq)]
enum Elements {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Elements {
    fn len(&self) -> usize {
        match self {
            Elements::Bool(v) => v.len(),
            Elements::Int(v) => v.len(),
            Elements::F32(v) => v.len(),
            Elements::F64(v) => v.len(),
        }
    }
}

/// A tensor in JSON, on the CPU: shape, dtype and elements.
///
/// It reads either form:
/// - nested arrays, `[[0.1, 0.2], [0.3, 0.4]]`: the shape is the nesting, the dtype
///   `float32` when any element has a fraction or exponent, `int64` when all are
///   integers, `bool` for booleans; a ragged array is refused, naming the row;
/// - an object, `{"shape": [2, 2], "dtype": "float32", "data": [0.1, 0.2, 0.3, 0.4]}`,
///   whose `data` may be flat or nested and must hold exactly the shape's element count;
///   `dtype` is optional.
///
/// It writes nested arrays (a rank-0 tensor as a bare number), like `tensor.tolist()`.
///
/// ```
/// use runner_torch::{DType, TensorData};
///
/// let x: TensorData = serde_json::from_str("[[1, 2, 3], [4, 5, 6]]").unwrap();
/// assert_eq!((x.shape(), x.dtype()), (&[2, 3][..], DType::I64));
/// let y: TensorData = serde_json::from_str(r#"{"shape": [3], "dtype": "float32", "data": [1, 2, 3]}"#).unwrap();
/// assert_eq!(serde_json::to_string(&y).unwrap(), "[1.0,2.0,3.0]");
/// let ragged = serde_json::from_str::<TensorData>("[[1, 2], [3]]").unwrap_err().to_string();
/// assert!(ragged.contains("ragged"), "{ragged}");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    shape: Vec<i64>,
    dtype: DType,
    elements: Elements,
}

impl TensorData {
    /// The shape.
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f32`, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.elements {
            Elements::Bool(v) => v.iter().map(|&b| f32::from(u8::from(b))).collect(),
            Elements::Int(v) => v.iter().map(|&i| i as f32).collect(),
            Elements::F32(v) => v.clone(),
            Elements::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Reinterprets parsed elements with a declared shape and dtype: the count must
    /// match, and integer dtypes refuse fractional elements.
    fn declared(self, shape: Option<Vec<i64>>, dtype: Option<DType>) -> Result<TensorData> {
        let shape = match shape {
            Some(shape) => {
                if let Some(bad) = shape.iter().find(|&&d| d < 0) {
                    return Err(Error::invalid_input(format!("shape {shape:?} has a negative dimension {bad}")));
                }
                let count: i64 = shape.iter().product();
                if count as usize != self.len() {
                    return Err(Error::invalid_input(format!(
                        "shape {shape:?} holds {count} elements but `data` has {}; send exactly one value per element",
                        self.len()
                    )));
                }
                shape
            }
            None => self.shape,
        };
        let dtype = dtype.unwrap_or(self.dtype);
        let elements = convert(self.elements, dtype)?;
        Ok(TensorData { shape, dtype, elements })
    }

    /// A CPU tensor of this data.
    pub fn to_tensor(&self) -> Result<Tensor> {
        let tensor = match &self.elements {
            Elements::Bool(v) => Tensor::f_from_slice(v),
            Elements::Int(v) => Tensor::f_from_slice(v),
            Elements::F32(v) => Tensor::f_from_slice(v),
            Elements::F64(v) => Tensor::f_from_slice(v),
        };
        let tensor = tensor.and_then(|t| t.f_reshape(self.shape.as_slice())).map_err(torch_error)?;
        if tensor.kind() == self.dtype.kind() {
            Ok(tensor)
        } else {
            tensor.f_to_kind(self.dtype.kind()).map_err(torch_error)
        }
    }

    /// The data of a tensor (copied to the CPU when it lives elsewhere).
    pub fn from_tensor(tensor: &Tensor) -> Result<TensorData> {
        let dtype = DType::of_kind(tensor.kind())?;
        let shape = tensor.size();
        // One copy straight out of the tensor where its kind is the element type (libtorch
        // makes it contiguous and brings it to the CPU); a cast first otherwise.
        let cast = |kind| tensor.f_to_kind(kind).map_err(torch_error);
        let elements = match dtype {
            DType::Bool => Elements::Bool(copy(tensor)?),
            DType::F64 => Elements::F64(copy(tensor)?),
            DType::F32 => Elements::F32(copy(tensor)?),
            DType::F16 | DType::BF16 => Elements::F32(copy(&cast(Kind::Float)?)?),
            DType::I64 => Elements::Int(copy(tensor)?),
            _ => Elements::Int(copy(&cast(Kind::Int64)?)?),
        };
        Ok(TensorData { shape, dtype, elements })
    }

    /// From a V2 tensor: its datatype and shape are checked against its data.
    pub fn from_v2(tensor: &v2::Tensor) -> Result<TensorData> {
        let dtype = DType::parse(&tensor.datatype)
            .map_err(|e| Error::invalid_input(format!("input `{}`: {e}", tensor.name)))?;
        let parsed = TensorData::deserialize(&tensor.data)
            .map_err(|e| Error::invalid_input(format!("input `{}`: {e}", tensor.name)))?;
        parsed
            .declared(Some(tensor.shape.clone()), Some(dtype))
            .map_err(|e| Error::invalid_input(format!("input `{}`: {e}", tensor.name)))
    }

    /// As a V2 tensor named `name`, data flat.
    pub fn to_v2(&self, name: &str) -> v2::Tensor {
        let data = match &self.elements {
            Elements::Bool(v) => serde_json::json!(v),
            Elements::Int(v) => serde_json::json!(v),
            Elements::F32(v) => serde_json::json!(v),
            Elements::F64(v) => serde_json::json!(v),
        };
        v2::Tensor::json(name, self.shape.clone(), self.dtype.v2_name(), data)
    }
}

impl TryFrom<TensorData> for Tensor {
    type Error = Error;
    fn try_from(data: TensorData) -> Result<Tensor> {
        data.to_tensor()
    }
}

impl TryFrom<&Tensor> for TensorData {
    type Error = Error;
    fn try_from(tensor: &Tensor) -> Result<TensorData> {
        TensorData::from_tensor(tensor)
    }
}

/// A tch error as the framework's (a 500: the model or the code failed, not the input).
pub(crate) fn torch_error(error: tch::TchError) -> Error {
    Error::msg(format!("torch: {error}"))
}

fn convert(elements: Elements, dtype: DType) -> Result<Elements> {
    Ok(match (elements, dtype) {
        (Elements::Bool(v), DType::Bool) => Elements::Bool(v),
        (Elements::Bool(_), _) => {
            return Err(Error::invalid_input(format!("the data are booleans but the dtype is {dtype}; send numbers")))
        }
        (other, DType::Bool) => {
            return Err(Error::invalid_input(format!(
                "the dtype is bool but the data are {}; send true/false",
                if matches!(other, Elements::Int(_)) { "integers" } else { "numbers" }
            )))
        }
        (Elements::Int(v), DType::F32 | DType::F16 | DType::BF16) => {
            Elements::F32(v.into_iter().map(|i| i as f32).collect())
        }
        (Elements::Int(v), DType::F64) => Elements::F64(v.into_iter().map(|i| i as f64).collect()),
        (Elements::Int(v), _) => Elements::Int(v),
        (Elements::F64(v), DType::F32 | DType::F16 | DType::BF16) => {
            Elements::F32(v.into_iter().map(|x| x as f32).collect())
        }
        (Elements::F64(v), DType::F64) => Elements::F64(v),
        (Elements::F32(v), DType::F64) => Elements::F64(v.into_iter().map(f64::from).collect()),
        (Elements::F32(v), DType::F32 | DType::F16 | DType::BF16) => Elements::F32(v),
        (floats, _) => {
            let values: Vec<f64> = match floats {
                Elements::F32(v) => v.into_iter().map(f64::from).collect(),
                Elements::F64(v) => v,
                _ => unreachable!("integers and booleans are handled above"),
            };
            match values.iter().position(|x| x.fract() != 0.0 || !x.is_finite()) {
                Some(i) => {
                    return Err(Error::invalid_input(format!(
                        "the dtype is {dtype} but element {i} is {}; send integers",
                        values[i]
                    )))
                }
                None => Elements::Int(values.into_iter().map(|x| x as i64).collect()),
            }
        }
    })
}

/// Collects the elements of nested arrays.
#[derive(Default)]
struct Builder {
    bools: Vec<bool>,
    ints: Vec<i64>,
    floats: Vec<f64>,
    /// Whether a fractional number was seen (then every number goes to `floats`).
    float: bool,
    /// Indices from the root to the array being read, for error messages.
    path: Vec<usize>,
}

impl Builder {
    fn number<E: de::Error>(&mut self, value: f64, int: Option<i64>) -> std::result::Result<(), E> {
        if !self.bools.is_empty() {
            return Err(self.error("mixes booleans and numbers"));
        }
        match int {
            Some(i) if !self.float => self.ints.push(i),
            _ => {
                if !self.float {
                    self.float = true;
                    self.floats = self.ints.drain(..).map(|i| i as f64).collect();
                }
                self.floats.push(value);
            }
        }
        Ok(())
    }

    fn boolean<E: de::Error>(&mut self, value: bool) -> std::result::Result<(), E> {
        if !self.ints.is_empty() || !self.floats.is_empty() {
            return Err(self.error("mixes booleans and numbers"));
        }
        self.bools.push(value);
        Ok(())
    }

    fn at(&self) -> String {
        if self.path.is_empty() {
            "the array".into()
        } else {
            format!("the array at {:?}", self.path)
        }
    }

    fn error<E: de::Error>(&self, what: &str) -> E {
        E::custom(format!("{} {what}", self.at()))
    }

    fn finish(self, shape: Vec<i64>) -> TensorData {
        let (dtype, elements) = if !self.bools.is_empty() {
            (DType::Bool, Elements::Bool(self.bools))
        } else if self.float {
            (DType::F32, Elements::F64(self.floats))
        } else {
            (DType::I64, Elements::Int(self.ints))
        };
        // Floats parse as f64 (no precision lost before the dtype is known) and default to float32.
        let elements =
            if dtype == DType::F32 { convert(elements, DType::F32).expect("floats to f32") } else { elements };
        TensorData { shape, dtype, elements }
    }
}

/// The elements of `tensor`, whose kind is `T`'s, row-major.
fn copy<T: tch::kind::Element>(tensor: &Tensor) -> Result<Vec<T>> {
    let numel = tensor.numel();
    let mut values = vec![T::ZERO; numel];
    tensor.f_copy_data(&mut values, numel).map_err(torch_error)?;
    Ok(values)
}

/// One level of nesting: returns its shape (`[]` for a number).
struct Level<'a>(&'a mut Builder);

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = Vec<i64>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Vec<i64>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = Vec<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a boolean or an array of them")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Vec<i64>, E> {
        self.0.boolean(v).map(|()| Vec::new())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Vec<i64>, E> {
        self.0.number(v as f64, Some(v)).map(|()| Vec::new())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Vec<i64>, E> {
        self.0.number(v as f64, i64::try_from(v).ok()).map(|()| Vec::new())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Vec<i64>, E> {
        self.0.number(v, None).map(|()| Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<i64>, A::Error> {
        let builder = self.0;
        let mut first: Option<Vec<i64>> = None;
        let mut count = 0usize;
        loop {
            builder.path.push(count);
            let next = seq.next_element_seed(Level(builder))?;
            builder.path.pop();
            let Some(shape) = next else { break };
            match &first {
                None => first = Some(shape),
                Some(expected) if *expected != shape => {
                    return Err(builder.error(&format!(
                        "is ragged: element {count} has shape {shape:?} but element 0 has shape {expected:?}; every row must have the same length"
                    )))
                }
                Some(_) => {}
            }
            count += 1;
        }
        let mut shape = vec![count as i64];
        shape.extend(first.unwrap_or_default());
        Ok(shape)
    }
}

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(TensorVisitor)
    }
}

struct TensorVisitor;

impl TensorVisitor {
    fn nested<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<TensorData, D::Error> {
        let mut builder = Builder::default();
        let shape = Level(&mut builder).deserialize(deserializer)?;
        Ok(builder.finish(shape))
    }
}

/// `data` of the object form.
struct Nested(TensorData);

impl<'de> Deserialize<'de> for Nested {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        TensorVisitor::nested(deserializer).map(Nested)
    }
}

impl<'de> Visitor<'de> for TensorVisitor {
    type Value = TensorData;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a tensor: nested arrays of numbers, or {"shape": [..], "dtype": "float32", "data": [..]}"#)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<TensorData, E> {
        TensorVisitor::nested(de::value::BoolDeserializer::new(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<TensorData, E> {
        TensorVisitor::nested(de::value::I64Deserializer::new(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<TensorData, E> {
        TensorVisitor::nested(de::value::U64Deserializer::new(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<TensorData, E> {
        TensorVisitor::nested(de::value::F64Deserializer::new(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<TensorData, A::Error> {
        let mut builder = Builder::default();
        let shape = Level(&mut builder).visit_seq(seq)?;
        Ok(builder.finish(shape))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<TensorData, A::Error> {
        let (mut shape, mut dtype, mut data) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "shape" => shape = Some(map.next_value::<Vec<i64>>()?),
                "dtype" | "datatype" => dtype = Some(map.next_value::<DType>()?),
                "data" => data = Some(map.next_value::<Nested>()?.0),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown field `{other}` in a tensor object; the fields are `shape`, `dtype` and `data`"
                    )))
                }
            }
        }
        let data = data.ok_or_else(|| de::Error::custom("a tensor object needs `data`"))?;
        data.declared(shape, dtype).map_err(de::Error::custom)
    }
}

impl Serialize for TensorData {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.elements {
            Elements::Bool(v) => nested(serializer, &self.shape, v),
            Elements::Int(v) => nested(serializer, &self.shape, v),
            Elements::F32(v) => nested(serializer, &self.shape, v),
            Elements::F64(v) => nested(serializer, &self.shape, v),
        }
    }
}

/// Writes `values` (row-major) as arrays nested by `shape`.
fn nested<S: Serializer, T: Serialize>(
    serializer: S,
    shape: &[i64],
    values: &[T],
) -> std::result::Result<S::Ok, S::Error> {
    struct Rows<'a, T>(&'a [i64], &'a [T]);
    impl<T: Serialize> Serialize for Rows<'_, T> {
        fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
            nested(serializer, self.0, self.1)
        }
    }
    match shape.split_first() {
        None => values.first().ok_or_else(|| serde::ser::Error::custom("empty rank-0 tensor"))?.serialize(serializer),
        Some((&rows, [])) => {
            let mut seq = serializer.serialize_seq(Some(rows as usize))?;
            for v in values {
                seq.serialize_element(v)?;
            }
            seq.end()
        }
        Some((&rows, rest)) => {
            let stride = rest.iter().product::<i64>() as usize;
            let mut seq = serializer.serialize_seq(Some(rows as usize))?;
            for i in 0..rows as usize {
                seq.serialize_element(&Rows(rest, &values[i * stride..(i + 1) * stride]))?;
            }
            seq.end()
        }
    }
}
