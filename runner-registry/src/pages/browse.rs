//! The pages that read: an organization's repositories, a repository's models, one
//! model's manifest laid out with what changed since the previous number.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use runner_core::registry::{Alias, Canary};
use runner_core::serve::page::{self, html, Markup};
use runner_core::serve::PathParams;
use runner_core::{Manifest, ModelId, ModelStatus};
use serde::Deserialize;

use super::admin;
use super::session::{failed, not_found, respond, session_for, PageResult};
use crate::api::{model_view, views, AppState};

/// Rows per page of a listing.
pub(super) const PAGE_SIZE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    /// Only names containing this (case-insensitive).
    q: Option<String>,
    /// 1-based.
    page: Option<usize>,
    /// What was just deleted, to say so.
    deleted: Option<String>,
    /// Go to this model number.
    number: Option<u64>,
}

pub(super) fn list_query(query: Result<Query<ListQuery>, QueryRejection>) -> ListQuery {
    query.map(|Query(query)| query).unwrap_or_default()
}

/// The slice of `items` page `page` (1-based) shows, and the page count.
pub(super) fn paginate<T>(items: &[T], page: usize) -> (&[T], usize, usize) {
    let pages = items.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    (&items[start.min(items.len())..(start + PAGE_SIZE).min(items.len())], page, pages)
}

/// The page count and links to the pages around this one (`labels`: the previous and
/// next links' words, `newer`/`older` for models).
pub(super) fn pager(
    base: &str,
    q: &str,
    (page, pages): (usize, usize),
    (total, one, many): (usize, &str, &str),
    labels: (&str, &str),
) -> Markup {
    let link = |page: usize| match q.is_empty() {
        true => format!("{base}?page={page}"),
        false => format!("{base}?q={}&page={page}", encode(q)),
    };
    html! {
        div.pager {
            span { (total) " " (if total == 1 { one } else { many }) @if pages > 1 { " · page " (page) " of " (pages) } }
            @if page > 1 { a href=(link(page - 1)) rel="prev" { "← " (labels.0) } }
            @if page < pages { a href=(link(page + 1)) rel="next" { (labels.1) " →" } }
        }
    }
}

/// Percent-encodes `text` for a URL path or query (keeping `/`).
pub(super) fn encode(text: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(text, KEEP).to_string()
}

/// What alias `alias` is to model `number`, as its badge says: its name where it points
/// at the model, its name and share where the model is its canary (`prod (canary 10%)`),
/// nothing where it is neither.
fn alias_label(alias: &Alias, number: u64) -> Option<String> {
    if alias.number == number {
        return Some(alias.name.clone());
    }
    let canary = alias.canary.filter(|canary| canary.number == number)?;
    Some(format!("{} (canary {}%)", alias.name, canary.percent))
}

/// Where an alias points: a number, and its split if it has one (`4 · canary 5 at 10%`).
fn target(number: u64, canary: Option<Canary>) -> Markup {
    html! { (number) @if let Some(canary) = canary { " · canary " (canary) } }
}

pub(super) fn status_badge(status: ModelStatus) -> Markup {
    match status {
        ModelStatus::Ready => html! { span.badge.ready { "ready" } },
        _ => html! { span.badge.uploading { "uploading" } },
    }
}

