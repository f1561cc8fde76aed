//! What the registry's test binaries share: the runner they register, the server binary
//! and a running server process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use runner_core::runner;
use serde::{Deserialize, Serialize};
use sha2::Digest;

#[derive(Serialize, Deserialize)]
pub struct Scale(pub f64);

pub struct Scaler;

#[runner(name = "scaler")]
impl Scaler {
    fn predict(model: &Scale, data: f64) -> f64 {
        model.0 * data
    }
}

/// The `runner-registry` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_runner-registry");

/// A running `runner-registry serve`, killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Runs `command` (a `serve` on port 0) and waits for the address it listens on.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected {line:?}")).to_string();
        Server { child, url }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A manifest of `id` listing `files`, for tests that commit through the staging API.
pub fn manifest(id: &runner_core::ModelId, files: Vec<runner_core::FileEntry>) -> runner_core::Manifest {
    runner_core::Manifest {
        manifest_version: runner_core::MANIFEST_VERSION,
        model: id.clone(),
        runner: runner_core::RunnerInfo {
            name: "scaler".into(),
            crate_name: "runner-registry".into(),
            crate_version: "0".into(),
            rust_type: "Scaler".into(),
        },
        save: runner_core::SaveInfo { save_type: runner_core::SaveType::None, path: None, props: None },
        default_hooks: Vec::new(),
        requirements: Vec::new(),
        artifacts: Default::default(),
        files,
        created_at: "2026-11-28T00:00:00Z".into(),
        framework_version: "0".into(),
        api: None,
    }
}

/// Checks that a `verify --json` report names exactly three problems, by model and file:
/// the first model's content missing, the second's truncated, the third's corrupt.
pub fn assert_missing_truncated_corrupt(report: &serde_json::Value, models: &[runner_core::Registered]) {
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{report}");
    for (m, what) in models.iter().zip(["missing", "bytes, not the", "corrupt"]) {
        let found = problems.iter().find(|p| p["model"] == m.id().to_string()).unwrap_or_else(|| panic!("{report}"));
        assert_eq!(found["file"], m.manifest.files[0].path, "{report}");
        assert!(found["problem"].as_str().unwrap().contains(what), "{what}: {report}");
    }
}
