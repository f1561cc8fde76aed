//! The KServe Open Inference Protocol, version 2 (the "V2" protocol of KServe, Triton,
//! Seldon MLServer and TorchServe), as JSON types.
//!
//! Runners whose backend speaks tensors (such as `runner-torch`) answer it next to
//! `/predict`, so existing V2 clients work unchanged:
//!
//! | route | what |
//! |---|---|
//! | `GET /v2/health/live`, `GET /v2/health/ready` | liveness and readiness |
//! | `GET /v2` | server metadata |
//! | `GET /v2/models/{name}`, `GET /v2/models/{name}/ready` | model metadata and readiness |
//! | `POST /v2/models/{name}/infer` | inference: tensors in, tensors out |
//!
//! Errors on these routes are `{"error": "message"}`, as the protocol specifies.
//!
//! The binary tensor data extension is spoken both ways (what `tritonclient` sends by
//! default): a request whose `Inference-Header-Content-Length` header says how long its
//! JSON part is carries the data of each input with a `binary_data_size` parameter after
//! it, in input order ([`decode_request`]); outputs asked for with `binary_data: true`
//! (or all of them, with the request parameter `binary_data_output: true`) come back the
//! same way ([`encode_response`]).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The header of the binary tensor data extension: how many bytes of the body are JSON.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The datatypes of the protocol and the size in bytes of one element (`None`: `BYTES`,
/// whose elements are each a 4-byte little-endian length and that many bytes).
pub const DATATYPES: &[(&str, Option<usize>)] = &[
    ("BOOL", Some(1)),
    ("UINT8", Some(1)),
    ("UINT16", Some(2)),
    ("UINT32", Some(4)),
    ("UINT64", Some(8)),
    ("INT8", Some(1)),
    ("INT16", Some(2)),
    ("INT32", Some(4)),
    ("INT64", Some(8)),
    ("FP16", Some(2)),
    ("BF16", Some(2)),
    ("FP32", Some(4)),
    ("FP64", Some(8)),
    ("BYTES", None),
];

/// JSON object of protocol parameters.
pub type Parameters = serde_json::Map<String, serde_json::Value>;

/// `POST /v2/models/{name}/infer` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferRequest {
    /// Echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Request parameters (unused by the built-in backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// The input tensors.
    pub inputs: Vec<Tensor>,
    /// Outputs wanted, by name; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// An output asked for in an [`InferRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedOutput {
    /// The output's name.
    pub name: String,
    /// Output parameters (unused by the built-in backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// A tensor on the wire: name, shape, datatype (`FP32`, `INT64`, `BOOL`...) and the
/// elements in row-major order, flat or nested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its element type, e.g. `FP32`.
    pub datatype: String,
    /// Tensor parameters (`binary_data_size` of the binary extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// The elements as JSON (`null` when they are in `raw`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
    /// The elements in the binary extension's layout (little-endian, row-major), when
    /// they came (or go) as binary data.
    #[serde(skip)]
    pub raw: Option<Bytes>,
}

impl Tensor {
    /// A tensor whose elements are JSON.
    pub fn json(
        name: impl Into<String>,
        shape: Vec<i64>,
        datatype: impl Into<String>,
        data: serde_json::Value,
    ) -> Tensor {
        Tensor { name: name.into(), shape, datatype: datatype.into(), parameters: None, data, raw: None }
    }

    /// The number of elements its shape holds.
    pub fn element_count(&self) -> Result<usize> {
        element_count(&self.name, &self.shape)
    }

    /// Its elements as little-endian bytes, converted from JSON when they are not raw
    /// already.
    pub fn to_raw(&self) -> Result<Bytes> {
        match &self.raw {
            Some(raw) => Ok(raw.clone()),
            None => json_to_raw(self).map(Bytes::from),
        }
    }

    /// Its elements as a flat JSON array, converted from the raw bytes when they are raw.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        match &self.raw {
            Some(raw) => raw_to_json(self, raw),
            None => Ok(self.data.clone()),
        }
    }

    fn parameter(&self, name: &str) -> Option<&serde_json::Value> {
        self.parameters.as_ref()?.get(name)
    }
}

