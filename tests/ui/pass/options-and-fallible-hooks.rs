//! Every attribute option, hooks returning `Result`s with different error types,
//! `save_model` in the seed's one-parameter shape, and registration through the catalog
//! with the declared defaults (relative artifact paths are relative to the crate's
//! manifest directory: here trybuild's generated crate).

use runner_core::serve::status_of;
use runner_core::{find_runner, runner, Artifacts, Error, ErrorKind, Loaded, LocalRegistry, Props, RegisterOptions};
use serde::{Deserialize, Serialize};

pub struct Model {
    bias: i64,
}

#[derive(Deserialize)]
pub struct Input {
    n: i64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Output {
    n: i64,
}

pub struct Offset;

impl Offset {
    fn build() -> Result<Model, std::io::Error> {
        Ok(Model { bias: 10 })
    }
}

#[runner(
    name = "offset",
    repository = "offsets",
    requirements = ["none", "really"],
    artifacts = { "Cargo.toml" => "build/Cargo.toml" },
    model = Offset::build,
)]
impl Offset {
    fn preprocess_data(data: Input) -> Result<i64, String> {
        if data.n < 0 {
            return Err(format!("n must be >= 0, got {}", data.n));
        }
        Ok(data.n)
    }

    fn predict(model: &Model, data: i64) -> runner_core::Result<i64> {
        data.checked_add(model.bias).ok_or_else(|| Error::new(ErrorKind::BadRequest, "overflow"))
    }

    fn postprocess_data(data: i64) -> std::result::Result<Output, std::fmt::Error> {
        Ok(Output { n: data })
    }

    fn save_model(model: &Model) -> runner_core::Result<Props> {
        Ok(Props::from([("bias".to_string(), model.bias.to_string())]))
    }

    fn load_model(props: Option<Props>, artifacts: &Artifacts) -> Result<Model, Box<dyn std::error::Error + Send + Sync>> {
        assert!(artifacts.read_to_string("build/Cargo.toml")?.contains("[package]"));
        let bias = props.ok_or("no props")?["bias"].parse()?;
        Ok(Model { bias })
    }

    // Helpers whose names are not close to a hook's are allowed.
    #[allow(dead_code)]
    fn helper() -> usize {
        1
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    let entry = find_runner("offset").unwrap();
    let registered = entry.register(&registry, &RegisterOptions::default()).unwrap();
    assert_eq!(registered.id().to_string(), "offsets:1");
    assert_eq!(registered.manifest.requirements, ["none", "really"]);
    assert_eq!(registered.manifest.artifacts["Cargo.toml"], "build/Cargo.toml");

    let loaded = Loaded::<Offset>::load(&registry, &"offsets:latest".parse().unwrap()).unwrap();
    assert_eq!(loaded.run(Input { n: 5 }).unwrap(), Output { n: 15 });
    let err = loaded.run(Input { n: -1 }).unwrap_err();
    assert_eq!(status_of(&err), 500);
    assert!(err.to_string().contains("`preprocess_data` failed: n must be >= 0"), "{err}");
    let err = loaded.run(Input { n: i64::MAX }).unwrap_err();
    assert_eq!(status_of(&err), 400, "a hook's own Error keeps its status");
    let err = loaded.run_json(serde_json::json!({"n": "five"})).unwrap_err();
    assert!(err.to_string().contains("at `n`"), "{err}");
}
