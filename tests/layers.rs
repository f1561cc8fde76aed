//! The layering rules of ARCHITECTURE.md, checked on the sources: no module of any crate
//! in the workspace imports a module that imports it back; runner-core's modules only
//! reach down its layers (floor < registry < model < engine < server < cli), and
//! runner-registry's down its own (floor < storage < operations < api < pages < server
//! < cli).
//!
//! A module is a source file (`a/mod.rs` is `a`). An edge is a `use` or an inline path
//! (`crate::x::y`, `super::z`) in non-test code; `pub use` re-exports and `mod`
//! declarations are not edges, and a path through a re-export counts as a path to the
//! module that defines the item.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// runner-core's top-level modules by layer, lowest first. A module may use modules of
/// its own layer or below, never above.
const CORE_LAYERS: &[(&str, &[&str])] = &[
    ("floor", &["error", "names", "manifest", "artifacts", "v2"]),
    ("registry", &["registry"]),
    ("model", &["api", "runner", "backend", "load", "register", "catalog", "private"]),
    ("engine", &["engine"]),
    ("server", &["serve"]),
    ("cli", &["cli"]),
];

/// runner-registry's top-level modules by layer, lowest first.
const REGISTRY_LAYERS: &[(&str, &[&str])] = &[
    ("floor", &["tokens", "audit", "blocking"]),
    ("storage", &["storage"]),
    ("operations", &["verify", "export", "rollout"]),
    ("api", &["api"]),
    ("pages", &["pages"]),
    ("server", &["server"]),
    ("cli", &["cli"]),
];

const CRATES: &[&str] = &[
    "runner-core/src",
    "runner-registry/src",
    "runner-torch/src",
    "runner-onnx/src",
    "runner-macros/src",
    "examples/src",
];

struct Module {
    /// Declarations and re-exports only (`mod a; pub use a::B;`): a facade's re-exports
    /// are not edges; any other module's are.
    facade: bool,
    /// What it uses: paths from the crate root, as written (before re-exports are followed).
    uses: Vec<Vec<String>>,
    /// Its re-exports: the name seen from outside, and the path it points to.
    reexports: BTreeMap<String, Vec<String>>,
    /// Inline paths relative to it (`child::f()`), edges when `child` is a module.
    children: Vec<Vec<String>>,
}

fn module_name(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Binaries are crates of their own.
            if path.file_name().unwrap() != "bin" {
                files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            // A binary's main.rs beside a lib.rs is a crate of its own too.
            if path.file_name().unwrap() == "main.rs" && dir.join("lib.rs").exists() {
                continue;
            }
            out.push(path);
        }
    }
}

/// Drops comments, string literals and `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut in_string = false;
        let mut previous = ' ';
        for c in line.chars() {
            if c == '"' && previous != '\\' {
                in_string = !in_string;
            } else if !in_string {
                out.push(c);
            }
            previous = if previous == '\\' { ' ' } else { c };
        }
        out.push('\n');
    }
    out
}

/// Expands a use tree (`a::{b, c::d}`) into paths.
fn expand_tree(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> =
            tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap()];
        let mut path = prefix.to_vec();
        path.extend(head);
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_tree(&inner[start..i], &path, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_tree(&inner[start..], &path, out);
    } else {
        let tree = tree.split(" as ").next().unwrap();
        let mut path = prefix.to_vec();
        path.extend(tree.split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        out.push(path);
    }
}

