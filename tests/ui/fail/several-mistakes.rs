//! Independent mistakes in options and hooks are all reported by one compile, including
//! an option after one whose value does not parse.

use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Several;

#[runner(max_batch_size = "8", repositry = "models")]
impl Several {
    fn preproces_data(data: String) -> f64 {
        data.len() as f64
    }

    fn predict(&self, _model: &Model, data: f64) -> f64 {
        data
    }
}

fn main() {}
