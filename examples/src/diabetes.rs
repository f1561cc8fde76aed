//! Custom `save_model` / `load_model` and a glob artifact.
//!
//! A linear regression (linfa) of diabetes progression on ten baseline variables. The
//! model type is not serde-serializable: `save_model` writes its coefficients to
//! `weights.csv` in the save directory and returns props; `load_model` reads them back.
//! The data set folder travels with the model as an artifact
//! (`"data/diabetes/*" => "dataset/*"`), and `load_model` checks that the weights were
//! fitted on the columns that folder describes.

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use runner_core::{runner, Artifacts, Error, Props, Result, SaveDir};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The ten baseline variables, in the data set's column order.
pub const FEATURES: [&str; 10] = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"];

const DIABETES_CSV: &str = include_str!("../data/diabetes/diabetes.csv");

/// A fitted linear model (deliberately not `Serialize`: it is saved by `save_model`).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    /// One coefficient per feature, in [`FEATURES`] order.
    pub coefficients: Vec<f64>,
    /// The intercept.
    pub intercept: f64,
}

impl LinearModel {
    /// The model's prediction for one patient.
    pub fn predict(&self, x: &[f64; 10]) -> f64 {
        self.intercept + self.coefficients.iter().zip(x).map(|(c, x)| c * x).sum::<f64>()
    }
}

/// One patient's baseline variables (mean-centred and scaled, as in the data set, where
/// they lie within ±0.25); each must be within ±1000.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    /// Age.
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub age: f64,
    /// Sex.
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub sex: f64,
    /// Body mass index.
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub bmi: f64,
    /// Average blood pressure.
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub bp: f64,
    /// Serum measurement 1 (total cholesterol).
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub s1: f64,
    /// Serum measurement 2 (LDL).
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub s2: f64,
    /// Serum measurement 3 (HDL).
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub s3: f64,
    /// Serum measurement 4 (total / HDL).
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub s4: f64,
    /// Serum measurement 5 (log of triglycerides).
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub s5: f64,
    /// Serum measurement 6 (blood sugar).
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub s6: f64,
}

impl Patient {
    /// The variables in [`FEATURES`] order.
    pub fn to_array(&self) -> [f64; 10] {
        [self.age, self.sex, self.bmi, self.bp, self.s1, self.s2, self.s3, self.s4, self.s5, self.s6]
    }
}

/// The prediction.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Progression {
    /// Predicted disease progression one year after baseline.
    pub progression: f64,
}

/// Rows of the data set: variables and progression.
pub type Rows = Vec<([f64; 10], f64)>;

/// The data split in a fixed way: every fourth patient held out (110), 332 for training.
pub fn split() -> (Rows, Rows) {
    crate::split_csv(DIABETES_CSV, 4)
}

/// Predicts diabetes progression.
pub struct Diabetes;

impl Diabetes {
    /// Fits the model on the training split (called by `register`).
    pub fn train() -> Result<LinearModel> {
        let (train, _) = split();
        let x = Array2::from_shape_fn((train.len(), 10), |(i, j)| train[i].0[j]);
        let y: Array1<f64> = train.iter().map(|(_, y)| *y).collect();
        let fitted = LinearRegression::new()
            .fit(&Dataset::new(x, y))
            .map_err(|e| Error::msg(format!("fitting the diabetes regression failed: {e}")))?;
        Ok(LinearModel { coefficients: fitted.params().to_vec(), intercept: fitted.intercept() })
    }
}

#[runner(
    name = "diabetes",
    model = Diabetes::train,
    requirements = ["linfa-linear 0.8"],
    artifacts = { "data/diabetes/*" => "dataset/*" },
)]
impl Diabetes {
    fn save_model(model: &LinearModel, dir: &SaveDir) -> Result<Props> {
        let mut csv = String::from("feature,coefficient\n");
        for (name, c) in FEATURES.iter().zip(&model.coefficients) {
            csv.push_str(&format!("{name},{c:e}\n"));
        }
        dir.write("weights.csv", csv)?;
        Ok(Props::from([
            ("weights".to_string(), "weights.csv".to_string()),
            ("intercept".to_string(), format!("{:e}", model.intercept)),
        ]))
    }

    fn load_model(props: Option<Props>, artifacts: &Artifacts) -> Result<LinearModel> {
        let props = props.ok_or_else(|| Error::msg("no props: this model was not saved by `save_model`"))?;
        let prop = |key: &str| props.get(key).ok_or_else(|| Error::msg(format!("props have no `{key}`")));
        let intercept: f64 = prop("intercept")?.parse().map_err(|e| Error::msg(format!("bad intercept: {e}")))?;
        // The data set folder uploaded as an artifact names the columns the weights must follow.
        let dataset = artifacts.read_to_string("dataset/diabetes.csv")?;
        let header: Vec<&str> = dataset.lines().next().unwrap_or_default().split(',').collect();
        let mut coefficients = Vec::new();
        for (i, line) in artifacts.read_to_string(prop("weights")?)?.lines().skip(1).enumerate() {
            let (name, value) =
                line.split_once(',').ok_or_else(|| Error::msg(format!("weights line {}: no comma", i + 2)))?;
            if header.get(i) != Some(&name) {
                return Err(Error::msg(format!(
                    "weight {i} is for `{name}`, but column {i} of dataset/diabetes.csv is `{}`",
                    header.get(i).unwrap_or(&"nothing")
                )));
            }
            coefficients.push(value.parse().map_err(|e| Error::msg(format!("bad coefficient for `{name}`: {e}")))?);
        }
        if coefficients.len() != FEATURES.len() {
            return Err(Error::msg(format!("{} coefficients, expected {}", coefficients.len(), FEATURES.len())));
        }
        Ok(LinearModel { coefficients, intercept })
    }

    fn preprocess_data(data: Patient) -> Result<[f64; 10]> {
        let x = data.to_array();
        if let Some(i) = x.iter().position(|v| v.is_nan() || v.abs() > 1000.0) {
            return Err(Error::invalid_input(format!(
                "`{}` must be a number within ±1000 (the data set's are within ±0.25), got {}",
                FEATURES[i], x[i]
            )));
        }
        Ok(x)
    }

    fn predict(model: &LinearModel, data: [f64; 10]) -> f64 {
        model.predict(&data)
    }

    fn postprocess_data(data: f64) -> Progression {
        Progression { progression: data }
    }
}
