use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct NoReturn;

#[runner]
impl NoReturn {
    fn predict(_model: &Model, _data: f64) {}
}
fn main() {}