/// Makes `path` (as written in module `module`) start from the crate root. A path into
/// another crate comes out as a path under `module` that names no module, so it resolves
/// to `module` itself and is no edge.
fn absolute(module: &str, path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = if module.is_empty() { vec![] } else { module.split("::").map(String::from).collect() };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        // `use a::b` in module `m`: a child module `m::a`, or another crate.
        _ => {}
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Whether `code` only declares modules and re-exports.
fn is_facade(code: &str) -> bool {
    code.split(';')
        .map(|s| {
            let mut s = s.trim();
            while s.starts_with("#[") || s.starts_with("#![") {
                s = s[s.find(']').unwrap() + 1..].trim_start();
            }
            s
        })
        .all(|s| {
            s.is_empty()
                || ["mod ", "pub mod ", "pub use ", "pub(crate) mod ", "pub(crate) use "]
                    .iter()
                    .any(|p| s.starts_with(p))
        })
}

fn parse(module: &str, text: &str) -> Module {
    let code = code_of(text);
    let facade = is_facade(&code);
    let mut uses = Vec::new();
    let mut children = Vec::new();
    let mut reexports = BTreeMap::new();
    let mut rest = code.as_str();
    // `use` statements.
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let statement_start = before.ends_with('\n')
            || before.is_empty()
            || before.ends_with("pub ")
            || before.ends_with("pub(crate) ")
            || before.ends_with("pub(super) ");
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        if statement_start {
            let public = before.ends_with("pub ") || before.ends_with("pub(crate) ");
            let mut paths = Vec::new();
            expand_tree(&rest[at + 4..end], &[], &mut paths);
            for path in paths {
                let Some(full) = absolute(module, &path) else { continue };
                if public {
                    if !facade {
                        uses.push(full.clone());
                    }
                    let name = path.last().unwrap().clone();
                    let name = if name == "self" { path[path.len() - 2].clone() } else { name };
                    reexports.insert(name, full);
                } else {
                    uses.push(full);
                }
            }
            rest = &rest[end..];
        } else {
            rest = &rest[at + 4..];
        }
    }
    // Inline paths: `crate::a::b`, `super::c`, and `child::d` (kept when `child` turns
    // out to be a module under this one).
    let statements_removed: String = code
        .split(';')
        .filter(|s| {
            let s = s.trim_start();
            !s.starts_with("use ") && !s.starts_with("pub use ") && !s.starts_with("pub(crate) use ")
        })
        .collect::<Vec<_>>()
        .join(";");
    for anchor in ["crate::", "super::"] {
        let mut rest = statements_removed.as_str();
        while let Some(at) = rest.find(anchor) {
            let preceded =
                rest[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '$');
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            if !preceded {
                let path: Vec<String> = tail[..end].split("::").filter(|s| !s.is_empty()).map(String::from).collect();
                if let Some(full) = absolute(module, &path) {
                    uses.push(full);
                }
            }
            rest = &rest[at + end.max(1)..];
        }
    }
    let mut rest = statements_removed.as_str();
    while let Some(at) = rest.find("::") {
        let start = rest[..at].rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        let first = &rest[start..at];
        let preceded = rest[..start].ends_with(':');
        if !preceded && !first.is_empty() && !["crate", "super", "self", "Self"].contains(&first) {
            let tail = &rest[start..];
            let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            let path: Vec<String> = tail[..end].split("::").filter(|s| !s.is_empty()).map(String::from).collect();
            let mut full: Vec<String> =
                if module.is_empty() { vec![] } else { module.split("::").map(String::from).collect() };
            full.extend(path);
            children.push(full);
        }
        rest = &rest[at + 2..];
    }
    Module { facade, uses, reexports, children }
}

/// The module that defines what `path` names, following re-exports.
fn resolve(
    modules: &BTreeMap<String, Module>,
    aliases: &BTreeMap<String, String>,
    path: &[String],
    depth: usize,
) -> String {
    let path: Vec<String> = path.iter().map(|s| aliases.get(s).cloned().unwrap_or_else(|| s.clone())).collect();
    // The longest prefix that is a module.
    let mut len = path.len();
    while len > 0 && !modules.contains_key(&path[..len].join("::")) {
        len -= 1;
    }
    let module = path[..len].join("::");
    if depth < 8 && len < path.len() {
        if let Some(target) = modules[&module].reexports.get(&path[len]) {
            let mut next = target.clone();
            next.extend(path[len + 1..].iter().cloned());
            return resolve(modules, aliases, &next, depth + 1);
        }
    }
    module
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(src, &mut all);
    let mut modules = BTreeMap::new();
    let mut aliases = BTreeMap::new();
    for file in &all {
        let text = std::fs::read_to_string(file).unwrap();
        let name = module_name(src, file);
        // `#[path = "x.rs"] pub mod alias;`
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(target) = line.trim().strip_prefix("#[path = \"").and_then(|l| l.strip_suffix(".rs\"]")) {
                if let Some(next) = lines.peek() {
                    let alias = next.trim().trim_end_matches(';').rsplit(' ').next().unwrap().to_string();
                    aliases.insert(alias, target.to_string());
                }
            }
        }
        modules.insert(name.clone(), parse(&name, &text));
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, module) in &modules {
        let targets = edges.entry(name.clone()).or_default();
        let child = |path: &Vec<String>| {
            let depth = if name.is_empty() { 0 } else { name.split("::").count() };
            modules.contains_key(&path[..depth + 1].join("::"))
        };
        for path in module.uses.iter().chain(module.children.iter().filter(|p| child(p))) {
            let target = resolve(&modules, &aliases, path, 0);
            if &target != name {
                targets.insert(target);
            }
        }
    }
    edges
}

