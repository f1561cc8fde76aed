use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct BadGlob;

#[runner(artifacts = { "checkpoints/*" => "checkpoints", "data/*.csv" => "data/*" })]
impl BadGlob {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
