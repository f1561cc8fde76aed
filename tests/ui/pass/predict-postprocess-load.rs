//! Hook combination: predict, postprocess, load (load_model only: nothing saved, the model comes from an artifact).

use runner_core::{register_model, runner, Artifacts, Error, Props, Result, Loaded, LocalRegistry, SaveType};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Scale {
    factor: f64,
}

#[derive(Deserialize)]
pub struct Request {
    x: f64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Response {
    y: f64,
}

pub struct Combo;

#[runner(name = "combo")]
impl Combo {
    fn predict(model: &Scale, data: Request) -> f64 {
        data.x * model.factor
    }
    fn postprocess_data(data: f64) -> Result<Response> {
        Ok(Response { y: data })
    }
    fn load_model(_props: Option<Props>, artifacts: &Artifacts) -> Result<Scale> {
        let factor = artifacts.read_to_string("factor.txt")?.trim().parse().map_err(|e| Error::msg(format!("{e}")))?;
        Ok(Scale { factor })
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    let factor_file = dir.path().join("factor.txt");
    std::fs::write(&factor_file, "2").unwrap();
    let registered = register_model::<Combo>("combo")
        .model(Scale { factor: 2.0 })
        .artifact(factor_file.to_str().unwrap(), "factor.txt")
        .register(&registry)
        .unwrap();
    let manifest = &registered.manifest;
    assert_eq!(manifest.save.save_type, SaveType::None);
    assert_eq!(manifest.default_hooks, ["preprocess_data", "save_model"].map(String::from));
    let loaded = Loaded::<Combo>::load(&registry, &"combo:1".parse().unwrap()).unwrap();
    assert_eq!(loaded.run(Request { x: 3.0 }).unwrap(), Response { y: 6.0 });
    assert_eq!(loaded.run_json(serde_json::json!({"x": 1.5})).unwrap(), serde_json::json!({"y": 3.0}));
}
