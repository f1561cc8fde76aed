//! The registration rules of REFERENCE.md, the embedded registry's guarantees (nothing
//! half-visible, distinct consecutive numbers across processes, checksums) and loading.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runner_core::{
    load_any, register_model, runner, Artifacts, Error, Loaded, LocalRegistry, ModelId, ModelStatus, Props, Registry,
    SaveDir,
};
use runner_examples::sum::{SumModel, SumRunner, Values};

fn registry() -> (tempfile::TempDir, LocalRegistry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    (dir, registry)
}

fn plain() -> SumModel {
    SumModel { scale: 1.0 }
}

fn message(result: runner_core::Result<impl std::fmt::Debug>) -> String {
    result.expect_err("expected an error").to_string()
}

/// A runner whose model comes only from artifacts (`load_model` without `save_model`).
pub struct FromFile;

#[runner(name = "from-file")]
impl FromFile {
    fn load_model(_props: Option<Props>, artifacts: &Artifacts) -> runner_core::Result<SumModel> {
        let scale = artifacts.read_to_string("scale.txt")?.trim().parse().map_err(|e| Error::msg(format!("{e}")))?;
        Ok(SumModel { scale })
    }

    fn predict(model: &SumModel, data: Values) -> f64 {
        model.scale * data.values.iter().sum::<f64>()
    }
}

/// A runner whose `save_model` writes whatever file name it is told (for the reserved-name
/// and collision rules) and fails on request.
pub struct Writer;

#[runner(name = "writer")]
impl Writer {
    fn save_model(model: &String, dir: &SaveDir) -> runner_core::Result<Props> {
        if model == "fail" {
            return Err(Error::msg("save_model refused"));
        }
        dir.write(model, "x")?;
        Ok(Props::new())
    }

    fn load_model(_props: Option<Props>, _artifacts: &Artifacts) -> runner_core::Result<String> {
        Ok(String::new())
    }

    fn predict(_model: &String, data: f64) -> f64 {
        data
    }
}

#[test]
fn new_models_are_numbered_in_order_and_repositories_created() {
    let (_dir, registry) = registry();
    assert!(registry.repositories("default").unwrap().is_empty());
    for expected in 1..=3 {
        let registered = register_model::<SumRunner>("sums").model(plain()).register(&registry).unwrap();
        assert_eq!(registered.id().number, expected);
    }
    assert_eq!(registry.repositories("default").unwrap(), ["sums"]);
    assert_eq!(registry.latest("default", "sums").unwrap().unwrap().number, 3);
    let other_org = register_model::<SumRunner>("sums").organization("acme").model(plain()).register(&registry);
    assert_eq!(other_org.unwrap().id().to_string(), "acme/sums:1");
    assert_eq!(registry.repositories("acme").unwrap(), ["sums"]);
}

#[test]
fn rule_no_instance_and_no_load_model() {
    let (_dir, registry) = registry();
    let err = message(register_model::<SumRunner>("sums").number(1).register(&registry));
    assert!(err.contains("no model instance and does not override `load_model`"), "{err}");
}

#[test]
fn rule_new_model_needs_an_instance() {
    let (dir, registry) = registry();
    std::fs::write(dir.path().join("scale.txt"), "3").unwrap();
    let scale = dir.path().join("scale.txt");
    let err =
        message(register_model::<FromFile>("ff").artifact(scale.to_str().unwrap(), "scale.txt").register(&registry));
    assert!(err.contains("a new model needs a model instance"), "{err}");
    assert!(registry.repositories("default").unwrap().is_empty(), "a refused registration creates nothing");

    // With an instance (ignored: only load_model is overridden) the model is created...
    let first = register_model::<FromFile>("ff")
        .model(SumModel { scale: 0.0 })
        .artifact(scale.to_str().unwrap(), "scale.txt")
        .register(&registry)
        .unwrap();
    assert_eq!(first.manifest.save.save_type, runner_core::SaveType::None);
    // ...and it can then be re-registered by number without one.
    std::fs::write(&scale, "5").unwrap();
    register_model::<FromFile>("ff")
        .number(1)
        .artifact(scale.to_str().unwrap(), "scale.txt")
        .register(&registry)
        .unwrap();
    let loaded = Loaded::<FromFile>::load(&registry, &"ff:1".parse().unwrap()).unwrap();
    assert_eq!(loaded.run(Values { values: vec![1.0, 1.0] }).unwrap(), 10.0);
}

