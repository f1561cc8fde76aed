//! The hook kinds. One row per kind, in [`HookKind::spec`], holds everything parsing,
//! checks and expansion need to know about a hook apart from its expansion itself.

/// How a hook receives the model, which is shared by every request and so only borrowed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Borrow {
    /// No parameter is the model.
    Never,
    /// The first parameter borrows the model.
    Always,
    /// The first parameter borrows the model in the hook's longest form only:
    /// `(model: &Model, data)` against `(data)`.
    Optional,
}

/// One hook kind's row.
pub struct Spec {
    /// The function name users write.
    pub name: &'static str,
    /// The parameter counts accepted.
    pub arities: &'static [usize],
    /// The accepted parameter lists, as error messages show them.
    pub shape: &'static str,
    /// Whether and when the first parameter borrows the model.
    pub borrow: Borrow,
    /// What the hook returns, as error messages name it.
    pub output: &'static str,
    /// The `runner_core::Hook` variant an error the hook returns is attributed to.
    pub variant: &'static str,
    /// Whether `#[runner(backend = B)]` provides it (the block may then not declare it).
    pub from_backend: bool,
    /// Whether `runner_core::Hooks` has a field of this name, telling whether the runner
    /// overrides the hook.
    pub flagged: bool,
}

/// A hook a `#[runner]` impl block may define.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HookKind {
    Predict,
    PredictBatch,
    PreprocessData,
    PostprocessData,
    SaveModel,
    LoadModel,
}

impl HookKind {
    /// Every kind, in the order checks report them.
    pub const ALL: [HookKind; 6] = [
        HookKind::Predict,
        HookKind::PredictBatch,
        HookKind::PreprocessData,
        HookKind::PostprocessData,
        HookKind::SaveModel,
        HookKind::LoadModel,
    ];

    /// This kind's row of the table.
    pub const fn spec(self) -> &'static Spec {
        match self {
            HookKind::Predict => &Spec {
                name: "predict",
                arities: &[2],
                shape: "(model: &Model, data: ModelInput)",
                borrow: Borrow::Always,
                output: "the model output",
                variant: "Predict",
                from_backend: true,
                flagged: false,
            },
            HookKind::PredictBatch => &Spec {
                name: "predict_batch",
                arities: &[2],
                shape: "(model: &Model, data: Vec<ModelInput>)",
                borrow: Borrow::Always,
                output: "one model output per input (`Vec<ModelOutput>`)",
                // A failed batch is reported as a failed `predict`.
                variant: "Predict",
                from_backend: true,
                flagged: false,
            },
            HookKind::PreprocessData => &Spec {
                name: "preprocess_data",
                arities: &[1, 2],
                shape: "(data: ApiInput) or (model: &Model, data: ApiInput)",
                borrow: Borrow::Optional,
                output: "the model input",
                variant: "PreprocessData",
                from_backend: false,
                flagged: true,
            },
            HookKind::PostprocessData => &Spec {
                name: "postprocess_data",
                arities: &[1, 2],
                shape: "(data: ModelOutput) or (model: &Model, data: ModelOutput)",
                borrow: Borrow::Optional,
                output: "the API output",
                variant: "PostprocessData",
                from_backend: false,
                flagged: true,
            },
            HookKind::SaveModel => &Spec {
                name: "save_model",
                arities: &[1, 2],
                shape: "(model: &Model) or (model: &Model, dir: &SaveDir)",
                borrow: Borrow::Always,
                output: "the props (`Props` or `Result<Props>`)",
                variant: "SaveModel",
                from_backend: true,
                flagged: true,
            },
            HookKind::LoadModel => &Spec {
                name: "load_model",
                arities: &[2],
                shape: "(props: Option<Props>, artifacts: &Artifacts)",
                borrow: Borrow::Never,
                output: "the model instance",
                variant: "LoadModel",
                from_backend: true,
                flagged: true,
            },
        }
    }

    /// The function name users write.
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    /// The kind of the hook named `name`, if it names one.
    pub fn from_name(name: &str) -> Option<HookKind> {
        HookKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Every hook's name, for "did you mean" hints.
    pub fn names() -> [&'static str; 6] {
        HookKind::ALL.map(HookKind::name)
    }

    /// Its index in [`HookKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl Spec {
    /// Whether a hook of this kind with `arity` parameters borrows the model as its first.
    pub fn borrows_model(&self, arity: usize) -> bool {
        match self.borrow {
            Borrow::Never => false,
            Borrow::Always => true,
            Borrow::Optional => self.arities.iter().max() == Some(&arity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_kind_once_at_its_index() {
        for (i, kind) in HookKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(HookKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(HookKind::from_name("helper"), None);
    }

    #[test]
    fn shapes_agree_with_arities() {
        for kind in HookKind::ALL {
            let spec = kind.spec();
            for form in spec.shape.split(" or ") {
                let arity = form.trim_matches(|c| c == '(' || c == ')').split(", ").count();
                assert!(spec.arities.contains(&arity), "{}: {form}", spec.name);
                assert_eq!(spec.borrows_model(arity), form.starts_with("(model: &Model"), "{}: {form}", spec.name);
            }
        }
    }
}
