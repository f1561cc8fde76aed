//! Code generation: the `Runner` impl, type checks spanned on the user's types, and the
//! inventory entry.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{ItemImpl, Type};

use crate::ast::{strip_ref, Hook, Hooks};
use crate::attr::{self, Options};
use crate::{fallback, valid};

pub fn runner(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse2::<syn::Item>(input.clone()) {
        Ok(syn::Item::Impl(item)) => item,
        Ok(other) => {
            let error = syn::Error::new(
                item_keyword_span(&other),
                "#[runner] must be placed on an inherent impl block: `#[runner] impl MyRunner { fn predict(model: &Model, data: Input) -> Output { .. } }`",
            )
            .to_compile_error();
            return quote!(#other #error);
        }
        Err(error) => {
            let error = error.to_compile_error();
            return quote!(#input #error);
        }
    };
    let mut errors = Vec::new();
    let options = (|input: ParseStream<'_>| attr::parse(input, &mut errors)).parse2(args);
    let options = options.unwrap_or_else(|e| {
        errors.push(e);
        Options::default()
    });
    valid::check_impl_block(&item, &mut errors);
    let hooks = Hooks::collect(&item, &mut errors);
    if item.trait_.is_none() {
        valid::check_predict_present(&item, &hooks, &mut errors);
    }
    valid::check_save_needs_load(&hooks, &mut errors);
    valid::check_batch_options(&options, &hooks, &mut errors);
    let name = runner_name(&item, &options, &mut errors);
    match (errors.is_empty(), &hooks.predict) {
        (true, Some(predict)) => expand(&item, &options, &hooks, predict, &name),
        _ => fallback::expand(&item, &hooks, errors),
    }
}

fn item_keyword_span(item: &syn::Item) -> Span {
    match item {
        syn::Item::Struct(s) => s.struct_token.span,
        syn::Item::Enum(e) => e.enum_token.span,
        syn::Item::Fn(f) => f.sig.fn_token.span,
        syn::Item::Trait(t) => t.trait_token.span,
        syn::Item::Mod(m) => m.mod_token.span,
        other => other.span(),
    }
}

/// `name = "..."`, or the type's name in kebab-case.
fn runner_name(item: &ItemImpl, options: &Options, errors: &mut Vec<syn::Error>) -> String {
    if let Some(name) = &options.name {
        return name.value();
    }
    let ident = match &*item.self_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    let Some(ident) = ident else {
        errors.push(syn::Error::new(item.self_ty.span(), "give this runner a name: `#[runner(name = \"my-runner\")]`"));
        return String::new();
    };
    let mut name = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('-');
        }
        name.extend(c.to_lowercase());
    }
    if let Err(message) = attr::check_name(&name) {
        errors.push(syn::Error::new(
            item.self_ty.span(),
            format!("the runner name derived from the type, `{name}`, {message}; give one: `#[runner(name = \"my-runner\")]`"),
        ));
    }
    name
}

/// `::runner_core::__private::same::<A, B>(value)`, spanned on the user's type `at`.
fn cast(value: TokenStream, from: &dyn ToTokens, to: &dyn ToTokens, at: Span) -> TokenStream {
    quote_spanned!(at=> ::runner_core::__private::same::<#from, #to>(#value))
}

/// Like [`cast`] when `from` is generated and `to` is the user's type: the error is
/// reported on `to`.
fn cast_to_user(value: TokenStream, from: &dyn ToTokens, to: &dyn ToTokens, at: Span) -> TokenStream {
    quote_spanned!(at=> ::runner_core::__private::same_as_user::<#to, #from>(#value))
}

/// Wraps a hook call's value into the framework's `Result` (with `?`).
fn call(hook: &Hook, hook_variant: &str, call: TokenStream) -> TokenStream {
    let variant = syn::Ident::new(hook_variant, Span::call_site());
    let ret = hook.ret.as_ref().expect("hooks without a return type are rejected");
    if ret.fallible {
        quote!(::runner_core::__private::hook_result(::runner_core::Hook::#variant, #call)?)
    } else {
        call
    }
}

fn param(hook: &Hook, index: usize) -> &Type {
    &hook.params[index].ty
}

fn expand(item: &ItemImpl, options: &Options, hooks: &Hooks, predict: &Hook, name: &str) -> TokenStream {
    let self_ty = &item.self_ty;
    let model_ty = strip_ref(param(predict, 0));
    let model_input = param(predict, 1);
    let model_output = &predict.ret.as_ref().expect("checked").value;
    let api_input = hooks.preprocess.as_ref().map_or(model_input, |h| param(h, 0));
    let api_output = hooks.postprocess.as_ref().map_or(model_output, |h| &h.ret.as_ref().expect("checked").value);
    let span_of = |t: &Type| t.span();

    let preprocess = match &hooks.preprocess {
        Some(h) => {
            let out = &h.ret.as_ref().expect("checked").value;
            let value = call(h, "PreprocessData", quote!(<#self_ty>::preprocess_data(input)));
            let value = cast(value, out, model_input, span_of(model_input));
            quote!(::core::result::Result::Ok(#value))
        }
        None => quote!(::core::result::Result::Ok(input)),
    };
    let predict_call = call(predict, "Predict", quote!(<#self_ty>::predict(model, input)));
    let postprocess = match &hooks.postprocess {
        Some(h) => {
            let takes = param(h, 0);
            let arg = cast(quote!(output), model_output, takes, span_of(takes));
            let value = call(h, "PostprocessData", quote!(<#self_ty>::postprocess_data(#arg)));
            quote!(::core::result::Result::Ok(#value))
        }
        None => quote!(::core::result::Result::Ok(output)),
    };

    let model_span = span_of(model_ty);
    let save = match (&hooks.save, &hooks.load) {
        (Some(h), Some(_)) => {
            let takes = param(h, 0);
            let mut args = vec![cast_to_user(quote!(model), &quote!(&Self::Model), takes, span_of(takes))];
            if let Some(dir) = h.params.get(1) {
                args.push(cast_to_user(quote!(dir), &quote!(&::runner_core::SaveDir), &dir.ty, span_of(&dir.ty)));
            }
            let ret = h.ret.as_ref().expect("checked");
            let value = call(h, "SaveModel", quote!(<#self_ty>::save_model(#(#args),*)));
            let props = cast(value, &ret.value, &quote!(::runner_core::Props), ret.span);
            quote!(::core::result::Result::Ok(::runner_core::Saved::Custom(#props)))
        }
        (None, Some(_)) => quote! {
            let _ = (model, dir);
            ::core::result::Result::Ok(::runner_core::Saved::Nothing)
        },
        _ => {
            quote!((<#self_ty>::__runner_default_saver().save)(#name, model, dir))
        }
    };
    let load = match &hooks.load {
        Some(h) => {
            let props = cast_to_user(
                quote!(props),
                &quote!(::core::option::Option<::runner_core::Props>),
                param(h, 0),
                span_of(param(h, 0)),
            );
            let artifacts =
                cast(quote!(artifacts), &quote!(&::runner_core::Artifacts), param(h, 1), span_of(param(h, 1)));
            let ret = h.ret.as_ref().expect("checked");
            let value = call(h, "LoadModel", quote!(<#self_ty>::load_model(#props, #artifacts)));
            let value = cast(value, &ret.value, &quote!(Self::Model), ret.span);
            quote!(::core::result::Result::Ok(#value))
        }
        None => {
            quote!((<#self_ty>::__runner_default_saver().load)(#name, artifacts))
        }
    };

    let batch = hooks.batch.as_ref().map(|h| {
        let takes = param(h, 1);
        let arg = cast_to_user(quote!(inputs), &quote!(::std::vec::Vec<Self::ModelInput>), takes, span_of(takes));
        let ret = h.ret.as_ref().expect("checked");
        let value = call(h, "Predict", quote!(<#self_ty>::predict_batch(model, #arg)));
        let value = cast(value, &ret.value, &quote!(::std::vec::Vec<Self::ModelOutput>), ret.span);
        let size = options.max_batch_size.as_ref().map_or_else(|| quote!(32), |(_, n)| quote!(#n));
        let delay = options.max_delay_ms.as_ref().map_or_else(|| quote!(5), |(_, n)| quote!(#n));
        quote! {
            const BATCH: ::core::option::Option<::runner_core::BatchConfig> = ::core::option::Option::Some(::runner_core::BatchConfig {
                max_batch_size: #size,
                max_delay: ::core::time::Duration::from_millis(#delay),
            });

            fn predict_batch(
                model: &Self::Model,
                inputs: ::std::vec::Vec<Self::ModelInput>,
            ) -> ::runner_core::Result<::std::vec::Vec<Self::ModelOutput>> {
                ::core::result::Result::Ok(#value)
            }
        }
    });

    let flags = [&hooks.preprocess, &hooks.postprocess, &hooks.save, &hooks.load].map(|h| h.is_some());
    let [has_pre, has_post, has_save, has_load] = flags;
    let repository = options.repository.as_ref().map_or_else(|| name.to_string(), |r| r.value());
    let requirements = &options.requirements;
    let artifact_pairs = options.artifacts.iter().map(|(l, r)| quote!((#l, #r)));
    let build_model = match &options.model {
        Some(path) => {
            let span = path.span();
            quote_spanned!(span=> ::core::option::Option::Some(|| ::runner_core::__private::build_model::<Self::Model, _>(#path)))
        }
        None => quote!(::core::option::Option::None),
    };

    let model_assoc = quote_spanned!(model_span=> type Model = #model_ty;);
    let input_assoc = quote_spanned!(span_of(api_input)=> type Input = #api_input;);
    let output_assoc = quote_spanned!(span_of(api_output)=> type Output = #api_output;);

    // The default saver's serde bounds are required at this one place, so a model type
    // without them gets one error, on the user's model type.
    let default_saver = (!has_save && !has_load).then(|| {
        let saver = quote_spanned!(model_span=> ::runner_core::__private::default_saver::<#model_ty>());
        quote! {
            impl #self_ty {
                #[doc(hidden)]
                fn __runner_default_saver() -> ::runner_core::__private::DefaultSaver<#model_ty> {
                    #saver
                }
            }
        }
    });

    quote! {
        #item

        #default_saver

        // Generated code: keep lints aimed at the user's own code quiet here.
        #[automatically_derived]
        #[allow(clippy::needless_question_mark, clippy::unit_arg, clippy::let_unit_value)]
        impl ::runner_core::Runner for #self_ty {
            const NAME: &'static str = #name;
            const HOOKS: ::runner_core::Hooks = ::runner_core::Hooks {
                preprocess_data: #has_pre,
                postprocess_data: #has_post,
                save_model: #has_save,
                load_model: #has_load,
            };
            #model_assoc
            #input_assoc
            type ModelInput = #model_input;
            type ModelOutput = #model_output;
            #output_assoc

            fn info() -> ::runner_core::RunnerInfo {
                ::runner_core::RunnerInfo {
                    name: ::core::convert::Into::into(#name),
                    crate_name: ::core::convert::Into::into(::core::env!("CARGO_PKG_NAME")),
                    crate_version: ::core::convert::Into::into(::core::env!("CARGO_PKG_VERSION")),
                    rust_type: ::core::convert::Into::into(::core::any::type_name::<Self>()),
                }
            }

            fn defaults() -> ::runner_core::RunnerDefaults<Self::Model> {
                ::runner_core::RunnerDefaults {
                    repository: #repository,
                    requirements: &[#(#requirements),*],
                    artifacts: &[#(#artifact_pairs),*],
                    base_dir: ::core::env!("CARGO_MANIFEST_DIR"),
                    build_model: #build_model,
                }
            }

            #batch

            fn schemas(generator: &mut ::runner_core::__private::schemars::SchemaGenerator) -> ::runner_core::Schemas {
                #[allow(unused_imports)]
                use ::runner_core::__private::{HasSchema as _, NoSchema as _};
                ::runner_core::Schemas {
                    input: (&&::runner_core::__private::SchemaProbe::<#api_input>::new()).schema(generator),
                    output: (&&::runner_core::__private::SchemaProbe::<#api_output>::new()).schema(generator),
                }
            }

            fn preprocess(input: Self::Input) -> ::runner_core::Result<Self::ModelInput> {
                #preprocess
            }

            fn predict(model: &Self::Model, input: Self::ModelInput) -> ::runner_core::Result<Self::ModelOutput> {
                ::core::result::Result::Ok(#predict_call)
            }

            fn postprocess(output: Self::ModelOutput) -> ::runner_core::Result<Self::Output> {
                #postprocess
            }

            fn save(model: &Self::Model, dir: &::runner_core::SaveDir) -> ::runner_core::Result<::runner_core::Saved> {
                #save
            }

            fn load(
                props: ::core::option::Option<::runner_core::Props>,
                artifacts: &::runner_core::Artifacts,
            ) -> ::runner_core::Result<Self::Model> {
                #load
            }
        }

        ::runner_core::__private::inventory::submit! {
            ::runner_core::RunnerEntry::of::<#self_ty>()
        }
    }
}
