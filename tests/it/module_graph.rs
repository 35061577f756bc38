//! The top-level modules of `src/` form no cycle: a call reads top-down (transport → service →
//! domain → config), and a module that reached back up would make every layer depend on every
//! other. This reads the `use crate::…` statements of every source file, so the rule holds
//! without anyone having to remember it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/quota/memory.rs` → `quota`), or `None` for the
/// crate roots, which assemble everything and may name any module.
fn owner(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        name => Some(name.trim_end_matches(".rs").to_owned()),
    }
}

/// The top-level modules named by the `use crate::…;` statements of `text`, including grouped
/// ones (`use crate::{a::X, b::Y};`) and statements spread over several lines.
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use crate::") {
        let before = &rest[..at];
        let statement_start = before
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || c == ';' || c == '{' || c == '}' || c == ')');
        let after = &rest[at + "use crate::".len()..];
        let end = after.find(';').unwrap_or(after.len());
        if statement_start {
            let tree = &after[..end];
            if let Some(group) = tree.strip_prefix('{') {
                // Depth-1 items of the group name top-level modules.
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            push_head(&item, &mut used);
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                push_head(&item, &mut used);
            } else {
                push_head(tree, &mut used);
            }
        }
        rest = &after[end..];
    }
    used
}

fn push_head(path: &str, used: &mut BTreeSet<String>) {
    let head: String = path
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !head.is_empty() && head != "self" {
        used.insert(head);
    }
}

/// A cycle in `graph`, as the list of modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

fn graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = owner(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source files are UTF-8");
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(used_modules(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    assert!(
        graph.len() > 5,
        "expected the crate's modules, read {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the top-level modules of src/ form a cycle: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_parser_sees_grouped_and_multi_line_uses() {
    let text = "use crate::a::X;\npub(crate) use crate::{b::Y, c::{D, E}};\nuse crate::d::{\n    F,\n};\n// use crate::commented::Out;\nlet s = \"x\"; use crate::e;";
    let used: Vec<_> = used_modules(text).into_iter().collect();
    assert_eq!(used, ["a", "b", "c", "d", "e"]);
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_only_then() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
