//! The module graph of `src/`, read from the code's own `use` lines and paths: imports run only
//! downward through the layers, and no files import each other in a loop.
//!
//! The layers, top to bottom: the command line; the gateway (which runs beside the service,
//! not in it); start-up; the HTTP edge (router, handlers,
//! `error.rs`); the domain (mint, revocation, the audit trail, identity, policy, telemetry,
//! the shared state); the store; the base the store keeps and the domain reads (the model,
//! configuration, keys, secrets); and the token schema with its verifier, which build without
//! the server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each layer's files, by path prefix under `src/`, top first.
const LAYERS: &[(&str, &[&str])] = &[
    ("cli", &["main.rs", "cli/"]),
    ("gateway", &["gateway/"]),
    ("startup", &["server/startup.rs"]),
    ("edge", &["server/app.rs", "server/api/", "server/error.rs"]),
    (
        "domain",
        &[
            "server/mint/",
            "server/approvals/",
            "server/revoke.rs",
            "server/caller.rs",
            "server/admin_tokens.rs",
            "server/state.rs",
            "server/audit.rs",
            "server/audit_witness.rs",
            "server/telemetry/",
            "server/dev.rs",
            "server/idp.rs",
            "server/idp_error.rs",
            "server/policy.rs",
            "server/limits.rs",
            "server/streams.rs",
        ],
    ),
    ("store", &["server/store/"]),
    (
        "base",
        &[
            "server/model/",
            "server/config/",
            "server/secrets.rs",
            "server/keys.rs",
            "server/audit_seal.rs",
            "server/mod.rs",
        ],
    ),
    ("token", &["token/", "verifier/", "clock.rs", "lib.rs"]),
];

struct Source {
    /// Module path, e.g. `["server", "api", "admin"]` for `server/api/admin/mod.rs`.
    module: Vec<String>,
    text: String,
}

fn sources() -> BTreeMap<String, Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            // Unit tests (`*_tests.rs`, `tests.rs`) may reach anything of their module.
            if !rel.ends_with(".rs") || rel.ends_with("tests.rs") {
                continue;
            }
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            found.insert(rel, Source { module, text });
        }
    }
    found
}

/// The code without comments and without its `#[cfg(test)] mod tests` block.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names that starts at `crate`, `super` or `self`, or at one of the
/// module's own children, with `use a::{b, c::d}` groups spread out.
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        if !starts_word || !(bytes[i].is_ascii_lowercase() || bytes[i] == '_') {
            i += 1;
            continue;
        }
        let preceded_by_path = i >= 2 && bytes[i - 1] == ':' && bytes[i - 2] == ':';
        let (segments, end) = read_path(&bytes, i);
        i = end.max(i + 1);
        let first = segments.first().map(String::as_str).unwrap_or_default();
        let rooted = matches!(first, "crate" | "super" | "self") || children.contains(first);
        if preceded_by_path || !rooted || segments.len() < 2 {
            continue;
        }
        found.push(segments);
    }
    found
}

/// Reads `a::b::{c, d::e}` from `at`; returns each whole path (a group yields one a member).
fn read_path(chars: &[char], at: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    let mut i = at;
    loop {
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if start == i {
            break;
        }
        segments.push(chars[start..i].iter().collect::<String>());
        if i + 1 < chars.len() && chars[i] == ':' && chars[i + 1] == ':' {
            i += 2;
            if i < chars.len() && chars[i] == '{' {
                // A group: the deepest common prefix is what is imported from.
                let close = matching_brace(chars, i);
                let inner: String = chars[i + 1..close].iter().collect();
                let first_member = inner
                    .split([',', '{', ':'])
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .unwrap_or_default()
                    .to_owned();
                segments.push(first_member);
                return (segments, close + 1);
            }
            if i < chars.len() && chars[i] == '*' {
                segments.push("*".to_owned());
                return (segments, i + 1);
            }
            continue;
        }
        break;
    }
    (segments, i)
}

fn matching_brace(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    chars.len() - 1
}