#[test]
fn rule_given_number_must_exist() {
    let (_dir, registry) = registry();
    let err = message(register_model::<SumRunner>("sums").number(1).model(plain()).register(&registry));
    assert!(err.contains("model 1 does not exist") && err.contains("omit the number"), "{err}");
    register_model::<SumRunner>("sums").model(plain()).register(&registry).unwrap();
    let err = message(register_model::<SumRunner>("sums").number(7).model(plain()).register(&registry));
    assert!(err.contains("the latest is 1") && err.contains("create model 2"), "{err}");
}

#[test]
fn re_registering_a_number_replaces_it_whole() {
    let (_dir, registry) = registry();
    register_model::<SumRunner>("sums").model(plain()).register(&registry).unwrap();
    let again =
        register_model::<SumRunner>("sums").number(1).model(SumModel { scale: 2.0 }).register(&registry).unwrap();
    assert_eq!(again.id().number, 1);
    assert_eq!(registry.models("default", "sums").unwrap().len(), 1);
    let loaded = Loaded::<SumRunner>::load(&registry, &"sums:1".parse().unwrap()).unwrap();
    assert_eq!(loaded.run(Values { values: vec![1.0, 2.0] }).unwrap().sum, 6.0);
}

#[test]
fn rule_reserved_names() {
    let (dir, registry) = registry();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "x").unwrap();
    for reserved in runner_core::RESERVED_FILES {
        let err = message(
            register_model::<SumRunner>("sums")
                .model(plain())
                .artifact(file.to_str().unwrap(), *reserved)
                .register(&registry),
        );
        assert!(err.contains("reserved"), "{err}");
        let err = message(register_model::<Writer>("w").model(reserved.to_string()).register(&registry));
        assert!(err.contains("reserved"), "{err}");
    }
    assert!(registry.repositories("default").unwrap().is_empty());
}

#[test]
fn saved_files_may_not_collide_with_artifacts() {
    let (dir, registry) = registry();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "x").unwrap();
    let err = message(
        register_model::<Writer>("w")
            .model("weights.bin".into())
            .artifact(file.to_str().unwrap(), "weights.bin")
            .register(&registry),
    );
    assert!(err.contains("save_model wrote `weights.bin`, which an artifact also uploads"), "{err}");
}

#[test]
fn a_failing_save_model_takes_no_number() {
    let (_dir, registry) = registry();
    register_model::<Writer>("w").model("ok.bin".into()).register(&registry).unwrap();
    let err = message(register_model::<Writer>("w").model("fail".into()).register(&registry));
    assert!(err.contains("save_model refused"), "{err}");
    let next = register_model::<Writer>("w").model("ok.bin".into()).register(&registry).unwrap();
    assert_eq!(next.id().number, 2, "numbers stay consecutive");
}

#[test]
fn rule_artifact_globs() {
    let (dir, registry) = registry();
    let ckpt = dir.path().join("ckpt");
    std::fs::create_dir_all(ckpt.join("nested/deeper")).unwrap();
    std::fs::write(ckpt.join("a.bin"), "a").unwrap();
    std::fs::write(ckpt.join("nested/deeper/b.bin"), "b").unwrap();
    let base = dir.path();
    let register = |local: &str, remote: &str| {
        register_model::<SumRunner>("globs").model(plain()).base_dir(base).artifact(local, remote).register(&registry)
    };
    for (local, remote, needle) in [
        ("ckpt/*", "checkpoints", "both sides or on neither"),
        ("ckpt", "checkpoints/*", "both sides or on neither"),
        ("ckpt/*.bin", "checkpoints/*", "whole last path component"),
        ("ck*/a.bin", "a.bin", "only a trailing `*`"),
        ("ckpt", "ckpt", "is a directory"),
    ] {
        let err = message(register(local, remote));
        assert!(err.contains(needle), "{local} => {remote}: {err}");
    }
    let registered = register("ckpt/*", "checkpoints/*").unwrap();
    let paths: Vec<&str> = registered.manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["checkpoints/a.bin", "checkpoints/nested/deeper/b.bin", "runner.model.json"]);
    let loaded = Loaded::<SumRunner>::load(&registry, &"globs:1".parse().unwrap()).unwrap();
    let volume = loaded.volume();
    assert_eq!(std::fs::read_to_string(volume.join("checkpoints/nested/deeper/b.bin")).unwrap(), "b");
}

