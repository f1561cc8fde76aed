//! Code generation: the `Runner` impl, type checks spanned on the user's types, and the
//! inventory entry.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ItemImpl, Type};

use crate::ast::{strip_ref, Hook, Hooks};
use crate::attr::{self, Options};
use crate::ctxt::Ctxt;
use crate::kind::HookKind;
use crate::krate::Krate;
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
    let cx = Ctxt::new();
    let options = attr::parse(&cx, args);
    valid::check_impl_block(&cx, &item);
    let hooks = Hooks::collect(&cx, &item);
    if item.trait_.is_none() {
        valid::check_predict_present(&cx, &item, &options, &hooks);
    }
    valid::check_backend_hooks(&cx, &options, &hooks);
    valid::check_save_needs_load(&cx, &hooks);
    valid::check_batch_options(&cx, &options, &hooks);
    let name = runner_name(&cx, &item, &options);
    let core = match (hooks.get(HookKind::Predict), &options.backend) {
        (Some(predict), None) => Some(Core::Predict(predict)),
        (None, Some(backend)) => Some(Core::Backend(backend)),
        _ => None,
    };
    // A `crate = ...` that did not parse: the default path may well not resolve either.
    let krate = (options.krate.is_some() || !options.given("crate")).then(|| Krate::new(options.krate.as_ref()));
    match (cx.check(), core, krate) {
        (Ok(()), Some(core), Some(krate)) => expand(&item, &krate, &options, &hooks, core, &name),
        (result, _, krate) => fallback::expand(&item, krate.as_ref(), &hooks, result.err()),
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
fn runner_name(cx: &Ctxt, item: &ItemImpl, options: &Options) -> String {
    if let Some(name) = &options.name {
        return name.value();
    }
    let ident = match &*item.self_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    let Some(ident) = ident else {
        cx.error(item.self_ty.span(), "give this runner a name: `#[runner(name = \"my-runner\")]`");
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
        cx.error(
            item.self_ty.span(),
            format!("the runner name derived from the type, `{name}`, {message}; give one: `#[runner(name = \"my-runner\")]`"),
        );
    }
    name
}

/// `runner_core::__private::same::<A, B>(value)`, spanned on the user's type `at`.
fn cast(krate: &Krate, value: TokenStream, from: &dyn ToTokens, to: &dyn ToTokens, at: Span) -> TokenStream {
    let k = krate.at(at);
    quote_spanned!(at=> #k::__private::same::<#from, #to>(#value))
}

/// Like [`cast`] when `from` is generated and `to` is the user's type: the error is
/// reported on `to`.
fn cast_to_user(krate: &Krate, value: TokenStream, from: &dyn ToTokens, to: &dyn ToTokens, at: Span) -> TokenStream {
    let k = krate.at(at);
    quote_spanned!(at=> #k::__private::same_as_user::<#to, #from>(#value))
}

/// Wraps a hook call's value into the framework's `Result` (with `?`), attributing an
/// error to the hook's `Hook` variant.
fn call(krate: &Krate, hook: &Hook, call: TokenStream) -> TokenStream {
    let variant = syn::Ident::new(hook.kind.spec().variant, Span::call_site());
    if hook.ret.fallible {
        quote!(#krate::__private::hook_result(#krate::Hook::#variant, #call)?)
    } else {
        call
    }
}

/// Arguments of a pre/postprocess call: `data`, or `model, data` when the hook borrows
/// the model (its type checked against the model's, on the user's token).
fn hook_args(krate: &Krate, hook: &Hook, data: TokenStream) -> TokenStream {
    if hook.borrows_model() {
        let takes = hook.param(0);
        let model = cast_to_user(krate, quote!(model), &quote!(&Self::Model), takes, takes.span());
        quote!(#model, #data)
    } else {
        data
    }
}

/// Where `predict` comes from: the block's own hook, or a backend.
enum Core<'a> {
    Predict(&'a Hook),
    Backend(&'a Type),
}

fn expand(item: &ItemImpl, krate: &Krate, options: &Options, hooks: &Hooks, core: Core<'_>, name: &str) -> TokenStream {
    let self_ty = &item.self_ty;
    let span_of = |t: &Type| t.span();
    let preprocess_hook = hooks.get(HookKind::PreprocessData);
    let postprocess_hook = hooks.get(HookKind::PostprocessData);
    let save_hook = hooks.get(HookKind::SaveModel);
    let load_hook = hooks.get(HookKind::LoadModel);
    // The model's types, and the span their mismatches are reported at.
    let (model_ty, model_input, model_output, model_span) = match core {
        Core::Predict(predict) => {
            let model = strip_ref(predict.param(0));
            let output = &predict.ret.value;
            (model.to_token_stream(), predict.param(1).to_token_stream(), output.to_token_stream(), span_of(model))
        }
        Core::Backend(backend) => {
            let k = krate.at(backend.span());
            let b = quote_spanned!(backend.span()=> <#backend as #k::Backend>);
            (quote!(#b::Model), quote!(#b::Input), quote!(#b::Output), backend.span())
        }
    };
    let api_input = preprocess_hook.map_or_else(|| model_input.clone(), |h| h.data_param().to_token_stream());
    let api_output = postprocess_hook.map_or_else(|| model_output.clone(), |h| h.ret.value.to_token_stream());
    let api_input_span = preprocess_hook.map_or(model_span, |h| span_of(h.data_param()));
    let api_output_span = postprocess_hook.map_or(model_span, |h| h.ret.span);

    let preprocess = match preprocess_hook {
        Some(h) => {
            let out = &h.ret.value;
            let args = hook_args(krate, h, quote!(input));
            let value = call(krate, h, quote!(<#self_ty>::preprocess_data(#args)));
            let value = match core {
                Core::Predict(predict) => cast(krate, value, out, &model_input, span_of(predict.param(1))),
                // The backend's input type is not the user's: report on the hook's return type.
                Core::Backend(_) => cast(krate, value, out, &model_input, span_of(out)),
            };
            quote!(::core::result::Result::Ok(#value))
        }
        None => quote!(::core::result::Result::Ok(input)),
    };
    let backend = match core {
        Core::Backend(backend) => {
            let k = krate.at(backend.span());
            Some(quote_spanned!(backend.span()=> <#backend as #k::Backend>))
        }
        Core::Predict(_) => None,
    };
    let predict_body = match (core, &backend) {
        (Core::Predict(predict), _) => {
            let value = call(krate, predict, quote!(<#self_ty>::predict(model, input)));
            quote!(::core::result::Result::Ok(#value))
        }
        (Core::Backend(_), Some(b)) => quote!(#b::predict(model, input)),
        (Core::Backend(_), None) => unreachable!("a backend core has a backend path"),
    };
    let postprocess = match postprocess_hook {
        Some(h) => {
            let takes = h.data_param();
            let arg = cast(krate, quote!(output), &model_output, takes, span_of(takes));
            let args = hook_args(krate, h, arg);
            let value = call(krate, h, quote!(<#self_ty>::postprocess_data(#args)));
            quote!(::core::result::Result::Ok(#value))
        }
        None => quote!(::core::result::Result::Ok(output)),
    };

    let save = match (save_hook, load_hook, &backend) {
        (_, _, Some(b)) => {
            quote!(::core::result::Result::Ok(#krate::Saved::Custom(#b::save(model, dir)?)))
        }
        (Some(h), Some(_), None) => {
            let takes = h.param(0);
            let mut args = vec![cast_to_user(krate, quote!(model), &quote!(&Self::Model), takes, span_of(takes))];
            if let Some(dir) = h.params.get(1) {
                args.push(cast_to_user(krate, quote!(dir), &quote!(&#krate::SaveDir), &dir.ty, span_of(&dir.ty)));
            }
            let ret = &h.ret;
            let value = call(krate, h, quote!(<#self_ty>::save_model(#(#args),*)));
            let props = cast(krate, value, &ret.value, &quote!(#krate::Props), ret.span);
            quote!(::core::result::Result::Ok(#krate::Saved::Custom(#props)))
        }
        (None, Some(_), None) => quote! {
            let _ = (model, dir);
            ::core::result::Result::Ok(#krate::Saved::Nothing)
        },
        _ => {
            quote!((<#self_ty>::__runner_default_saver().save)(#name, model, dir))
        }
    };
    let load = match (load_hook, &backend) {
        (_, Some(b)) => quote!(#b::load(props, artifacts)),
        (Some(h), None) => {
            let props = cast_to_user(
                krate,
                quote!(props),
                &quote!(::core::option::Option<#krate::Props>),
                h.param(0),
                span_of(h.param(0)),
            );
            let artifacts =
                cast(krate, quote!(artifacts), &quote!(&#krate::Artifacts), h.param(1), span_of(h.param(1)));
            let ret = &h.ret;
            let value = call(krate, h, quote!(<#self_ty>::load_model(#props, #artifacts)));
            let value = cast(krate, value, &ret.value, &quote!(Self::Model), ret.span);
            quote!(::core::result::Result::Ok(#value))
        }
        (None, None) => {
            quote!((<#self_ty>::__runner_default_saver().load)(#name, artifacts))
        }
    };

    let batch_config = |default_on: bool| {
        let size = options.max_batch_size.as_ref().map(|(_, n)| quote!(#n));
        let delay = options.max_delay_ms.as_ref().map(|(_, n)| quote!(#n));
        if !default_on && size.is_none() && delay.is_none() {
            return quote!(::core::option::Option::None);
        }
        let size = size.unwrap_or_else(|| quote!(32));
        let delay = delay.unwrap_or_else(|| quote!(5));
        quote!(::core::option::Option::Some(#krate::BatchConfig {
            max_batch_size: #size,
            max_delay: ::core::time::Duration::from_millis(#delay),
        }))
    };
    let batch = hooks.get(HookKind::PredictBatch).map(|h| {
        let takes = h.param(1);
        let arg =
            cast_to_user(krate, quote!(inputs), &quote!(::std::vec::Vec<Self::ModelInput>), takes, span_of(takes));
        let ret = &h.ret;
        let value = call(krate, h, quote!(<#self_ty>::predict_batch(model, #arg)));
        let value = cast(krate, value, &ret.value, &quote!(::std::vec::Vec<Self::ModelOutput>), ret.span);
        let config = batch_config(true);
        quote! {
            const BATCH: ::core::option::Option<#krate::BatchConfig> = #config;
            const CAN_BATCH: bool = true;

            fn predict_batch(
                model: &Self::Model,
                inputs: ::std::vec::Vec<Self::ModelInput>,
            ) -> #krate::Result<::std::vec::Vec<Self::ModelOutput>> {
                ::core::result::Result::Ok(#value)
            }
        }
    });
    // A backend brings batching (off unless configured), input checks and the V2 protocol.
    let backend_items = backend.as_ref().map(|b| {
        let config = batch_config(false);
        quote! {
            const BATCH: ::core::option::Option<#krate::BatchConfig> = #config;
            const CAN_BATCH: bool = true;
            const REQUIREMENTS: &'static [&'static str] = #b::REQUIREMENTS;

            fn predict_batch(
                model: &Self::Model,
                inputs: ::std::vec::Vec<Self::ModelInput>,
            ) -> #krate::Result<::std::vec::Vec<Self::ModelOutput>> {
                #b::predict_batch(model, inputs)
            }

            fn prepare(model: &Self::Model, input: Self::ModelInput) -> #krate::Result<Self::ModelInput> {
                #b::prepare(model, input)
            }

            fn v2_signature(model: &Self::Model) -> ::core::option::Option<#krate::v2::Signature> {
                #b::v2_signature(model)
            }

            fn v2_decode(
                model: &Self::Model,
                inputs: ::std::vec::Vec<#krate::v2::Tensor>,
            ) -> #krate::Result<Self::ModelInput> {
                #b::v2_decode(model, inputs)
            }

            fn v2_encode(
                model: &Self::Model,
                output: Self::ModelOutput,
            ) -> #krate::Result<::std::vec::Vec<#krate::v2::Tensor>> {
                #b::v2_encode(model, output)
            }
        }
    });

    // Whether the runner overrides a hook, by its own function or its backend's.
    let overrides = |kind: HookKind| hooks.get(kind).is_some() || (backend.is_some() && kind.spec().from_backend);
    let flags = HookKind::ALL.into_iter().filter(|kind| kind.spec().flagged).map(|kind| {
        let field = syn::Ident::new(kind.name(), Span::call_site());
        let on = overrides(kind);
        quote!(#field: #on)
    });
    let repository = options.repository.as_ref().map_or_else(|| name.to_string(), |r| r.value());
    let requirements = &options.requirements;
    let artifact_pairs = options.artifacts.iter().map(|(l, r)| quote!((#l, #r)));
    let build_model = match &options.model {
        Some(path) => {
            let span = path.span();
            let k = krate.at(span);
            quote_spanned!(span=> ::core::option::Option::Some(|| #k::__private::build_model::<Self::Model, _>(#path)))
        }
        None => quote!(::core::option::Option::None),
    };

    let model_assoc = quote_spanned!(model_span=> type Model = #model_ty;);
    let input_assoc = quote_spanned!(api_input_span=> type Input = #api_input;);
    let output_assoc = quote_spanned!(api_output_span=> type Output = #api_output;);

    // The default saver's serde bounds are required at this one place, so a model type
    // without them gets one error, on the user's model type.
    let default_saver = (!overrides(HookKind::SaveModel) && !overrides(HookKind::LoadModel)).then(|| {
        let k = krate.at(model_span);
        let saver = quote_spanned!(model_span=> #k::__private::default_saver::<#model_ty>());
        quote! {
            impl #self_ty {
                #[doc(hidden)]
                fn __runner_default_saver() -> #krate::__private::DefaultSaver<#model_ty> {
                    #saver
                }
            }
        }
    });

    let import = krate.import();
    quote! {
        #item

        // In a block of its own, for the `use` of the crate path.
        const _: () = {
            #import

            #default_saver

            // Generated code: keep lints aimed at the user's own code quiet here.
            #[automatically_derived]
            #[allow(clippy::needless_question_mark, clippy::unit_arg, clippy::let_unit_value)]
            impl #krate::Runner for #self_ty {
                const NAME: &'static str = #name;
                const HOOKS: #krate::Hooks = #krate::Hooks { #(#flags),* };
                #model_assoc
                #input_assoc
                type ModelInput = #model_input;
                type ModelOutput = #model_output;
                #output_assoc

                fn info() -> #krate::RunnerInfo {
                    #krate::RunnerInfo {
                        name: ::core::convert::Into::into(#name),
                        crate_name: ::core::convert::Into::into(::core::env!("CARGO_PKG_NAME")),
                        crate_version: ::core::convert::Into::into(::core::env!("CARGO_PKG_VERSION")),
                        rust_type: ::core::convert::Into::into(::core::any::type_name::<Self>()),
                    }
                }

                fn defaults() -> #krate::RunnerDefaults<Self::Model> {
                    #krate::RunnerDefaults {
                        repository: #repository,
                        requirements: &[#(#requirements),*],
                        artifacts: &[#(#artifact_pairs),*],
                        base_dir: ::core::env!("CARGO_MANIFEST_DIR"),
                        build_model: #build_model,
                    }
                }

                #batch
                #backend_items

                fn schemas(generator: &mut #krate::__private::schemars::SchemaGenerator) -> #krate::Schemas {
                    #[allow(unused_imports)]
                    use #krate::__private::{HasSchema as _, NoSchema as _};
                    #krate::Schemas {
                        input: (&&#krate::__private::SchemaProbe::<#api_input>::new()).schema(generator),
                        output: (&&#krate::__private::SchemaProbe::<#api_output>::new()).schema(generator),
                    }
                }

                fn preprocess(model: &Self::Model, input: Self::Input) -> #krate::Result<Self::ModelInput> {
                    let _ = model;
                    #preprocess
                }

                fn predict(model: &Self::Model, input: Self::ModelInput) -> #krate::Result<Self::ModelOutput> {
                    #predict_body
                }

                fn postprocess(model: &Self::Model, output: Self::ModelOutput) -> #krate::Result<Self::Output> {
                    let _ = model;
                    #postprocess
                }

                fn save(model: &Self::Model, dir: &#krate::SaveDir) -> #krate::Result<#krate::Saved> {
                    #save
                }

                fn load(
                    props: ::core::option::Option<#krate::Props>,
                    artifacts: &#krate::Artifacts,
                ) -> #krate::Result<Self::Model> {
                    #load
                }
            }

            #krate::__private::inventory::submit! {
                #krate::RunnerEntry::of::<#self_ty>()
            }
        };
    }
}
