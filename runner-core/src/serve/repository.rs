//! The model repository API, after Triton's repository extension, so that existing clients
//! (`tritonclient`'s `get_model_repository_index`, `load_model`, `unload_model`) work
//! unchanged: the index of the organization's repositories with their state, and loading
//! and unloading models while the server runs (`serve --repository-mode explicit|all`).
//!
//! | route | what |
//! |---|---|
//! | `POST /v2/repository/index` | every repository the server may load: `[{"name", "version", "state", "reason"}]`, state `READY`, `LOADING` or `UNAVAILABLE` (`{"ready": true}` lists the ready ones) |
//! | `POST /v2/repository/models/{name}/load` | loads `name` (its latest number, or `{"parameters": {"version": "3"}}`, a number or an alias); a model served under that name is replaced as an alias move replaces it, without a failed request |
//! | `POST /v2/repository/models/{name}/unload` | stops serving `name`: new requests get 404 saying how to load it, requests in flight finish on it |
//!
//! The routes themselves are in `repository_routes`, with the V2 errors.
//!
//! gRPC has the same as `RepositoryIndex`, `RepositoryModelLoad` and
//! `RepositoryModelUnload`. The routes are behind `--api-key` as every model route is.
//!
//! Shared state, and why each interleaving is safe:
//! - The table of served names ([`Models`]) is replaced whole, under its write lock, so a
//!   request reads it before or after a change. A request holds its endpoint (an `Arc`)
//!   from the lookup to the answer: an unload removes the name and the endpoint is freed
//!   ([`release`]) only when the last such request ends.
//! - One change per name at a time: a load or unload marks the name in
//!   [`AppState::changes`] under its lock first, and a second change of that name while
//!   the first runs is refused (409), never queued behind it. Loading runs on the blocking
//!   pool, outside every lock; the table is changed only once the model is loaded, so a
//!   failed load leaves what was served (and says why in the index).
//! - Loads at run time take turns ([`AppState::loading`], held from making room to serving
//!   the model): the resident memory a load adds is its own, and two loads cannot both see
//!   room for one more under `--max-loaded-models`.
//! - Eviction picks the least recently used idle slot (no request holds its endpoint). A
//!   request may take that endpoint between the check and the removal: it finishes on it,
//!   as with any unload, and only the memory is freed a little later. A request that finds
//!   the name gone meanwhile loads it again with `--load-on-demand`, or gets the 404.
//! - `--load-on-demand`: the first request for a missing name loads it; others for that
//!   name meanwhile are refused by its mark (409 inside) and wait until it is served, so
//!   one load serves them all.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::options::RepositoryMode;
use super::state::{models, release, AppState, Change, Slot};
use crate::catalog::load_any;
use crate::engine::Endpoint;
use crate::error::Error;
use crate::names::{ModelRef, Version};

/// One repository in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct IndexEntry {
    pub(crate) name: String,
    /// The number served, when READY.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) version: String,
    /// `READY`, `LOADING` or `UNAVAILABLE`.
    pub(crate) state: &'static str,
    /// Why it is not READY.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) reason: String,
}

/// Every repository of the organization in the registry, and every name served or being
/// changed, with its state; only the READY ones when `ready_only`.
pub(crate) async fn index(state: &Arc<AppState>, ready_only: bool) -> Result<Vec<IndexEntry>, ApiError> {
    let table = models(state)?.snapshot();
    let known = match state.registry.get() {
        Some(registry) => {
            let (registry, organization) = (registry.clone(), state.options.organization.clone());
            tokio::task::spawn_blocking(move || registry.repositories(&organization))
                .await
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "registry_unavailable",
                        format!("cannot list the registry: {e}"),
                    )
                })?
        }
        None => Vec::new(),
    };
    let changes = state.changes.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // The registry's repositories and what is served or being changed; a name that failed
    // to load and is in neither (a typo) is not listed.
    let mut names: Vec<String> = known;
    names.extend(table.keys().cloned());
    names.extend(
        changes.iter().filter(|(_, c)| matches!(c, Change::Loading | Change::Unloading)).map(|(n, _)| n.clone()),
    );
    names.sort();
    names.dedup();
    let entries = names.into_iter().map(|name| {
        let change = changes.get(&name);
        let (state, reason) = match (table.get(&name), change) {
            (_, Some(Change::Loading)) => ("LOADING", String::new()),
            (Some(_), Some(Change::Unloading)) => ("READY", "unloading".to_string()),
            (Some(_), _) => ("READY", String::new()),
            (None, Some(Change::Failed(why))) => ("UNAVAILABLE", format!("failed to load: {why}")),
            (None, Some(Change::Unloaded | Change::Unloading)) => ("UNAVAILABLE", "unloaded".to_string()),
            (None, None) => ("UNAVAILABLE", "not loaded".to_string()),
        };
        let version =
            table.get(&name).map(|slot| slot.endpoint().manifest().model.number.to_string()).unwrap_or_default();
        IndexEntry { name, version, state, reason }
    });
    Ok(entries.filter(|e| !ready_only || e.state == "READY").collect())
}

