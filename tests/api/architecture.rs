//! The shape ARCHITECTURE.md promises, checked on the source: inside every crate, the
//! top-level modules import each other without a cycle (a module that needs another's
//! item depends on it; the other never depends back). Read from the files, not from
//! rustc: every `crate::name` path (also inside `use crate::{a, b}`) outside comments
//! is an edge from the file's top-level module to `name`, when `name` is a module.
//! Also: `testkit` is a dev-only crate (no shipped crate depends on it, it depends on no
//! Mailgate crate), and a file of this suite imports no other test file, only `support`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module name → the modules it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names a line refers to as `crate::name` or `crate::{name, …}`.
fn crate_refs(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // e.g. `$crate::` in a macro, or `other_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        } else {
            names.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    names
}

/// The import graph of one crate's top-level modules.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |file: &Path| -> Option<String> {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
        let name = first.trim_end_matches(".rs").to_owned();
        (name != "lib" && name != "main" && name != "bin").then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: Graph = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let Some(from) = module_of(file) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
            for to in crate_refs(line) {
                if to != from && modules.contains(&to) {
                    graph.get_mut(&from).unwrap().insert(to);
                }
            }
        }
    }
    graph
}

/// A cycle in the graph, if there is one (depth-first search).
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in &graph[node] {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_checker_finds_a_cycle_and_reads_grouped_imports() {
    assert_eq!(
        crate_refs("use crate::{deliveries, mail_settings::X};  let x = crate::values::int(1);"),
        vec!["deliveries", "mail_settings", "values"]
    );
    assert!(crate_refs("$crate::coded_enum! { }").is_empty());
    let mut g = Graph::new();
    g.insert("a".into(), BTreeSet::from(["b".into()]));
    g.insert("b".into(), BTreeSet::from(["c".into()]));
    g.insert("c".into(), BTreeSet::from(["a".into()]));
    assert_eq!(cycle(&g), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    g.get_mut("c").unwrap().clear();
    assert_eq!(cycle(&g), None);
}

#[test]
fn no_crate_has_a_module_import_cycle() {
    let root = workspace_root();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.push(root.join("migrations/src"));
    crates.sort();
    assert!(crates.len() >= 8, "{crates:?}");
    for src in crates {
        let graph = graph(&src);
        if let Some(found) = cycle(&graph) {
            panic!(
                "{}: modules import each other in a cycle: {}",
                src.display(),
                found.join(" → ")
            );
        }
    }
}

/// The crates that are never shipped: benchmarks and the test fixtures.
const DEV_ONLY: [&str; 3] = ["bench", "mailbench", "testkit"];

/// Every member's manifest: (package name, text).
fn manifests() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.push(root.join("migrations"));
    dirs.sort();
    dirs.iter()
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("{}: no package name", dir.display()))
                .to_owned();
            (name, text)
        })
        .collect()
}

/// The dependency names of a manifest's `[dependencies]`-like tables whose header ends
/// with `table` (`dependencies` also matches `[target.'cfg(..)'.dependencies]`, not
/// `[dev-dependencies]`).
fn dependencies(manifest: &str, table: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']');
            inside = header == table || header.ends_with(&format!(".{table}"));
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            names.push(name);
        }
    }
    names
}

#[test]
fn the_manifest_reader_finds_normal_and_dev_dependencies() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\ndomain.workspace = true\nserde = \"1\"\n\
                    [target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n[dev-dependencies]\ntestkit.workspace = true\n";
    assert_eq!(dependencies(manifest, "dependencies"), ["domain", "serde", "libc"]);
    assert_eq!(dependencies(manifest, "dev-dependencies"), ["testkit"]);
}

#[test]
fn testkit_is_a_dev_only_crate_that_knows_no_mailgate_crate() {
    let manifests = manifests();
    let members: Vec<&str> = manifests.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        members.contains(&"testkit") && members.contains(&"persistence"),
        "{members:?}"
    );
    for (name, manifest) in &manifests {
        if DEV_ONLY.contains(&name.as_str()) {
            continue;
        }
        for table in ["dependencies", "build-dependencies"] {
            assert!(
                !dependencies(manifest, table).iter().any(|d| d == "testkit"),
                "{name} is shipped: testkit may only be one of its [dev-dependencies]"
            );
        }
    }
    let testkit = &manifests.iter().find(|(name, _)| name == "testkit").unwrap().1;
    for table in ["dependencies", "build-dependencies", "dev-dependencies"] {
        for dependency in dependencies(testkit, table) {
            assert!(
                !members.contains(&dependency.as_str()),
                "testkit depends on {dependency}: the crates whose tests use it would get a second copy"
            );
        }
    }
}

#[test]
fn a_test_file_imports_no_other_test_file() {
    let suite = workspace_root().join("tests/api");
    let mut files = Vec::new();
    rust_files(&suite, &mut files);
    let test_files: BTreeSet<String> = files
        .iter()
        .filter(|f| f.parent() == Some(suite.as_path()))
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|name| name != "main" && name != "support")
        .collect();
    assert!(test_files.len() >= 20, "{test_files:?}");
    // This file quotes such paths as the checker's own test data.
    for file in files.iter().filter(|f| !f.ends_with("architecture.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
            for name in crate_refs(line) {
                assert!(
                    !test_files.contains(&name),
                    "{} imports the test file {name}.rs: shared fixtures go to support/ or testkit",
                    file.display()
                );
            }
        }
    }
}