/// `POST /v2/models/{name}/infer` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResponse {
    /// The model's name (its repository).
    pub model_name: String,
    /// The model's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// The request's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The output tensors.
    pub outputs: Vec<Tensor>,
}

/// One tensor of a model's signature: `-1` in `shape` stands for any size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// The tensor's name.
    pub name: String,
    /// Its element type, e.g. `FP32`.
    pub datatype: String,
    /// Its shape, `-1` for a free dimension.
    pub shape: Vec<i64>,
}

/// A model's signature, for `GET /v2/models/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Signature {
    /// The platform, e.g. `pytorch_torchscript`.
    pub platform: String,
    /// The inputs, in the order the model takes them.
    pub inputs: Vec<TensorMetadata>,
    /// The outputs, in the order the model returns them.
    pub outputs: Vec<TensorMetadata>,
}

/// `GET /v2/models/{name}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The model's name (its repository).
    pub name: String,
    /// The versions served (its number).
    pub versions: Vec<String>,
    /// The platform.
    pub platform: String,
    /// The inputs.
    pub inputs: Vec<TensorMetadata>,
    /// The outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// Whether a tensor of `shape` fits the `declared` shape of a signature, where `-1` stands
/// for any size (a batch, a sequence length).
///
/// ```
/// use runner_core::v2::shape_fits;
/// assert!(shape_fits(&[-1, 4], &[3, 4]));
/// assert!(!shape_fits(&[-1, 4], &[3, 5]) && !shape_fits(&[-1, 4], &[4]));
/// ```
pub fn shape_fits(declared: &[i64], shape: &[i64]) -> bool {
    declared.len() == shape.len() && declared.iter().zip(shape).all(|(want, got)| *want < 0 || want == got)
}

/// The size of one element of `datatype` (`None` for `BYTES`); an unknown datatype is an
/// error that lists the known ones.
pub fn element_size(datatype: &str) -> Result<Option<usize>> {
    DATATYPES.iter().find(|(name, _)| *name == datatype).map(|(_, size)| *size).ok_or_else(|| {
        let known: Vec<&str> = DATATYPES.iter().map(|(name, _)| *name).collect();
        bad(format!("unknown datatype `{datatype}`; the protocol's are {}", known.join(", ")))
    })
}

fn bad(message: String) -> Error {
    Error::BadRequest { message }
}

fn element_count(name: &str, shape: &[i64]) -> Result<usize> {
    shape.iter().try_fold(1usize, |count, &d| {
        let d = usize::try_from(d)
            .map_err(|_| bad(format!("tensor `{name}` has a negative dimension in shape {shape:?}")))?;
        count.checked_mul(d).ok_or_else(|| bad(format!("tensor `{name}` of shape {shape:?} is too large")))
    })
}

/// Splits a `BYTES` tensor's raw data into its elements (slices of it, not copies),
/// checking every length.
pub fn bytes_elements(name: &str, raw: &Bytes) -> Result<Vec<Bytes>> {
    let mut elements = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let Some(length) = raw.get(at..at + 4) else {
            return Err(bad(format!("BYTES tensor `{name}`: {} stray bytes after its last element", raw.len() - at)));
        };
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        let start = at + 4;
        if raw.len() - start < length {
            return Err(bad(format!(
                "BYTES tensor `{name}`: an element says it has {length} bytes, but only {} remain",
                raw.len() - start
            )));
        }
        elements.push(raw.slice(start..start + length));
        at = start + length;
    }
    Ok(elements)
}