/// Loads `name` at `version` (a number or an alias; default its latest number) and serves
/// it, replacing what is served under that name.
pub(crate) async fn load(state: &Arc<AppState>, name: &str, version: Option<&str>) -> Result<(), ApiError> {
    refuse_in_startup_mode(state, "load")?;
    let registry = state.registry.get().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "this server was not started from a registry, so it loads nothing at run time",
        )
    })?;
    let version = match version {
        None => Version::Latest,
        Some(v) => format!("{name}:{v}").parse::<ModelRef>().map(|r| r.version).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("version `{v}` is not a number or an alias: {e}"),
            )
        })?,
    };
    let reference =
        ModelRef { organization: state.options.organization.clone(), repository: name.to_string(), version };
    let changing = Changing::start(state, name, Change::Loading)?;
    let started = std::time::Instant::now();
    let _one_at_a_time = state.loading.lock().await;
    // Room first, when loading one more would pass --max-loaded-models.
    if state.models.get().is_some_and(|m| m.get(name).is_none()) {
        evict(state, name, 1);
    }
    let wanted = reference.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let before = resident_bytes();
        let model = load_any(registry.as_ref(), &wanted)?;
        let grown = resident_bytes().zip(before).map_or(0, |(after, before)| after.saturating_sub(before));
        Ok::<_, Error>((model, grown))
    })
    .await
    .unwrap_or_else(|e| Err(Error::msg(format!("loading panicked: {e}"))));
    let (model, grown) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let why = e.to_string();
            tracing::error!(model = %reference, error = %why, "the repository API could not load the model");
            changing.finish(Change::Failed(why.clone()));
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "load_failed",
                format!("failed to load {reference}: {why}"),
            ));
        }
    };
    let number = model.manifest().model.number;
    if model.manifest().model.repository != name {
        // load_any resolves within the repository asked for; a mismatch is a registry bug.
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the registry answered another repository",
        ));
    }
    let endpoint = state.engine.serve(model, name);
    let models = models(state)?;
    let now = state.now_ms();
    let replaced = models.change(|table| match table.get(name) {
        Some(slot) => {
            endpoint.continue_from(&slot.endpoint());
            slot.resident.store(grown, Ordering::Relaxed);
            slot.touch(now);
            Some(slot.swap(endpoint.clone()))
        }
        None => {
            let slot = Slot::new(endpoint.clone(), None);
            slot.resident.store(grown, Ordering::Relaxed);
            slot.touch(now);
            table.insert(name.to_string(), Arc::new(slot));
            None
        }
    });
    state.engine.record_swap(name, "loaded", Some(number));
    let replaced_number = replaced.as_ref().map(|old| old.manifest().model.number);
    if let Some(old) = replaced {
        release(old);
    }
    tracing::info!(model = %reference, number, replaced = ?replaced_number, resident_bytes = grown, ms = started.elapsed().as_millis() as u64, "loaded through the repository API");
    changing.finish_ready();
    // Within --memory-budget (and --max-loaded-models) again.
    evict(state, name, 0);
    Ok(())
}

/// Unloads the least recently used idle models (never `keep`, never one a request holds)
/// until `room` more fit under `--max-loaded-models` and the measured sizes fit
/// `--memory-budget`. When every candidate is busy, the limit is passed for now, said in
/// the log, and the next load tries again.
pub(crate) fn evict(state: &AppState, keep: &str, room: usize) {
    let (max, budget) = (state.options.max_loaded_models, state.options.memory_budget);
    if max.is_none() && budget.is_none() {
        return;
    }
    let Some(models) = state.models.get() else { return };
    loop {
        let table = models.snapshot();
        let over_count = max.is_some_and(|max| table.len() + room > max);
        let used: u64 = table.values().map(|slot| slot.resident.load(Ordering::Relaxed)).sum();
        let over_memory = budget.is_some_and(|budget| used > budget);
        if !over_count && !over_memory {
            return;
        }
        let mut idle: Vec<(&String, &Arc<Slot>)> =
            table.iter().filter(|(name, slot)| name.as_str() != keep && !slot.busy()).collect();
        idle.sort_by_key(|(_, slot)| slot.last_used());
        // The least recently used idle one that no load or unload is changing now.
        let Some((victim, changing)) = idle
            .into_iter()
            .find_map(|(name, _)| Changing::start(state, name, Change::Unloading).ok().map(|c| (name.clone(), c)))
        else {
            tracing::warn!(
                loaded = table.len(),
                resident_bytes = used,
                "over the model limits, but every other model is in use; unloading later"
            );
            return;
        };
        let removed = models.change(|table| table.remove(&victim));
        if let Some(slot) = removed {
            let endpoint = slot.endpoint();
            tracing::info!(model = %victim, number = endpoint.manifest().model.number, idle_ms = state.now_ms().saturating_sub(slot.last_used()), "unloaded the least recently used model to stay within the limits");
            state.engine.record_swap(&victim, "evicted", None);
            drop(slot);
            release(endpoint);
        }
        // Evicted, not unloaded on request: `all` mode and --load-on-demand may load it again.
        changing.finish_ready();
    }
}

