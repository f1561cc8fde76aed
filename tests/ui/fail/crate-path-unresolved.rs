//! A `crate` path that does not resolve is one error, on the path, not one per use.

use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Unresolved;

#[runner(crate = no_such_facade)]
impl Unresolved {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}

fn main() {}
