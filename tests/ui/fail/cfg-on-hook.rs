use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Cfg;

#[runner]
impl Cfg {
    #[cfg(test)]
    fn preprocess_data(data: String) -> f64 {
        data.len() as f64
    }

    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
