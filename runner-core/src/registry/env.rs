//! Where the binaries look for their registry.

/// The environment variable that chooses the registry when `--registry` is not given.
pub const REGISTRY_ENV: &str = "RUNNER_REGISTRY";

/// The registry used when neither `--registry` nor [`REGISTRY_ENV`] is set: a directory
/// relative to the current one.
pub const DEFAULT_REGISTRY: &str = ".runner-registry";

/// The environment variable holding the bearer token for an HTTP registry.
pub const TOKEN_ENV: &str = "RUNNER_REGISTRY_TOKEN";
