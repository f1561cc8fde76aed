//! Parsing `#[runner(...)]` options.

use proc_macro2::{TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{braced, bracketed, Ident, LitInt, LitStr, Path, Token};

use crate::ctxt::Ctxt;

/// Known options, for "did you mean" hints.
const OPTIONS: &[&str] =
    &["name", "repository", "requirements", "artifacts", "model", "backend", "max_batch_size", "max_delay_ms", "crate"];

/// The parsed options.
#[derive(Default)]
pub struct Options {
    pub name: Option<LitStr>,
    pub repository: Option<LitStr>,
    pub requirements: Vec<LitStr>,
    pub artifacts: Vec<(LitStr, LitStr)>,
    pub model: Option<Path>,
    pub backend: Option<syn::Type>,
    pub max_batch_size: Option<(Ident, LitInt)>,
    pub max_delay_ms: Option<(Ident, LitInt)>,
    /// `crate = path`: where generated code finds runner-core.
    pub krate: Option<Path>,
    /// Every option key written, in order, valid or not.
    keys: Vec<Ident>,
}

impl Options {
    /// Whether the option `key` was written, even with a value that did not parse.
    pub fn given(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }
}

struct ArtifactPair(LitStr, LitStr);

impl Parse for ArtifactPair {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let local: LitStr = input.parse()?;
        input.parse::<Token![=>]>()?;
        let remote: LitStr = input.parse()?;
        Ok(ArtifactPair(local, remote))
    }
}

/// Parses the options. A mistake in one option is recorded in `cx` and parsing goes on
/// after the next `,`, so one compile reports every mistake.
pub fn parse(cx: &Ctxt, args: TokenStream) -> Options {
    let parser = |input: ParseStream<'_>| {
        let mut options = Options::default();
        while !input.is_empty() {
            if let Err(error) = parse_option(cx, input, &mut options) {
                cx.syn_error(error);
                skip_to_comma(input)?;
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(options)
    };
    parser.parse2(args).unwrap_or_else(|error| {
        cx.syn_error(error);
        Options::default()
    })
}

/// Parses the contents of the `[...]` (or `{...}`, if `braces`) next in `input` with
/// `parse`, then skips whatever it left: syn would otherwise report the leftover as an
/// "unexpected token" that fails the options after it too.
fn in_brackets<T>(
    input: ParseStream<'_>,
    braces: bool,
    parse: impl FnOnce(ParseStream<'_>) -> syn::Result<T>,
) -> syn::Result<T> {
    let content;
    if braces && input.peek(syn::token::Brace) {
        braced!(content in input);
    } else {
        bracketed!(content in input);
    }
    let parsed = parse(&content);
    while !content.is_empty() {
        content.parse::<TokenTree>()?;
    }
    parsed
}

/// Skips the rest of a malformed option.
fn skip_to_comma(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// Parses one `key = value`, up to the `,` after it.
fn parse_option(cx: &Ctxt, input: ParseStream<'_>, options: &mut Options) -> syn::Result<()> {
    // `parse_any`: `crate` is a keyword.
    let key = Ident::parse_any(input)
        .map_err(|e| syn::Error::new(e.span(), "expected an option such as `name = \"my-runner\"`"))?;
    let key_str = key.to_string();
    if let Some(first) = options.keys.iter().find(|k| **k == key) {
        let mut error = syn::Error::new(key.span(), format!("duplicate option `{key}`: give it once"));
        error.combine(syn::Error::new(first.span(), format!("`{key}` first given here")));
        cx.syn_error(error);
    }
    options.keys.push(key.clone());
    input.parse::<Token![=]>().map_err(|e| syn::Error::new(e.span(), format!("expected `=` after `{key}`")))?;
    match key_str.as_str() {
        "name" => options.name = Some(parse_name(cx, input, "runner name")?),
        "repository" => options.repository = Some(parse_name(cx, input, "repository name")?),
        "requirements" => {
            let requirements = in_brackets(input, false, Punctuated::<LitStr, Token![,]>::parse_terminated)?;
            options.requirements = requirements.into_iter().collect();
        }
        "artifacts" => {
            let pairs = in_brackets(input, true, Punctuated::<ArtifactPair, Token![,]>::parse_terminated)?;
            for ArtifactPair(local, remote) in pairs {
                check_glob(cx, &local, &remote);
                options.artifacts.push((local, remote));
            }
        }
        "model" => {
            options.model = Some(input.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected a path to a function that builds the model, e.g. `model = Iris::train`",
                )
            })?)
        }
        "backend" => {
            options.backend = Some(input.parse().map_err(|e| {
                syn::Error::new(e.span(), "expected the backend's type, e.g. `backend = runner_torch::Torch`")
            })?)
        }
        "max_batch_size" => {
            let lit = parse_int(input, "max_batch_size = 32")?;
            if lit.base10_parse::<usize>().map(|n| n == 0).unwrap_or(false) {
                cx.error(lit.span(), "max_batch_size must be at least 1: a batch holds one request or more");
            }
            options.max_batch_size = Some((key, lit));
        }
        "max_delay_ms" => {
            let lit = parse_int(input, "max_delay_ms = 5")?;
            options.max_delay_ms = Some((key, lit));
        }
        "crate" => options.krate = Some(parse_crate_path(input)?),
        other => {
            let hint = suggestion(other, OPTIONS).map(|s| format!("; did you mean `{s}`?")).unwrap_or_else(|| {
                format!("; the options are {}", OPTIONS.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", "))
            });
            cx.error(key.span(), format!("unknown option `{other}`{hint}"));
            skip_to_comma(input)?;
        }
    }
    if !input.is_empty() && !input.peek(Token![,]) {
        return Err(input.error("expected `,`"));
    }
    Ok(())
}

