use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct BatchMismatch;

#[runner]
impl BatchMismatch {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }

    fn predict_batch(_model: &Model, data: Vec<f32>) -> Vec<f64> {
        data.into_iter().map(f64::from).collect()
    }
}
fn main() {}
