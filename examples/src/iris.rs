//! A real classifier: multinomial logistic regression (linfa) trained at registration on
//! Fisher's Iris data shipped in `examples/data/iris`, with typed JSON in and out.
//!
//! `POST {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}`
//! answers `{"species": "setosa", "probabilities": {"setosa": 0.97, ...}}`.

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};
use runner_core::{runner, Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The species, by class index.
pub const SPECIES: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// The data set, embedded so registration works from any directory.
const IRIS_CSV: &str = include_str!("../data/iris/iris.csv");

/// The trained model (saved by the default saver: it is `Serialize + Deserialize`).
pub type IrisModel = MultiFittedLogisticRegression<f64, usize>;

/// One flower's measurements, in centimetres: each over 0 and at most 100 (the schema
/// says so, and `preprocess_data` checks it).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IrisRequest {
    /// Sepal length (cm).
    #[schemars(extend("exclusiveMinimum" = 0.0, "maximum" = 100.0))]
    pub sepal_length: f64,
    /// Sepal width (cm).
    #[schemars(extend("exclusiveMinimum" = 0.0, "maximum" = 100.0))]
    pub sepal_width: f64,
    /// Petal length (cm).
    #[schemars(extend("exclusiveMinimum" = 0.0, "maximum" = 100.0))]
    pub petal_length: f64,
    /// Petal width (cm).
    #[schemars(extend("exclusiveMinimum" = 0.0, "maximum" = 100.0))]
    pub petal_width: f64,
}

/// The prediction.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct IrisResponse {
    /// The most likely species.
    pub species: String,
    /// The probability of each species.
    pub probabilities: BTreeMap<String, f64>,
}

/// Rows of the Iris data: measurements and species index.
pub type Rows = Vec<([f64; 4], usize)>;

/// The Iris data split in a fixed way: every fifth flower is held out for testing
/// (30 flowers, 10 of each species), the other 120 train the model.
pub fn split() -> (Rows, Rows) {
    crate::split_csv(IRIS_CSV, 5)
}

/// A feature matrix from rows.
pub fn features(rows: &[([f64; 4], usize)]) -> Array2<f64> {
    Array2::from_shape_fn((rows.len(), 4), |(i, j)| rows[i].0[j])
}

/// Classifies Iris flowers.
pub struct Iris;

impl Iris {
    /// Trains the model on the training split (called by `register`).
    pub fn train() -> Result<IrisModel> {
        let (train, _) = split();
        let targets: Array1<usize> = train.iter().map(|(_, species)| *species).collect();
        let dataset = Dataset::new(features(&train), targets);
        MultiLogisticRegression::default()
            .max_iterations(200)
            .fit(&dataset)
            .map_err(|e| Error::msg(format!("training the Iris classifier failed: {e}")))
    }
}

#[runner(name = "iris", model = Iris::train, requirements = ["linfa-logistic 0.8"])]
impl Iris {
    fn preprocess_data(data: IrisRequest) -> Result<Array2<f64>> {
        let values = [data.sepal_length, data.sepal_width, data.petal_length, data.petal_width];
        let names = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
        for (value, name) in values.iter().zip(names) {
            if !value.is_finite() || *value <= 0.0 || *value > 100.0 {
                return Err(Error::invalid_input(format!(
                    "`{name}` must be a length in centimetres over 0 and at most 100, got {value}"
                )));
            }
        }
        Ok(Array2::from_shape_vec((1, 4), values.to_vec()).expect("four values make a 1x4 matrix"))
    }

    fn predict(model: &IrisModel, data: Array2<f64>) -> Array2<f64> {
        model.predict_probabilities(&data)
    }

    fn postprocess_data(data: Array2<f64>) -> IrisResponse {
        // Columns follow the model's sorted class labels: 0, 1, 2, all present in training.
        let row = data.row(0);
        let best = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0);
        IrisResponse {
            species: SPECIES[best].to_string(),
            probabilities: SPECIES.iter().zip(row.iter()).map(|(s, p)| (s.to_string(), *p)).collect(),
        }
    }
}
