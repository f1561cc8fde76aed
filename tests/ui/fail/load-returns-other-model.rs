use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct OtherModel;

#[runner]
impl OtherModel {
    fn load_model(_props: Option<runner_core::Props>, _artifacts: &runner_core::Artifacts) -> runner_core::Result<String> {
        Ok(String::new())
    }

    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
