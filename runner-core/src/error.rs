//! The framework's error type.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A boxed error from user code (a hook, a model builder).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the framework's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One of the five hooks of a runner (plus the model builder used at registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// `preprocess_data(data)`: API input to model input.
    PreprocessData,
    /// `predict(model, data)`: model input to model output.
    Predict,
    /// `postprocess_data(data)`: model output to API output.
    PostprocessData,
    /// `save_model(model)`: writes the model, returns props.
    SaveModel,
    /// `load_model(props, artifacts)`: builds the model instance at serving time.
    LoadModel,
    /// The `model = ...` builder named in `#[runner(...)]`, called by `register`.
    BuildModel,
}

impl Hook {
    /// The hook's name as users write it.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::PreprocessData => "preprocess_data",
            Hook::Predict => "predict",
            Hook::PostprocessData => "postprocess_data",
            Hook::SaveModel => "save_model",
            Hook::LoadModel => "load_model",
            Hook::BuildModel => "model builder",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of failure an [`Error`] is, independent of any protocol. Front ends map
/// kinds to their statuses; the HTTP server's mapping is in `serve::status_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input was understood but rejected (wrong shape, out of range). HTTP 422.
    InvalidInput,
    /// The request is malformed (not JSON, a bad name). HTTP 400.
    BadRequest,
    /// What was asked for does not exist. HTTP 404.
    NotFound,
    /// The request conflicts with the current state. HTTP 409.
    Conflict,
    /// The request is larger than the server accepts. HTTP 413.
    TooLarge,
    /// The server is at capacity or not ready yet; retry shortly. HTTP 503.
    Overloaded,
    /// The request took longer than its time limit. HTTP 504.
    Timeout,
    /// The disk (or quota) the registry writes to is full; nothing of the request was
    /// kept. Free space and send it again. HTTP 507.
    StorageFull,
    /// A hook panicked. HTTP 500.
    Panic,
    /// A batched `predict_batch` returned the wrong number of outputs. HTTP 500.
    BatchMismatch,
    /// Anything else: a bug, a failed hook, a broken store. HTTP 500.
    Internal,
}

