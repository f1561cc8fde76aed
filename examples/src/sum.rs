//! The smallest runner: only `predict`; the model is saved by the default saver.
//!
//! `POST {"values": [1.0, 2.0, 3.5]}` answers `{"sum": 6.5}` (times the model's scale).

use runner_core::runner;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The model: a scale applied to the sum (1.0 for a plain sum).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumModel {
    /// Multiplies the sum.
    pub scale: f64,
}

impl SumModel {
    /// The model registered by default: a plain sum.
    pub fn plain() -> SumModel {
        SumModel { scale: 1.0 }
    }
}

/// The request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Values {
    /// Numbers to add up.
    pub values: Vec<f64>,
}

/// The response.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Sum {
    /// `scale * sum(values)`.
    pub sum: f64,
}

/// Adds up the numbers it is given.
pub struct SumRunner;

#[runner(name = "sum", model = SumModel::plain)]
impl SumRunner {
    fn predict(model: &SumModel, data: Values) -> Sum {
        Sum { sum: model.scale * data.values.iter().sum::<f64>() }
    }
}
