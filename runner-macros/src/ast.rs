//! The impl block as the macro sees it: which hooks are present and their signatures,
//! keeping the user's syntax nodes for spans.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ImplItem, ImplItemFn, ItemImpl, PathArguments, ReturnType, Type};

/// The hooks, by name.
pub const HOOK_NAMES: &[&str] =
    &["predict", "predict_batch", "preprocess_data", "postprocess_data", "save_model", "load_model"];

/// One parameter: its type.
pub struct Param {
    pub ty: Type,
}

/// A hook's return type: `T`, or `Result<T, E>` (any path whose last segment is `Result`).
pub struct Return {
    /// `T`.
    pub value: Type,
    /// Whether it was written as a `Result`.
    pub fallible: bool,
    pub span: Span,
}

/// One hook found in the impl block.
pub struct Hook {
    pub params: Vec<Param>,
    pub ret: Option<Return>,
}

/// The impl block's hooks.
#[derive(Default)]
pub struct Hooks {
    pub predict: Option<Hook>,
    pub batch: Option<Hook>,
    pub preprocess: Option<Hook>,
    pub postprocess: Option<Hook>,
    pub save: Option<Hook>,
    pub load: Option<Hook>,
    /// Every hook name found, with its ident, even when its signature was rejected.
    pub present: Vec<syn::Ident>,
}

impl Hooks {
    /// The hook called `name`, if the block has a function of that name.
    pub fn find(&self, name: &str) -> Option<&syn::Ident> {
        self.present.iter().find(|i| *i == name)
    }

    /// Collects the hooks of `item`, with an error for each item that cannot be one.
    pub fn collect(item: &ItemImpl, errors: &mut Vec<syn::Error>) -> Hooks {
        let mut hooks = Hooks::default();
        for impl_item in &item.items {
            match impl_item {
                ImplItem::Fn(f) => {
                    let name = f.sig.ident.to_string();
                    let slot = match name.as_str() {
                        "predict" => &mut hooks.predict,
                        "predict_batch" => &mut hooks.batch,
                        "preprocess_data" => &mut hooks.preprocess,
                        "postprocess_data" => &mut hooks.postprocess,
                        "save_model" => &mut hooks.save,
                        "load_model" => &mut hooks.load,
                        other => {
                            if let Some(hook) = crate::attr::suggestion(other, HOOK_NAMES) {
                                errors.push(syn::Error::new(
                                    f.sig.ident.span(),
                                    format!("`{other}` is not a runner hook; did you mean `{hook}`? (rename it, or give a helper function a name that is not close to a hook's)"),
                                ));
                            }
                            continue;
                        }
                    };
                    hooks.present.push(f.sig.ident.clone());
                    if let Some(hook) = parse_hook(f, errors) {
                        *slot = Some(hook);
                    }
                }
                ImplItem::Macro(m) => errors.push(syn::Error::new(
                    m.mac.path.span(),
                    "macro invocations are not supported in a #[runner] impl block: the macro cannot see the hooks they would expand to; write the functions out",
                )),
                _ => {}
            }
        }
        hooks
    }
}

