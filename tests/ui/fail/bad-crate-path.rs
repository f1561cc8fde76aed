use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct BadCrate;

#[runner(crate = "runner core", crate = runner_core)]
impl BadCrate {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}

fn main() {}
