//! The impl block as the macro sees it: which hooks are present and their signatures,
//! keeping the user's syntax nodes for spans.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ImplItem, ImplItemFn, ItemImpl, PathArguments, ReturnType, Type};

use crate::ctxt::Ctxt;
use crate::kind::HookKind;

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

/// One hook found in the impl block, with a signature its kind accepts.
pub struct Hook {
    pub kind: HookKind,
    pub params: Vec<Param>,
    pub ret: Return,
}

impl Hook {
    /// Whether its first parameter borrows the model.
    pub fn borrows_model(&self) -> bool {
        self.kind.spec().borrows_model(self.params.len())
    }

    /// The type of parameter `index`.
    pub fn param(&self, index: usize) -> &Type {
        &self.params[index].ty
    }

    /// The data parameter of a pre/postprocess hook: the last (the first may borrow the model).
    pub fn data_param(&self) -> &Type {
        &self.params[self.params.len() - 1].ty
    }
}

/// A function of the block named like a hook.
struct Found {
    ident: syn::Ident,
    /// `None` when its signature was rejected.
    hook: Option<Hook>,
}

/// The impl block's hooks, by kind.
#[derive(Default)]
pub struct Hooks {
    found: [Option<Found>; HookKind::ALL.len()],
}

impl Hooks {
    /// The hook of `kind`, if the block defines it with a signature that kind accepts.
    pub fn get(&self, kind: HookKind) -> Option<&Hook> {
        self.found[kind.index()].as_ref().and_then(|f| f.hook.as_ref())
    }

    /// The name of the block's function for `kind`, even when its signature was rejected.
    pub fn find(&self, kind: HookKind) -> Option<&syn::Ident> {
        self.found[kind.index()].as_ref().map(|f| &f.ident)
    }

    /// Collects the hooks of `item`, with an error for each item that cannot be one.
    pub fn collect(cx: &Ctxt, item: &ItemImpl) -> Hooks {
        let mut hooks = Hooks::default();
        for impl_item in &item.items {
            match impl_item {
                ImplItem::Fn(f) => {
                    let name = f.sig.ident.to_string();
                    let Some(kind) = HookKind::from_name(&name) else {
                        if let Some(hook) = crate::attr::suggestion(&name, &HookKind::names()) {
                            cx.error(
                                f.sig.ident.span(),
                                format!("`{name}` is not a runner hook; did you mean `{hook}`? (rename it, or give a helper function a name that is not close to a hook's)"),
                            );
                        }
                        continue;
                    };
                    let hook = parse_hook(cx, kind, f);
                    // A second function of the same name is rustc's error to report.
                    let slot = &mut hooks.found[kind.index()];
                    if slot.is_none() {
                        *slot = Some(Found { ident: f.sig.ident.clone(), hook });
                    }
                }
                ImplItem::Macro(m) => cx.error(
                    m.mac.path.span(),
                    "macro invocations are not supported in a #[runner] impl block: the macro cannot see the hooks they would expand to; write the functions out",
                ),
                _ => {}
            }
        }
        hooks
    }
}

fn parse_hook(cx: &Ctxt, kind: HookKind, f: &ImplItemFn) -> Option<Hook> {
    let spec = kind.spec();
    let sig = &f.sig;
    let name = spec.name;
    let before = cx.count();
    for attr in &f.attrs {
        if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
            cx.error(
                attr.span(),
                format!("`#[cfg]` on the hook `{name}` is not supported: the runner's types depend on which hooks exist; put the #[cfg] inside the function body instead"),
            );
        }
    }
    if let Some(asyncness) = &sig.asyncness {
        cx.error(
            asyncness.span(),
            format!("the hook `{name}` cannot be `async`: hooks run on worker threads; remove `async` and block inside if needed"),
        );
    }
    if let Some(constness) = &sig.constness {
        cx.error(constness.span(), format!("the hook `{name}` cannot be `const`"));
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error(unsafety.span(), format!("the hook `{name}` cannot be `unsafe`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error(
            sig.generics.span(),
            format!("the hook `{name}` cannot be generic: the runner's types are read from the hooks' concrete types"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        cx.error(variadic.span(), format!("the hook `{name}` cannot be variadic"));
    }
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => cx.error(
                receiver.span(),
                format!("the hook `{name}` cannot take `self`: hooks are associated functions; remove the receiver"),
            ),
            FnArg::Typed(pat) => params.push(Param { ty: (*pat.ty).clone() }),
        }
    }
    let arity_ok = spec.arities.contains(&params.len());
    if sig.receiver().is_none() && !arity_ok {
        let found = params.len();
        let expected = spec.arities.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" or ");
        cx.error(
            if sig.inputs.is_empty() { sig.paren_token.span.join() } else { sig.inputs.span() },
            format!(
                "`{name}` takes {expected} parameter{}: `fn {name}{}`, found {found}",
                if spec.arities == [1] { "" } else { "s" },
                spec.shape,
            ),
        );
    }
    // The model is shared between threads: hooks that receive it must borrow it.
    if arity_ok && spec.borrows_model(params.len()) {
        if let Some(first) = params.first() {
            match &first.ty {
                Type::Reference(r) if r.mutability.is_none() => {}
                Type::Reference(r) => cx.error(
                    r.mutability.span(),
                    format!("`{name}` gets a shared borrow of the model, which every request uses at once: write `&Model`, not `&mut Model`; use interior mutability (a Mutex) for state"),
                ),
                other => cx.error(
                    other.span(),
                    format!("`{name}` borrows the model, which is shared by every request: write `model: &{}`", quote::quote!(#other)),
                ),
            }
        }
    }
    let ret = match &sig.output {
        ReturnType::Default => {
            cx.error(sig.ident.span(), format!("the hook `{name}` must return {}: add `-> ...`", spec.output));
            None
        }
        ReturnType::Type(_, ty) => Some(split_result(ty)),
    };
    match ret {
        Some(ret) if cx.count() == before => Some(Hook { kind, params, ret }),
        _ => None,
    }
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
