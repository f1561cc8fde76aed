use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct OneArg;

#[runner]
impl OneArg {
    fn predict(data: f64) -> f64 {
        data
    }
}
fn main() {}
