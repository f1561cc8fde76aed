//! The guide (`docs/`), beyond what rustdoc checks (its Rust blocks are doctests of
//! `runner_examples::guide`):
//!
//! - its shell blocks marked `<!-- tested -->` (the line before the fence) run, in order,
//!   one chapter per temporary directory, against the workspace's `register`, `serve` and
//!   `runner-registry` (`cargo run ... --bin NAME --` and `cargo run ... -p runner-registry --`
//!   as the guide writes them go to those binaries); each must exit 0, and print the
//!   `text` block that follows it, if any: its lines in order, each a whole line of the
//!   output (runs of spaces count as one), `...` standing for anything;
//! - its links resolve on both sides: every link to a file of the repository is a
//!   reference link whose definition names a file that exists (GitHub) and whose label
//!   `examples/src/guide/links.md` (or `torch-links.md`) defines for rustdoc, which checks
//!   it; the README's links name files that exist; every chapter is included in rustdoc.
//!
//! The binaries are those next to this test (`target/debug`), which `cargo test
//! --workspace` (scripts/test.sh) builds with it; run alone, build them first:
//! `cargo build -p runner-examples -p runner-registry --bins`.

#![cfg(unix)]

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The chapters: docs/*.md, by name.
fn chapters() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "docs/ holds the guide's chapters: {files:?}");
    files
}

/// A fenced code block.
#[derive(Debug)]
struct Block {
    /// The line of its opening fence, from 1.
    line: usize,
    /// The info string (`sh`, `rust,no_run`, ...).
    info: String,
    text: String,
    /// Preceded by `<!-- tested -->`.
    tested: bool,
    /// The `text` block right after it (blank lines between), if any.
    output: Option<String>,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks: Vec<Block> = Vec::new();
    // The end of the previous block (its closing fence) and whether only blank lines
    // followed it.
    let mut previous_end: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if !trimmed.starts_with("```") {
            if !lines[i].trim().is_empty() {
                previous_end = None;
            }
            i += 1;
            continue;
        }
        let indent = lines[i].len() - trimmed.len();
        let info = trimmed.trim_start_matches('`').trim().to_string();
        let tested =
            lines[..i].iter().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim() == "<!-- tested -->");
        let start = i;
        let mut text = String::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            text.push_str(lines[i].get(indent..).unwrap_or_else(|| lines[i].trim_start()));
            text.push('\n');
            i += 1;
        }
        assert!(i < lines.len(), "a code block opened at line {} is never closed", start + 1);
        if info == "text" && previous_end.is_some() {
            let owner = blocks.last_mut().unwrap();
            if owner.tested {
                owner.output = Some(text.clone());
            }
        }
        blocks.push(Block { line: start + 1, info, text, tested, output: None });
        previous_end = Some(i);
        i += 1;
    }
    blocks
}

/// A directory whose `register`, `serve`, `runner-registry` and `cargo` run the
/// workspace's binaries.
fn shims(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/guide-HASH -> target/debug
    let built = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["register", "serve", "runner-registry"] {
        let binary = built.join(name);
        assert!(
            binary.is_file(),
            "{} is missing: `cargo test --workspace` builds it, or `cargo build -p runner-examples -p runner-registry --bins`",
            binary.display()
        );
        std::os::unix::fs::symlink(&binary, bin.join(name)).unwrap();
    }
    let cargo = bin.join("cargo");
    std::fs::write(&cargo, CARGO_SHIM).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// `cargo run [--release] (--bin NAME | -p runner-registry) [-- ARGS...]`, as the guide
/// writes it, runs the binary of that name on the PATH (the shims); nothing else is
/// allowed, so that a tested block never builds anything.
const CARGO_SHIM: &str = r#"#!/usr/bin/env bash
set -euo pipefail
if [ "${1:-}" != run ]; then
    echo "tests/guide.rs: a tested block may only \`cargo run\` the workspace's binaries, not: cargo $*" >&2
    exit 2
fi
shift
bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --release|-q|--quiet) shift ;;
        --bin|-p|--package) bin="$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "tests/guide.rs: unsupported \`cargo run\` argument: $1" >&2; exit 2 ;;
    esac
done
case "$bin" in
    register|serve|runner-registry) exec "$bin" "$@" ;;
    *) echo "tests/guide.rs: no binary \`$bin\` here" >&2; exit 2 ;;
esac
"#;

/// Runs one block with bash in `work`; returns its output (stdout and stderr).
fn run(block: &Block, bin: &Path, work: &Path, home: &Path, place: &str) -> String {
    let log = work.join(".guide-output");
    let out = File::create(&log).unwrap();
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!("set -euo pipefail\n{}", block.text))
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env("HOME", home)
        .env_remove("RUST_LOG");
    // Nothing of the caller's registry setup (RUNNER_REGISTRY, its token, organization,
    // cache) or cloud credentials reaches the guide's commands.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("RUNNER_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BLOCK_TIMEOUT {
            let _ = Command::new("kill").args(["-KILL", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!(
                "{place} ran past {BLOCK_TIMEOUT:?} (a block that serves forever must not be marked tested):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    assert!(status.success(), "{place} failed ({status}):\n{}\noutput:\n{output}", block.text);
    output
}

fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a whole (normalized) line matches a pattern in which `...` stands for anything.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let [first, middle @ .., last] = parts.as_slice() else { return pattern == line };
    if line.len() < first.len() + last.len() || !line.starts_with(first) || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The expected lines, in order, each matching a later line of the output.
fn check_output(expected: &str, output: &str, place: &str) {
    let actual: Vec<String> = output.lines().map(normalize).collect();
    let mut next = 0;
    for pattern in expected.lines().map(normalize).filter(|l| !l.is_empty()) {
        match actual[next..].iter().position(|line| line_matches(&pattern, line)) {
            Some(at) => next += at + 1,
            None => {
                panic!("{place}: no line matching `{pattern}` (after line {next} of the output, in order):\n{output}")
            }
        }
    }
}

#[test]
fn output_patterns() {
    assert!(line_matches("1 ready 1 520 iris ...", "1 ready 1 520 iris 2026-12-05T23:29:21Z"));
    assert!(line_matches("... prod - -> iris:3 by local", "2026-12-05T23:29:21Z prod - -> iris:3 by local"));
    assert!(line_matches("{\"a\":1,...,\"c\":3,...}", "{\"a\":1,\"b\":2,\"c\":3,\"d\":4}"));
    assert!(line_matches("...", "anything"));
    assert!(line_matches("iris", "iris"));
    assert!(!line_matches("iris", "iris iris:1 1 520 0.088"));
    assert!(!line_matches("a...a", "a"));
    assert!(!line_matches("1 ready ... iris", "1 ready 1 520 sum"));
    check_output("b\n...\nd\n", "a\nb\nc\nd\n", "test");
}

#[test]
fn tested_shell_blocks_run_and_print_what_the_guide_shows() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = shims(scratch.path());
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut ran = 0;
    let mut commands = String::new();
    for chapter in chapters() {
        let markdown = std::fs::read_to_string(&chapter).unwrap();
        let name = chapter.file_name().unwrap().to_string_lossy().into_owned();
        let tested: Vec<Block> = blocks(&markdown).into_iter().filter(|b| b.tested).collect();
        if tested.is_empty() {
            continue;
        }
        // One directory per chapter: its blocks build on each other, in order.
        let work = scratch.path().join(name.trim_end_matches(".md"));
        std::fs::create_dir_all(&work).unwrap();
        for block in &tested {
            let place = format!("docs/{name}:{}", block.line);
            assert_eq!(block.info, "sh", "{place}: only `sh` blocks can be marked tested");
            let output = run(block, &bin, &work, &home, &place);
            if let Some(expected) = &block.output {
                check_output(expected, &output, &place);
            }
            commands.push_str(&block.text);
            ran += 1;
        }
    }
    // The commands a newcomer copies first are among those run.
    for command in [
        "cargo run --release --bin register",
        "runner-registry repos",
        "runner-registry models",
        "runner-registry show",
        "runner-registry files",
        "runner-registry alias set",
        "runner-registry alias ls",
        "runner-registry alias history",
        "runner-registry alias rm",
        "runner-registry verify",
        "runner-registry gc",
        "runner-registry export",
    ] {
        assert!(commands.contains(command), "no tested block of the guide runs `{command}`");
    }
    assert!(ran >= 4, "{ran} tested blocks");
}

/// Markdown with fenced blocks and code spans blanked out (their text is not links).
fn prose(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line.to_string()));
        }
    }
    out
}

fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join("``")
}

/// Targets of inline links, `[text](target)`.
fn inline_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    line.match_indices("](")
        .filter_map(|(at, _)| line[at + 2..].split_once(')').map(|(target, _)| target.to_string()))
        .collect()
}

/// Link reference definitions: `[label]: target`, the label lowercased.
fn definitions(markdown: &str) -> Vec<(usize, String, String)> {
    prose(markdown)
        .into_iter()
        .filter_map(|(n, line)| {
            let rest = line.strip_prefix('[')?;
            let (label, target) = rest.split_once("]: ")?;
            Some((n, label.to_lowercase(), target.trim().to_string()))
        })
        .collect()
}

fn is_url(target: &str) -> bool {
    target.starts_with("https://") || target.starts_with("http://") || target.starts_with('#')
}

#[test]
fn links_resolve_on_github_and_in_rustdoc() {
    let root = root();
    let guide = root.join("examples/src/guide");
    let mut rustdoc: BTreeSet<String> = BTreeSet::new();
    for file in ["links.md", "torch-links.md"] {
        for (_, label, _) in definitions(&std::fs::read_to_string(guide.join(file)).unwrap()) {
            rustdoc.insert(label);
        }
    }
    let host = std::fs::read_to_string(root.join("examples/src/guide.rs")).unwrap();
    let mut problems = Vec::new();
    for chapter in chapters() {
        let name = chapter.file_name().unwrap().to_string_lossy().into_owned();
        if !host.contains(&format!("\"../../docs/{name}\"")) {
            problems
                .push(format!("docs/{name} is not included in examples/src/guide.rs (its examples would go untested)"));
        }
        let markdown = std::fs::read_to_string(&chapter).unwrap();
        let defined = definitions(&markdown);
        let labels: BTreeSet<&str> = defined.iter().map(|(_, label, _)| label.as_str()).collect();
        for (n, line) in prose(&markdown) {
            for target in inline_targets(&line) {
                if !is_url(&target) {
                    problems.push(format!(
                        "docs/{name}:{n}: `({target})` is an inline link to a file, which rustdoc would leave \
                         broken: write a reference link, defined for both (see docs/README.md)"
                    ));
                }
            }
            // Reference links `[text][label]` and `[`name`]` need a definition here, or
            // GitHub shows the brackets.
            let plain = line.replace("][", "\u{0}");
            for used in plain.split('\u{0}').skip(1).filter_map(|s| s.split_once(']').map(|(l, _)| l.to_lowercase())) {
                if !labels.contains(used.as_str()) {
                    problems.push(format!("docs/{name}:{n}: `[{used}]` has no definition in this file"));
                }
            }
            for (at, _) in line.match_indices("[`") {
                let Some((label, after)) = line[at + 1..].split_once("`]") else { continue };
                let label = format!("{label}`");
                if !after.starts_with(['(', '[', ':']) && !labels.contains(label.to_lowercase().as_str()) {
                    problems.push(format!("docs/{name}:{n}: `[{label}]` has no definition in this file"));
                }
            }
        }
        for (n, label, target) in &defined {
            if !is_url(target) {
                let path = target.split('#').next().unwrap();
                if !root.join("docs").join(path).exists() {
                    problems.push(format!("docs/{name}:{n}: [{label}] names `{target}`, which does not exist"));
                }
            }
            if !rustdoc.contains(label) {
                problems.push(format!(
                    "docs/{name}:{n}: [{label}] is not defined in examples/src/guide/links.md (or torch-links.md), \
                     so rustdoc would use the file path"
                ));
            }
        }
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (n, line) in prose(&readme) {
        for target in inline_targets(&line) {
            let path = target.split('#').next().unwrap();
            if !is_url(&target) && !root.join(path).exists() {
                problems.push(format!("README.md:{n}: `{target}` does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_stays_short_and_keeps_its_two_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.lines().count() < 200, "README.md has {} lines: move the rest into docs/", readme.lines().count());
    let commands: Vec<&str> = readme.lines().skip_while(|l| *l != "```sh").skip(1).take(2).collect();
    assert!(
        commands[0]
            .starts_with("cargo run --release --bin register && cargo run --release --bin serve -- iris:latest   #"),
        "{commands:?}"
    );
    assert!(commands[1].starts_with("scripts/test.sh   "), "{commands:?}");
}
