//! Checks across hooks and on the impl block itself; one function per rule.

use syn::spanned::Spanned;
use syn::ItemImpl;

use crate::ast::Hooks;
use crate::attr::Options;

pub fn check_impl_block(item: &ItemImpl, errors: &mut Vec<syn::Error>) {
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(syn::Error::new(
            path.span(),
            "#[runner] goes on an inherent impl block (`impl MyRunner { ... }`), not on a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        errors.push(syn::Error::new(
            item.generics.span(),
            "#[runner] impl blocks cannot be generic: a runner is registered and found by name, so it needs one concrete type; write a runner per concrete type",
        ));
    }
    if let Some(unsafety) = &item.unsafety {
        errors.push(syn::Error::new(unsafety.span(), "#[runner] impl blocks cannot be `unsafe`"));
    }
}

pub fn check_predict_present(item: &ItemImpl, options: &Options, hooks: &Hooks, errors: &mut Vec<syn::Error>) {
    if hooks.find("predict").is_none() && options.backend.is_none() {
        errors.push(syn::Error::new(
            item.self_ty.span(),
            "a runner needs a `predict` hook: add `fn predict(model: &Model, data: Input) -> Output`, or take it from a backend: `#[runner(backend = runner_torch::Torch)]`",
        ));
    }
}

pub fn check_save_needs_load(hooks: &Hooks, errors: &mut Vec<syn::Error>) {
    if let (Some(save), None) = (hooks.find("save_model"), hooks.find("load_model")) {
        errors.push(syn::Error::new(
            save.span(),
            "overriding `save_model` requires overriding `load_model` too: add `fn load_model(props: Option<Props>, artifacts: &Artifacts) -> Result<Model>` that reads back what `save_model` wrote",
        ));
    }
}

/// A backend provides predict, batching, save and load: the block must not declare them.
pub fn check_backend_hooks(options: &Options, hooks: &Hooks, errors: &mut Vec<syn::Error>) {
    if options.backend.is_none() {
        return;
    }
    for hook in ["predict", "predict_batch", "save_model", "load_model"] {
        if let Some(ident) = hooks.find(hook) {
            errors.push(syn::Error::new(
                ident.span(),
                format!("`{hook}` comes from the backend given in `#[runner(backend = ...)]`: remove this function, or remove `backend` and write predict, save_model and load_model yourself"),
            ));
        }
    }
}

pub fn check_batch_options(options: &Options, hooks: &Hooks, errors: &mut Vec<syn::Error>) {
    if hooks.find("predict_batch").is_some() || options.backend.is_some() {
        return;
    }
    for (key, _) in [&options.max_batch_size, &options.max_delay_ms].into_iter().flatten() {
        errors.push(syn::Error::new(
            key.span(),
            format!("`{key}` configures batching, which needs a `predict_batch` hook: add `fn predict_batch(model: &Model, data: Vec<ModelInput>) -> Vec<ModelOutput>`"),
        ));
    }
}
