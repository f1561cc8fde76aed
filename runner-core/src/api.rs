//! What crosses the API boundary: request bodies into [`Runner::Input`](crate::Runner::Input)
//! and [`Runner::Output`](crate::Runner::Output) into response bodies.
//!
//! Any `Deserialize` type is a JSON input and any `Serialize` type a JSON output. A runner
//! that takes raw bytes (an image, audio) uses [`RawBody`]; one that answers with bytes
//! uses [`RawResponse`].

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// The media type of JSON bodies.
pub const JSON: &str = "application/json";

/// A type a request body can be turned into.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the API input of this runner, so it must implement `serde::Deserialize` (or be `RawBody`)",
    label = "the request body is turned into this type",
    note = "derive `serde::Deserialize` for it, or add a `preprocess_data(data: T)` hook whose `T` is deserializable"
)]
pub trait ApiInput: Sized + Send + 'static {
    /// Parses a request body. The error for a body of the wrong shape names the field.
    fn from_body(body: Bytes, content_type: Option<&str>) -> Result<Self>;
    /// From a JSON value.
    fn from_json(value: serde_json::Value) -> Result<Self>;
    /// The request media type, for the OpenAPI document.
    fn media_type() -> &'static str {
        JSON
    }
}

/// A type a response body can be made from.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the API output of this runner, so it must implement `serde::Serialize` (or be `RawResponse`)",
    label = "the response body is made from this type",
    note = "derive `serde::Serialize` for it, or add a `postprocess_data` hook that returns a serializable type"
)]
pub trait ApiOutput: Send + 'static {
    /// The response body and its media type.
    fn into_body(self) -> Result<(Bytes, &'static str)>;
    /// As a JSON value.
    fn into_json(self) -> Result<serde_json::Value>;
    /// The response media type, for the OpenAPI document.
    fn media_type() -> &'static str {
        JSON
    }
}

/// Splits a JSON error into "malformed JSON" (400) and "wrong shape" (422, naming the field).
fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let message = if path == "." { inner.to_string() } else { format!("at `{path}`: {inner}") };
    match inner.classify() {
        serde_json::error::Category::Data => Error::invalid_input(message),
        _ => Error::BadRequest { message: format!("the body is not valid JSON: {message}") },
    }
}

impl<T: DeserializeOwned + Send + 'static> ApiInput for T {
    fn from_body(body: Bytes, _content_type: Option<&str>) -> Result<Self> {
        // JSON whatever the declared type: `curl -d` sends form-urlencoded by default.
        // The fast path parses plainly; only a failure is parsed again to name the field.
        serde_json::from_slice(&body).map_err(|_| {
            let mut deserializer = serde_json::Deserializer::from_slice(&body);
            match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
                Err(e) => json_error(e),
                Ok(_) => match deserializer.end() {
                    Err(e) => {
                        Error::BadRequest { message: format!("the body is not valid JSON: trailing characters: {e}") }
                    }
                    Ok(()) => Error::BadRequest { message: "the body is not valid JSON".into() },
                },
            }
        })
    }

    fn from_json(value: serde_json::Value) -> Result<Self> {
        serde_path_to_error::deserialize(value).map_err(json_error)
    }
}

impl<T: Serialize + Send + 'static> ApiOutput for T {
    fn into_body(self) -> Result<(Bytes, &'static str)> {
        let bytes =
            serde_json::to_vec(&self).map_err(|e| Error::msg(format!("cannot serialize the output as JSON: {e}")))?;
        Ok((Bytes::from(bytes), JSON))
    }

    fn into_json(self) -> Result<serde_json::Value> {
        serde_json::to_value(&self).map_err(|e| Error::msg(format!("cannot serialize the output as JSON: {e}")))
    }
}

/// A raw request body, for runners that take bytes (an image, audio, a file).
///
/// ```
/// use runner_core::{runner, RawBody};
///
/// pub struct Length;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// pub struct Unit;
///
/// #[runner(name = "length")]
/// impl Length {
///     fn predict(_model: &Unit, data: RawBody) -> usize {
///         data.bytes.len()
///     }
/// }
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawBody {
    /// The body.
    pub bytes: Bytes,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
}

impl ApiInput for RawBody {
    fn from_body(body: Bytes, content_type: Option<&str>) -> Result<Self> {
        Ok(RawBody { bytes: body, content_type: content_type.map(str::to_string) })
    }

    fn from_json(_: serde_json::Value) -> Result<Self> {
        Err(Error::BadRequest {
            message: "this runner takes a raw body (e.g. `Content-Type: application/octet-stream`), not JSON".into(),
        })
    }

    fn media_type() -> &'static str {
        "application/octet-stream"
    }
}

/// A raw response body with its media type, for runners that answer with bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The body.
    pub bytes: Bytes,
    /// Its media type, e.g. `image/png`.
    pub content_type: &'static str,
}

impl ApiOutput for RawResponse {
    fn into_body(self) -> Result<(Bytes, &'static str)> {
        Ok((self.bytes, self.content_type))
    }

    fn into_json(self) -> Result<serde_json::Value> {
        Err(Error::msg("this runner answers with raw bytes, which have no JSON form"))
    }

    fn media_type() -> &'static str {
        "application/octet-stream"
    }
}

/// How a batched runner groups concurrent requests (`#[runner(max_batch_size = .., max_delay_ms = ..)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// At most this many inputs per `predict_batch` call (at least 1).
    pub max_batch_size: usize,
    /// A request waits at most this long for others to join its batch, and only while
    /// others are on their way (admitted, still in preprocessing).
    pub max_delay: std::time::Duration,
}

/// JSON Schemas of a runner's API input and output (for `/openapi.json`), when the types
/// implement `schemars::JsonSchema`.
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    /// Schema of the request body.
    pub input: Option<serde_json::Value>,
    /// Schema of the response body.
    pub output: Option<serde_json::Value>,
}
