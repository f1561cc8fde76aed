//! The conformance suite of [`Registry`]: each guarantee the trait documents, as a public
//! function that takes any backend and panics, naming the guarantee and the backend, when
//! the backend breaks it. Every backend runs the same suite (the directory, the HTTP
//! client against a real `runner-registry`, the in-memory registry); a new backend plugs
//! into it by calling [`all`] from one of its tests.
//!
//! Each function works in its own repositories of `organization` (named
//! `conformance-...`), which must not hold models yet: run the suite on a fresh
//! registry, or on an organization of its own. Functions build manifests by hand and
//! upload files from a temporary directory; they drive the trait only, except where the
//! trait offers no view ([`Internals`]).
//!
//! Not covered here: resuming an interrupted download, which only the HTTP client does
//! and which the trait cannot express (its test lives with `runner-registry`).
//!
//! ```
//! use runner_core::registry::conformance::{self, Internals};
//! use runner_core::MemoryRegistry;
//!
//! let registry = MemoryRegistry::new();
//! conformance::all(
//!     &registry,
//!     "default",
//!     &Internals {
//!         stored_contents: &|| registry.blob_count(),
//!         corrupt: &|file| assert!(registry.corrupt(&file.sha256)),
//!     },
//! );
//! ```

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;

use sha2::{Digest, Sha256};

use super::alias::{AliasMove, AliasOptions, Canary, Expect};
use super::traits::{ModelStatus, Registry, Staging};
use crate::error::{Error, Result};
use crate::manifest::{
    ApiSignature, FileEntry, FileOrigin, Manifest, RunnerInfo, SaveInfo, SaveType, MANIFEST_VERSION,
};
use crate::names::{ModelId, ModelRef, Version};

/// What the suite needs from a backend that the [`Registry`] trait does not offer: a
/// view of its storage and a way to damage it.
pub struct Internals<'a> {
    /// How many distinct file contents the backend stores, for
    /// [`identical_content_is_stored_once`].
    pub stored_contents: &'a dyn Fn() -> usize,
    /// Damages the stored content of this file (same size, other bytes, say) so that it
    /// no longer matches its sha256, for [`corrupt_content_fails_its_checksum`].
    pub corrupt: &'a dyn Fn(&FileEntry),
}

/// Runs every function of the suite, one after the other, on `registry`.
pub fn all(registry: &dyn Registry, organization: &str, internals: &Internals<'_>) {
    numbers_are_distinct_and_consecutive_under_concurrency(registry, organization);
    one_number_two_commits_one_wins(registry, organization);
    uploading_models_are_invisible(registry, organization);
    discard_gives_the_number_back(registry, organization);
    a_stale_staging_cannot_take_over_a_new_reservation(registry, organization);
    identical_content_is_stored_once(registry, organization, internals.stored_contents);
    commit_refuses_files_not_uploaded(registry, organization);
    corrupt_content_fails_its_checksum(registry, organization, internals.corrupt);
    deleted_models_vanish_and_shared_content_stays(registry, organization);
    fetch_round_trips_bytes_exactly(registry, organization);
    repositories_and_models_are_listed(registry, organization);
    aliases_resolve_move_and_are_recorded(registry, organization);
    alias_compare_and_set_races_have_one_winner(registry, organization);
    models_an_alias_points_at_are_not_deleted(registry, organization);
    api_changes_need_force_to_move_an_alias(registry, organization);
    aliases_split_traffic_under_the_same_rules(registry, organization);
}

/// Panics with the backend and the broken guarantee.
fn violated(registry: &dyn Registry, guarantee: &str, detail: impl Display) -> ! {
    panic!("Registry conformance: {} breaks \"{guarantee}\": {detail}", registry.location())
}

/// The value of a call the guarantee needs to succeed.
fn ok<T>(registry: &dyn Registry, guarantee: &str, call: impl Display, result: Result<T>) -> T {
    result.unwrap_or_else(|e| violated(registry, guarantee, format_args!("{call} failed: {e}")))
}

fn ensure(registry: &dyn Registry, guarantee: &str, holds: bool, detail: impl Display) {
    if !holds {
        violated(registry, guarantee, detail);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Bytes no earlier run wrote: content the registry cannot have stored yet.
fn unique(label: &str) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{label} (conformance content {nanos}-{}-{n})\n", std::process::id()).into_bytes()
}

/// Local files to upload, each written once under a name of its own.
struct Scratch {
    dir: tempfile::TempDir,
    next: AtomicU64,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("a temporary directory for the suite"), next: AtomicU64::new(0) }
    }

    fn write(&self, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(format!("upload-{}", self.next.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&path, bytes).expect("writing a file to upload");
        path
    }
}

/// Panics unless `repository` holds no model yet.
fn fresh(registry: &dyn Registry, organization: &str, repository: &str) {
    match registry.models(organization, repository) {
        Err(Error::NotFound { .. }) => {}
        Ok(models) if models.is_empty() => {}
        Ok(models) => panic!(
            "Registry conformance: `{organization}/{repository}` in {} already holds {} models; run the suite on a fresh registry or an organization of its own",
            registry.location(),
            models.len()
        ),
        Err(e) => violated(
            registry,
            "a repository that does not exist is Error::NotFound",
            format_args!("models({organization}, {repository}) failed otherwise: {e}"),
        ),
    }
}

fn create(registry: &dyn Registry, guarantee: &str, organization: &str, repository: &str) -> ModelId {
    ok(
        registry,
        guarantee,
        format_args!("create_model({organization}, {repository})"),
        registry.create_model(organization, repository),
    )
}

fn id(organization: &str, repository: &str, number: u64) -> ModelId {
    ModelId::new(organization, repository, number).expect("the suite's names are valid")
}