#[test]
fn traversal_is_refused() {
    let (dir, registry) = registry();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "x").unwrap();
    for remote in ["../escape.txt", "/etc/escape.txt", "a/../../escape.txt", "a//b"] {
        let err = message(
            register_model::<SumRunner>("t")
                .model(plain())
                .artifact(file.to_str().unwrap(), remote)
                .register(&registry),
        );
        assert!(err.contains("volume path"), "{remote}: {err}");
    }
    // A link inside the uploaded folder that points outside it.
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::os::unix::fs::symlink(&file, folder.join("link")).unwrap();
    let err = message(
        register_model::<SumRunner>("t")
            .model(plain())
            .artifact(format!("{}/*", folder.display()), "f/*")
            .register(&registry),
    );
    assert!(err.contains("points outside"), "{err}");
    // Names that would escape the registry's own folders.
    for repo in ["../x", "a/b", "."] {
        let err = message(register_model::<SumRunner>(repo).model(plain()).register(&registry));
        assert!(err.contains("invalid repository"), "{repo}: {err}");
    }
    assert!(registry.repositories("default").unwrap().is_empty());
}

fn manifest_path(registry: &LocalRegistry, repo: &str, n: u64) -> std::path::PathBuf {
    registry.root().join("orgs/default").join(repo).join(n.to_string()).join("manifest.json")
}

#[test]
fn a_tampered_manifest_is_refused_clearly() {
    let (_dir, registry) = registry();
    register_model::<SumRunner>("sums").model(plain()).register(&registry).unwrap();
    let path = manifest_path(&registry, "sums", 1);
    let original = std::fs::read_to_string(&path).unwrap();
    let model: runner_core::ModelRef = "sums:1".parse().unwrap();

    std::fs::write(&path, original.replace("runner.model.json", "../../../../etc/passwd")).unwrap();
    let err = message(Loaded::<SumRunner>::load(&registry, &model));
    assert!(err.contains("manifest of sums:1") && err.contains("`..`"), "{err}");

    std::fs::write(&path, "{ not json").unwrap();
    let err = message(Loaded::<SumRunner>::load(&registry, &model));
    assert!(err.contains("is not a valid manifest"), "{err}");

    std::fs::write(&path, original.replace("\"manifest_version\": 1", "\"manifest_version\": 99")).unwrap();
    let err = message(Loaded::<SumRunner>::load(&registry, &model));
    assert!(err.contains("manifest version 99 is not supported"), "{err}");

    std::fs::write(&path, original.replace("\"name\": \"sum\"", "\"name\": \"gone\"")).unwrap();
    let err = load_any(&registry, &model).unwrap_err();
    assert!(matches!(err, Error::RunnerNotFound { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("needs runner `gone`") && err.contains("it has: diabetes, ") && err.contains("writer"),
        "{err}"
    );
}

#[test]
fn loading_with_the_wrong_runner_is_refused() {
    let (_dir, registry) = registry();
    register_model::<SumRunner>("sums").model(plain()).register(&registry).unwrap();
    let err = message(Loaded::<FromFile>::load(&registry, &"sums:1".parse().unwrap()));
    assert!(err.contains("served by runner `sum`, not `from-file`"), "{err}");
}

#[test]
fn corrupt_files_fail_their_checksum() {
    let (_dir, registry) = registry();
    let registered = register_model::<SumRunner>("sums").model(plain()).register(&registry).unwrap();
    let file = &registered.manifest.files[0];
    let blob = registry.root().join("blobs/sha256").join(&file.sha256[..2]).join(&file.sha256);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let err = Loaded::<SumRunner>::load(&registry, &"sums:1".parse().unwrap()).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("runner.model.json: checksum mismatch"), "{err}");
}

#[test]
fn identical_files_are_stored_once() {
    let (dir, registry) = registry();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 1 << 20]).unwrap();
    for _ in 0..3 {
        register_model::<SumRunner>("d")
            .model(plain())
            .artifact(big.to_str().unwrap(), "big.bin")
            .register(&registry)
            .unwrap();
    }
    let blobs = registry.blob_count().unwrap();
    assert_eq!(blobs, 2, "one blob for big.bin and one for the saved model");
}

