//! The `runner-registry` command line: serve a registry (a directory, or PostgreSQL and
//! S3), administer it (`gc`, `verify`, `export`, `import`, `token create`), and inspect
//! any registry by path or URL. `src/main.rs` only calls [`run`].

mod access;
mod admin;
mod args;
mod inspect;
mod run;

pub use run::run;