/// Checks that raw data fits the tensor's shape and datatype.
pub(crate) fn check_raw(tensor: &Tensor, raw: &Bytes) -> Result<()> {
    let count = tensor.element_count()?;
    match element_size(&tensor.datatype)? {
        Some(size) if count.checked_mul(size) == Some(raw.len()) => Ok(()),
        Some(size) => {
            let has = raw.len();
            let wrong = match count.checked_mul(size) {
                Some(needed) => format!("needs {needed} bytes of binary data, but has {has}"),
                None => format!("is too large to hold; it has {has} bytes of binary data"),
            };
            Err(bad(format!("input `{}` ({} of shape {:?}) {wrong}", tensor.name, tensor.datatype, tensor.shape)))
        }
        None => {
            let found = bytes_elements(&tensor.name, raw)?.len();
            if found == count {
                Ok(())
            } else {
                Err(bad(format!(
                    "BYTES input `{}` of shape {:?} needs {count} elements, but its binary data holds {found}",
                    tensor.name, tensor.shape
                )))
            }
        }
    }
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | ((m << (shift + 13)) & 0x7f_ffff)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        return sign | 0x7c00 | if mantissa != 0 { 0x200 } else { 0 };
    }
    let e = exponent - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = (mantissa | 0x80_0000) >> (1 - e);
        let round = u32::from((m & 0x1fff) > 0x1000 || ((m & 0x1fff) == 0x1000 && (m & 0x2000) != 0));
        return sign | ((m >> 13) + round) as u16;
    }
    let round = u32::from((mantissa & 0x1fff) > 0x1000 || ((mantissa & 0x1fff) == 0x1000 && (mantissa & 0x2000) != 0));
    (u32::from(sign) | ((e as u32) << 10) | (mantissa >> 13)) as u16 + round as u16
}

fn f32_to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    // Round to nearest, ties to even.
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// Raw data as a flat JSON array (`BYTES` elements as strings, which must be UTF-8).
fn raw_to_json(tensor: &Tensor, raw: &Bytes) -> Result<serde_json::Value> {
    check_raw(tensor, raw)?;
    serde_json::to_value(Data::Raw(tensor, raw)).map_err(|e| bad(e.to_string()))
}

fn json_to_raw(tensor: &Tensor) -> Result<Vec<u8>> {
    use serde_json::Value;
    let size = element_size(&tensor.datatype)?;
    let mut flat = Vec::new();
    fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
            other => out.push(other),
        }
    }
    flatten(&tensor.data, &mut flat);
    let count = tensor.element_count()?;
    if flat.len() != count {
        return Err(bad(format!(
            "tensor `{}` of shape {:?} has {} elements in `data`, not {count}",
            tensor.name,
            tensor.shape,
            flat.len()
        )));
    }
    let wrong = |value: &Value| {
        bad(format!("tensor `{}` ({}) holds `{value}`, which is not one of its elements", tensor.name, tensor.datatype))
    };
    let mut raw = Vec::with_capacity(count * size.unwrap_or(8));
    for value in flat {
        let float = || value.as_f64().ok_or_else(|| wrong(value));
        let int = || value.as_i64().or_else(|| value.as_bool().map(i64::from)).ok_or_else(|| wrong(value));
        let uint = || value.as_u64().or_else(|| value.as_bool().map(u64::from)).ok_or_else(|| wrong(value));
        match tensor.datatype.as_str() {
            "BOOL" => raw.push(u8::from(value.as_bool().ok_or_else(|| wrong(value))?)),
            "UINT8" => raw.extend(u8::try_from(uint()?).map_err(|_| wrong(value))?.to_le_bytes()),
            "UINT16" => raw.extend(u16::try_from(uint()?).map_err(|_| wrong(value))?.to_le_bytes()),
            "UINT32" => raw.extend(u32::try_from(uint()?).map_err(|_| wrong(value))?.to_le_bytes()),
            "UINT64" => raw.extend(uint()?.to_le_bytes()),
            "INT8" => raw.extend(i8::try_from(int()?).map_err(|_| wrong(value))?.to_le_bytes()),
            "INT16" => raw.extend(i16::try_from(int()?).map_err(|_| wrong(value))?.to_le_bytes()),
            "INT32" => raw.extend(i32::try_from(int()?).map_err(|_| wrong(value))?.to_le_bytes()),
            "INT64" => raw.extend(int()?.to_le_bytes()),
            "FP16" => raw.extend(f32_to_f16(float()? as f32).to_le_bytes()),
            "BF16" => raw.extend(f32_to_bf16(float()? as f32).to_le_bytes()),
            "FP32" => raw.extend((float()? as f32).to_le_bytes()),
            "FP64" => raw.extend(float()?.to_le_bytes()),
            _ => {
                let text = value.as_str().ok_or_else(|| wrong(value))?;
                raw.extend((text.len() as u32).to_le_bytes());
                raw.extend(text.as_bytes());
            }
        }
    }
    Ok(raw)
}

