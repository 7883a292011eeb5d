//! `docs/threat-model.md` names, for every OWASP NHI and ASI item, the tests that show what
//! mandate does about it. Each named test must exist as a test in the sources (not ignored), and
//! each named fuzz target must exist; `cargo test` and CI's fuzz runs then make them pass.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every Rust source file under `dir`.
fn sources(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Names of the tests defined in `source`: functions marked `#[test]` or `#[tokio::test…]`
/// (not `#[ignore]`), and the names given to `both_stores!`.
fn tests_in(source: &str, tests: &mut BTreeSet<String>) {
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if *line == "#[test]" || line.starts_with("#[tokio::test") {
            let following = lines[i + 1..].iter().take(4);
            let mut ignored = false;
            for next in following {
                ignored |= next.starts_with("#[ignore");
                if let Some(rest) = next
                    .strip_prefix("async fn ")
                    .or_else(|| next.strip_prefix("fn "))
                {
                    if !ignored {
                        tests.insert(rest.split('(').next().unwrap().to_owned());
                    }
                    break;
                }
            }
        }
        if line.starts_with("both_stores!(") {
            if let Some(name) = lines.get(i + 1) {
                tests.insert(name.trim_end_matches(',').to_owned());
            }
        }
    }
}

#[test]
fn every_threat_model_row_names_tests_that_exist() {
    let model = std::fs::read_to_string(format!("{ROOT}/docs/threat-model.md")).unwrap();
    let mut all = Vec::new();
    sources(&Path::new(ROOT).join("tests"), &mut all);
    sources(&Path::new(ROOT).join("src"), &mut all);
    let mut tests = BTreeSet::new();
    for source in &all {
        tests_in(source, &mut tests);
    }
    assert!(
        tests.len() > 100,
        "the scan found the tests: {}",
        tests.len()
    );

    let mut items = BTreeSet::new();
    for row in model
        .lines()
        .filter(|l| l.starts_with("| NHI") || l.starts_with("| ASI"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (id, shown_by) = (cells[1], cells[cells.len() - 2]);
        assert!(items.insert(id.to_owned()), "{id} appears twice");
        let named: Vec<&str> = shown_by.split('`').skip(1).step_by(2).collect();
        assert!(!named.is_empty(), "{id} names no test");
        for name in named {
            if let Some(target) = name.strip_prefix("fuzz:") {
                let path = format!("{ROOT}/fuzz/fuzz_targets/{target}.rs");
                assert!(Path::new(&path).is_file(), "{id}: no fuzz target {target}");
            } else {
                assert!(tests.contains(name), "{id}: no test named {name}");
            }
        }
    }
    let expected: BTreeSet<String> = (1..=10)
        .map(|n| format!("NHI{n}"))
        .chain((1..=10).map(|n| format!("ASI{n:02}")))
        .collect();
    assert_eq!(items, expected, "every NHI and ASI item has its row");
}
