use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct ZeroBatch;

#[runner(max_batch_size = 0)]
impl ZeroBatch {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }

    fn predict_batch(_model: &Model, data: Vec<f64>) -> Vec<f64> {
        data
    }
}
fn main() {}