/// A cycle through `start`, if any.
fn cycle_from(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        edges: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(edges, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(edges, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut cycles = Vec::new();
    for krate in CRATES {
        let edges = graph(&root().join(krate));
        for module in edges.keys() {
            if let Some(cycle) = cycle_from(&edges, module) {
                cycles.push(format!(
                    "{krate}: {}",
                    cycle.iter().map(|m| if m.is_empty() { "(root)" } else { m }).collect::<Vec<_>>().join(" -> ")
                ));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// Every edge of the crate at `src` that reaches up `layers`, or leaves them.
fn layer_violations(src: &str, layers: &[(&str, &[&str])]) -> Vec<String> {
    let layer_of = |module: &str| {
        let top = module.split("::").next().unwrap();
        layers.iter().position(|(_, modules)| modules.contains(&top))
    };
    let edges = graph(&root().join(src));
    let mut wrong = Vec::new();
    for (from, targets) in &edges {
        if from.is_empty() {
            continue; // lib.rs: declarations and re-exports only
        }
        let Some(from_layer) = layer_of(from) else {
            wrong.push(format!("{src}: `{from}` is in no layer: add it to the layers here and in ARCHITECTURE.md"));
            continue;
        };
        for to in targets {
            match layer_of(to) {
                Some(to_layer) if to_layer <= from_layer => {}
                Some(to_layer) => wrong.push(format!(
                    "{src}: `{from}` ({}) uses `{to}` ({}), a higher layer",
                    layers[from_layer].0, layers[to_layer].0
                )),
                None if to.is_empty() => {
                    wrong.push(format!("{src}: `{from}` uses an item defined in lib.rs: move it into a module"))
                }
                None => wrong.push(format!("{src}: `{to}` is in no layer")),
            }
        }
    }
    wrong
}

#[test]
fn runner_core_uses_only_its_own_layer_and_below() {
    let wrong = layer_violations("runner-core/src", CORE_LAYERS);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn runner_registry_uses_only_its_own_layer_and_below() {
    let wrong = layer_violations("runner-registry/src", REGISTRY_LAYERS);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_and_a_reexport() {
    let a = parse("a", "use crate::b::Thing;\nfn f() { crate::c::g(); }\n");
    let b = parse("b", "pub use crate::c::Thing;\n");
    assert!(b.facade);
    assert!(!parse("e", "pub use crate::c::Thing;\nfn f() {}\n").facade);
    let c = parse("c", "use super::{a::X, d};\n#[cfg(test)]\nmod tests { use crate::b; }\n");
    assert_eq!(a.uses, vec![vec!["b".to_string(), "Thing".into()], vec!["c".into(), "g".into()]]);
    assert!(b.uses.is_empty());
    assert_eq!(b.reexports["Thing"], vec!["c".to_string(), "Thing".into()]);
    assert_eq!(c.uses, vec![vec!["a".to_string(), "X".into()], vec!["d".into()]]);
    let modules: BTreeMap<String, Module> = [
        ("".to_string(), parse("", "")),
        ("a".into(), a),
        ("b".into(), b),
        ("c".into(), c),
        ("d".into(), parse("d", "")),
    ]
    .into_iter()
    .collect();
    assert_eq!(resolve(&modules, &BTreeMap::new(), &["b".into(), "Thing".into()], 0), "c", "through the re-export");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, module) in &modules {
        for path in &module.uses {
            edges.entry(name.clone()).or_default().insert(resolve(&modules, &BTreeMap::new(), path, 0));
        }
    }
    assert_eq!(cycle_from(&edges, "a"), Some(vec!["a".to_string(), "c".into(), "a".into()]));
    assert_eq!(cycle_from(&edges, "d"), None);
}

/// The normal (non-dev) dependencies of `package` with `args`, by name.
fn dependencies(package: &str, args: &[&str]) -> BTreeSet<String> {
    let output = std::process::Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["tree", "--offline", "--locked", "-e", "normal", "--prefix", "none", "-p", package])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().filter_map(|l| l.split(' ').next()).map(String::from).collect()
}

/// What the floor must not compile: a web server, an HTTP client, progress bars, a CLI
/// parser, an async runtime.
const ABOVE_THE_FLOOR: &[&str] =
    &["axum", "hyper", "tower", "reqwest", "indicatif", "clap", "tokio", "prometheus-client"];

#[test]
fn the_floor_compiles_no_server_client_progress_bars_or_cli() {
    for (package, args) in [("runner-core", &[][..]), ("runner-torch", &[][..]), ("runner-onnx", &[][..])] {
        let deps = dependencies(package, args);
        let above: Vec<&&str> = ABOVE_THE_FLOOR.iter().filter(|d| deps.contains(**d)).collect();
        assert!(above.is_empty(), "{package} depends on {above:?}");
    }
    // The features do bring them: the check above can fail.
    let served = dependencies("runner-core", &["--features", "cli"]);
    assert!(ABOVE_THE_FLOOR.iter().all(|d| served.contains(*d)), "{served:?}");
    // The server alone brings no CLI parser: the connection flags (`args`) do.
    assert!(!dependencies("runner-core", &["--features", "serve"]).contains("clap"));
    assert!(dependencies("runner-core", &["--features", "args"]).contains("clap"));
}
