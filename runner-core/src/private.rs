//! Not public API. Used by generated code.

pub use inventory;
pub use serde;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::artifacts::{Artifacts, SaveDir};
use crate::runner::{default_load, default_save, Saved};
use crate::{BoxError, Error, Hook, Result};

/// `Self` and `T` are the same type. Used to line up the types of adjacent hooks with an
/// error on the user's own type when they differ.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not match `{T}`",
    label = "expected `{T}` here, found `{Self}`",
    note = "with #[runner], each hook's output type must be the next hook's input type, and every hook must use the same model type"
)]
pub trait SameAs<T> {
    /// The value as `T`.
    fn cast(self) -> T;
}

impl<T> SameAs<T> for T {
    #[inline(always)]
    fn cast(self) -> T {
        self
    }
}

/// Turns `a: A` into `B` when `A` and `B` are the same type.
#[inline(always)]
pub fn same<A: SameAs<B>, B>(a: A) -> B {
    a.cast()
}

/// The API input must be deserializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the API input of this runner, so it must implement `serde::Deserialize`",
    label = "the request body is deserialized into this type",
    note = "derive `serde::Deserialize` for it, or add a `preprocess_data(data: T)` hook whose `T` is deserializable"
)]
pub trait ApiInput: DeserializeOwned + Send + 'static {}
impl<T: DeserializeOwned + Send + 'static> ApiInput for T {}

/// The API output must be serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is the API output of this runner, so it must implement `serde::Serialize`",
    label = "the response body is serialized from this type",
    note = "derive `serde::Serialize` for it, or add a `postprocess_data` hook that returns a serializable type"
)]
pub trait ApiOutput: Serialize + Send + 'static {}
impl<T: Serialize + Send + 'static> ApiOutput for T {}

/// The model is shared by every request thread.
#[diagnostic::on_unimplemented(
    message = "the model type `{Self}` must be `Send + Sync + 'static`",
    label = "the model is shared by all request threads",
    note = "wrap non-thread-safe parts in a `Mutex`, or hold them per thread"
)]
pub trait SharedModel: Send + Sync + 'static {}
impl<T: Send + Sync + 'static> SharedModel for T {}

/// A model saved by the default saver.
#[diagnostic::on_unimplemented(
    message = "the model type `{Self}` must implement `Serialize` and `Deserialize` for the default saver",
    label = "saved and loaded by the default saver, because neither `save_model` nor `load_model` is overridden",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, or override save_model/load_model"
)]
pub trait DefaultSaved: Serialize + DeserializeOwned {}
impl<T: Serialize + DeserializeOwned> DefaultSaved for T {}

/// The default saver and loader for model type `M`, built where the serde bounds are
/// checked once.
pub struct DefaultSaver<M> {
    /// Saves with the default saver.
    pub save: fn(&str, &M, &SaveDir) -> Result<Saved>,
    /// Loads with the default loader.
    pub load: fn(&str, &Artifacts) -> Result<M>,
}

/// The default saver and loader; requires `M: Serialize + Deserialize`.
#[inline(always)]
pub fn default_saver<M: DefaultSaved>() -> DefaultSaver<M> {
    DefaultSaver { save: default_save::<M>, load: default_load::<M> }
}

/// Converts the `Result` a hook returned, attributing an error to `hook`.
#[inline(always)]
pub fn hook_result<T, E: Into<BoxError>>(hook: Hook, result: std::result::Result<T, E>) -> Result<T> {
    result.map_err(|e| Error::from_hook(hook, e))
}

/// A model builder may return the model or a `Result` of it.
#[diagnostic::on_unimplemented(
    message = "the model builder returns `{Self}`, but this runner's model type is `{M}`",
    label = "`model = ...` must name a `fn() -> {M}` or `fn() -> Result<{M}, E>`",
    note = "the model type is the type `predict` borrows as its first parameter"
)]
pub trait BuiltModel<M> {
    /// Into the framework's result.
    fn into_model(self) -> Result<M>;
}

impl<M> BuiltModel<M> for M {
    fn into_model(self) -> Result<M> {
        Ok(self)
    }
}

impl<M, E: Into<BoxError>> BuiltModel<M> for std::result::Result<M, E> {
    fn into_model(self) -> Result<M> {
        self.map_err(|e| Error::from_hook(Hook::BuildModel, e))
    }
}

/// Calls a model builder.
pub fn build_model<M, R: BuiltModel<M>>(f: fn() -> R) -> Result<M> {
    f().into_model()
}
