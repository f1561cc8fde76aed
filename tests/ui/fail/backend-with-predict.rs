use runner_core::{runner, Artifacts, Backend, Props, Result, SaveDir};

pub struct Scale;
pub struct Factor(f64);

impl Backend for Scale {
    type Model = Factor;
    type Input = f64;
    type Output = f64;
    fn predict(model: &Factor, input: f64) -> Result<f64> {
        Ok(model.0 * input)
    }
    fn save(_model: &Factor, _dir: &SaveDir) -> Result<Props> {
        Ok(Props::new())
    }
    fn load(_props: Option<Props>, _artifacts: &Artifacts) -> Result<Factor> {
        Ok(Factor(1.0))
    }
}

pub struct Twice;

#[runner(backend = Scale)]
impl Twice {
    fn predict(model: &Factor, data: f64) -> f64 {
        model.0 * data
    }
    fn load_model(_props: Option<Props>, _artifacts: &Artifacts) -> Factor {
        Factor(2.0)
    }
}

fn main() {}
