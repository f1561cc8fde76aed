//! Through `crate = path`, a type mismatch is reported on the user's type, as without it.

mod facade {
    pub use runner_core::*;
}

use facade::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Mismatch;

#[runner(crate = facade)]
impl Mismatch {
    fn preprocess_data(data: String) -> String {
        data
    }

    fn predict(_model: &Model, data: Vec<f32>) -> usize {
        data.len()
    }
}

fn main() {}
