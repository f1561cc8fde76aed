//! Checks across hooks and on the impl block itself; one function per rule.

use syn::spanned::Spanned;
use syn::ItemImpl;

use crate::ast::Hooks;
use crate::attr::Options;
use crate::ctxt::Ctxt;
use crate::kind::HookKind;

pub fn check_impl_block(cx: &Ctxt, item: &ItemImpl) {
    if let Some((_, path, _)) = &item.trait_ {
        cx.error(
            path.span(),
            "#[runner] goes on an inherent impl block (`impl MyRunner { ... }`), not on a trait impl",
        );
    }
    if !item.generics.params.is_empty() {
        cx.error(
            item.generics.span(),
            "#[runner] impl blocks cannot be generic: a runner is registered and found by name, so it needs one concrete type; write a runner per concrete type",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error(unsafety.span(), "#[runner] impl blocks cannot be `unsafe`");
    }
}

pub fn check_predict_present(cx: &Ctxt, item: &ItemImpl, options: &Options, hooks: &Hooks) {
    if hooks.find(HookKind::Predict).is_none() && !options.given("backend") {
        cx.error(
            item.self_ty.span(),
            "a runner needs a `predict` hook: add `fn predict(model: &Model, data: Input) -> Output`, or take it from a backend: `#[runner(backend = runner_torch::Torch)]`",
        );
    }
}

pub fn check_save_needs_load(cx: &Ctxt, hooks: &Hooks) {
    if let (Some(save), None) = (hooks.find(HookKind::SaveModel), hooks.find(HookKind::LoadModel)) {
        cx.error(
            save.span(),
            "overriding `save_model` requires overriding `load_model` too: add `fn load_model(props: Option<Props>, artifacts: &Artifacts) -> Result<Model>` that reads back what `save_model` wrote",
        );
    }
}

/// A backend provides predict, batching, save and load: the block must not declare them.
pub fn check_backend_hooks(cx: &Ctxt, options: &Options, hooks: &Hooks) {
    if options.backend.is_none() {
        return;
    }
    for kind in HookKind::ALL.into_iter().filter(|kind| kind.spec().from_backend) {
        if let Some(ident) = hooks.find(kind) {
            let hook = kind.name();
            cx.error(
                ident.span(),
                format!("`{hook}` comes from the backend given in `#[runner(backend = ...)]`: remove this function, or remove `backend` and write predict, save_model and load_model yourself"),
            );
        }
    }
}

pub fn check_batch_options(cx: &Ctxt, options: &Options, hooks: &Hooks) {
    if hooks.find(HookKind::PredictBatch).is_some() || options.given("backend") {
        return;
    }
    for (key, _) in [&options.max_batch_size, &options.max_delay_ms].into_iter().flatten() {
        cx.error(
            key.span(),
            format!("`{key}` configures batching, which needs a `predict_batch` hook: add `fn predict_batch(model: &Model, data: Vec<ModelInput>) -> Vec<ModelOutput>`"),
        );
    }
}
