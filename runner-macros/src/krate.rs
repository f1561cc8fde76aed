//! How generated code names runner-core: through one path, `::runner_core` unless
//! `#[runner(crate = path)]` names a crate or module that re-exports it.
//!
//! The generated items sit in a `const _: () = { .. };` block that starts with
//! `use <path> as __runner_core;` (as serde_derive does for `#[serde(crate = "..")]`), and
//! every other path goes through that alias. A path that does not resolve is then one
//! error, on the `use`, rather than one per generated path.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Ident, Path};

/// The alias generated code uses for runner-core.
const ALIAS: &str = "__runner_core";

/// The path to runner-core, as generated code names it.
pub struct Krate {
    path: TokenStream,
    /// The user's path's span, or the call site's.
    span: Span,
}

impl Krate {
    /// The path from `#[runner(crate = path)]`, or `::runner_core`.
    pub fn new(path: Option<&Path>) -> Krate {
        match path {
            Some(path) => Krate { path: path.to_token_stream(), span: path.span() },
            None => Krate { path: quote!(::runner_core), span: Span::call_site() },
        }
    }

    /// `use <path> as __runner_core;`, first in the block the generated items sit in.
    /// Spanned on the user's path, where an error that it does not resolve belongs.
    pub fn import(&self) -> TokenStream {
        let path = &self.path;
        let alias = self.at(self.span);
        quote_spanned!(self.span=> use #path as #alias;)
    }

    /// The alias, spanned at `span`. In `quote_spanned!` code that puts an error on the
    /// user's tokens, the whole path must carry that span: its first token included.
    pub fn at(&self, span: Span) -> Ident {
        Ident::new(ALIAS, span)
    }
}

/// The alias, spanned at the macro's call site.
impl ToTokens for Krate {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.at(Span::call_site()).to_tokens(tokens);
    }
}