/// `crate = path` or `crate = "path"`: a path in `use` style (`::a::b`, `crate::a`,
/// `self::a`, no generics). Tokens parsed from a string carry the string's span.
fn parse_crate_path(input: ParseStream<'_>) -> syn::Result<Path> {
    const EXPECTED: &str =
        "expected the path to runner_core or to a module that re-exports it, e.g. `crate = my_facade` or `crate = \"my_facade\"`";
    let path = if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        lit.parse_with(Path::parse_mod_style)
            .map_err(|_| syn::Error::new(lit.span(), format!("`{}` is not a path: {EXPECTED}", lit.value())))?
    } else {
        Path::parse_mod_style(input).map_err(|e| syn::Error::new(e.span(), EXPECTED))?
    };
    Ok(path)
}

fn parse_int(input: ParseStream<'_>, example: &str) -> syn::Result<LitInt> {
    let lit: LitInt =
        input.parse().map_err(|e| syn::Error::new(e.span(), format!("expected a whole number, e.g. `{example}`")))?;
    if let Err(e) = lit.base10_parse::<u64>() {
        return Err(syn::Error::new(lit.span(), format!("expected a whole number, e.g. `{example}`: {e}")));
    }
    Ok(lit)
}

fn parse_name(cx: &Ctxt, input: ParseStream<'_>, what: &str) -> syn::Result<LitStr> {
    let lit: LitStr =
        input.parse().map_err(|e| syn::Error::new(e.span(), format!("expected the {what} as a string literal")))?;
    if let Err(message) = check_name(&lit.value()) {
        cx.error(lit.span(), format!("invalid {what} `{}`: {message}", lit.value()));
    }
    Ok(lit)
}

/// The registry's name rule (runner-core's `validate_name`), checked at compile time.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err("must start with a lowercase letter or a digit".into());
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("character `{c}` is not allowed; use lowercase letters, digits, `-`, `_` and `.`"));
    }
    if name.contains("..") {
        return Err("must not contain `..`".into());
    }
    Ok(())
}

/// The seed's glob rule: a `*` only as the whole last component, on both sides or neither.
fn check_glob(cx: &Ctxt, local: &LitStr, remote: &LitStr) {
    let kind = |lit: &LitStr| -> Result<bool, ()> {
        let v = lit.value();
        match v.strip_suffix('*') {
            Some(prefix) if (prefix.is_empty() || prefix.ends_with('/')) && !prefix.contains('*') => Ok(true),
            _ if v.contains('*') => Err(()),
            _ => Ok(false),
        }
    };
    match (kind(local), kind(remote)) {
        (Err(()), _) => cx.syn_error(glob_error(local)),
        (_, Err(())) => cx.syn_error(glob_error(remote)),
        (Ok(a), Ok(b)) if a != b => cx.error(
            if a { remote.span() } else { local.span() },
            "a glob must stand on both sides or on neither, e.g. `\"checkpoints/*\" => \"checkpoints/*\"`",
        ),
        _ => {}
    }
    let v = remote.value();
    if v.starts_with('/') || v.split('/').any(|c| c == "..") {
        cx.error(remote.span(), "volume paths must be relative and may not contain `..`");
    }
}

fn glob_error(lit: &LitStr) -> syn::Error {
    syn::Error::new(lit.span(), "`*` may only stand as the whole last path component, e.g. `\"data/*\"`")
}

/// The closest known name, if close enough to be a likely typo.
pub fn suggestion<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5))
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    /// The options parsed from `args`, and the errors, one string each.
    fn parse_str(args: TokenStream) -> (Options, Vec<String>) {
        let cx = Ctxt::new();
        let options = parse(&cx, args);
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        };
        (options, errors)
    }

    #[test]
    fn parsing_goes_on_after_a_malformed_option() {
        let (options, errors) = parse_str(quote!(
            requirements = ["a" "b"],
            max_batch_size = "8",
            name,
            backend = 1 + 2,
            repositry = "x",
            repository = "models",
            crate = "a b",
        ));
        assert_eq!(
            errors,
            [
                "expected `,`",
                "expected a whole number, e.g. `max_batch_size = 32`",
                "expected `=` after `name`",
                "expected the backend's type, e.g. `backend = runner_torch::Torch`",
                "unknown option `repositry`; did you mean `repository`?",
                "`a b` is not a path: expected the path to runner_core or to a module that re-exports it, e.g. `crate = my_facade` or `crate = \"my_facade\"`",
            ]
        );
        assert_eq!(options.repository.as_ref().unwrap().value(), "models");
        assert!(options.given("backend") && options.backend.is_none());
        assert!(options.given("crate") && options.krate.is_none());
    }

    #[test]
    fn crate_path_bare_or_quoted() {
        for args in [quote!(crate = ::my::facade), quote!(crate = "::my::facade")] {
            let (options, errors) = parse_str(args);
            assert!(errors.is_empty(), "{errors:?}");
            let path = options.krate.unwrap();
            assert_eq!(quote!(#path).to_string(), quote!(::my::facade).to_string());
        }
        let (options, errors) = parse_str(quote!(crate = crate::facade, krate = x));
        assert_eq!(errors, ["unknown option `krate`; did you mean `crate`?"]);
        assert!(options.krate.unwrap().segments[0].ident == "crate");
    }
}
