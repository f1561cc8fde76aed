//! `serve`'s pages: `/` (the served models, their live figures and a form to try each;
//! when models are loaded at run time, the registry's others and why each is not served)
//! and `/docs` (the API reference, rendered from `/openapi.json`). With an API key, a
//! browser signs in once with the key, kept in an `HttpOnly`, `SameSite=Strict` cookie;
//! the page's script then sends the session's CSRF token with each call.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::error::ApiError;
use super::page::{self, html, Markup};
use super::repository::{self, IndexEntry};
use super::state::{AppState, Slot};
use crate::engine::Endpoint;

/// The cookie a browser keeps the API key in.
pub(crate) const KEY_COOKIE: &str = "runner_key";

/// Whether the request's cookie holds the server's API key (the page's own check).
fn cookie_key<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    let key = page::cookie(headers, KEY_COOKIE)?;
    state.is_key(key).then_some(key)
}

/// Whether a signed-in browser may make this call with its key cookie: reads (`GET`,
/// `HEAD`; other sites cannot read the answers) with the cookie alone, anything else only
/// with the session's CSRF token in [`page::CSRF_HEADER`], which the page's script sends
/// and another site cannot know.
pub(crate) fn cookie_allows(state: &AppState, method: &Method, headers: &HeaderMap) -> bool {
    let Some(key) = cookie_key(state, headers) else { return false };
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    headers.get(page::CSRF_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|given| page::csrf_matches(key, given))
}

/// What a page may show: everything (no key, or signed in, with the CSRF token for its
/// script), or only the sign-in form.
enum Access {
    Open,
    SignedIn { csrf: String },
    SignIn,
}

fn access(state: &AppState, headers: &HeaderMap) -> Access {
    if state.api_key_hash.is_none() {
        return Access::Open;
    }
    match cookie_key(state, headers) {
        Some(key) => Access::SignedIn { csrf: page::csrf_token(key) },
        None => Access::SignIn,
    }
}

fn top(signed_in: bool) -> Markup {
    html! {
        a.brand href="/" { "runner serve" }
        nav {
            a href="/" { "Models" }
            span.sep { "·" }
            a href="/docs" { "API reference" }
            span.sep { "·" }
            a href="/openapi.json" { "openapi.json" }
            span.sep { "·" }
            a href="/metrics" { "metrics" }
        }
        @if signed_in {
            div.who {
                form.inline method="post" action="/sign-out" { button type="submit" { "Sign out" } }
            }
        }
    }
}