fn parse_hook(f: &ImplItemFn, errors: &mut Vec<syn::Error>) -> Option<Hook> {
    let sig = &f.sig;
    let name = sig.ident.to_string();
    let before = errors.len();
    for attr in &f.attrs {
        if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
            errors.push(syn::Error::new(
                attr.span(),
                format!("`#[cfg]` on the hook `{name}` is not supported: the runner's types depend on which hooks exist; put the #[cfg] inside the function body instead"),
            ));
        }
    }
    if let Some(asyncness) = &sig.asyncness {
        errors.push(syn::Error::new(
            asyncness.span(),
            format!("the hook `{name}` cannot be `async`: hooks run on worker threads; remove `async` and block inside if needed"),
        ));
    }
    if let Some(constness) = &sig.constness {
        errors.push(syn::Error::new(constness.span(), format!("the hook `{name}` cannot be `const`")));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new(unsafety.span(), format!("the hook `{name}` cannot be `unsafe`")));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new(
            sig.generics.span(),
            format!("the hook `{name}` cannot be generic: the runner's types are read from the hooks' concrete types"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new(variadic.span(), format!("the hook `{name}` cannot be variadic")));
    }
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new(
                receiver.span(),
                format!("the hook `{name}` cannot take `self`: hooks are associated functions; remove the receiver"),
            )),
            FnArg::Typed(pat) => params.push(Param { ty: (*pat.ty).clone() }),
        }
    }
    let (expected, shape): (&[usize], &str) = match name.as_str() {
        "predict" => (&[2], "(model: &Model, data: ModelInput)"),
        "predict_batch" => (&[2], "(model: &Model, data: Vec<ModelInput>)"),
        "preprocess_data" => (&[1, 2], "(data: ApiInput) or (model: &Model, data: ApiInput)"),
        "postprocess_data" => (&[1, 2], "(data: ModelOutput) or (model: &Model, data: ModelOutput)"),
        "save_model" => (&[1, 2], "(model: &Model) or (model: &Model, dir: &SaveDir)"),
        "load_model" => (&[2], "(props: Option<Props>, artifacts: &Artifacts)"),
        _ => unreachable!("only hooks are parsed"),
    };
    let has_receiver = sig.receiver().is_some();
    if !has_receiver && !expected.contains(&params.len()) {
        let found = params.len();
        let expected_count = expected.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" or ");
        errors.push(syn::Error::new(
            if sig.inputs.is_empty() { sig.paren_token.span.join() } else { sig.inputs.span() },
            format!(
                "`{name}` takes {expected_count} parameter{}: `fn {name}{shape}`, found {found}",
                if expected == [1] { "" } else { "s" }
            ),
        ));
    }
    // The model is shared between threads: hooks that receive it must borrow it.
    let borrows_model = match name.as_str() {
        "predict" | "predict_batch" | "save_model" => true,
        "preprocess_data" | "postprocess_data" => params.len() == 2,
        _ => false,
    };
    if borrows_model && expected.contains(&params.len()) {
        if let Some(first) = params.first() {
            match &first.ty {
                Type::Reference(r) if r.mutability.is_none() => {}
                Type::Reference(r) => errors.push(syn::Error::new(
                    r.mutability.span(),
                    format!("`{name}` gets a shared borrow of the model, which every request uses at once: write `&Model`, not `&mut Model`; use interior mutability (a Mutex) for state"),
                )),
                other => errors.push(syn::Error::new(
                    other.span(),
                    format!("`{name}` borrows the model, which is shared by every request: write `model: &{}`", quote::quote!(#other)),
                )),
            }
        }
    }
    let ret = match &sig.output {
        ReturnType::Default => {
            let what = match name.as_str() {
                "predict" => "the model output",
                "predict_batch" => "one model output per input (`Vec<ModelOutput>`)",
                "preprocess_data" => "the model input",
                "postprocess_data" => "the API output",
                "save_model" => "the props (`Props` or `Result<Props>`)",
                _ => "the model instance",
            };
            errors
                .push(syn::Error::new(sig.ident.span(), format!("the hook `{name}` must return {what}: add `-> ...`")));
            None
        }
        ReturnType::Type(_, ty) => Some(split_result(ty)),
    };
    (errors.len() == before).then(|| Hook { params, ret })
}

/// `Result<T, E>` -> (T, true); anything else -> (it, false).
fn split_result(ty: &Type) -> Return {
    if let Type::Path(path) = ty {
        if let Some(last) = path.path.segments.last() {
            if last.ident == "Result" {
                if let PathArguments::AngleBracketed(args) = &last.arguments {
                    if let Some(GenericArgument::Type(value)) = args.args.first() {
                        return Return { value: value.clone(), fallible: true, span: ty.span() };
                    }
                }
            }
        }
    }
    Return { value: ty.clone(), fallible: false, span: ty.span() }
}

/// `&T` -> `T` (other types unchanged).
pub fn strip_ref(ty: &Type) -> &Type {
    match ty {
        Type::Reference(r) => &r.elem,
        other => other,
    }
}