/// Reads an inference request: all JSON, or (with `header_length`, the value of
/// [`HEADER_LENGTH`]) a JSON part followed by the binary data of the inputs that have a
/// `binary_data_size` parameter, in input order. Raw inputs get [`Tensor::raw`], checked
/// against their shape and datatype. Every inconsistency is [`Error::BadRequest`] saying
/// what does not add up.
pub fn decode_request(body: Bytes, header_length: Option<&str>) -> Result<InferRequest> {
    let (json, mut binary) = match header_length {
        None => (body, Bytes::new()),
        Some(text) => {
            let length: usize = text
                .trim()
                .parse()
                .map_err(|_| bad(format!("{HEADER_LENGTH} must be the byte length of the JSON part, not `{text}`")))?;
            if length > body.len() {
                return Err(bad(format!(
                    "{HEADER_LENGTH} says the JSON part has {length} bytes, but the body has only {}",
                    body.len()
                )));
            }
            let mut json = body;
            let binary = json.split_off(length);
            (json, binary)
        }
    };
    let mut values = serde_json::Deserializer::from_slice(&json).into_iter::<InferRequest>();
    let parsed = values.next().unwrap_or_else(|| serde_json::from_slice(b""));
    let mut request = parsed.map_err(|e| {
        let message = format!("not a V2 inference request: {e}");
        if e.is_data() {
            Error::invalid_input(message)
        } else {
            bad(message)
        }
    })?;
    let rest = &json[values.byte_offset()..];
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(format!(
            "{} bytes follow the JSON request; binary tensor data needs the {HEADER_LENGTH} header (the JSON part's length)",
            rest.len()
        )));
    }
    for input in &mut request.inputs {
        let Some(size) = input.parameter("binary_data_size") else {
            if input.data.is_null() {
                return Err(Error::invalid_input(format!(
                    "input `{}` has neither `data` nor a `binary_data_size` parameter",
                    input.name
                )));
            }
            continue;
        };
        let size = size
            .as_u64()
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| bad(format!("input `{}`: binary_data_size must be a byte count, not {size}", input.name)))?;
        if size > binary.len() {
            return Err(bad(format!(
                "input `{}` says it has {size} bytes of binary data, but only {} remain after the JSON part{}",
                input.name,
                binary.len(),
                if header_length.is_none() { format!(" (send the {HEADER_LENGTH} header)") } else { String::new() }
            )));
        }
        let raw = binary.split_to(size);
        check_raw(input, &raw)?;
        input.raw = Some(raw);
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes of binary data follow the JSON part that no input's binary_data_size accounts for",
            binary.len()
        )));
    }
    Ok(request)
}

/// Whether the caller asked for output `name` as binary data: its own `binary_data`
/// parameter, else the request's `binary_data_output`.
pub fn wants_binary(request_parameters: Option<&Parameters>, outputs: Option<&[RequestedOutput]>, name: &str) -> bool {
    let own = outputs
        .and_then(|outputs| outputs.iter().find(|o| o.name == name))
        .and_then(|o| o.parameters.as_ref()?.get("binary_data")?.as_bool());
    own.unwrap_or_else(|| request_parameters.and_then(|p| p.get("binary_data_output")?.as_bool()).unwrap_or(false))
}

