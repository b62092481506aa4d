//! The crate's top-level modules form no cycle: no module imports one that imports it back,
//! directly or through others. Read from the sources (`crate::NAME` paths), so a new cycle
//! fails here with the path it takes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `path` (or `path` itself).
fn sources(path: &Path, out: &mut Vec<String>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read src").flatten() {
            sources(&entry.path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(std::fs::read_to_string(path).expect("read source"));
    }
}

/// Module → the other top-level modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("read src").flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if ["lib", "bin", "layering_tests"].contains(&name.as_str()) {
            continue;
        }
        let mut texts = Vec::new();
        sources(&path, &mut texts);
        modules.insert(name, texts);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, texts)| {
            let deps = texts
                .iter()
                .flat_map(|t| t.match_indices("crate::").map(move |(i, _)| &t[i + 7..]))
                .map(|rest| rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
                .filter(|d| d != name && names.contains(d))
                .collect();
            (name.clone(), deps)
        })
        .collect()
}

/// A path from `from` back to `to`, if one exists.
fn path_to(
    g: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in &g[from] {
        if next == to {
            return Some(vec![next.clone()]);
        }
        if seen.insert(next.clone()) {
            if let Some(mut rest) = path_to(g, next, to, seen) {
                rest.insert(0, next.clone());
                return Some(rest);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    assert!(g.contains_key("supervisor") && g["supervisor"].contains("front"), "the scan found nothing: {g:?}");
    for name in g.keys() {
        if let Some(cycle) = path_to(&g, name, name, &mut BTreeSet::new()) {
            panic!("module cycle: {name} -> {}", cycle.join(" -> "));
        }
    }
}