/// file -> the files it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let by_module: BTreeMap<Vec<String>, String> = sources
        .iter()
        .map(|(rel, source)| (source.module.clone(), rel.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (rel, source) in &sources {
        let module = &source.module;
        // A file `x.rs` names its children `x::child` too.
        let children: BTreeSet<String> = by_module
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m[module.len()].clone())
            .collect();
        let mut targets = BTreeSet::new();
        for path in paths(&code(&source.text), &children) {
            let mut base: Vec<String> = match path[0].as_str() {
                "crate" => Vec::new(),
                "self" => module.clone(),
                "super" => module[..module.len().saturating_sub(1)].to_vec(),
                _ => module.clone(),
            };
            let mut rest = &path[..];
            if matches!(path[0].as_str(), "crate" | "self" | "super") {
                rest = &path[1..];
            }
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            // The longest prefix that is a file of ours (a glob imports from the module).
            let target = (1..=base.len())
                .rev()
                .find_map(|n| by_module.get(&base[..n]))
                .or_else(|| by_module.get(&Vec::new()));
            if let Some(target) = target {
                if target != rel && !target.ends_with("lib.rs") {
                    targets.insert(target.clone());
                }
            }
        }
        edges.insert(rel.clone(), targets);
    }
    edges
}

fn layer_of(file: &str) -> usize {
    LAYERS
        .iter()
        .position(|(_, prefixes)| prefixes.iter().any(|p| file.starts_with(p)))
        .unwrap_or_else(|| panic!("{file} is in no layer: add it to LAYERS in tests/api/layers.rs"))
}

/// Strongly connected groups of more than one file (Tarjan).
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, v: &'a str) {
        let n = walk.index.len();
        walk.index.insert(v, n);
        walk.low.insert(v, n);
        walk.stack.push(v);
        walk.on_stack.insert(v);
        for w in walk.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !walk.index.contains_key(w) {
                visit(walk, w);
                let low = walk.low[v].min(walk.low[w]);
                walk.low.insert(v, low);
            } else if walk.on_stack.contains(w) {
                let low = walk.low[v].min(walk.index[w]);
                walk.low.insert(v, low);
            }
        }
        if walk.low[v] == walk.index[v] {
            let mut group = BTreeSet::new();
            while let Some(w) = walk.stack.pop() {
                walk.on_stack.remove(w);
                group.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                walk.found.push(group);
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            visit(&mut walk, v);
        }
    }
    walk.found
}

#[test]
fn imports_run_only_down_the_layers() {
    let edges = graph();
    let mut upward = Vec::new();
    for (file, targets) in &edges {
        for target in targets {
            if layer_of(target) < layer_of(file) {
                upward.push(format!(
                    "{file} ({}) imports {target} ({})",
                    LAYERS[layer_of(file)].0,
                    LAYERS[layer_of(target)].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports running back up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_loop() {
    let edges = graph();
    // A folder's `mod.rs` only declares its parts and hands their names on: a part that
    // imported it back would close a loop, so parts import each other instead.
    let found: Vec<String> = loops(&edges)
        .into_iter()
        .map(|group| group.into_iter().collect::<Vec<_>>().join(" -> "))
        .collect();
    assert!(found.is_empty(), "import loops:\n{}", found.join("\n"));
}

#[test]
fn the_graph_reader_sees_the_imports_it_must() {
    // The reader is what the two tests above stand on: it must find a `use super::…` group,
    // a `crate::…` path in code, and a child module named from its parent.
    let edges = graph();
    let has = |from: &str, to: &str| edges.get(from).is_some_and(|t| t.contains(to));
    assert!(
        has("server/mint/mod.rs", "server/state.rs"),
        "use super::state::AppState"
    );
    assert!(
        has("server/api/mod.rs", "server/api/admin/mod.rs"),
        "admin::routes()"
    );
    assert!(
        has("server/error.rs", "server/mint/mod.rs"),
        "use super::mint::MintError"
    );
    assert!(has("cli/mod.rs", "cli/token.rs"), "token::run");
    assert!(
        has("server/store/postgres.rs", "server/store/backend.rs"),
        "use super::backend::*"
    );
    let loop_of_two = BTreeMap::from([
        ("a.rs".to_owned(), BTreeSet::from(["b.rs".to_owned()])),
        ("b.rs".to_owned(), BTreeSet::from(["a.rs".to_owned()])),
    ]);
    assert_eq!(loops(&loop_of_two).len(), 1);
}
