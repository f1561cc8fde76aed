//! On errors: the user's item unchanged, the errors, and a stub `Runner` impl so that
//! code using the runner does not add a cascade of "Runner is not implemented" errors.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemImpl;

use crate::ast::{strip_ref, Hooks};
use crate::kind::HookKind;
use crate::krate::Krate;

/// `krate` is `None` when the crate path is unknown: there is no stub then.
pub fn expand(item: &ItemImpl, krate: Option<&Krate>, hooks: &Hooks, errors: Option<syn::Error>) -> TokenStream {
    let errors = errors.map(|e| e.to_compile_error());
    // The stub only makes sense on a plain inherent impl.
    let Some(krate) = krate.filter(|_| item.trait_.is_none() && item.generics.params.is_empty()) else {
        return quote!(#item #errors);
    };
    let self_ty = &item.self_ty;
    let unit: syn::Type = syn::parse_quote!(());
    let predict = hooks.get(HookKind::Predict);
    let model = predict.map_or(&unit, |p| strip_ref(p.param(0)));
    let model_input = predict.map_or(&unit, |p| p.param(1));
    let model_output = predict.map_or(&unit, |p| &p.ret.value);
    let input = hooks.get(HookKind::PreprocessData).map_or(model_input, |h| h.data_param());
    let output = hooks.get(HookKind::PostprocessData).map_or(model_output, |h| &h.ret.value);
    let flags = HookKind::ALL.into_iter().filter(|kind| kind.spec().flagged).map(|kind| {
        let field = syn::Ident::new(kind.name(), proc_macro2::Span::call_site());
        quote!(#field: false)
    });
    let import = krate.import();
    quote! {
        #item
        #errors
        // In a block of its own, for the `use` of the crate path.
        const _: () = {
            #import
            impl #krate::Runner for #self_ty {
                const NAME: &'static str = "";
                const HOOKS: #krate::Hooks = #krate::Hooks { #(#flags),* };
                type Model = #model;
                type Input = #input;
                type ModelInput = #model_input;
                type ModelOutput = #model_output;
                type Output = #output;
                fn info() -> #krate::RunnerInfo { ::core::unreachable!("#[runner] failed to expand") }
                fn defaults() -> #krate::RunnerDefaults<Self::Model> { ::core::unreachable!("#[runner] failed to expand") }
                fn preprocess(_: &Self::Model, _: Self::Input) -> #krate::Result<Self::ModelInput> { ::core::unreachable!("#[runner] failed to expand") }
                fn predict(_: &Self::Model, _: Self::ModelInput) -> #krate::Result<Self::ModelOutput> { ::core::unreachable!("#[runner] failed to expand") }
                fn postprocess(_: &Self::Model, _: Self::ModelOutput) -> #krate::Result<Self::Output> { ::core::unreachable!("#[runner] failed to expand") }
                fn save(_: &Self::Model, _: &#krate::SaveDir) -> #krate::Result<#krate::Saved> { ::core::unreachable!("#[runner] failed to expand") }
                fn load(_: ::core::option::Option<#krate::Props>, _: &#krate::Artifacts) -> #krate::Result<Self::Model> { ::core::unreachable!("#[runner] failed to expand") }
            }
        };
    }
}
