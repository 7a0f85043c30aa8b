//! The layout promised in docs/architecture.md, checked against the source:
//! the top-level modules under `src/` import only what the map's "may
//! import" column allows, those allowances form no cycle, no Rust string
//! holds a Lua script, and no non-test source file is over 600 lines.
//!
//! The import map is read from `use crate::…` paths and every other
//! `crate::…` path in non-test code (`#[cfg(test)] mod … { … }` blocks and
//! `tests.rs` files are left out), the same map `cargo modules` would draw
//! at the module level.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source files that are compiled outside tests.
fn non_test_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "tests.rs")
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The text without `//` comments and without `#[cfg(test)] mod x { … }`.
fn code_only(text: &str) -> String {
    let lines: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = lines.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let open = after.find('{');
        let semi = after.find(';');
        match (open, semi) {
            // `#[cfg(test)] mod tests;` or a test-only `use`: skip to the `;`.
            (_, Some(s)) if open.is_none_or(|o| s < o) => rest = &after[s + 1..],
            (Some(o), _) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[o..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = o + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => rest = "",
        }
    }
    out.push_str(rest);
    out
}

fn top_level_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root().join("src")).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Top-level modules named by `crate::` paths in `code`, including every
/// first segment of a `use crate::{a, b::c}` group.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Split the group at its own commas (depth 1), not nested ones.
            let mut depth = 1usize;
            let mut items = vec![String::new()];
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        items.push(String::new());
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                items.last_mut().unwrap().push(c);
            }
            for item in items {
                let first = ident_at(item.trim());
                if !first.is_empty() {
                    found.insert(first.to_owned());
                }
            }
        } else {
            found.insert(ident_at(after).to_owned());
        }
        rest = after;
    }
    found
}

/// The map in docs/architecture.md: `| `module` | owns | `a`, `b` |` rows
/// of the table under "## Module map".
fn documented_map() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let section = doc
        .split("## Module map")
        .nth(1)
        .expect("docs/architecture.md has a \"## Module map\" section");
    let mut map = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(name) = cells
            .get(1)
            .and_then(|c| c.strip_prefix('`'))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        let allowed = cells
            .get(cells.len().saturating_sub(2))
            .unwrap()
            .split(',')
            .map(|a| a.trim().trim_matches('`').to_owned())
            .filter(|a| !a.is_empty() && a != "nothing" && a != "—")
            .collect();
        map.insert(name.to_owned(), allowed);
    }
    map
}

fn actual_map() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut map: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (path, text) in non_test_sources() {
        let Some(top) = top_level_of(&path) else {
            continue;
        };
        let entry = map.entry(top.clone()).or_default();
        for target in imports(&code_only(&text)) {
            if target != top {
                let rel = path.strip_prefix(root()).unwrap().display().to_string();
                entry.entry(target).or_default().insert(rel);
            }
        }
    }
    map
}

fn cycle_in(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            return Some(path[i..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_top_level_module_imports_only_what_the_architecture_map_allows() {
    let documented = documented_map();
    let actual = actual_map();
    // The map as docs/architecture.md quotes it (`-- --nocapture` shows it).
    for (module, targets) in &actual {
        let names: Vec<&str> = targets.keys().map(String::as_str).collect();
        println!("{module:<10} -> {}", names.join(", "));
    }
    let modules: BTreeSet<&String> = actual.keys().collect();
    let listed: BTreeSet<&String> = documented.keys().collect();
    assert_eq!(
        modules, listed,
        "docs/architecture.md's module map lists exactly the top-level modules under src/"
    );
    let mut breaches = Vec::new();
    for (module, targets) in &actual {
        for (target, files) in targets {
            if !documented[module].contains(target) {
                breaches.push(format!("{module} -> {target} ({files:?})"));
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "imports the map does not allow:\n{}",
        breaches.join("\n")
    );
}

#[test]
fn the_architecture_map_has_no_cycle() {
    let documented = documented_map();
    assert!(documented.len() >= 10, "the map lists the modules");
    assert_eq!(cycle_in(&documented), None);
    // The checker itself finds a cycle when there is one.
    let mut looped = documented.clone();
    looped.get_mut("domain").unwrap().insert("app".to_owned());
    assert!(cycle_in(&looped).is_some());
}

#[test]
fn the_import_reader_sees_grouped_nested_and_inline_paths_but_not_tests_or_comments() {
    let code = code_only(
        "use crate::{bus::{Store, names}, config::Settings};\n\
         fn f() { crate::clock::now_ms(); } // crate::app::x\n\
         #[cfg(test)]\nmod tests {\n  use crate::admin::x;\n  fn g() { if true { } }\n}\n\
         use crate::domain::Zone;\n",
    );
    let found: Vec<String> = imports(&code).into_iter().collect();
    assert_eq!(found, ["bus", "clock", "config", "domain"]);
}

#[test]
fn no_source_file_outside_tests_is_over_600_lines() {
    let long: Vec<String> = non_test_sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(p, text)| format!("{} ({} lines)", p.display(), text.lines().count()))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn no_lua_script_sits_in_a_rust_string() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let with_lua: Vec<String> = files
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.contains("redis.call(") || text.contains("redis.pcall(")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(with_lua.is_empty(), "Lua inside Rust: {with_lua:?}");
    let mut scripts = Vec::new();
    collect_lua(&root().join("src/bus/scripts"), &mut scripts);
    assert!(
        !scripts.is_empty(),
        "the scripts live in src/bus/scripts/*.lua"
    );
}

fn collect_lua(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "lua") {
            out.push(path);
        }
    }
}
