//! What the HTML pages of `serve` (its `/`) and of the registry server (its browser)
//! share: one layout, one stylesheet, the security headers, sessions in cookies and
//! their CSRF tokens.
//!
//! Pages are rendered on the server with [maud](https://maud.lambda.xyz/), which escapes
//! every value it writes, so a name holding `<script>` is shown as text. Everything a page
//! needs is compiled into the binary: no CDN and nothing fetched at run time. Scripts and
//! styles are files of their own, served from [`ASSETS`], never inline, so [`CSP`] can
//! refuse inline scripts and styles. A crate writing its own pages with [`html!`] depends
//! on `maud` itself (the macro names it).
//!
//! ```
//! use runner_core::serve::page::{self, html};
//! let name = "<script>alert(1)</script>";
//! let markup = page::document("Models", html! {}, html! { h1 { (name) } }, &[]);
//! assert!(markup.0.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
//! assert!(!markup.0.contains("<script>alert"));
//! ```

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
pub use maud::{html, Markup, PreEscaped, DOCTYPE};
use sha2::Digest;

/// The Content-Security-Policy of every page: scripts, styles and requests from this
/// server only, nothing inline, no frames, forms posting back here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Where the assets are served: `ASSETS/style.css`, `ASSETS/serve.js`.
pub const ASSETS: &str = "/_assets";

const STYLE: &str = include_str!("page/style.css");
const SERVE_JS: &str = include_str!("page/serve.js");

/// The page assets compiled into the binary, by file name.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "style.css" => Some(("text/css; charset=utf-8", STYLE)),
        "serve.js" => Some(("text/javascript; charset=utf-8", SERVE_JS)),
        _ => None,
    }
}

/// The route handler of `GET ASSETS/{name}`; the URL carries the crate version, so the
/// asset may be cached for a day.
pub async fn serve_asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match asset(&name) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn asset_url(name: &str) -> String {
    format!("{ASSETS}/{name}?v={}", env!("CARGO_PKG_VERSION"))
}

/// A whole page: `header` (the navigation) above `main`, the stylesheet, and each of
/// `scripts` (asset names) loaded deferred.
pub fn document(title: &str, header: Markup, main: Markup, scripts: &[&str]) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(asset_url("style.css"));
                @for script in scripts {
                    script src=(asset_url(script)) defer {}
                }
            }
            body {
                header.top { (header) }
                main { (main) }
            }
        }
    }
}

/// An HTML response with the security headers: [`CSP`], no sniffing, no referrer to
/// other sites (a same-origin one, so that forms carry a real `Origin`: with
/// `no-referrer` browsers send `Origin: null`), no framing, and no caching (pages show
/// live data and what a token may see).
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.0).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A page saying what went wrong and what to do, with `status`.
pub fn error_page(status: StatusCode, message: &str, back: Option<(&str, &str)>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let main = html! {
        h1 { (status.as_u16()) " " (title) }
        p.error { (message) }
        @if let Some((href, label)) = back { p { a href=(href) { (label) } } }
    };
    respond(status, document(title, html! { a.brand href="/" { "runner" } }, main, &[]))
}

/// A 303 to `location` (after a form was posted), setting `cookie` when given.
pub fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Some(value) = cookie.and_then(|cookie| HeaderValue::from_str(&cookie).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The value of cookie `name` in `headers`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value keeping a session secret: `HttpOnly` (scripts cannot read it),
/// `SameSite=Strict` (other sites cannot send it), for the whole site, for 12 hours.
/// `None` clears it.
pub fn session_cookie(name: &str, value: Option<&str>) -> String {
    match value {
        Some(value) => format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

/// Whether a session secret may travel in a cookie: printable ASCII with no separators.
pub fn cookie_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 512
        && value.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

/// The CSRF token of a session: derived from its secret (which scripts of other sites
/// cannot read, the cookie being `HttpOnly` and `SameSite=Strict`), so any replica checks
/// it with no state. Forms send it as the field `csrf`, scripts as the header
/// [`CSRF_HEADER`].
pub fn csrf_token(secret: &str) -> String {
    let digest = sha2::Sha256::digest(format!("runner-csrf\0{secret}").as_bytes());
    hex::encode(&digest[..16])
}

/// The header scripts of a page send the session's [`csrf_token`] in.
pub const CSRF_HEADER: &str = "x-runner-csrf";

/// Whether `given` is the CSRF token of `secret` (constant time).
pub fn csrf_matches(secret: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(csrf_token(secret).as_bytes().ct_eq(given.as_bytes()))
}

/// Whether a request changing state came from a page of this server: its `Origin` (or,
/// without one, its `Referer`), when sent, names the host it was sent to. Browsers send
/// `Origin` with every cross-site `POST`.
pub fn same_origin(method: &Method, headers: &HeaderMap) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return true };
    let from = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    match from {
        None => true,
        Some(from) => {
            let rest = from.split_once("://").map_or(from, |(_, rest)| rest);
            rest.split('/').next() == Some(host)
        }
    }
}

/// [`same_origin`], or the 403 page saying the form came from another site.
#[allow(clippy::result_large_err)] // answered at once, never passed along
pub fn from_this_site(method: &Method, headers: &HeaderMap) -> Result<(), Response> {
    match same_origin(method, headers) {
        true => Ok(()),
        false => Err(error_page(StatusCode::FORBIDDEN, "this form was sent from another site", Some(("/", "Home")))),
    }
}

/// Whether the client asked for HTML (a browser navigating), rather than JSON.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}

/// A time for people: an RFC 3339 UTC time to the minute, with the exact time as its
/// tooltip.
///
/// ```
/// use runner_core::serve::page::when;
/// assert_eq!(
///     when("2026-11-29T10:26:05.161248Z").0,
///     r#"<time datetime="2026-11-29T10:26:05.161248Z" title="2026-11-29T10:26:05.161248Z">2026-11-29 10:26 UTC</time>"#
/// );
/// ```
pub fn when(rfc3339: &str) -> Markup {
    let short = match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(minute)) if rfc3339.ends_with('Z') => format!("{day} {minute} UTC"),
        _ => rfc3339.to_string(),
    };
    html! { time datetime=(rfc3339) title=(rfc3339) { (short) } }
}

