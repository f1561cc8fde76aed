//! `register` (the real binary) registers every example into a fresh registry; each model
//! is loaded back and checked on real data it was not trained on.

use std::process::{Command, Output};

use bytes::Bytes;

use runner_core::{load_any, Loaded, LocalRegistry, SaveType};
use runner_examples::diabetes::{self, Diabetes, Patient, FEATURES};
use runner_examples::iris::{self, Iris, IrisRequest, SPECIES};
use runner_examples::sum::{SumRunner, Values};

fn register(registry: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--registry")
        .arg(registry)
        .args(args)
        .env_remove("RUNNER_REGISTRY")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn registered() -> (tempfile::TempDir, LocalRegistry) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry");
    let output = register(&path, &[]);
    assert!(output.status.success(), "{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
    let report = stdout(&output);
    for model in ["diabetes:1", "iris:1", "sum:1"] {
        assert!(report.contains(model), "{report}");
    }
    (dir, LocalRegistry::open(&path).unwrap())
}

#[test]
fn iris_classifies_held_out_flowers() {
    let (_dir, registry) = registered();
    let model = Loaded::<Iris>::load(&registry, &"iris:latest".parse().unwrap()).unwrap();
    assert_eq!(model.manifest().save.save_type, SaveType::Default);
    let (_, test) = iris::split();
    assert_eq!(test.len(), 30);
    let correct = test
        .iter()
        .filter(|(x, species)| {
            let request = IrisRequest { sepal_length: x[0], sepal_width: x[1], petal_length: x[2], petal_width: x[3] };
            let response = model.run(request).unwrap();
            let total: f64 = response.probabilities.values().sum();
            assert!((total - 1.0).abs() < 1e-9, "probabilities sum to {total}");
            response.species == SPECIES[*species]
        })
        .count();
    let accuracy = correct as f64 / test.len() as f64;
    assert!(accuracy >= 0.9, "held-out accuracy {accuracy}");

    // Through JSON, as a server would call it; bad input is refused naming the field.
    let any = load_any(&registry, &"iris:1".parse().unwrap()).unwrap();
    let body = br#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#;
    let (answer, media_type) = any.run_body(Bytes::from_static(body), None).unwrap();
    assert_eq!(media_type, "application/json");
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["species"], "setosa");
    let err = any
        .run_body(Bytes::from_static(br#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}"#), None)
        .unwrap_err();
    assert!(err.to_string().contains("missing field `petal_width`"), "{err}");
    let err = any.run_body(
        Bytes::from_static(br#"{"sepal_length": "long", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#),
        None,
    );
    let err = err.unwrap_err();
    assert!(err.to_string().contains("at `sepal_length`"), "{err}");
    let err = any.run_body(
        Bytes::from_static(br#"{"sepal_length": -5, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#),
        None,
    );
    let err = err.unwrap_err();
    assert_eq!(runner_core::serve::status_of(&err), 422);
    assert!(err.to_string().contains("`sepal_length` must be a length"), "{err}");
}

#[test]
fn diabetes_round_trips_through_its_own_saver_and_predicts_held_out_patients() {
    let (_dir, registry) = registered();
    let model = Loaded::<Diabetes>::load(&registry, &"diabetes:1".parse().unwrap()).unwrap();
    let manifest = model.manifest();
    assert_eq!(manifest.save.save_type, SaveType::Custom);
    assert_eq!(manifest.save.props.as_ref().unwrap()["weights"], "weights.csv");
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["dataset/README.md", "dataset/diabetes.csv", "weights.csv"]);

    // What load_model rebuilt is exactly what was trained.
    assert_eq!(model.model(), &Diabetes::train().unwrap());

    let (_, test) = diabetes::split();
    let mean = test.iter().map(|(_, y)| y).sum::<f64>() / test.len() as f64;
    let (mut residual, mut total) = (0.0, 0.0);
    for (x, y) in &test {
        let patient: Patient = serde_json::from_value(serde_json::Value::Object(
            FEATURES.iter().zip(x).map(|(k, v)| (k.to_string(), (*v).into())).collect(),
        ))
        .unwrap();
        let predicted = model.run(patient).unwrap().progression;
        residual += (y - predicted).powi(2);
        total += (y - mean).powi(2);
    }
    let r2 = 1.0 - residual / total;
    assert!(r2 > 0.35, "held-out R² {r2}");
}

#[test]
fn sum_adds_up() {
    let (_dir, registry) = registered();
    let model = Loaded::<SumRunner>::load(&registry, &"sum:1".parse().unwrap()).unwrap();
    let values: Vec<f64> = (1..=64).map(f64::from).collect();
    assert_eq!(model.run(Values { values }).unwrap().sum, 2080.0);
}

#[test]
fn command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry");

    let list = register(&path, &["--list"]);
    assert!(list.status.success());
    let listed = stdout(&list);
    let names: Vec<&str> = listed.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    let mut expected = vec!["diabetes", "iris", "sum"];
    if cfg!(feature = "torch") {
        expected.extend(["digits", "minilm", "torch"]);
    }
    if cfg!(feature = "onnx") {
        expected.extend(["onnx", "onnx-cnn", "onnx-iris", "onnx-minilm"]);
    }
    expected.sort();
    assert_eq!(names, expected, "sorted by name");
    assert!(!path.exists(), "--list registers nothing");

    let once = register(&path, &["iris"]);
    assert!(once.status.success());
    let again = register(&path, &["iris"]);
    assert!(stdout(&again).contains("iris:2"), "{}", stdout(&again));
    let replaced = register(&path, &["iris", "--number", "1"]);
    assert!(stdout(&replaced).contains("iris:1"), "{}", stdout(&replaced));

    let missing = register(&path, &["iris", "--number", "9"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stdout(&missing).contains("model 9 does not exist (the latest is 2)"), "{}", stdout(&missing));

    let unknown = register(&path, &["irsi"]);
    assert_eq!(unknown.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("no runner named `irsi`") && err.contains(&expected.join(", ")), "{err}");

    // The built-in torch and onnx runners have no builder: skipped when registering all,
    // refused when named.
    for (runner, feature) in [("torch", cfg!(feature = "torch")), ("onnx", cfg!(feature = "onnx"))] {
        if feature {
            let named = register(&path, &[runner]);
            assert_eq!(named.status.code(), Some(1));
            let said = stdout(&named);
            assert!(said.contains(&format!("FAILED: runner `{runner}` declares no model builder")), "{said}");
        }
    }

    let ambiguous = register(&path, &["--number", "1"]);
    assert_eq!(ambiguous.status.code(), Some(2));

    let org = register(&path, &["sum", "--organization", "acme"]);
    assert!(stdout(&org).contains("acme/sum:1"), "{}", stdout(&org));

    let help = Command::new(env!("CARGO_BIN_EXE_register")).arg("--help").output().unwrap();
    let help = stdout(&help);
    for flag in ["--registry", "RUNNER_REGISTRY", "--list", "--number", "--organization", "--repository"] {
        assert!(help.contains(flag), "--help lacks {flag}: {help}");
    }
}
