//! The `#[runner]` attribute. Use it through `runner_core::runner`; see the docs there.

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod kind;
mod krate;
mod valid;

use proc_macro::TokenStream;

/// Declares a model runner on an inherent impl block. Documented in `runner_core`.
#[proc_macro_attribute]
pub fn runner(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::runner(args.into(), input.into()).into()
}