/// Writes a response: JSON alone when no output is binary (`None`), else the JSON part
/// followed by the binary outputs' data, and the JSON part's length for
/// [`HEADER_LENGTH`]. `binary(name)` says which outputs go as binary data; the others
/// go as JSON, converted from raw where a backend produced raw data.
pub fn encode_response(mut response: InferResponse, binary: impl Fn(&str) -> bool) -> Result<(Bytes, Option<usize>)> {
    let mut tail: Vec<Bytes> = Vec::new();
    for output in &mut response.outputs {
        if binary(&output.name) {
            let raw = output.to_raw()?;
            output.parameters.get_or_insert_with(Default::default).insert("binary_data_size".into(), raw.len().into());
            output.data = serde_json::Value::Null;
            output.raw = None;
            tail.push(raw);
        } else if let Some(raw) = &output.raw {
            check_raw(output, raw)?;
        }
    }
    // Raw outputs that go as JSON are written straight from their bytes (FP32 as the
    // shortest text that reads back as the same FP32), with no JSON tree in between.
    let outputs: Vec<TensorOut<'_>> = response
        .outputs
        .iter()
        .map(|t| TensorOut {
            name: &t.name,
            shape: &t.shape,
            datatype: &t.datatype,
            parameters: t.parameters.as_ref(),
            data: match &t.raw {
                Some(raw) => Data::Raw(t, raw),
                None if t.data.is_null() => Data::None,
                None => Data::Json(&t.data),
            },
        })
        .collect();
    let out = ResponseOut {
        model_name: &response.model_name,
        model_version: response.model_version.as_deref(),
        id: response.id.as_deref(),
        outputs,
    };
    let json = serde_json::to_vec(&out).map_err(|e| bad(e.to_string()))?;
    if tail.is_empty() {
        return Ok((Bytes::from(json), None));
    }
    let length = json.len();
    let mut body = Vec::with_capacity(length + tail.iter().map(Bytes::len).sum::<usize>());
    body.extend_from_slice(&json);
    for raw in tail {
        body.extend_from_slice(&raw);
    }
    Ok((Bytes::from(body), Some(length)))
}

/// [`InferResponse`] as written by [`encode_response`].
#[derive(Serialize)]
struct ResponseOut<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<TensorOut<'a>>,
}

/// [`Tensor`] as written by [`encode_response`].
#[derive(Serialize)]
struct TensorOut<'a> {
    name: &'a str,
    shape: &'a [i64],
    datatype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Parameters>,
    #[serde(skip_serializing_if = "Data::is_none")]
    data: Data<'a>,
}

/// The elements of an output: JSON already, raw bytes to write as JSON, or none (binary).
enum Data<'a> {
    Json(&'a serde_json::Value),
    Raw(&'a Tensor, &'a Bytes),
    None,
}

impl Data<'_> {
    fn is_none(&self) -> bool {
        matches!(self, Data::None)
    }
}

impl Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let (tensor, raw) = match self {
            Data::Json(value) => return value.serialize(serializer),
            Data::None => return serializer.serialize_unit(),
            Data::Raw(tensor, raw) => (tensor, raw),
        };
        macro_rules! numbers {
            ($t:ty, $n:literal) => {
                numbers!($t, $n, std::convert::identity)
            };
            ($t:ty, $n:literal, $write:path) => {{
                let mut seq = serializer.serialize_seq(Some(raw.len() / $n))?;
                for chunk in raw.chunks_exact($n) {
                    seq.serialize_element(&$write(<$t>::from_le_bytes(chunk.try_into().expect("chunk size"))))?;
                }
                seq.end()
            }};
        }
        match tensor.datatype.as_str() {
            "BOOL" => serializer.collect_seq(raw.iter().map(|b| *b != 0)),
            "UINT8" => serializer.collect_seq(raw.iter()),
            "UINT16" => numbers!(u16, 2),
            "UINT32" => numbers!(u32, 4),
            "UINT64" => numbers!(u64, 8),
            "INT8" => serializer.collect_seq(raw.iter().map(|b| *b as i8)),
            "INT16" => numbers!(i16, 2),
            "INT32" => numbers!(i32, 4),
            "INT64" => numbers!(i64, 8),
            "FP16" => numbers!(u16, 2, f16_to_f32),
            "BF16" => numbers!(u16, 2, bf16_to_f32),
            "FP32" => numbers!(f32, 4),
            "FP64" => numbers!(f64, 8),
            _ => {
                let elements = bytes_elements(&tensor.name, raw).map_err(S::Error::custom)?;
                let mut seq = serializer.serialize_seq(Some(elements.len()))?;
                for element in elements {
                    let text = std::str::from_utf8(&element).map_err(|_| {
                        S::Error::custom(format!(
                            "BYTES tensor `{}` holds bytes that are not UTF-8; ask for it as binary data",
                            tensor.name
                        ))
                    })?;
                    seq.serialize_element(text)?;
                }
                seq.end()
            }
        }
    }
}

fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A body of `header` (JSON) followed by `binary`, and its header length.
    fn body(header: serde_json::Value, binary: &[u8]) -> (Bytes, String) {
        let mut bytes = serde_json::to_vec(&header).unwrap();
        let length = bytes.len().to_string();
        bytes.extend_from_slice(binary);
        (Bytes::from(bytes), length)
    }

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn input(datatype: &str, shape: &[i64], size: usize) -> serde_json::Value {
        json!({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}]})
    }

    fn refusal(header: serde_json::Value, binary: &[u8], length: Option<&str>) -> String {
        let (bytes, own) = body(header, binary);
        let error = decode_request(bytes, Some(length.unwrap_or(&own))).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::BadRequest, "{error}");
        error.to_string()
    }

    #[test]
    fn binary_inputs_follow_the_json_part_in_order() {
        let header = json!({"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "b", "shape": [1], "datatype": "INT64", "data": [7]},
            {"name": "c", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 11}},
        ]});
        let mut binary = floats(&[1.5, -2.0]);
        binary.extend([2, 0, 0, 0, b'h', b'i', 1, 0, 0, 0, b'!']);
        let (bytes, length) = body(header, &binary);
        let request = decode_request(bytes, Some(&length)).unwrap();
        let [a, b, c] = &request.inputs[..] else { panic!("three inputs") };
        assert_eq!(a.to_json().unwrap(), json!([1.5, -2.0]));
        assert_eq!((b.raw.is_none(), b.to_raw().unwrap().to_vec()), (true, 7i64.to_le_bytes().to_vec()));
        assert_eq!(c.to_json().unwrap(), json!(["hi", "!"]));
        // All JSON, no header: as before.
        let plain = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]});
        assert!(decode_request(Bytes::from(plain.to_string()), None).unwrap().inputs[0].raw.is_none());
    }

    #[test]
    fn sizes_that_do_not_add_up_are_400s_that_say_so() {
        let message = refusal(input("FP32", &[3], 8), &floats(&[1.0, 2.0]), None);
        assert!(message.contains("needs 12 bytes of binary data, but has 8"), "{message}");
        let message = refusal(input("FP32", &[2], 8), &floats(&[1.0, 2.0]), Some("100000"));
        assert!(message.contains("but the body has only"), "{message}");
        let message = refusal(input("FP32", &[2], 12), &floats(&[1.0, 2.0]), None);
        assert!(message.contains("only 8 remain"), "{message}");
        let message = refusal(input("FP32", &[1], 4), &floats(&[1.0, 2.0]), None);
        assert!(message.contains("4 bytes of binary data follow"), "{message}");
        let message = refusal(input("FP8", &[2], 2), &[1, 2], None);
        assert!(message.contains("unknown datatype `FP8`") && message.contains("BF16"), "{message}");
        let message = refusal(input("BYTES", &[1], 6), &[9, 0, 0, 0, b'a', b'b'], None);
        assert!(message.contains("says it has 9 bytes, but only 2 remain"), "{message}");
        let message = refusal(input("INT32", &[-1], 4), &[0; 4], None);
        assert!(message.contains("negative dimension"), "{message}");
        let message = refusal(input("FP32", &[1], 4), &floats(&[1.0]), Some("abc"));
        assert!(message.contains("not `abc`"), "{message}");
        let (bytes, _) = body(input("FP32", &[1], 4), &floats(&[1.0]));
        let message = decode_request(bytes, None).unwrap_err().to_string();
        assert!(message.contains(HEADER_LENGTH), "{message}");
    }

    /// A shape whose byte size does not fit in a `usize` is refused, not overflowed
    /// (writing the refusal once multiplied it out).
    #[test]
    fn a_shape_too_large_to_hold_is_refused() {
        let message = refusal(input("FP64", &[1 << 62], 8), &[0; 8], None);
        assert!(message.contains("too large") && message.contains("has 8"), "{message}");
        let message = refusal(input("FP32", &[i64::MAX, 4], 8), &[0; 8], None);
        assert!(message.contains("too large"), "{message}");
    }

    #[test]
    fn outputs_go_binary_when_asked_and_json_otherwise() {
        let y = Tensor::json("y", vec![2], "FP32", json!([0.5, 3.0]));
        let z = Tensor::json("z", vec![1], "BOOL", json!([true]));
        let response = InferResponse { model_name: "m".into(), model_version: None, id: None, outputs: vec![y, z] };
        let (bytes, length) = encode_response(response.clone(), |name| name == "y").unwrap();
        let length = length.expect("a binary output");
        let header: serde_json::Value = serde_json::from_slice(&bytes[..length]).unwrap();
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert!(header["outputs"][0].get("data").is_none());
        assert_eq!(header["outputs"][1]["data"], json!([true]));
        assert_eq!(&bytes[length..], floats(&[0.5, 3.0]).as_slice());
        let (bytes, length) = encode_response(response, |_| false).unwrap();
        assert_eq!(length, None);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["outputs"][0]["data"],
            json!([0.5, 3.0])
        );
        let outputs = [RequestedOutput {
            name: "y".into(),
            parameters: Some(json!({"binary_data": false}).as_object().unwrap().clone()),
        }];
        let all = json!({"binary_data_output": true});
        assert!(!wants_binary(all.as_object(), Some(&outputs), "y"), "an output's own choice wins");
        assert!(wants_binary(all.as_object(), Some(&outputs), "z"));
        assert!(!wants_binary(None, None, "y"));
    }

    #[test]
    fn half_floats_round_trip() {
        for value in [0.0f32, 1.0, -2.5, 65504.0, 6.1035156e-5, 5.9604645e-8, -0.33325195] {
            assert_eq!(f16_to_f32(f32_to_f16(value)), value, "{value}");
            assert_eq!(f32::from_bits(u32::from(f32_to_bf16(1.0)) << 16), 1.0);
        }
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert_eq!(f16_to_f32(f32_to_f16(1e6)), f32::INFINITY);
    }

    #[test]
    fn raw_outputs_are_written_as_json_without_losing_a_bit() {
        let raw = |name: &str, datatype: &str, shape: Vec<i64>, bytes: Vec<u8>| {
            let mut t = Tensor::json(name, shape, datatype, serde_json::Value::Null);
            t.raw = Some(Bytes::from(bytes));
            t
        };
        let outputs = vec![
            raw("f", "FP32", vec![3], floats(&[0.1, -58.40817, 1e-40])),
            raw("h", "FP16", vec![1], f32_to_f16(-0.33325195).to_le_bytes().to_vec()),
            raw("i", "INT8", vec![2], vec![0xfd, 7]),
            raw("b", "BOOL", vec![2], vec![1, 0]),
            raw("s", "BYTES", vec![1], b"\x02\0\0\0hi".to_vec()),
            Tensor::json("j", vec![1], "INT64", json!([5])),
        ];
        let response = InferResponse { model_name: "m".into(), model_version: None, id: Some("7".into()), outputs };
        let (body, binary) = encode_response(response, |_| false).unwrap();
        assert_eq!(binary, None);
        let text = std::str::from_utf8(&body).unwrap();
        // FP32 as the shortest text that reads back as the same FP32.
        assert!(text.contains(r#""data":[0.1,-58.40817,1e-40]"#), "{text}");
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let data = |i: usize| parsed["outputs"][i]["data"].clone();
        let back: Vec<f32> = serde_json::from_value(data(0)).unwrap();
        assert_eq!(back, vec![0.1f32, -58.40817, 1e-40]);
        assert_eq!(
            (data(1), data(2), data(3), data(4), data(5)),
            (json!([-0.33325195]), json!([-3, 7]), json!([true, false]), json!(["hi"]), json!([5]))
        );
        assert_eq!(parsed["id"], "7");

        let bad = vec![raw("s", "BYTES", vec![1], b"\x01\0\0\0\xff".to_vec())];
        let response = InferResponse { model_name: "m".into(), model_version: None, id: None, outputs: bad };
        let error = encode_response(response, |_| false).unwrap_err().to_string();
        assert!(error.contains("not UTF-8; ask for it as binary data"), "{error}");
    }
}
