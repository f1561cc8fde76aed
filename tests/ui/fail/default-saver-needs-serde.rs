use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct NeedsSerde;

/// Neither `save_model` nor `load_model`: the default saver must serialize this.
pub struct Weights(Vec<f64>);

#[runner]
impl NeedsSerde {
    fn predict(model: &Weights, data: Vec<f64>) -> f64 {
        model.0.iter().zip(&data).map(|(w, x)| w * x).sum()
    }
}
fn main() {}
