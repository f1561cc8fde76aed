use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model(f64);
pub struct Other;

pub struct Shifted;

#[runner]
impl Shifted {
    fn preprocess_data(_model: &Other, data: f64) -> f64 {
        data
    }

    fn predict(model: &Model, data: f64) -> f64 {
        model.0 + data
    }
}
fn main() {}
