//! `#[runner(crate = path)]`: runners declared through a module that re-exports
//! runner_core, as a facade crate or runner-torch would, with no `runner_core` path in
//! the user's code outside that module. The path may be written bare or as a string.

mod facade {
    // A glob re-export takes the `#[doc(hidden)]` `__private` module along.
    pub use runner_core::*;
}

use facade::{register_model, runner, Artifacts, BatchConfig, Error, Loaded, LocalRegistry, Props, Result, Runner, SaveDir, SaveType};
use serde::{Deserialize, Serialize};

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

pub struct Scaler;

impl Scaler {
    fn build() -> Result<Scale> {
        Ok(Scale { factor: 2.0 })
    }
}

// Every hook, so that every generated path goes through the facade.
#[runner(crate = facade, name = "scaler", model = Scaler::build, max_batch_size = 4)]
impl Scaler {
    fn preprocess_data(model: &Scale, data: Request) -> Result<f64> {
        let _ = model.factor;
        Ok(data.x)
    }
    fn predict(model: &Scale, data: f64) -> f64 {
        data * model.factor
    }
    fn predict_batch(model: &Scale, data: Vec<f64>) -> Result<Vec<f64>> {
        Ok(data.into_iter().map(|x| x * model.factor).collect())
    }
    fn postprocess_data(data: f64) -> Response {
        Response { y: data }
    }
    fn save_model(model: &Scale, dir: &SaveDir) -> Result<Props> {
        dir.write("factor.txt", model.factor.to_string())?;
        Ok(Props::new())
    }
    fn load_model(_props: Option<Props>, artifacts: &Artifacts) -> Result<Scale> {
        let factor = artifacts.read_to_string("factor.txt")?.trim().parse().map_err(|e| Error::msg(format!("{e}")))?;
        Ok(Scale { factor })
    }
}

#[derive(Serialize, Deserialize)]
pub struct Offset(f64);

pub struct Shift;

// The string form, and the default saver through the facade.
#[runner(crate = "crate::facade")]
impl Shift {
    fn predict(model: &Offset, data: f64) -> f64 {
        data + model.0
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();

    assert_eq!(Scaler::BATCH, Some(BatchConfig { max_batch_size: 4, max_delay: std::time::Duration::from_millis(5) }));
    let entry = facade::find_runner("scaler").unwrap();
    let registered = entry.register(&registry, &facade::RegisterOptions::default()).unwrap();
    assert_eq!(registered.manifest.save.save_type, SaveType::Custom);
    let loaded = Loaded::<Scaler>::load(&registry, &"scaler:1".parse().unwrap()).unwrap();
    assert_eq!(loaded.run(Request { x: 3.0 }).unwrap(), Response { y: 6.0 });
    assert_eq!(<Scaler as Runner>::predict_batch(loaded.model(), vec![1.0, 2.0]).unwrap(), vec![2.0, 4.0]);

    register_model::<Shift>("shift").model(Offset(1.0)).register(&registry).unwrap();
    let loaded = Loaded::<Shift>::load(&registry, &"shift:1".parse().unwrap()).unwrap();
    assert_eq!(loaded.manifest().save.save_type, SaveType::Default);
    assert_eq!(loaded.run_json(serde_json::json!(1.5)).unwrap(), serde_json::json!(2.5));
}
