use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

use std::cell::RefCell;

pub struct NotSync;

#[runner]
impl NotSync {
    fn load_model(_props: Option<runner_core::Props>, _artifacts: &runner_core::Artifacts) -> RefCell<Vec<f64>> {
        RefCell::new(Vec::new())
    }

    fn predict(model: &RefCell<Vec<f64>>, data: f64) -> f64 {
        model.borrow_mut().push(data);
        data
    }
}
fn main() {}
