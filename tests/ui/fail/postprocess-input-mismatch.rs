use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Mismatch;

#[runner]
impl Mismatch {
    fn predict(_model: &Model, data: Vec<f32>) -> usize {
        data.len()
    }

    fn postprocess_data(data: u8) -> u8 {
        data
    }
}
fn main() {}
