//! The house has no circle: the `crate::` / `super::` module graph of `src/` (one node per
//! file, test modules left out) has no cycle. `scripts/module-cycles` prints the same graph's
//! cycles when this fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let Some(relative) = path.strip_prefix(src).ok().and_then(|p| p.to_str()) else { continue };
            let Some(stem) = relative.strip_suffix(".rs") else { continue };
            let mut parts: Vec<&str> = stem.split('/').collect();
            if parts.last() == Some(&"mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            found.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
        }
    }
    found
}

/// The source without `#[cfg(test)] mod tests { ... }` (to the end of the file) and comments.
fn code_of(source: &str) -> String {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    source.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every path written after `prefix` (`crate::a::b`, and each item of `crate::{a, b::c}`).
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let is_path_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':';
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item: String = item.trim().chars().take_while(|c| is_path_char(*c)).collect();
                if !item.is_empty() {
                    paths.push(item.trim_end_matches(':').to_string());
                }
            }
        } else {
            let path: String = rest.chars().take_while(|c| is_path_char(*c)).collect();
            if !path.is_empty() {
                paths.push(path.trim_end_matches(':').to_string());
            }
        }
    }
    paths
}

fn resolve(modules: &BTreeMap<String, String>, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").collect();
    while !parts.is_empty() {
        let candidate = parts.join("::");
        if modules.contains_key(&candidate) {
            return Some(candidate);
        }
        parts.pop();
    }
    None
}

fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, source) in modules {
        let code = code_of(source);
        let mut targets = BTreeSet::new();
        for path in paths_after(&code, "crate::") {
            targets.extend(resolve(modules, &path));
        }
        // `super::` from `a/b.rs` (module a::b) or `a/b/mod.rs` (module a::b) names a::...
        let parent: Vec<&str> = {
            let mut parts: Vec<&str> = module.split("::").collect();
            parts.pop();
            parts
        };
        for path in paths_after(&code, "super::") {
            let full = if parent.is_empty() { path } else { format!("{}::{path}", parent.join("::")) };
            targets.extend(resolve(modules, &full));
        }
        let targets = targets
            .into_iter()
            .filter(|target| {
                target != module
                    && !target.starts_with(&format!("{module}::"))
                    && !module.starts_with(&format!("{target}::"))
            })
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

/// A cycle, if any: depth-first search with colours.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let graph = edges(&modules);
    assert!(graph["app"].contains("services"), "the graph is read: app uses the services");
    assert!(graph["workers::coordinator"].contains("writer"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("the module graph has a cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["c".to_string()].into());
    graph.insert("c".into(), ["a".to_string()].into());
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    assert_eq!(paths_after("use crate::{a::b, c};\nlet x = crate::d::e(1);", "crate::"), vec!["a::b", "c", "d::e"]);
}
