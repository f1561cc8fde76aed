//! Example runners, all registered by `cargo run --bin register`:
//!
//! | runner | shows |
//! |---|---|
//! | [`sum`] | the smallest runner: only `predict`, the default saver |
//! | [`iris`] | a logistic-regression classifier trained at registration on Fisher's Iris data, typed JSON with pre/postprocessing |
//! | [`diabetes`] | custom `save_model`/`load_model` writing its own file, and a glob artifact (a folder) |

pub mod diabetes;
pub mod iris;
pub mod sum;

/// Call from a binary's `main` so the linker keeps this crate, and with it the runners
/// it submits to the inventory.
#[inline(never)]
pub fn link() {}
