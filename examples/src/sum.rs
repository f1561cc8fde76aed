//! The smallest runner: only `predict`; the model is saved by the default saver.
//!
//! `POST {"values": [1.0, 2.0, 3.5]}` answers `{"sum": 6.5}` (times the model's scale).

use runner_core::{runner, Error, Result};
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

/// The most numbers one request may add up.
pub const MAX_VALUES: usize = 100_000;
/// The largest magnitude of one number: with at most [`MAX_VALUES`] of them, the sum stays
/// a finite 64-bit float (JSON has no infinity).
pub const MAX_MAGNITUDE: f64 = 1e300;

/// The request.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Values {
    /// Numbers to add up: at most 100,000, each within ±1e300.
    #[schemars(extend(
        "maxItems" = 100_000,
        "items" = {"type": "number", "format": "double", "minimum": -1e300, "maximum": 1e300}
    ))]
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
    fn preprocess_data(data: Values) -> Result<Values> {
        if data.values.len() > MAX_VALUES {
            return Err(Error::invalid_input(format!(
                "{} values; send at most {MAX_VALUES} per request",
                data.values.len()
            )));
        }
        if let Some(v) = data.values.iter().find(|v| v.is_nan() || v.abs() > MAX_MAGNITUDE) {
            return Err(Error::invalid_input(format!("{v} is out of range; each value must be within ±1e300")));
        }
        Ok(data)
    }

    fn predict(model: &SumModel, data: Values) -> Sum {
        Sum { sum: model.scale * data.values.iter().sum::<f64>() }
    }
}