/// `GET /orgs/{org}`: the repositories.
pub(super) async fn organization(
    State(state): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_for(&state, &headers, &org, None).await?;
    let query = list_query(query);
    let q = query.q.clone().unwrap_or_default();
    let repositories = state.backend.repositories(&org).await.map_err(failed)?;
    let needle = q.to_lowercase();
    let matching: Vec<String> =
        repositories.into_iter().filter(|name| session.covers(name) && name.to_lowercase().contains(&needle)).collect();
    let (shown, page_number, pages) = paginate(&matching, query.page.unwrap_or(1));
    // Each shown repository: its numbers, and its newest model.
    let rows = futures::future::join_all(shown.iter().map(|repo| {
        let (backend, org, repo) = (state.backend.clone(), org.clone(), repo.clone());
        async move {
            let numbers = backend.model_numbers(&org, &repo).await.unwrap_or_default();
            let latest = match numbers.last() {
                Some(&n) => match ModelId::new(&org, &repo, n) {
                    Ok(id) => model_view(&*backend, id).await.ok(),
                    Err(_) => None,
                },
                None => None,
            };
            (repo, numbers.len(), latest)
        }
    }))
    .await;
    let base = format!("/orgs/{org}");
    let main = html! {
        h1 { "Repositories of " (org) }
        (admin::links(&session, &org))
        @if let Some(deleted) = &query.deleted { p.added { "Repository " code { (deleted) } " was deleted." } }
        form.search method="get" action=(base) role="search" {
            input type="search" name="q" value=(q) placeholder="Search repositories by name" aria-label="Search repositories";
            button type="submit" { "Search" }
        }
        (pager(&base, &q, (page_number, pages), (matching.len(), "repository", "repositories"), ("previous", "next")))
        div.scroll { table {
            thead { tr { th { "repository" } th.num { "models" } th.num { "latest" } th { "last change" } } }
            tbody {
                @for (repo, count, latest) in &rows {
                    tr {
                        td { a href=(format!("{base}/{repo}")) { (repo) } }
                        td.num { (count) }
                        td.num { @if let Some(latest) = latest { a href=(format!("{base}/{repo}/{}", latest.number)) { (latest.number) } " " (status_badge(latest.status)) } @else { "-" } }
                        td { @if let Some(manifest) = latest.as_ref().and_then(|l| l.manifest.as_ref()) { (page::when(&manifest.created_at)) } @else { span.muted { "-" } } }
                    }
                }
            }
        } }
        @if matching.is_empty() { p.muted { @if q.is_empty() { "No repository yet." } @else { "No repository matches." } } }
    };
    Ok(respond(&session, &org, &[(base.clone(), org.clone())], main))
}

/// `GET /orgs/{org}/{repo}`: its models, newest first.
pub(super) async fn repository(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_for(&state, &headers, &org, Some(&repo)).await?;
    let query = list_query(query);
    let base = format!("/orgs/{org}/{repo}");
    if let Some(number) = query.number {
        return Ok(page::see_other(&format!("{base}/{number}"), None));
    }
    let (numbers, aliases, history) = tokio::try_join!(
        state.backend.model_numbers(&org, &repo),
        state.backend.aliases(&org, &repo),
        state.backend.alias_history(&org, &repo, None),
    )
    .map_err(failed)?;
    const HISTORY_SHOWN: usize = 20;
    let moves = history.len();
    let newest_first: Vec<u64> = numbers.iter().rev().copied().collect();
    let (shown, page_number, pages) = paginate(&newest_first, query.page.unwrap_or(1));
    let models = views(&*state.backend, &org, &repo, shown).await.map_err(failed)?;
    let aliases_of = |number: u64| aliases.iter().filter_map(move |a| alias_label(a, number));
    let main = html! {
        h1 { (org) "/" (repo) }
        @if let Some(deleted) = &query.deleted { p.added { "Model " (deleted) " was deleted." } }
        @if !aliases.is_empty() {
            p { "Aliases: " @for alias in &aliases { span.badge.alias { (alias.name) " → " (target(alias.number, alias.canary)) } " " } }
        }
        form.search method="get" action=(base) {
            input type="number" name="number" min="1" placeholder="Go to model number" aria-label="Model number";
            button.secondary type="submit" { "Go" }
        }
        (pager(&base, "", (page_number, pages), (numbers.len(), "model", "models"), ("newer", "older")))
        div.scroll { table {
            thead { tr { th.num { "number" } th { "status" } th.num { "size" } th { "runner" } th.hide-narrow { "created" } th { "aliases" } } }
            tbody {
                @for model in &models {
                    tr {
                        td.num { a href=(format!("{base}/{}", model.number)) { (model.number) } }
                        td { (status_badge(model.status)) }
                        @if let Some(manifest) = &model.manifest {
                            td.num { (page::bytes(manifest.total_bytes())) }
                            td { code { (manifest.runner.name) } " " span.muted { (manifest.runner.crate_name) " " (manifest.runner.crate_version) } }
                            td.hide-narrow { (page::when(&manifest.created_at)) }
                        } @else {
                            td.num { "-" } td { "-" } td.hide-narrow { "-" }
                        }
                        td { @for alias in aliases_of(model.number) { span.badge.alias { (alias) } " " } }
                    }
                }
            }
        } }
        @if !history.is_empty() {
            section.card.history {
                h2 { "Alias history" span.muted { " · " (moves) (if moves == 1 { " move" } else { " moves" }) @if moves > HISTORY_SHOWN { ", the last " (HISTORY_SHOWN) " shown" } } }
                div.scroll { table {
                    thead { tr { th { "when" } th { "alias" } th { "move" } th { "by" } th { "why" } } }
                    tbody {
                        @for step in history.iter().rev().take(HISTORY_SHOWN) {
                            tr {
                                td { (page::when(&step.at)) }
                                td { span.badge.alias { (step.alias) } }
                                td {
                                    @match (step.from, step.to) {
                                        (None, Some(to)) => { "created → " (target(to, step.to_canary)) }
                                        (Some(from), Some(to)) => { (target(from, step.from_canary)) " → " (target(to, step.to_canary)) }
                                        (Some(from), None) => { "deleted (was " (target(from, step.from_canary)) ")" }
                                        (None, None) => { "-" }
                                    }
                                    @if step.forced { " " span.badge.failed { "forced" } }
                                }
                                td { (step.by) }
                                td { @if let Some(reason) = &step.reason { (reason) } }
                            }
                        }
                    }
                } }
            }
        }
        @if session.can_delete(&repo) {
            div.actions { a.button.danger href=(format!("{base}/delete")) { "Delete repository…" } }
        }
    };
    let crumbs = [(format!("/orgs/{org}"), org.clone()), (base.clone(), repo.clone())];
    Ok(respond(&session, &format!("{org}/{repo}"), &crumbs, main))
}