fn sign_in_page(message: Option<&str>) -> Response {
    let main = html! {
        h1 { "Sign in" }
        div.card {
            p { "This server asks for an API key. It is kept in a cookie that scripts cannot read, for 12 hours or until you sign out." }
            @if let Some(message) = message { p.error { (message) } }
            form.search method="post" action="/sign-in" {
                input type="password" name="key" placeholder="API key" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        }
    };
    let status = if message.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    page::respond(status, page::document("Sign in · runner serve", top(false), main, &[]))
}

/// `POST /sign-in`: the API key from the form, checked, into the cookie.
#[derive(serde::Deserialize)]
pub(crate) struct SignIn {
    key: String,
}

pub(crate) async fn sign_in(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Err(refused) = page::from_this_site(&method, &headers) {
        return refused;
    }
    let Ok(Form(SignIn { key })) = form else { return sign_in_page(Some("send the form with a key")) };
    if state.api_key_hash.is_none() {
        return page::see_other("/", None);
    }
    if !state.is_key(&key) {
        return sign_in_page(Some("wrong API key"));
    }
    if !page::cookie_safe(&key) {
        return sign_in_page(Some(
            "this key has characters a cookie cannot hold; call the API with `Authorization: Bearer KEY` instead",
        ));
    }
    page::see_other("/", Some(page::session_cookie(KEY_COOKIE, Some(&key))))
}

/// `POST /sign-out`: clears the cookie.
pub(crate) async fn sign_out(method: Method, headers: HeaderMap) -> Response {
    if let Err(refused) = page::from_this_site(&method, &headers) {
        return refused;
    }
    page::see_other("/", Some(page::session_cookie(KEY_COOKIE, None)))
}

/// `GET /`: the served models.
pub(crate) async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let csrf = match access(&state, &headers) {
        Access::SignIn => return sign_in_page(None),
        Access::Open => None,
        Access::SignedIn { csrf } => Some(csrf),
    };
    let main = match state.models.get() {
        Some(models) if state.ready.load(Ordering::Acquire) => {
            let openapi = models.openapi.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            let table = models.snapshot();
            // Reads the registry: only where the server may load more of it.
            let others = if state.options.repository_mode.loads_at_run_time() {
                Some(repository::index(&state, false).await)
            } else {
                None
            };
            html! {
                h1 { "Served models" }
                @for (name, slot) in table.iter() { (model_card(name, slot, &openapi, state.now_ms(), state.options.shadow)) }
                @if let Some(others) = others { (other_models(others)) }
            }
        }
        _ => html! {
            h1 { "Served models" }
            div.card data-loading="1" {
                span.badge.loading { "loading" }
                " The models are loading; this page reloads when they are ready."
            }
        },
    };
    let main = html! {
        @if let Some(csrf) = &csrf { div.hidden #session data-csrf=(csrf) {} }
        (main)
    };
    page::respond(StatusCode::OK, page::document("runner serve", top(csrf.is_some()), main, &["serve.js"]))
}

fn model_card(name: &str, slot: &Slot, openapi: &Value, now_ms: u64, shadow: bool) -> Markup {
    let endpoint = slot.endpoint();
    let manifest = endpoint.manifest();
    let follow = slot.follow.as_ref().map(|follow| {
        let log = follow.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        (follow.reference.clone(), log)
    });
    let placement = endpoint.placement();
    let micros = |key: &str| match placement[key].as_f64() {
        Some(us) if us >= 1000.0 => format!("{:.1} ms", us / 1000.0),
        Some(us) => format!("{us:.0} µs"),
        None => "-".to_string(),
    };
    html! {
        section.card.model data-model=(name) {
            h2 {
                (name) " "
                span.badge.ready { "ready" } " "
                span.badge { "number " (manifest.model.number) }
                @if let Some((reference, _)) = &follow { " " span.badge.alias { "follows " (reference) } }
                @if let Some(split) = slot.split() {
                    " " span.badge.alias data-canary=(split.endpoint.manifest().model.number) data-percent=(split.percent) {
                        (if shadow { "shadow " } else { "canary " }) (split.endpoint.manifest().model.number) " · " (split.percent) "%"
                    }
                }
            }
            @if let Some((_, log)) = &follow {
                @if let Some(failed) = &log.failed {
                    p.error { span.badge.failed { "failed" } " number " (failed.number.map_or("?".to_string(), |n| n.to_string())) " could not be loaded at " (failed.at) ": " (failed.error) }
                }
                @if let Some(unreachable) = &log.unreachable {
                    p.error { "the registry was unreachable at " (unreachable.at) ": " (unreachable.error) }
                }
                @if !log.swaps.is_empty() {
                    p.muted { (log.swaps.len()) " swap(s); last " (log.swaps.last().map_or(String::new(), |s| format!("{} → {} at {}", s.from, s.to, s.at))) }
                }
            }
            dl.facts {
                dt { "Model" } dd { code { (manifest.model) } }
                dt { "Runner" } dd { code { (endpoint.runner()) } " from " (manifest.runner.crate_name) " " (manifest.runner.crate_version) }
                dt { "Files" } dd { (manifest.files.len()) " (" (page::bytes(manifest.total_bytes())) "), registered " (page::when(&manifest.created_at)) }
                dt { "Memory" } dd data-resident=(slot.resident.load(std::sync::atomic::Ordering::Relaxed)) {
                    @match slot.resident.load(std::sync::atomic::Ordering::Relaxed) {
                        0 => { span.muted { "not measured (loaded at start)" } }
                        bytes => { (page::bytes(bytes)) " resident, measured while it loaded" }
                    }
                    " · last used " (idle(now_ms.saturating_sub(slot.last_used()))) " ago"
                }
                dt { "Runs" } dd data-runs="1" {
                    code { (placement["mode"].as_str().unwrap_or("-")) }
                    @match placement["measured_calls"].as_u64().unwrap_or(0) {
                        0 => { span.muted { " · not measured yet" } }
                        calls => { " · on average " (micros("cpu_us")) " of CPU and " (micros("waiting_us")) " waiting, over " (calls) " measured calls" }
                    }
                }
                dt { "Batching" } dd {
                    @match endpoint.batch() {
                        Some(b) => { "up to " (b.max_batch_size) " inputs, waiting at most " (b.max_delay.as_millis()) " ms" }
                        None => { "off" }
                    }
                }
            }
            h3 { "Live" }
            div.grid {
                @for (stat, label) in [("rate", "requests/s"), ("requests", "requests"), ("errors", "errors"), ("in_flight", "in flight"), ("p50", "p50"), ("p99", "p99")] {
                    div.stat { span.label { (label) } span.value data-stat=(stat) { "-" } }
                }
            }
            (try_it(name, &endpoint, openapi))
        }
    }
}

/// The registry's models this server could load and has not (or is loading), from the
/// repository index: one row each, with its state and why it is not served.
fn other_models(index: Result<Vec<IndexEntry>, ApiError>) -> Markup {
    let entries = match index {
        Ok(entries) => entries.into_iter().filter(|entry| entry.state != "READY").collect::<Vec<_>>(),
        Err(e) => {
            return html! {
                section.card.others {
                    h2 { "Other models in the registry" }
                    p.error { (e.message) }
                }
            }
        }
    };
    if entries.is_empty() {
        return html! {};
    }
    html! {
        section.card.others {
            h2 { "Other models in the registry" span.muted { " · " (entries.len()) " not loaded" } }
            p.muted { "Load one with " code { "POST /v2/repository/models/NAME/load" } "." }
            div.scroll { table {
                thead { tr { th { "model" } th { "state" } th { "why" } } }
                tbody {
                    @for entry in &entries {
                        tr data-model=(entry.name) data-state=(entry.state) {
                            td { code { (entry.name) } }
                            td {
                                @match entry.state {
                                    "LOADING" => { span.badge.loading { "loading" } }
                                    _ if entry.reason.starts_with("failed") => { span.badge.failed { "unavailable" } }
                                    _ => { span.badge { "unavailable" } }
                                }
                            }
                            td.muted { (entry.reason) }
                        }
                    }
                }
            } }
        }
    }
}

/// The form to try a model: a JSON body prefilled with an example generated from its
/// schema, a file for raw-bytes runners, a V2 request for tensor runners.
fn try_it(name: &str, endpoint: &Endpoint, openapi: &Value) -> Markup {
    let predict = format!("/models/{name}/predict");
    let (input_type, _) = endpoint.media_types();
    let signature = endpoint.speaks_tensors().then(|| endpoint.v2_signature()).flatten();
    let definitions = openapi["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let schema = &openapi["paths"][&predict]["post"]["requestBody"]["content"]["application/json"]["schema"];
    html! {
        h3 { "Try it" }
        @if let Some(signature) = &signature {
            p.muted { "A tensor runner (" code { (signature.platform) } "): its KServe V2 signature, and a V2 request to " code { "/v2/models/" (name) "/infer" } "." }
            div.scroll { table {
                thead { tr { th { "" } th { "name" } th { "datatype" } th { "shape" } } }
                tbody {
                    @for (side, tensors) in [("input", &signature.inputs), ("output", &signature.outputs)] {
                        @for tensor in tensors {
                            tr { td.muted { (side) } td { code { (tensor.name) } } td { (tensor.datatype) } td { code { (format!("{:?}", tensor.shape)) } } }
                        }
                    }
                }
            } }
            form.try data-url=(format!("/v2/models/{name}/infer")) data-kind="json" {
                (editor("V2 request", &v2_example(signature)))
                div.actions { button type="submit" { "Send" } }
            }
        } @else if input_type == "application/json" {
            p.muted { code { "POST " (predict) } ", a JSON body; the example below was generated from the runner's schema." }
            form.try data-url=(predict) data-kind="json" {
                (editor("Request body", &page::example(schema, &definitions)))
                div.actions { button type="submit" { "Send" } }
            }
        } @else {
            p.muted { code { "POST " (predict) } ", the raw bytes of a file (" code { (input_type) } ")." }
            form.try data-url=(predict) data-kind="file" data-type=(input_type) {
                input type="file" name="file" aria-label="File to send";
                div.actions { button type="submit" { "Send" } }
            }
        }
        div.response.hidden {
            div.meta { span data-out="status" {} span data-out="latency" {} span data-out="model" {} }
            pre data-out="body" {}
        }
    }
}

/// A JSON editor holding `value`, as tall as its text (up to 16 lines).
fn editor(label: &str, value: &Value) -> Markup {
    let text = pretty(value);
    let rows = (text.lines().count() + 1).clamp(3, 16);
    html! { textarea name="body" spellcheck="false" rows=(rows) aria-label=(label) { (text) } }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A V2 request of zeros (empty strings for BYTES) in the signature's shapes, free
/// dimensions set to 1.
fn v2_example(signature: &crate::v2::Signature) -> Value {
    let inputs: Vec<Value> = signature
        .inputs
        .iter()
        .map(|tensor| {
            let shape: Vec<i64> = tensor.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect();
            let count = shape.iter().product::<i64>().clamp(0, 4096) as usize;
            let zero = match tensor.datatype.as_str() {
                "BYTES" => json!(""),
                "BOOL" => json!(false),
                "FP16" | "BF16" | "FP32" | "FP64" => json!(0.0),
                _ => json!(0),
            };
            json!({ "name": tensor.name, "datatype": tensor.datatype, "shape": shape, "data": vec![zero; count] })
        })
        .collect();
    json!({ "inputs": inputs })
}

/// `GET /docs`: the API reference, from the OpenAPI document.
pub(crate) async fn docs(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let signed_in = match access(&state, &headers) {
        Access::SignIn => return sign_in_page(None),
        Access::Open => false,
        Access::SignedIn { .. } => true,
    };
    let Some(models) = state.models.get() else {
        return page::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "the models are still loading; try again in a moment",
            Some(("/", "Back")),
        );
    };
    let openapi = models.openapi.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let empty = serde_json::Map::new();
    let operations: Vec<(&String, &String, &Value)> = openapi["paths"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .flat_map(|(path, operations)| {
            operations.as_object().into_iter().flatten().map(move |(method, op)| (path, method, op))
        })
        .collect();
    let main = html! {
        h1 { (openapi["info"]["title"].as_str().unwrap_or("API")) " " span.badge { (openapi["info"]["version"].as_str().unwrap_or("")) } }
        p.muted { (openapi["info"]["description"].as_str().unwrap_or("")) ". The machine-readable document: " a href="/openapi.json" { "/openapi.json" } " (OpenAPI " (openapi["openapi"].as_str().unwrap_or("")) ")." }
        h2 { "Predictions" }
        @for (path, method, operation) in &operations {
            @if operation.get("requestBody").is_some() { (docs_operation(path, method, operation)) }
        }
        h2 { "Other endpoints" }
        div.scroll { table {
            thead { tr { th.narrow { "method" } th { "path" } th { "what" } } }
            tbody {
                @for (path, method, operation) in &operations {
                    @if operation.get("requestBody").is_none() {
                        tr { td { span.method { (method.to_uppercase()) } } td { code { (path) } } td { (operation["summary"].as_str().unwrap_or("")) } }
                    }
                }
            }
        } }
        @if let Some(schemas) = openapi["components"]["schemas"].as_object() {
            h2 { "Schemas" }
            @for (name, schema) in schemas {
                details.card { summary { code { (name) } } pre { (pretty(schema)) } }
            }
        }
    };
    page::respond(StatusCode::OK, page::document("API reference · runner serve", top(signed_in), main, &[]))
}

fn docs_operation(path: &str, method: &str, operation: &Value) -> Markup {
    html! {
        section.card.op {
            h3 { span.method { (method.to_uppercase()) } " " code { (path) } }
            @if let Some(summary) = operation["summary"].as_str() { p { (summary) } }
            @if let Some(description) = operation["description"].as_str() { p.muted { (description) } }
            @if let Some(content) = operation["requestBody"]["content"].as_object() {
                @for (media_type, body) in content {
                    details { summary { "Request body: " code { (media_type) } } pre { (pretty(&body["schema"])) } }
                }
            }
            @if let Some(responses) = operation["responses"].as_object() {
                div.scroll { table {
                    thead { tr { th.narrow { "status" } th { "meaning" } } }
                    tbody { @for (status, response) in responses {
                        tr { td { code { (status) } } td { (response["description"].as_str().unwrap_or("")) } }
                    } }
                } }
            }
        }
    }
}

/// A duration in milliseconds as people read it: `850 ms`, `12 s`, `5 min`, `3 h`.
fn idle(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{} s", ms / 1_000),
        120_000..7_200_000 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}
