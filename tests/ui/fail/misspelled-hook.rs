use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Typo;

#[runner]
impl Typo {
    fn preproces_data(data: String) -> f64 {
        data.len() as f64
    }

    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