pub(super) fn parse_number(text: &str) -> PageResult<u64> {
    text.parse().map_err(|_| not_found(&format!("model `{text}`")))
}

/// `GET /orgs/{org}/{repo}/{number}`: one model.
pub(super) async fn model(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, String)>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_for(&state, &headers, &org, Some(&repo)).await?;
    let number = parse_number(&number)?;
    let id = ModelId::new(&org, &repo, number).map_err(failed)?;
    let (view, numbers, aliases) = tokio::try_join!(
        model_view(&*state.backend, id.clone()),
        state.backend.model_numbers(&org, &repo),
        state.backend.aliases(&org, &repo),
    )
    .map_err(failed)?;
    // The previous ready model, for what changed (a few uploading numbers skipped).
    let earlier: Vec<u64> = numbers.iter().rev().copied().filter(|&n| n < number).take(20).collect();
    let mut previous = None;
    for n in earlier {
        if let Ok(Some(model)) = views(&*state.backend, &org, &repo, &[n]).await.map(|mut m| m.pop()) {
            if let Some(manifest) = model.manifest {
                previous = Some(manifest);
                break;
            }
        }
    }
    let base = format!("/orgs/{org}/{repo}/{number}");
    let named: Vec<String> = aliases.iter().filter_map(|a| alias_label(a, number)).collect();
    let main = html! {
        h1 { (org) "/" (repo) ":" (number) " " (status_badge(view.status)) @for alias in &named { " " span.badge.alias { (alias) } } }
        @match &view.manifest {
            Some(manifest) => { (manifest_sections(&base, manifest, previous.as_ref())) }
            None => { p.card { "This model is being uploaded: it has a number, and becomes visible to loads once its manifest is committed." } }
        }
        @if session.can_delete(&repo) {
            div.actions { a.button.danger href=(format!("{base}/delete")) { "Delete model…" } }
        }
    };
    let crumbs = [
        (format!("/orgs/{org}"), org.clone()),
        (format!("/orgs/{org}/{repo}"), repo.clone()),
        (base.clone(), number.to_string()),
    ];
    Ok(respond(&session, &id.to_string(), &crumbs, main))
}