#[test]
fn an_uploading_model_is_invisible() {
    let (_dir, registry) = registry();
    register_model::<SumRunner>("sums").model(plain()).register(&registry).unwrap();
    let taken = registry.create_model("default", "sums").unwrap();
    assert_eq!(taken.number, 2);
    assert_eq!(registry.status(&taken).unwrap(), Some(ModelStatus::Uploading));
    assert_eq!(registry.latest("default", "sums").unwrap().unwrap().number, 1);
    let err = message(Loaded::<SumRunner>::load(&registry, &"sums:2".parse().unwrap()));
    assert!(err.contains("still uploading"), "{err}");
    registry.discard(&taken).unwrap();
    assert_eq!(registry.status(&taken).unwrap(), None);
}

#[test]
fn threads_registering_at_once_get_distinct_consecutive_numbers() {
    let (_dir, registry) = registry();
    let numbers: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| register_model::<SumRunner>("race").model(plain()).register(&registry).unwrap().id().number)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=8).collect::<Vec<_>>(), "{numbers:?}");
}

fn registrar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_registrar"))
}

#[test]
fn processes_registering_at_once_get_distinct_consecutive_numbers() {
    let (dir, _registry) = registry();
    let path = dir.path().join("registry");
    let children: Vec<_> =
        (0..6).map(|_| registrar().arg(&path).arg("race").stdout(Stdio::piped()).spawn().unwrap()).collect();
    let mut numbers: Vec<u64> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_registration_killed_midway_leaves_nothing_visible() {
    let (dir, registry) = registry();
    register_model::<SumRunner>("killed").model(plain()).register(&registry).unwrap();
    // The artifact is a FIFO nobody writes to: the upload blocks on it for as long as we
    // like, after the number is taken and the saved model is stored.
    let fifo = dir.path().join("slow-source");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut child = registrar().arg(registry.root()).arg("killed").arg(&fifo).spawn().unwrap();
    let taken = ModelId::new("default", "killed", 2).unwrap();
    let started = Instant::now();
    while registry.status(&taken).unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "the registrar never took a number");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(registry.status(&taken).unwrap(), Some(ModelStatus::Uploading));
    assert_eq!(registry.latest("default", "killed").unwrap().unwrap().number, 1);
    let err = message(Loaded::<SumRunner>::load(&registry, &"killed:2".parse().unwrap()));
    assert!(err.contains("still uploading"), "{err}");
    let listed = registry.models("default", "killed").unwrap();
    assert_eq!(listed.iter().filter(|m| m.status == ModelStatus::Ready).count(), 1);

    // The registry still works: the next registration takes the next number.
    let next = register_model::<SumRunner>("killed").model(plain()).register(&registry).unwrap();
    assert_eq!(next.id().number, 3);
    Loaded::<SumRunner>::load(&registry, &"killed:latest".parse().unwrap()).unwrap();
}

/// Two stagings of the same existing number: the first commit wins, the second is told.
fn race_one_number(registry: &dyn Registry, organization: &str) {
    let id = ModelId::new(organization, "raced", 1).unwrap();
    let current = registry.manifest(&id).unwrap();
    let blob_of = |registry: &dyn Registry| registry.fetch(&current).unwrap().join(&current.files[0].path);
    let mut first = registry.stage(&id).unwrap();
    let mut second = registry.stage(&id).unwrap();
    let local = blob_of(registry);
    for staging in [&mut first, &mut second] {
        staging.put_file(&current.files[0].path, &local, current.files[0].origin).unwrap();
    }
    let mut winner = current.clone();
    winner.requirements = vec!["winner".into()];
    let mut loser = current.clone();
    loser.requirements = vec!["loser".into()];
    first.commit(&winner).unwrap();
    let err = second.commit(&loser).unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("registered by someone else"), "{err}");
    assert_eq!(registry.manifest(&id).unwrap().requirements, ["winner"]);
}

#[test]
fn two_registrations_of_one_number_one_wins_and_the_other_is_told() {
    let (_dir, registry) = registry();
    register_model::<SumRunner>("raced").model(plain()).register(&registry).unwrap();
    race_one_number(&registry, "default");
}
