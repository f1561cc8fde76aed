use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Mismatch;

#[runner]
impl Mismatch {
    fn preprocess_data(data: String) -> String {
        data
    }

    fn predict(_model: &Model, data: Vec<f32>) -> usize {
        data.len()
    }
}
fn main() {}