/// The tensors a model takes and returns, when its save props hold a signature (runner-torch
/// and runner-onnx write one under `signature`: `{"inputs": [{"name", "datatype" or
/// "dtype", "shape", "dims"?}], "outputs": [...]}`); nothing otherwise.
fn tensor_signature(manifest: &Manifest) -> Markup {
    let signature = manifest.save.props.as_ref().and_then(|props| props.get("signature"));
    let Some(signature) = signature.and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok()) else {
        return html! {};
    };
    let mut rows = Vec::new();
    for (direction, key) in [("input", "inputs"), ("output", "outputs")] {
        for spec in signature[key].as_array().into_iter().flatten() {
            let dims: Vec<String> = spec["shape"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, d)| match (d.as_i64(), spec["dims"][i].as_str().filter(|s| !s.is_empty())) {
                    (Some(n), _) if n >= 0 => n.to_string(),
                    (_, Some(symbol)) => symbol.to_string(),
                    _ => "any".to_string(),
                })
                .collect();
            let text = |field: &str| spec[field].as_str().unwrap_or_default().to_string();
            let datatype = if spec["datatype"].is_string() { text("datatype") } else { text("dtype") };
            rows.push((direction, text("name"), datatype, format!("[{}]", dims.join(", "))));
        }
    }
    if rows.is_empty() {
        return html! {};
    }
    html! {
        section.card #signature {
            h2 { "Tensors" }
            div.scroll { table {
                thead { tr { th { "" } th { "name" } th { "datatype" } th { "shape" } } }
                tbody { @for (direction, name, datatype, shape) in &rows {
                    tr { td { (direction) } td { code { (name) } } td { code { (datatype) } } td { code { (shape) } } }
                } }
            } }
        }
    }
}