impl ErrorKind {
    /// The kind's stable code in JSON error bodies.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooLarge => "payload_too_large",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::StorageFull => "insufficient_storage",
            ErrorKind::Panic => "panic",
            ErrorKind::BatchMismatch => "batch_mismatch",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Everything that can go wrong in the framework, with enough context to act on.
///
/// Hooks return their own errors; the framework wraps them in [`Error::Hook`] and keeps
/// an [`Error`] returned by a hook as it is, so a hook can say what kind of failure it is
/// with [`Error::invalid_input`] or [`Error::new`]. Every error has an [`ErrorKind`];
/// front ends map kinds to their own statuses (the HTTP server: 422, 404, 503...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input was rejected (bad JSON, wrong shape, out-of-range value).
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong, naming the field where known.
        message: String,
    },

    /// The request itself is malformed (not JSON, say).
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
    },

    /// A hook failed.
    #[error("`{hook}` failed: {source}")]
    Hook {
        /// Which hook.
        hook: Hook,
        /// The hook's own error.
        #[source]
        source: BoxError,
    },

    /// An error a hook raises on purpose, saying what kind of failure it is; built by
    /// [`Error::new`].
    #[error("{message}")]
    Raised {
        /// What kind of failure (a front end answers with the matching status).
        kind: ErrorKind,
        /// The message returned to the caller.
        message: String,
    },

    /// The serving engine refused or lost a request: it is at capacity, past its time
    /// limit, or a hook panicked. Built by the execution engine, never by hooks.
    #[error("{message}")]
    Serving {
        /// Which failure.
        kind: ErrorKind,
        /// What happened and what to do.
        message: String,
    },

    /// A rule of registration was broken; the message says what to change.
    #[error("cannot register `{repository}`: {message}")]
    Registration {
        /// The repository being registered into.
        repository: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// An artifact mapping is invalid or names files that cannot be uploaded.
    #[error("artifact `{local}` => `{remote}`: {message}")]
    Artifact {
        /// The local side of the mapping, as given.
        local: String,
        /// The volume side of the mapping, as given.
        remote: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A name (organization, repository, volume path, model reference) is malformed.
    #[error("invalid {what} `{value}`: {message}")]
    InvalidName {
        /// What kind of name.
        what: &'static str,
        /// The name as given.
        value: String,
        /// The rule it breaks.
        message: String,
    },

    /// The model, repository or file does not exist in the registry.
    #[error("{what} not found: {message}")]
    NotFound {
        /// What is missing (`model`, `repository`, `file`).
        what: &'static str,
        /// Which one, and what exists instead.
        message: String,
    },

    /// Someone else changed the model during this registration; nothing was changed.
    #[error("{message}")]
    Conflict {
        /// What happened and what to do.
        message: String,
    },

    /// A commit was refused because what it names is no longer stored: its number was
    /// given back (garbage collection gives back numbers whose registration went quiet
    /// for its grace period) or contents it lists are missing (collected, or never
    /// sent). Nothing was changed. [`RegisterModel::register`](crate::RegisterModel::register)
    /// recovers by itself: it sends the contents again, takes a new number when its own
    /// was given back, and commits again.
    #[error("{message}")]
    Gone {
        /// What is gone.
        missing: Missing,
        /// What happened and what to do.
        message: String,
    },

    /// A manifest could not be read or is malformed.
    #[error("manifest of {model}: {message}")]
    Manifest {
        /// The model whose manifest is bad.
        model: String,
        /// What is wrong.
        message: String,
    },

    /// A stored file does not match the size or sha256 recorded in its manifest.
    #[error("{path}: checksum mismatch (expected sha256 {expected}, found {actual}); the stored copy is corrupt, register the model again")]
    Checksum {
        /// The file's volume path.
        path: String,
        /// The sha256 in the manifest.
        expected: String,
        /// The sha256 of the stored bytes.
        actual: String,
    },

    /// The model's runner is not compiled into this binary.
    #[error("model {model} needs runner `{runner}`, which this binary does not contain (it has: {available}); build the binary with the crate that defines `{runner}`")]
    RunnerNotFound {
        /// The model reference.
        model: String,
        /// The runner named in its manifest.
        runner: String,
        /// The runners this binary contains, comma separated.
        available: String,
    },

    /// The default saver or loader could not (de)serialize the model instance.
    #[error("default model serialization ({path}): {message}")]
    DefaultSerde {
        /// The reserved file involved.
        path: String,
        /// What went wrong.
        message: String,
    },

    /// An I/O error, with the file it happened on.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `writing`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The model cannot be built on this machine: something it needs is not set up
    /// (files a set-up script makes, say). `register` with no runner named skips it.
    #[error("{0}")]
    Unavailable(String),

    /// One error given to every request of a batch that failed together.
    #[error("{0}")]
    Shared(std::sync::Arc<Error>),

    /// Anything else, with a message.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An error for bad caller input; served as HTTP 422.
    ///
    /// ```
    /// # use runner_core::Error;
    /// fn check(x: f64) -> runner_core::Result<f64> {
    ///     if x < 0.0 {
    ///         return Err(Error::invalid_input("`petal_length` must be >= 0"));
    ///     }
    ///     Ok(x)
    /// }
    /// assert!(check(-1.0).is_err());
    /// ```
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput { message: message.into() }
    }

    /// An error of a given kind, for a hook to raise: a front end answers it with the
    /// matching status (HTTP: [`ErrorKind::Conflict`] is 409, [`ErrorKind::BadRequest`] 400).
    /// Its code in JSON error bodies is `hook_error`.
    ///
    /// ```
    /// # use runner_core::{Error, ErrorKind};
    /// let e = Error::new(ErrorKind::Conflict, "the model is being retrained");
    /// assert_eq!(e.kind(), ErrorKind::Conflict);
    /// assert_eq!(e.code(), "hook_error");
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Raised { kind, message: message.into() }
    }

    /// An error of the serving engine (at capacity, timed out, a panic).
    pub fn serving(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Serving { kind, message: message.into() }
    }

    /// The model cannot be built here; say what to set up.
    ///
    /// ```
    /// # use runner_core::Error;
    /// let e = Error::unavailable("run scripts/export_minilm.py first");
    /// assert!(matches!(e, Error::Unavailable(_)));
    /// ```
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable(message.into())
    }

    /// A plain error with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Error::Other(message.into())
    }

    /// Wraps the error a hook returned. An [`Error`] passes through unchanged, so the
    /// status it asks for is kept.
    pub fn from_hook(hook: Hook, error: impl Into<BoxError>) -> Self {
        let boxed: BoxError = error.into();
        match boxed.downcast::<Error>() {
            Ok(error) => *error,
            Err(source) => Error::Hook { hook, source },
        }
    }

    /// What kind of failure this is; front ends map it to their statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::BadRequest { .. } | Error::InvalidName { .. } => ErrorKind::BadRequest,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict { .. } => ErrorKind::Conflict,
            // Statuses from before the error was typed: 404 for the number, 422 for contents.
            Error::Gone { missing, .. } if missing.number.is_some() => ErrorKind::NotFound,
            Error::Gone { .. } => ErrorKind::InvalidInput,
            Error::Raised { kind, .. } | Error::Serving { kind, .. } => *kind,
            Error::Shared(error) => error.kind(),
            Error::Io { source, .. } if is_storage_full(source) => ErrorKind::StorageFull,
            _ => ErrorKind::Internal,
        }
    }

    /// A stable, machine-readable code for this error, used in JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Hook { .. } | Error::Raised { .. } => "hook_error",
            Error::Serving { kind, .. } => kind.code(),
            Error::Shared(error) => error.code(),
            other => other.kind().code(),
        }
    }

    /// A failed write to storage: [`ErrorKind::StorageFull`] when the disk or quota is
    /// full (saying so, and what to do), otherwise an internal error; `what` says what
    /// was being stored.
    pub fn storing(what: &str, source: std::io::Error) -> Self {
        if is_storage_full(&source) {
            Error::serving(
                ErrorKind::StorageFull,
                format!("no space left to store {what} ({source}); nothing of it was kept: free space (`runner-registry gc` removes what no model needs) and send it again"),
            )
        } else {
            Error::msg(format!("storing {what}: {source}"))
        }
    }

    pub(crate) fn io(action: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.as_ref().to_path_buf(), source }
    }
}

/// Adds the file path to an I/O result.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

/// The JSON error envelope of every HTTP front end (the serving server and the registry
/// server): `{"error": {"status": 404, "code": "not_found", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What an [`ErrorBody`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The HTTP status, repeated.
    pub status: u16,
    /// A stable, machine-readable code (`not_found`, `conflict`, `checksum_mismatch`...).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// For a refused commit ([`Error::Gone`]): what it named that is no longer stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Missing>,
}

/// What a refused commit named that is no longer stored ([`Error::Gone`]), in the error
/// body as `"missing": {"number": 7, "contents": ["ab12..."]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// The model number, when it no longer exists (given back, or deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// The sha256 of every content the manifest lists that the organization may not
    /// read (collected, or never sent), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<String>,
}

impl ErrorBody {
    /// An error body.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody { error: ErrorDetail { status, code: code.into(), message: message.into(), missing: None } }
    }
}

/// Whether `error` says the disk or a quota is full (`ENOSPC`, `EDQUOT`).
fn is_storage_full(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}
