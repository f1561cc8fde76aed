//! Not public API. Used by generated code.

pub use inventory;

pub use schemars;

use crate::artifacts::{Artifacts, SaveDir};
use crate::runner::{default_load, default_save, Saved};
pub use crate::runner::{DefaultSaved, SharedModel};
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
    /// A `T` as `Self`.
    fn uncast(value: T) -> Self;
}

impl<T> SameAs<T> for T {
    #[inline(always)]
    fn cast(self) -> T {
        self
    }
    #[inline(always)]
    fn uncast(value: T) -> T {
        value
    }
}

/// Turns `a: A` into `B` when `A` and `B` are the same type.
#[inline(always)]
pub fn same<A: SameAs<B>, B>(a: A) -> B {
    a.cast()
}

/// Turns `a: A` into the user's type `B` when they are the same type; the error names `B`
/// first, so it lands on the user's token.
#[inline(always)]
pub fn same_as_user<B: SameAs<A>, A>(a: A) -> B {
    B::uncast(a)
}

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

/// Probes at compile time whether `T` implements `JsonSchema` (autoref specialization on
/// the concrete types the macro passes).
pub struct SchemaProbe<T>(std::marker::PhantomData<T>);

impl<T> SchemaProbe<T> {
    /// A probe.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        SchemaProbe(std::marker::PhantomData)
    }
}

/// Picked when `T: JsonSchema`.
pub trait HasSchema {
    /// `T`'s schema.
    fn schema(self, generator: &mut schemars::SchemaGenerator) -> Option<serde_json::Value>;
}

impl<T: schemars::JsonSchema> HasSchema for &&SchemaProbe<T> {
    fn schema(self, generator: &mut schemars::SchemaGenerator) -> Option<serde_json::Value> {
        Some(generator.subschema_for::<T>().to_value())
    }
}

/// Picked otherwise.
pub trait NoSchema {
    /// No schema.
    fn schema(self, generator: &mut schemars::SchemaGenerator) -> Option<serde_json::Value>;
}

impl<T> NoSchema for &SchemaProbe<T> {
    fn schema(self, _: &mut schemars::SchemaGenerator) -> Option<serde_json::Value> {
        None
    }
}
