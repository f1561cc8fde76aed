use runner_core::{runner, Artifacts, Props};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct WrongParams;

#[runner]
impl WrongParams {
    fn load_model(_props: Props, _artifacts: &Artifacts) -> Model {
        Model
    }

    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}

fn main() {}