/// A manifest for `id` listing `files`, told apart from others of the same id by `label`.
fn manifest_for(id: &ModelId, label: &str, mut files: Vec<FileEntry>) -> Manifest {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Manifest {
        manifest_version: MANIFEST_VERSION,
        model: id.clone(),
        runner: RunnerInfo {
            name: "conformance".into(),
            crate_name: "runner-core".into(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            rust_type: "runner_core::registry::conformance".into(),
        },
        save: SaveInfo { save_type: SaveType::None, path: None, props: None },
        default_hooks: Vec::new(),
        requirements: vec![label.to_string()],
        artifacts: BTreeMap::new(),
        files,
        created_at: "2024-01-01T00:00:00Z".into(),
        framework_version: env!("CARGO_PKG_VERSION").into(),
        api: None,
    }
}

/// Uploads `files` through `staging`, checking the size and sha256 it reports.
fn put(
    registry: &dyn Registry,
    staging: &mut dyn Staging,
    files: &[(&str, &[u8])],
    scratch: &Scratch,
) -> Vec<FileEntry> {
    let guarantee = "put_file uploads a file and reports its size and sha256";
    files
        .iter()
        .map(|(path, bytes)| {
            let local = scratch.write(bytes);
            let entry = ok(
                registry,
                guarantee,
                format_args!("put_file({path})"),
                staging.put_file(path, &local, FileOrigin::Artifact),
            );
            let wanted = FileEntry {
                path: path.to_string(),
                size: bytes.len() as u64,
                sha256: sha256_hex(bytes),
                origin: FileOrigin::Artifact,
            };
            ensure(registry, guarantee, entry == wanted, format_args!("got {entry:?}, expected {wanted:?}"));
            entry
        })
        .collect()
}

/// Stages `files` into the existing number `id` and commits them under `label`.
fn register(
    registry: &dyn Registry,
    guarantee: &str,
    id: &ModelId,
    label: &str,
    files: &[(&str, &[u8])],
    scratch: &Scratch,
) -> Manifest {
    let mut staging = ok(registry, guarantee, format_args!("stage({id})"), registry.stage(id));
    let entries = put(registry, &mut *staging, files, scratch);
    let manifest = manifest_for(id, label, entries);
    ok(registry, guarantee, format_args!("commit of {id}"), staging.commit(&manifest));
    manifest
}

/// Creates the next model of `repository` and registers `files` into it.
fn register_new(
    registry: &dyn Registry,
    guarantee: &str,
    organization: &str,
    repository: &str,
    files: &[(&str, &[u8])],
    scratch: &Scratch,
) -> Manifest {
    let id = create(registry, guarantee, organization, repository);
    register(registry, guarantee, &id, "registered", files, scratch)
}

/// Fetches `manifest` and checks that the volume holds exactly these bytes at these paths.
fn fetch_exact(registry: &dyn Registry, guarantee: &str, manifest: &Manifest, files: &[(&str, &[u8])]) -> PathBuf {
    let volume = ok(registry, guarantee, format_args!("fetch of {}", manifest.model), registry.fetch(manifest));
    for (path, bytes) in files {
        match std::fs::read(volume.join(path)) {
            Ok(read) => ensure(
                registry,
                guarantee,
                read == *bytes,
                format_args!(
                    "`{path}` of {} came back as {} bytes (sha256 {}), not the {} bytes uploaded",
                    manifest.model,
                    read.len(),
                    sha256_hex(&read),
                    bytes.len()
                ),
            ),
            Err(e) => violated(
                registry,
                guarantee,
                format_args!("`{path}` of {} is not in the fetched volume {}: {e}", manifest.model, volume.display()),
            ),
        }
    }
    volume
}

fn status(registry: &dyn Registry, guarantee: &str, id: &ModelId) -> Option<ModelStatus> {
    ok(registry, guarantee, format_args!("status({id})"), registry.status(id))
}

fn latest(registry: &dyn Registry, guarantee: &str, organization: &str, repository: &str) -> Option<u64> {
    ok(
        registry,
        guarantee,
        format_args!("latest({organization}, {repository})"),
        registry.latest(organization, repository),
    )
    .map(|id| id.number)
}

fn numbers(registry: &dyn Registry, guarantee: &str, organization: &str, repository: &str) -> Vec<(u64, ModelStatus)> {
    ok(
        registry,
        guarantee,
        format_args!("models({organization}, {repository})"),
        registry.models(organization, repository),
    )
    .into_iter()
    .map(|m| (m.id.number, m.status))
    .collect()
}

fn reference(organization: &str, repository: &str, version: Version) -> ModelRef {
    ModelRef { organization: organization.into(), repository: repository.into(), version }
}

/// Joins a scoped thread, passing its panic (a violation it found) on unchanged.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// [`Registry::create_model`]: concurrent callers get distinct, consecutive numbers (from
/// 1 in a new repository), each caller's numbers increase, and concurrent registrations
/// (uploading identical content at the same time) all become ready, each with its own
/// manifest.
pub fn numbers_are_distinct_and_consecutive_under_concurrency(registry: &dyn Registry, organization: &str) {
    const THREADS: usize = 8;
    const EACH: usize = 3;
    let guarantee = "concurrent create_model callers get distinct, consecutive numbers";
    let repository = "conformance-numbers";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let shared = unique("shared by every thread");
    let start = Barrier::new(THREADS);
    let taken: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    (0..EACH).map(|_| create(registry, guarantee, organization, repository).number).collect()
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    for mine in &taken {
        ensure(registry, guarantee, mine.windows(2).all(|w| w[0] < w[1]), format_args!("one thread got {mine:?}"));
    }
    let mut all: Vec<u64> = taken.iter().flatten().copied().collect();
    all.sort_unstable();
    let expected: Vec<u64> = (1..=(THREADS * EACH) as u64).collect();
    ensure(registry, guarantee, all == expected, format_args!("{THREADS} threads x {EACH} calls got {all:?}"));

    // Then each thread registers its first number, all at once, uploading one shared
    // content at the same time.
    let start = Barrier::new(THREADS);
    let committed: Vec<Manifest> = std::thread::scope(|scope| {
        let handles: Vec<_> = taken
            .iter()
            .enumerate()
            .map(|(thread, mine)| {
                let (scratch, shared, start) = (&scratch, &shared, &start);
                scope.spawn(move || {
                    let own = unique(&format!("thread {thread}"));
                    start.wait();
                    register(
                        registry,
                        "concurrent registrations all commit",
                        &id(organization, repository, mine[0]),
                        &format!("thread {thread}"),
                        &[("shared.bin", shared), ("own.bin", &own)],
                        scratch,
                    )
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });

    let listed = numbers(registry, guarantee, organization, repository);
    let listed_numbers: Vec<u64> = listed.iter().map(|(n, _)| *n).collect();
    ensure(registry, "models lists every number, sorted", listed_numbers == expected, format_args!("{listed:?}"));
    let guarantee = "concurrent registrations all commit, each with its own manifest";
    for (mine, manifest) in taken.iter().zip(&committed) {
        let got =
            ok(registry, guarantee, format_args!("manifest({})", manifest.model), registry.manifest(&manifest.model));
        ensure(registry, guarantee, &got == manifest, format_args!("{} has {got:?}, not {manifest:?}", manifest.model));
        for number in &mine[1..] {
            let state = status(registry, guarantee, &id(organization, repository, *number));
            ensure(
                registry,
                guarantee,
                state == Some(ModelStatus::Uploading),
                format_args!("model {number} is {state:?}"),
            );
        }
    }
    let highest_ready = taken.iter().map(|mine| mine[0]).max();
    let got = latest(registry, "latest is the highest-numbered ready model", organization, repository);
    ensure(registry, "latest is the highest-numbered ready model", got == highest_ready, format_args!("{got:?}"));
}

/// [`Staging::commit`]: of two stagings of one number, the first commit wins and the
/// second gets [`Error::Conflict`] and changes nothing (neither the manifest nor the
/// files); for a fresh number, for a ready one, and with both commits at once.
pub fn one_number_two_commits_one_wins(registry: &dyn Registry, organization: &str) {
    let guarantee = "of two stagings of one number, one commit wins and the other gets Error::Conflict";
    let repository = "conformance-race";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let (winner_bytes, loser_bytes) = (unique("winner"), unique("loser"));
    let check_loser = |result: Result<()>, what: &str| match result {
        Err(Error::Conflict { .. }) => {}
        Err(e) => violated(registry, guarantee, format_args!("{what}: the losing commit failed otherwise: {e}")),
        Ok(()) => violated(registry, guarantee, format_args!("{what}: the losing commit succeeded too")),
    };
    let check_winner = |winner: &Manifest, what: &str| {
        let got = ok(registry, guarantee, format_args!("manifest({})", winner.model), registry.manifest(&winner.model));
        ensure(
            registry,
            guarantee,
            &got == winner,
            format_args!("{what}: after the losing commit the manifest is {:?}, not the winner's", got.requirements),
        );
        let volume = fetch_exact(registry, guarantee, winner, &[("winner.bin", &winner_bytes)]);
        ensure(
            registry,
            guarantee,
            !volume.join("loser.bin").exists(),
            format_args!("{what}: the loser's file is in the volume"),
        );
    };

    // A fresh number: both stagings expect no manifest.
    let number = create(registry, guarantee, organization, repository);
    let mut first = ok(registry, guarantee, "stage", registry.stage(&number));
    let mut second = ok(registry, guarantee, "stage", registry.stage(&number));
    let won = manifest_for(&number, "winner", put(registry, &mut *first, &[("winner.bin", &winner_bytes)], &scratch));
    let lost = manifest_for(&number, "loser", put(registry, &mut *second, &[("loser.bin", &loser_bytes)], &scratch));
    ok(registry, guarantee, "the first commit of a fresh number", first.commit(&won));
    check_loser(second.commit(&lost), "fresh number");
    check_winner(&won, "fresh number");

    // A ready number: both stagings expect the winner's manifest.
    let mut first = ok(registry, guarantee, "stage", registry.stage(&number));
    let mut second = ok(registry, guarantee, "stage", registry.stage(&number));
    let replaced =
        manifest_for(&number, "replaced", put(registry, &mut *first, &[("winner.bin", &winner_bytes)], &scratch));
    let lost = manifest_for(&number, "loser", put(registry, &mut *second, &[("loser.bin", &loser_bytes)], &scratch));
    ok(registry, guarantee, "the first commit of a ready number", first.commit(&replaced));
    check_loser(second.commit(&lost), "ready number");
    check_winner(&replaced, "ready number");

    // Both commits at once, a few times: exactly one wins each time.
    for round in 0..4 {
        let number = create(registry, guarantee, organization, repository);
        let stagings: Vec<(Box<dyn Staging + '_>, Manifest)> = ["winner", "loser"]
            .iter()
            .map(|side| {
                let mut staging = ok(registry, guarantee, "stage", registry.stage(&number));
                let bytes = if *side == "winner" { &winner_bytes } else { &loser_bytes };
                let entries = put(registry, &mut *staging, &[(&format!("{side}.bin"), bytes)], &scratch);
                (staging, manifest_for(&number, side, entries))
            })
            .collect();
        let together = Barrier::new(2);
        let results: Vec<(Result<()>, Manifest)> = std::thread::scope(|scope| {
            let handles: Vec<_> = stagings
                .into_iter()
                .map(|(staging, manifest)| {
                    let together = &together;
                    scope.spawn(move || {
                        together.wait();
                        (staging.commit(&manifest), manifest)
                    })
                })
                .collect();
            handles.into_iter().map(join).collect()
        });
        let winners: Vec<&Manifest> = results.iter().filter(|(r, _)| r.is_ok()).map(|(_, m)| m).collect();
        ensure(
            registry,
            guarantee,
            winners.len() == 1,
            format_args!("round {round}: {} of two simultaneous commits succeeded", winners.len()),
        );
        for (result, _) in results.iter().filter(|(r, _)| r.is_err()) {
            if !matches!(result, Err(Error::Conflict { .. })) {
                violated(registry, guarantee, format_args!("round {round}: the loser got {result:?}"));
            }
        }
        let got = ok(registry, guarantee, "manifest", registry.manifest(&number));
        ensure(registry, guarantee, &got == winners[0], format_args!("round {round}: the loser's manifest stuck"));
    }
}

/// [`Registry::create_model`] and [`Registry::stage`]: a model whose manifest is not
/// committed is `uploading`, listed without a manifest, skipped by `latest`, and refused
/// by `resolve` (saying it is uploading) and `manifest`; files staged into a ready model
/// change nothing until committed; committing makes the model visible.
pub fn uploading_models_are_invisible(registry: &dyn Registry, organization: &str) {
    let guarantee = "a model is invisible to loading until its manifest is committed";
    let repository = "conformance-uploading";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let first_bytes = unique("model 1");
    let first = register_new(registry, guarantee, organization, repository, &[("a.bin", &first_bytes)], &scratch);
    let uploading = create(registry, guarantee, organization, repository);
    ensure(registry, guarantee, uploading.number == 2, format_args!("the second number is {}", uploading.number));
    let second_bytes = unique("model 2");
    let mut staging = ok(registry, guarantee, "stage", registry.stage(&uploading));
    put(registry, &mut *staging, &[("b.bin", &second_bytes)], &scratch);

    let invisible = |when: &str| {
        let state = status(registry, guarantee, &uploading);
        ensure(registry, guarantee, state == Some(ModelStatus::Uploading), format_args!("{when}: status is {state:?}"));
        let got = latest(registry, guarantee, organization, repository);
        ensure(registry, guarantee, got == Some(1), format_args!("{when}: latest is {got:?}, not 1"));
        match registry.resolve(&reference(organization, repository, Version::Latest)) {
            Ok(id) if id.number == 1 => {}
            other => {
                violated(registry, guarantee, format_args!("{when}: resolving latest gave {other:?}, not model 1"))
            }
        }
        match registry.resolve(&reference(organization, repository, Version::Number(2))) {
            Err(Error::NotFound { message, .. }) if message.contains("uploading") => {}
            other => violated(
                registry,
                guarantee,
                format_args!("{when}: resolving model 2 gave {other:?}, not NotFound saying it is uploading"),
            ),
        }
        match registry.manifest(&uploading) {
            Err(Error::NotFound { .. }) => {}
            other => violated(registry, guarantee, format_args!("{when}: manifest of model 2 gave {other:?}")),
        }
        let listed = ok(registry, guarantee, "models", registry.models(organization, repository));
        let shape: Vec<(u64, ModelStatus, bool)> =
            listed.iter().map(|m| (m.id.number, m.status, m.manifest.is_some())).collect();
        ensure(
            registry,
            guarantee,
            shape == [(1, ModelStatus::Ready, true), (2, ModelStatus::Uploading, false)],
            format_args!("{when}: models lists {shape:?}"),
        );
    };
    invisible("with files staged");
    drop(staging);
    invisible("after the staging was dropped");

    // Files staged into a ready model are invisible until committed too.
    let mut restaging = ok(registry, guarantee, "stage of a ready model", registry.stage(&first.model));
    put(registry, &mut *restaging, &[("a.bin", &unique("a replacement never committed"))], &scratch);
    drop(restaging);
    let got = ok(registry, guarantee, "manifest", registry.manifest(&first.model));
    ensure(registry, guarantee, got == first, "an uncommitted re-upload changed model 1's manifest");
    fetch_exact(registry, guarantee, &first, &[("a.bin", &first_bytes)]);

    // Committing makes it visible.
    let guarantee = "a committed model is ready and visible";
    let committed = register(registry, guarantee, &uploading, "committed", &[("b.bin", &second_bytes)], &scratch);
    let state = status(registry, guarantee, &uploading);
    ensure(registry, guarantee, state == Some(ModelStatus::Ready), format_args!("status is {state:?}"));
    let got = latest(registry, guarantee, organization, repository);
    ensure(registry, guarantee, got == Some(2), format_args!("latest is {got:?}"));
    fetch_exact(registry, guarantee, &committed, &[("b.bin", &second_bytes)]);
}

/// [`Registry::discard`]: gives back an uploading number (it no longer exists, and the
/// next [`Registry::create_model`] takes it again) and does nothing to a ready model.
pub fn discard_gives_the_number_back(registry: &dyn Registry, organization: &str) {
    let guarantee = "discard gives back an uploading number and leaves ready models alone";
    let repository = "conformance-discard";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let bytes = unique("ready model");
    let ready = register_new(registry, guarantee, organization, repository, &[("a.bin", &bytes)], &scratch);
    let taken = create(registry, guarantee, organization, repository);
    ok(registry, guarantee, format_args!("discard({taken})"), registry.discard(&taken));
    let state = status(registry, guarantee, &taken);
    ensure(registry, guarantee, state.is_none(), format_args!("a discarded number is {state:?}"));
    let listed = numbers(registry, guarantee, organization, repository);
    ensure(registry, guarantee, listed == [(1, ModelStatus::Ready)], format_args!("models lists {listed:?}"));
    let again = create(registry, guarantee, organization, repository);
    ensure(registry, guarantee, again == taken, format_args!("the next number after discarding {taken} is {again}"));

    ok(registry, guarantee, "discard of a ready model", registry.discard(&ready.model));
    let state = status(registry, guarantee, &ready.model);
    ensure(
        registry,
        guarantee,
        state == Some(ModelStatus::Ready),
        format_args!("a discarded ready model is {state:?}"),
    );
    let got = ok(registry, guarantee, "manifest", registry.manifest(&ready.model));
    ensure(registry, guarantee, got == ready, "discard changed a ready model's manifest");
    fetch_exact(registry, guarantee, &ready, &[("a.bin", &bytes)]);
}

/// A staging of a model deleted since cannot commit, even into a new reservation of the
/// same number (numbers may be taken again once deleted): its commit fails, and the new
/// reservation stays `uploading`, can still be given back with [`Registry::discard`] and
/// then registered normally.
pub fn a_stale_staging_cannot_take_over_a_new_reservation(registry: &dyn Registry, organization: &str) {
    let guarantee = "a staging of a deleted model cannot commit, and leaves a new reservation usable";
    let repository = "conformance-stale";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let deleted = register_new(registry, guarantee, organization, repository, &[("a.bin", &unique("old"))], &scratch);
    let mut stale = ok(registry, guarantee, "stage", registry.stage(&deleted.model));
    let stale_bytes = unique("stale");
    let files = put(registry, &mut *stale, &[("a.bin", &stale_bytes)], &scratch);
    ok(registry, guarantee, "delete_model", registry.delete_model(&deleted.model));
    let reserved = create(registry, guarantee, organization, repository);
    if let Ok(()) = stale.commit(&manifest_for(&reserved, "stale", files)) {
        violated(registry, guarantee, format_args!("a staging of deleted {} committed into {reserved}", deleted.model));
    }
    let state = status(registry, guarantee, &reserved);
    ensure(registry, guarantee, state == Some(ModelStatus::Uploading), format_args!("{reserved} is {state:?}"));
    ok(registry, guarantee, format_args!("discard({reserved})"), registry.discard(&reserved));
    let state = status(registry, guarantee, &reserved);
    ensure(registry, guarantee, state.is_none(), format_args!("{reserved} is {state:?} after discard"));
    let bytes = unique("new");
    let fresh_model = register_new(registry, guarantee, organization, repository, &[("a.bin", &bytes)], &scratch);
    fetch_exact(registry, guarantee, &fresh_model, &[("a.bin", &bytes)]);
}

/// Files are stored by content: the same bytes uploaded twice in one model and again in
/// another are stored once. `stored_contents` counts the distinct contents the backend
/// stores (the trait has no view of it).
pub fn identical_content_is_stored_once(
    registry: &dyn Registry,
    organization: &str,
    stored_contents: &dyn Fn() -> usize,
) {
    let guarantee = "identical file contents are stored once";
    let repository = "conformance-dedupe";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let (shared, other) = (unique("shared"), unique("other"));
    let before = stored_contents();
    let first = [("a.bin", shared.as_slice()), ("copy/of-a.bin", &shared), ("b.bin", &other)];
    let one = register_new(registry, guarantee, organization, repository, &first, &scratch);
    let after_one = stored_contents();
    ensure(
        registry,
        guarantee,
        after_one == before + 2,
        format_args!("three files of two distinct contents added {} stored contents", after_one as i64 - before as i64),
    );
    let second = [("renamed.bin", shared.as_slice()), ("b.bin", &other)];
    let two = register_new(registry, guarantee, organization, repository, &second, &scratch);
    let after_two = stored_contents();
    ensure(
        registry,
        guarantee,
        after_two == after_one,
        format_args!(
            "a model of already stored contents added {} stored contents",
            after_two as i64 - after_one as i64
        ),
    );
    fetch_exact(registry, guarantee, &one, &first);
    fetch_exact(registry, guarantee, &two, &second);
}

/// [`Staging::commit`]: a manifest must list only files uploaded through this staging,
/// exactly as uploaded, and describe the staged model. A manifest naming content never
/// uploaded, content stored for another model but not uploaded here, a file with another
/// sha256 than uploaded, or another model, is refused, and the model stays uploading.
pub fn commit_refuses_files_not_uploaded(registry: &dyn Registry, organization: &str) {
    let guarantee = "commit refuses a manifest listing files not uploaded through its staging";
    let repository = "conformance-refusal";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let stored_bytes = unique("stored for model 1");
    let stored = register_new(registry, guarantee, organization, repository, &[("other.bin", &stored_bytes)], &scratch);
    let number = create(registry, guarantee, organization, repository);
    let bytes = unique("uploaded");
    let never = unique("never uploaded");
    let never_uploaded = FileEntry {
        path: "missing.bin".into(),
        size: never.len() as u64,
        sha256: sha256_hex(&never),
        origin: FileOrigin::Artifact,
    };
    let other_model = stored.files[0].clone();
    let refused = |what: &str, manifest: &dyn Fn(Vec<FileEntry>) -> Manifest| {
        let mut staging = ok(registry, guarantee, "stage", registry.stage(&number));
        let files = put(registry, &mut *staging, &[("a.bin", &bytes)], &scratch);
        if staging.commit(&manifest(files)).is_ok() {
            violated(registry, guarantee, format_args!("a manifest with {what} was committed"));
        }
        let state = status(registry, guarantee, &number);
        ensure(registry, guarantee, state == Some(ModelStatus::Uploading), format_args!("after {what}: {state:?}"));
        let got = ok(registry, guarantee, "manifest", registry.manifest(&stored.model));
        ensure(registry, guarantee, got == stored, format_args!("after {what}: model 1's manifest changed"));
    };
    refused("a file never uploaded", &|mut files| {
        files.push(never_uploaded.clone());
        manifest_for(&number, "refused", files)
    });
    refused("content stored for another model but not uploaded here", &|mut files| {
        files.push(other_model.clone());
        manifest_for(&number, "refused", files)
    });
    refused("a file with another sha256 than uploaded", &|mut files| {
        files[0].sha256.clone_from(&other_model.sha256);
        files[0].size = other_model.size;
        manifest_for(&number, "refused", files)
    });
    refused("the manifest of another model", &|files| manifest_for(&stored.model, "refused", files));
    // The same upload with an honest manifest commits.
    register(registry, guarantee, &number, "accepted", &[("a.bin", &bytes)], &scratch);
    let state = status(registry, guarantee, &number);
    ensure(registry, guarantee, state == Some(ModelStatus::Ready), format_args!("an honest commit left {state:?}"));
}

/// [`Registry::fetch`]: every file is checked against its size and sha256; stored content
/// that no longer matches (damaged by `corrupt`) fails with [`Error::Checksum`] naming the
/// file, on every fetch, while other content of the registry still fetches.
pub fn corrupt_content_fails_its_checksum(registry: &dyn Registry, organization: &str, corrupt: &dyn Fn(&FileEntry)) {
    let guarantee = "fetch checks every file's sha256: corrupt content is Error::Checksum";
    let repository = "conformance-corrupt";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let (good, damaged) = (unique("good"), unique("to be damaged"));
    let files = [("good.bin", good.as_slice()), ("weights.bin", &damaged)];
    // Never fetched before the damage: no verified copy exists anywhere yet.
    let manifest = register_new(registry, guarantee, organization, repository, &files, &scratch);
    let target = manifest.files.iter().find(|f| f.path == "weights.bin").expect("listed").clone();
    corrupt(&target);
    for attempt in ["first", "second"] {
        match registry.fetch(&manifest) {
            Err(Error::Checksum { path, .. }) if path == target.path => {}
            Err(Error::Checksum { path, .. }) => {
                violated(registry, guarantee, format_args!("{attempt} fetch blamed `{path}`, not `weights.bin`"))
            }
            Err(e) => violated(registry, guarantee, format_args!("{attempt} fetch failed otherwise: {e:?}")),
            Ok(volume) => violated(
                registry,
                guarantee,
                format_args!("{attempt} fetch of corrupt content returned a volume: {}", volume.display()),
            ),
        }
    }
    let sharing = register_new(registry, guarantee, organization, repository, &[("good.bin", &good)], &scratch);
    fetch_exact(registry, guarantee, &sharing, &[("good.bin", &good)]);
}

/// [`Registry::delete_model`]: the model is gone at once (no status, no manifest, not
/// resolved, not listed, not `latest`), deleting it again is [`Error::NotFound`], and
/// content it shared with other models still fetches.
pub fn deleted_models_vanish_and_shared_content_stays(registry: &dyn Registry, organization: &str) {
    let guarantee = "a deleted model vanishes at once and content shared with others stays";
    let repository = "conformance-delete";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let shared = unique("shared");
    let (only_one, only_two, only_three) = (unique("model 1"), unique("model 2"), unique("model 3"));
    let one = register_new(
        registry,
        guarantee,
        organization,
        repository,
        &[("shared.bin", &shared), ("one.bin", &only_one)],
        &scratch,
    );
    let two_files = [("shared-too.bin", shared.as_slice()), ("two.bin", &only_two)];
    // Never fetched before the deletion: the content must come from the registry.
    let two = register_new(registry, guarantee, organization, repository, &two_files, &scratch);
    let three = register_new(registry, guarantee, organization, repository, &[("three.bin", &only_three)], &scratch);

    let gone = |model: &Manifest| {
        let id = &model.model;
        ok(registry, guarantee, format_args!("delete_model({id})"), registry.delete_model(id));
        let state = status(registry, guarantee, id);
        ensure(registry, guarantee, state.is_none(), format_args!("deleted {id} is {state:?}"));
        match registry.manifest(id) {
            Err(Error::NotFound { .. }) => {}
            other => violated(registry, guarantee, format_args!("manifest of deleted {id} gave {other:?}")),
        }
        match registry.resolve(&ModelRef::from(id)) {
            Err(Error::NotFound { .. }) => {}
            other => violated(registry, guarantee, format_args!("resolving deleted {id} gave {other:?}")),
        }
        match registry.delete_model(id) {
            Err(Error::NotFound { .. }) => {}
            other => violated(registry, guarantee, format_args!("deleting {id} twice gave {other:?}")),
        }
    };
    gone(&one);
    let listed = numbers(registry, guarantee, organization, repository);
    ensure(
        registry,
        guarantee,
        listed == [(2, ModelStatus::Ready), (3, ModelStatus::Ready)],
        format_args!("models lists {listed:?}"),
    );
    fetch_exact(registry, guarantee, &two, &two_files);
    gone(&three);
    let got = latest(registry, guarantee, organization, repository);
    ensure(registry, guarantee, got == Some(2), format_args!("after deleting the latest, latest is {got:?}"));
    match registry.resolve(&reference(organization, repository, Version::Latest)) {
        Ok(id) if id == two.model => {}
        other => violated(registry, guarantee, format_args!("resolving latest gave {other:?}")),
    }
}

/// [`Registry::fetch`] and [`Registry::manifest`]: what was uploaded comes back exactly:
/// every file's bytes at its path (empty files, nested paths, non-ASCII names, a file
/// larger than one read buffer, two paths of one content), on every fetch, and the
/// committed manifest unchanged.
pub fn fetch_round_trips_bytes_exactly(registry: &dyn Registry, organization: &str) {
    let guarantee = "fetch gives back exactly the bytes uploaded";
    let repository = "conformance-fetch";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let mut big = unique("big");
    big.extend((0..(1u32 << 20) + 17).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let small = unique("small");
    let files = [
        ("weights.bin", big.as_slice()),
        ("empty.txt", b"" as &[u8]),
        ("nested/deeper/every-byte.bin", &every_byte),
        ("données/é.txt", &small),
        ("same-as-small.txt", &small),
    ];
    let manifest = register_new(registry, guarantee, organization, repository, &files, &scratch);
    let got = ok(registry, guarantee, "manifest", registry.manifest(&manifest.model));
    ensure(registry, guarantee, got == manifest, format_args!("the manifest came back as {got:?}"));
    let listed = ok(registry, guarantee, "models", registry.models(organization, repository));
    ensure(
        registry,
        guarantee,
        listed.len() == 1 && listed[0].manifest.as_ref() == Some(&manifest),
        format_args!("models lists {listed:?}"),
    );
    for _ in 0..2 {
        fetch_exact(registry, guarantee, &manifest, &files);
    }
}

/// [`Registry::repositories`] lists an organization's repositories, sorted;
/// [`Registry::models`] of a repository that does not exist is [`Error::NotFound`];
/// [`Registry::status`] of a number that does not exist is `None`.
pub fn repositories_and_models_are_listed(registry: &dyn Registry, organization: &str) {
    let guarantee = "repositories are listed sorted; a missing repository is Error::NotFound";
    let names = ["conformance-list-b", "conformance-list-a"];
    for name in names {
        fresh(registry, organization, name);
        create(registry, guarantee, organization, name);
    }
    let listed = ok(registry, guarantee, "repositories", registry.repositories(organization));
    ensure(registry, guarantee, listed.windows(2).all(|w| w[0] < w[1]), format_args!("not sorted: {listed:?}"));
    for name in names {
        ensure(registry, guarantee, listed.iter().any(|r| r == name), format_args!("`{name}` missing from {listed:?}"));
    }
    match registry.models(organization, "conformance-never-created") {
        Err(Error::NotFound { .. }) => {}
        other => violated(registry, guarantee, format_args!("models of a missing repository gave {other:?}")),
    }
    let state = status(registry, guarantee, &id(organization, "conformance-list-a", 99));
    ensure(registry, guarantee, state.is_none(), format_args!("a number never taken is {state:?}"));
}

/// Registers `count` models of `repository`, each with one file (and `api`, when given,
/// the API signature of the i-th).
fn register_several(
    registry: &dyn Registry,
    guarantee: &str,
    organization: &str,
    repository: &str,
    apis: &[Option<ApiSignature>],
    scratch: &Scratch,
) -> Vec<u64> {
    apis.iter()
        .map(|api| {
            let id = create(registry, guarantee, organization, repository);
            let mut staging = ok(registry, guarantee, format_args!("stage({id})"), registry.stage(&id));
            let entries = put(registry, &mut *staging, &[("model.bin", &unique("aliased model"))], scratch);
            let manifest = Manifest { api: api.clone(), ..manifest_for(&id, "aliased", entries) };
            ok(registry, guarantee, format_args!("commit of {id}"), staging.commit(&manifest));
            id.number
        })
        .collect()
}

fn is_conflict<T>(result: &Result<T>) -> bool {
    matches!(result, Err(Error::Conflict { .. }))
}

/// An alias resolves like the number it points at (`repo:prod`); it moves atomically,
/// only onto ready models, under a compare-and-set condition; every move is in its
/// history; names that could be read as numbers or `latest` are refused.
pub fn aliases_resolve_move_and_are_recorded(registry: &dyn Registry, organization: &str) {
    let guarantee = "aliases resolve, move under their condition and record every move";
    let repository = "conformance-aliases";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let numbers = register_several(registry, guarantee, organization, repository, &[None, None], &scratch);
    let (one, two) = (numbers[0], numbers[1]);
    let uploading = create(registry, guarantee, organization, repository);
    let prod = || reference(organization, repository, Version::Alias("prod".into()));
    let options = |expect| AliasOptions { expect, ..Default::default() };

    let listed = ok(registry, guarantee, "aliases() before any", registry.aliases(organization, repository));
    ensure(registry, guarantee, listed.is_empty(), format_args!("a fresh repository lists aliases {listed:?}"));
    ensure(
        registry,
        guarantee,
        matches!(registry.resolve(&prod()), Err(Error::NotFound { .. })),
        "resolving an alias that does not exist is not Error::NotFound",
    );
    let created = ok(
        registry,
        guarantee,
        "set_alias(prod, 1, expect unset)",
        registry.set_alias(organization, repository, "prod", one, &options(Expect::Unset)),
    );
    ensure(
        registry,
        guarantee,
        created.from.is_none() && created.to == Some(one),
        format_args!("creating prod reported {created:?}"),
    );
    let resolved = ok(registry, guarantee, "resolve(prod)", registry.resolve(&prod()));
    ensure(registry, guarantee, resolved.number == one, format_args!("prod resolved to {resolved}, not {one}"));
    ensure(
        registry,
        guarantee,
        is_conflict(&registry.set_alias(organization, repository, "prod", two, &options(Expect::Unset))),
        "creating an alias that exists (expect unset) is not Error::Conflict",
    );
    ok(
        registry,
        guarantee,
        "set_alias(prod, 2, expect 1)",
        registry.set_alias(organization, repository, "prod", two, &options(Expect::Number(one))),
    );
    let listed = ok(registry, guarantee, "aliases()", registry.aliases(organization, repository));
    ensure(
        registry,
        guarantee,
        listed.len() == 1 && listed[0].name == "prod" && listed[0].number == two,
        format_args!("after the move the aliases are {listed:?}"),
    );
    ensure(
        registry,
        guarantee,
        matches!(
            registry.set_alias(organization, repository, "prod", uploading.number, &options(Expect::Any)),
            Err(Error::NotFound { .. })
        ),
        "moving an alias onto an uploading model is not Error::NotFound",
    );
    ensure(
        registry,
        guarantee,
        registry.set_alias(organization, repository, "prod", 99, &options(Expect::Any)).is_err(),
        "moving an alias onto a number that does not exist succeeded",
    );
    for bad in ["3", "latest", "Prod", "9lives"] {
        ensure(
            registry,
            guarantee,
            matches!(
                registry.set_alias(organization, repository, bad, one, &options(Expect::Any)),
                Err(Error::InvalidName { .. })
            ),
            format_args!("alias name `{bad}` was not refused as an invalid name"),
        );
    }
    ensure(
        registry,
        guarantee,
        is_conflict(&registry.delete_alias(organization, repository, "prod", Expect::Number(one))),
        "deleting prod while expecting the number it left is not Error::Conflict",
    );
    ok(
        registry,
        guarantee,
        "delete_alias(prod, expect 2)",
        registry.delete_alias(organization, repository, "prod", Expect::Number(two)),
    );
    ensure(
        registry,
        guarantee,
        matches!(registry.resolve(&prod()), Err(Error::NotFound { .. })),
        "a deleted alias still resolves",
    );
    let history =
        ok(registry, guarantee, "alias_history(prod)", registry.alias_history(organization, repository, Some("prod")));
    let moves: Vec<(Option<u64>, Option<u64>)> = history.iter().map(|m| (m.from, m.to)).collect();
    ensure(
        registry,
        guarantee,
        moves == [(None, Some(one)), (Some(one), Some(two)), (Some(two), None)],
        format_args!("the history of prod is {moves:?}"),
    );
    ensure(
        registry,
        guarantee,
        history.iter().all(|m| m.alias == "prod" && !m.by.is_empty() && m.at.len() >= 20),
        format_args!("history entries lack who or when: {history:?}"),
    );
}

/// Of several moves of one alias racing with the same expected target, exactly one
/// succeeds; the others get [`Error::Conflict`] and change nothing.
pub fn alias_compare_and_set_races_have_one_winner(registry: &dyn Registry, organization: &str) {
    let guarantee = "of racing compare-and-set moves of one alias, one wins";
    let repository = "conformance-alias-race";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let numbers = register_several(registry, guarantee, organization, repository, &vec![None; 5], &scratch);
    ok(
        registry,
        guarantee,
        "set_alias(prod, 1)",
        registry.set_alias(organization, repository, "prod", numbers[0], &AliasOptions::default()),
    );
    let barrier = Barrier::new(4);
    let first = numbers[0];
    let outcomes: Vec<(u64, Result<_>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = numbers[1..]
            .iter()
            .map(|&target| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let options = AliasOptions { expect: Expect::Number(first), ..Default::default() };
                    (target, registry.set_alias(organization, repository, "prod", target, &options))
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    let winners: Vec<u64> = outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(t, _)| *t).collect();
    ensure(registry, guarantee, winners.len() == 1, format_args!("{} moves won: {winners:?}", winners.len()));
    for (target, outcome) in &outcomes {
        if outcome.is_err() {
            ensure(
                registry,
                guarantee,
                is_conflict(outcome),
                format_args!("the losing move to {target} failed otherwise: {:?}", outcome.as_ref().err()),
            );
        }
    }
    let now = ok(registry, guarantee, "alias(prod)", registry.alias(organization, repository, "prod"));
    ensure(
        registry,
        guarantee,
        now == winners.first().copied(),
        format_args!("prod points at {now:?}, the winner was {winners:?}"),
    );
    let history = ok(registry, guarantee, "alias_history", registry.alias_history(organization, repository, None));
    ensure(registry, guarantee, history.len() == 2, format_args!("the history records {} moves, not 2", history.len()));
}

/// Deleting a model an alias points at is refused with [`Error::Conflict`] naming the
/// alias, and changes nothing; once the alias moves away, the model can be deleted.
pub fn models_an_alias_points_at_are_not_deleted(registry: &dyn Registry, organization: &str) {
    let guarantee = "a model an alias points at is not deleted";
    let repository = "conformance-alias-guard";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let numbers = register_several(registry, guarantee, organization, repository, &[None, None], &scratch);
    let first = id(organization, repository, numbers[0]);
    ok(
        registry,
        guarantee,
        "set_alias(prod, 1)",
        registry.set_alias(organization, repository, "prod", numbers[0], &AliasOptions::default()),
    );
    match registry.delete_model(&first) {
        Err(Error::Conflict { message }) => ensure(
            registry,
            guarantee,
            message.contains("prod"),
            format_args!("the refusal does not name the alias: {message}"),
        ),
        other => violated(registry, guarantee, format_args!("deleting {first} under alias prod gave {other:?}")),
    }
    ensure(
        registry,
        guarantee,
        status(registry, guarantee, &first) == Some(ModelStatus::Ready),
        format_args!("{first} is not ready after its refused deletion"),
    );
    ok(
        registry,
        guarantee,
        "set_alias(prod, 2)",
        registry.set_alias(organization, repository, "prod", numbers[1], &AliasOptions::default()),
    );
    ok(registry, guarantee, format_args!("delete_model({first})"), registry.delete_model(&first));
}

/// Moving an alias to a model whose API fingerprint differs from its current target's is
/// refused with [`Error::Conflict`] naming the changed field, unless forced; an equal
/// fingerprint moves freely.
pub fn api_changes_need_force_to_move_an_alias(registry: &dyn Registry, organization: &str) {
    let guarantee = "an API change needs force to move an alias";
    let repository = "conformance-alias-api";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let schema = |width: &str| serde_json::json!({"type": "object", "properties": {"petal_length": {"type": "number"}, "petal_width": {"type": width}}});
    let api =
        |width: &str| Some(ApiSignature::new(schema(width), serde_json::json!({"type": "string"}), BTreeMap::new()));
    let apis = [api("number"), api("number"), api("string")];
    let numbers = register_several(registry, guarantee, organization, repository, &apis, &scratch);
    let set = |number, force| {
        registry.set_alias(organization, repository, "prod", number, &AliasOptions { force, ..Default::default() })
    };
    ok(registry, guarantee, "set_alias(prod, 1)", set(numbers[0], false));
    ok(registry, guarantee, "set_alias(prod, 2) with the same API", set(numbers[1], false));
    match set(numbers[2], false) {
        Err(Error::Conflict { message }) => ensure(
            registry,
            guarantee,
            message.contains("petal_width") && message.contains("force"),
            format_args!("the refusal does not name the changed field and the way out: {message}"),
        ),
        other => violated(registry, guarantee, format_args!("moving prod across an API change gave {other:?}")),
    }
    let now = ok(registry, guarantee, "alias(prod)", registry.alias(organization, repository, "prod"));
    ensure(registry, guarantee, now == Some(numbers[1]), format_args!("a refused move left prod at {now:?}"));
    let forced = ok(registry, guarantee, "set_alias(prod, 3, force)", set(numbers[2], true));
    ensure(registry, guarantee, forced.forced, format_args!("a forced move is not recorded as forced: {forced:?}"));
}

/// An alias may send a share of its requests to a second ready model (a canary): the split
/// is listed with the alias, recorded in its history with the reason given, checked like a
/// move (another model, ready, the same API unless forced), keeps its canary from being
/// deleted, and ends with the next move that names none.
pub fn aliases_split_traffic_under_the_same_rules(registry: &dyn Registry, organization: &str) {
    let guarantee = "aliases split traffic under the rules of a move";
    let repository = "conformance-alias-split";
    fresh(registry, organization, repository);
    let scratch = Scratch::new();
    let schema = |width: &str| serde_json::json!({"type": "object", "properties": {"petal_width": {"type": width}}});
    let api =
        |width: &str| Some(ApiSignature::new(schema(width), serde_json::json!({"type": "string"}), BTreeMap::new()));
    let apis = [api("number"), api("number"), api("string")];
    let numbers = register_several(registry, guarantee, organization, repository, &apis, &scratch);
    let (one, two, other_api) = (numbers[0], numbers[1], numbers[2]);
    let uploading = create(registry, guarantee, organization, repository);
    let split = |number, canary: Option<(u64, u8)>, force| {
        let options = AliasOptions {
            canary: canary.map(|(number, percent)| Canary { number, percent }),
            force,
            reason: Some(format!("step to {canary:?}")),
            ..Default::default()
        };
        registry.set_alias(organization, repository, "prod", number, &options)
    };
    let moved = ok(registry, guarantee, "set_alias(prod, 1, canary 2 at 10%)", split(one, Some((two, 10)), false));
    ensure(
        registry,
        guarantee,
        moved.to == Some(one)
            && moved.to_canary == Some(Canary { number: two, percent: 10 })
            && moved.from_canary.is_none()
            && moved.reason.as_deref() == Some(&*format!("step to {:?}", Some((two, 10u8)))),
        format_args!("the split's move reported {moved:?}"),
    );
    let listed = ok(registry, guarantee, "aliases()", registry.aliases(organization, repository));
    ensure(
        registry,
        guarantee,
        listed.len() == 1 && listed[0].number == one && listed[0].canary == Some(Canary { number: two, percent: 10 }),
        format_args!("the split alias is listed as {listed:?}"),
    );
    let resolved = ok(
        registry,
        guarantee,
        "resolve(prod)",
        registry.resolve(&reference(organization, repository, Version::Alias("prod".into()))),
    );
    ensure(registry, guarantee, resolved.number == one, format_args!("a split prod resolved to {resolved}, not {one}"));
    match registry.delete_model(&id(organization, repository, two)) {
        Err(Error::Conflict { message }) => ensure(
            registry,
            guarantee,
            message.contains("prod"),
            format_args!("the refusal to delete a canary does not name the alias: {message}"),
        ),
        other => violated(registry, guarantee, format_args!("deleting the canary of prod gave {other:?}")),
    }
    let refusals: [(&str, Result<AliasMove>); 4] = [
        ("a canary that is the model itself", split(one, Some((one, 10)), false)),
        ("a canary that is not ready", split(one, Some((uploading.number, 10)), false)),
        ("a share over 100%", split(one, Some((two, 101)), false)),
        ("a canary with another API", split(one, Some((other_api, 10)), false)),
    ];
    for (what, refused) in refusals {
        ensure(registry, guarantee, refused.is_err(), format_args!("{what} was not refused: {refused:?}"));
    }
    let after = ok(registry, guarantee, "aliases() after refusals", registry.aliases(organization, repository));
    ensure(
        registry,
        guarantee,
        after == listed,
        format_args!("refused splits changed the alias: {after:?}, was {listed:?}"),
    );
    ok(registry, guarantee, "set_alias(prod, 1, canary 3, force)", split(one, Some((other_api, 5)), true));
    let ended = ok(registry, guarantee, "set_alias(prod, 2)", split(two, None, false));
    ensure(
        registry,
        guarantee,
        ended.from_canary == Some(Canary { number: other_api, percent: 5 }) && ended.to_canary.is_none(),
        format_args!("ending the split reported {ended:?}"),
    );
    let history =
        ok(registry, guarantee, "alias_history(prod)", registry.alias_history(organization, repository, Some("prod")));
    ensure(
        registry,
        guarantee,
        history.len() == 3 && history.iter().all(|m| m.reason.is_some()) && history[1].forced,
        format_args!("the history of the splits is {history:?}"),
    );
    ok(
        registry,
        guarantee,
        "delete_model(the former canary)",
        registry.delete_model(&id(organization, repository, other_api)),
    );
}