/// The endpoint answering for `name`; with `--load-on-demand`, a model of the registry
/// that is not loaded is loaded first (concurrent requests for it wait for the one load),
/// and the wait is recorded.
pub(crate) async fn endpoint(state: &Arc<AppState>, name: &str) -> Result<Arc<Endpoint>, ApiError> {
    let missing = match super::state::endpoint(state, name) {
        Ok(endpoint) => return Ok(endpoint),
        Err(e) if e.status == StatusCode::NOT_FOUND && state.options.load_on_demand => e,
        Err(e) => return Err(e),
    };
    let started = std::time::Instant::now();
    let give_up = started + state.options.timeout;
    loop {
        match load(state, name, None).await {
            Ok(()) => {}
            // Another request is loading it (or the budget is unloading it): wait for that.
            Err(e) if e.status == StatusCode::CONFLICT => {
                if std::time::Instant::now() > give_up {
                    return Err(ApiError::timed_out(state.options.timeout));
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("{}; loading it on demand failed: {}", missing.message, e.message),
                ))
            }
        }
        if let Ok(endpoint) = super::state::endpoint(state, name) {
            state.engine.record_load_wait(name, started.elapsed());
            return Ok(endpoint);
        }
    }
}

/// Stops serving `name`; requests in flight finish on it. Unloading a name not served is
/// not an error (the goal, nothing served, holds).
pub(crate) async fn unload(state: &Arc<AppState>, name: &str) -> Result<(), ApiError> {
    refuse_in_startup_mode(state, "unload")?;
    let changing = Changing::start(state, name, Change::Unloading)?;
    let removed = models(state)?.change(|table| table.remove(name));
    if let Some(slot) = removed {
        let endpoint = slot.endpoint();
        let number = endpoint.manifest().model.number;
        state.engine.record_swap(name, "unloaded", None);
        drop(slot);
        release(endpoint);
        tracing::info!(model = name, number, "unloaded through the repository API");
    }
    changing.finish(Change::Unloaded);
    Ok(())
}

/// The process's resident memory in bytes (Linux: `/proc/self/statm`); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn refuse_in_startup_mode(state: &AppState, what: &str) -> Result<(), ApiError> {
    if state.options.repository_mode == RepositoryMode::Startup {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("this server serves the models named at start only, so it does not {what} models at run time; start it with --repository-mode explicit (or all)"),
        ));
    }
    Ok(())
}

/// A change of one name in progress: marked in [`AppState::changes`] while it runs; a
/// second change of the same name meanwhile is refused. Dropped without `finish`, the
/// mark is cleared (a cancelled request leaves no LOADING behind).
struct Changing<'a> {
    state: &'a AppState,
    name: String,
    done: bool,
}

impl<'a> Changing<'a> {
    fn start(state: &'a AppState, name: &str, change: Change) -> Result<Changing<'a>, ApiError> {
        let mut changes = state.changes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Change::Loading | Change::Unloading) = changes.get(name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("`{name}` is being loaded or unloaded already; retry when the index no longer says so"),
            ));
        }
        changes.insert(name.to_string(), change);
        Ok(Changing { state, name: name.to_string(), done: false })
    }

    /// Leaves `outcome` as the name's last change (for the index).
    fn finish(mut self, outcome: Change) {
        self.state.changes.lock().unwrap_or_else(|p| p.into_inner()).insert(self.name.clone(), outcome);
        self.done = true;
    }

    /// The name is served: nothing to say about it.
    fn finish_ready(mut self) {
        self.state.changes.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.name);
        self.done = true;
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.state.changes.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.name);
        }
    }
}

pub(crate) fn json_or_empty<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("the body is not the JSON this route takes: {e}"))
    })
}

/// A load or unload request's `parameters`, by name (values as Triton sends them: strings,
/// numbers or booleans).
pub(crate) type Parameters = BTreeMap<String, serde_json::Value>;

pub(crate) fn parameters(body: &[u8]) -> Result<Parameters, ApiError> {
    #[derive(Deserialize, Default)]
    struct Request {
        #[serde(default)]
        parameters: Parameters,
    }
    Ok(json_or_empty::<Request>(body)?.parameters)
}

/// The `version` parameter (a number or an alias), refusing the parameters this server
/// cannot honour: Triton's `config` and `file:` overrides (models come from the registry).
pub(crate) fn version(parameters: &Parameters) -> Result<Option<String>, ApiError> {
    if let Some(name) = parameters.keys().find(|k| *k == "config" || k.starts_with("file:")) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("parameter `{name}` is not supported: models come from the registry; register the model, then load it (optionally with a `version` parameter: a number or an alias)"),
        ));
    }
    match parameters.get("version") {
        None => Ok(None),
        Some(serde_json::Value::String(v)) => Ok(Some(v.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("parameter `version` is {other}; give a model number or an alias name"),
        )),
    }
}
