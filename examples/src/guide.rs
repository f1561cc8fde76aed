// The guide: the chapters in docs/, one module each, so that rustdoc runs their Rust
// blocks as doctests and checks their links. A chapter's links are reference links
// defined at the bottom of its file for GitHub; guide/links.md defines the same labels
// for rustdoc and comes first, which wins (the first definition of a label is the one
// markdown uses). tests/guide.rs checks that every label has both, and runs the chapters'
// shell blocks marked `<!-- tested -->`.

#![doc = include_str!("guide/links.md")]
#![doc = include_str!("../../docs/README.md")]

#[doc = include_str!("guide/links.md")]
#[doc = include_str!("../../docs/writing-runners.md")]
pub mod writing_runners {}

#[doc = include_str!("guide/links.md")]
#[doc = include_str!("../../docs/registry-and-servers.md")]
pub mod registry_and_servers {}

#[doc = include_str!("guide/links.md")]
#[doc = include_str!("../../docs/serving-and-rollouts.md")]
pub mod serving_and_rollouts {}

// Its examples need runner-torch (libtorch) and runner-onnx: the whole chapter with the
// `torch` and `onnx` features (as CI documents and scripts/test.sh tests), a pointer to it
// without.
#[cfg_attr(
    all(feature = "torch", feature = "onnx"),
    doc = include_str!("guide/links.md"),
    doc = include_str!("guide/torch-links.md"),
    doc = include_str!("../../docs/pytorch-and-other-backends.md")
)]
#[cfg_attr(
    not(all(feature = "torch", feature = "onnx")),
    doc = "# PyTorch, ONNX and other backends\n\nThis chapter is built with the `torch` and `onnx` features, since its examples \
           need libtorch and runner-onnx: `scripts/with-torch cargo doc -p runner-examples --features torch,onnx --open`, \
           or read `docs/pytorch-and-other-backends.md`."
)]
pub mod pytorch_and_other_backends {}

#[doc = include_str!("guide/links.md")]
#[doc = include_str!("../../docs/operating-at-scale.md")]
pub mod operating_at_scale {}

#[doc = include_str!("guide/links.md")]
#[doc = include_str!("../../docs/hardening.md")]
pub mod hardening {}

#[doc = include_str!("guide/links.md")]
#[doc = include_str!("../../docs/from-python-sdk.md")]
pub mod from_python_sdk {}

/// The README's Rust blocks, run as doctests (not rendered: its links are GitHub's).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub mod readme {}