pub(super) fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub(super) fn manifest_sections(base: &str, manifest: &Manifest, previous: Option<&Manifest>) -> Markup {
    html! {
        section.card {
            h2 { "Runner" }
            dl.facts {
                dt { "Runner" } dd { code { (manifest.runner.name) } " (" code { (manifest.runner.rust_type) } ")" }
                dt { "Crate" } dd { (manifest.runner.crate_name) " " (manifest.runner.crate_version) }
                dt { "Saved" } dd {
                    code { (serde_json::to_value(manifest.save.save_type).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                    @if let Some(path) = &manifest.save.path { " to " code { (path) } }
                }
                dt { "Props" } dd { @match &manifest.save.props { Some(props) => { pre { (json_text(props)) } } None => { span.muted { "none" } } } }
                dt { "Hooks on defaults" } dd {
                    @if manifest.default_hooks.is_empty() { span.muted { "none: the runner defines every hook" } }
                    @for hook in &manifest.default_hooks { code { (hook) } " " }
                }
                dt { "Requirements" } dd {
                    @if manifest.requirements.is_empty() { span.muted { "none" } }
                    @for requirement in &manifest.requirements { code { (requirement) } " " }
                }
                dt { "Registered" } dd { (page::when(&manifest.created_at)) " with runner-core " (manifest.framework_version) }
                @if let Some(api) = &manifest.api {
                    dt { "API fingerprint" } dd { span.sha { (api.fingerprint) } }
                }
            }
            @if let Some(api) = &manifest.api {
                details { summary { "Request schema" } pre { (json_text(&api.input)) } }
                details { summary { "Response schema" } pre { (json_text(&api.output)) } }
            }
        }
        (tensor_signature(manifest))
        @if !manifest.artifacts.is_empty() {
            section.card {
                h2 { "Artifact mapping" }
                div.scroll { table {
                    thead { tr { th { "local path" } th { "volume path" } } }
                    tbody { @for (local, volume) in &manifest.artifacts { tr { td { code { (local) } } td { code { (volume) } } } } }
                } }
            }
        }
        section.card {
            h2 { "Files" span.muted { " · " (manifest.files.len()) ", " (page::bytes(manifest.total_bytes())) } }
            div.scroll { table.files {
                thead { tr { th { "path" } th.num { "size" } th { "sha256" } } }
                tbody {
                    @for file in &manifest.files {
                        tr data-path=(file.path) {
                            td { a href=(format!("{base}/files/{}", encode(&file.path))) download { (file.path) } }
                            td.num { (page::bytes(file.size)) }
                            td.sha { (file.sha256) }
                        }
                    }
                }
            } }
        }
        section.card.changes {
            @match previous {
                Some(previous) => {
                    h2 { "Changes since " a href=(format!("{}/{}", base.rsplit_once('/').map_or("", |(head, _)| head), previous.model.number)) { "number " (previous.model.number) } }
                    (changes(previous, manifest))
                }
                None => { h2 { "Changes" } p.muted { "This is the first ready model of the repository." } }
            }
        }
    }
}

/// What changed from `before` to `after`: files, runner, requirements, API.
pub(super) fn changes(before: &Manifest, after: &Manifest) -> Markup {
    use std::collections::BTreeMap;
    let old: BTreeMap<&str, &runner_core::FileEntry> = before.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let new: BTreeMap<&str, &runner_core::FileEntry> = after.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let added: Vec<&str> = new.keys().filter(|p| !old.contains_key(*p)).copied().collect();
    let removed: Vec<&str> = old.keys().filter(|p| !new.contains_key(*p)).copied().collect();
    let changed: Vec<(&str, u64, u64)> = new
        .iter()
        .filter_map(|(path, file)| {
            old.get(path).filter(|o| o.sha256 != file.sha256).map(|o| (*path, o.size, file.size))
        })
        .collect();
    let runner_before = format!("{} {} {}", before.runner.name, before.runner.crate_name, before.runner.crate_version);
    let runner_after = format!("{} {} {}", after.runner.name, after.runner.crate_name, after.runner.crate_version);
    let req_added: Vec<&String> = after.requirements.iter().filter(|r| !before.requirements.contains(r)).collect();
    let req_removed: Vec<&String> = before.requirements.iter().filter(|r| !after.requirements.contains(r)).collect();
    let api_changes = match (&before.api, &after.api) {
        (Some(b), Some(a)) if b.fingerprint != a.fingerprint => b.changes(a),
        _ => Vec::new(),
    };
    let nothing = added.is_empty()
        && removed.is_empty()
        && changed.is_empty()
        && runner_before == runner_after
        && req_added.is_empty()
        && req_removed.is_empty()
        && api_changes.is_empty();
    html! {
        @if nothing { p.muted { "Nothing: the same files, runner, requirements and API." } }
        ul {
            @for path in &added { li.added { "added " code { (path) } } }
            @for path in &removed { li.removed { "removed " code { (path) } } }
            @for (path, from, to) in &changed { li.changed { "changed " code { (path) } " (" (page::bytes(*from)) " → " (page::bytes(*to)) ")" } }
            @if runner_before != runner_after { li.changed { "runner " code { (runner_before) } " → " code { (runner_after) } } }
            @for requirement in &req_added { li.added { "requirement added " code { (requirement) } } }
            @for requirement in &req_removed { li.removed { "requirement removed " code { (requirement) } } }
            @for change in &api_changes { li.changed { "API " code { (change) } } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_in_the_props_is_shown_as_a_table() {
        let manifest_json = serde_json::json!({
            "manifest_version": 1,
            "model": {"organization": "default", "repository": "cnn", "number": 1},
            "runner": {"name": "onnx", "rust_type": "runner_onnx::OnnxRunner", "crate_name": "runner-onnx", "crate_version": "0.1.0"},
            "save": {"type": "custom", "path": null, "props": {
                "format": "onnx",
                "signature": r#"{"inputs":[{"name":"image","datatype":"FP32","shape":[-1,3,224,224],"dims":["batch","","",""]}],"outputs":[{"name":"logits","datatype":"FP32","shape":[-1,10]}]}"#
            }},
            "default_hooks": [], "requirements": [], "artifacts": {}, "files": [],
            "created_at": "2026-12-06T00:00:00.000000Z", "framework_version": "0.1.0"
        });
        let mut manifest: Manifest = serde_json::from_value(manifest_json).unwrap();
        let page = tensor_signature(&manifest).into_string();
        assert!(page.contains("<code>image</code>") && page.contains("<code>[batch, 3, 224, 224]</code>"), "{page}");
        assert!(
            page.contains(
                "<td>output</td><td><code>logits</code></td><td><code>FP32</code></td><td><code>[any, 10]</code>"
            ),
            "{page}"
        );
        // runner-torch's form (`dtype`), and no signature at all.
        manifest.save.props.as_mut().unwrap().insert(
            "signature".into(),
            r#"{"inputs":[{"name":"x","dtype":"float32","shape":[-1,64]}],"outputs":[]}"#.into(),
        );
        assert!(tensor_signature(&manifest).into_string().contains("<code>float32</code>"));
        manifest.save.props = None;
        assert_eq!(tensor_signature(&manifest).into_string(), "");
    }
}