/// A byte count for people: `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// A value generated from a JSON Schema (`$ref`s into `definitions`, as OpenAPI's
/// `#/components/schemas/`), valid against it where the schema says enough: its
/// `example`/`examples`/`default`/`const`/first `enum` value, else the smallest value of
/// its type that meets its bounds; every required property of objects, one item for
/// arrays that must not be empty.
///
/// ```
/// use runner_core::serve::page::example;
/// use serde_json::json;
/// let schema = json!({"type": "object", "required": ["x", "name"], "properties": {
///     "x": {"type": "array", "items": {"type": "number", "minimum": 1.5}, "minItems": 2},
///     "name": {"type": "string", "enum": ["a", "b"]},
///     "note": {"type": "string"}}});
/// assert_eq!(example(&schema, &Default::default()), json!({"x": [1.5, 1.5], "name": "a"}));
/// ```
pub fn example(
    schema: &serde_json::Value,
    definitions: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    example_at(schema, definitions, 0)
}

fn example_at(
    schema: &serde_json::Value,
    definitions: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
) -> serde_json::Value {
    use serde_json::{json, Value};
    if depth > 16 {
        return Value::Null;
    }
    let next = |schema: &Value| example_at(schema, definitions, depth + 1);
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return definitions.get(name).map_or(Value::Null, next);
    }
    if let Some(value) = schema.get("example").or_else(|| schema.get("default")).or_else(|| schema.get("const")) {
        return value.clone();
    }
    for key in ["examples", "enum"] {
        if let Some(first) = schema.get(key).and_then(Value::as_array).and_then(|values| values.first()) {
            return first.clone();
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = schema.get(key).and_then(Value::as_array).and_then(|values| values.first()) {
            return next(first);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        // `["number", "null"]`: an Option; the first type that is not null.
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null").unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => return Value::Null,
    };
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    // Zero, moved into the bounds the schema gives.
    let within = |low: Option<f64>, high: Option<f64>| {
        let value = low.map_or(0.0, |low| low.max(0.0));
        high.map_or(value, |high| value.min(high))
    };
    match kind {
        "object" => {
            let mut object = serde_json::Map::new();
            let required = schema.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in required.iter().filter_map(Value::as_str) {
                let property = properties.and_then(|p| p.get(name)).map_or(Value::Null, next);
                object.insert(name.to_string(), property);
            }
            Value::Object(object)
        }
        "array" => {
            let count = schema.get("minItems").and_then(Value::as_u64).unwrap_or(1).min(64);
            if let Some(tuple) = schema.get("prefixItems").and_then(Value::as_array) {
                return Value::Array(tuple.iter().map(next).collect());
            }
            let item = schema.get("items").map_or(Value::Null, next);
            Value::Array(vec![item; count as usize])
        }
        "integer" => {
            let low = bound("minimum").or(bound("exclusiveMinimum").map(|x| x.floor() + 1.0));
            let high = bound("maximum").or(bound("exclusiveMaximum").map(|x| x.ceil() - 1.0));
            json!(within(low, high).ceil() as i64)
        }
        "number" => {
            let low = bound("minimum").or(bound("exclusiveMinimum").map(|x| x + 1.0));
            let high = bound("maximum").or(bound("exclusiveMaximum").map(|x| x - 1.0));
            json!(within(low, high))
        }
        "string" => match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            Some("binary") => json!(""),
            _ => {
                let length = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0).min(64);
                json!(if length == 0 { "text".to_string() } else { "x".repeat(length as usize) })
            }
        },
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn examples_follow_refs_options_and_bounds() {
        let definitions = json!({"Point": {"type": "object", "required": ["x", "y"], "properties": {
            "x": {"type": "integer", "minimum": 3}, "y": {"type": ["number", "null"]}}}});
        let schema = json!({"type": "object", "required": ["points", "flag"], "properties": {
            "points": {"type": "array", "items": {"$ref": "#/components/schemas/Point"}},
            "flag": {"type": "boolean"}}});
        let definitions = definitions.as_object().unwrap();
        assert_eq!(example(&schema, definitions), json!({"points": [{"x": 3, "y": 0.0}], "flag": false}));
        // A schema that refers to itself ends instead of recursing forever.
        let looped = json!({"Node": {"type": "object", "required": ["next"], "properties": {"next": {"$ref": "#/components/schemas/Node"}}}});
        let value = example(&json!({"$ref": "#/components/schemas/Node"}), looped.as_object().unwrap());
        assert!(value.to_string().contains("null"));
        assert_eq!(example(&json!({"type": "integer", "maximum": -2}), &Default::default()), json!(-2));
        assert_eq!(example(&json!({"type": "string", "minLength": 3}), &Default::default()), json!("xxx"));
    }

    #[test]
    fn cookies_and_origins() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; runner_token=abc; b=2"));
        assert_eq!(cookie(&headers, "runner_token"), Some("abc"));
        assert_eq!(cookie(&headers, "runner"), None);
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&Method::POST, &headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&Method::POST, &headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&Method::POST, &headers));
        assert!(same_origin(&Method::GET, &headers));
        assert!(csrf_matches("secret", &csrf_token("secret")));
        assert!(!csrf_matches("secret", &csrf_token("other")));
        assert!(!cookie_safe("a;b") && cookie_safe("rr_0123abc"));
    }
}
