//! Workspace hygiene that CI keeps: no crate declares a dependency its code never names.
//!
//! For every package of the workspace (`crates/*` and `benchmarks/`), each entry of
//! `[dependencies]` must be named (as `ident::`, `use ident`, `ident!` or `extern crate ident`,
//! with `-` read as `_`) somewhere in the package's own targets (`src/`, `benches/`,
//! `examples/`, `build.rs`; a dependency only tests use belongs in `[dev-dependencies]`), and each entry of `[dev-dependencies]` somewhere in its sources, tests, benches or
//! examples. A dependency kept only for a feature or a link must be listed in [`ALLOWED`] with the
//! reason. (`cargo machete` does the same job but is not installed offline; this needs nothing.)

use std::path::{Path, PathBuf};

/// (package, dependency, why it is kept without being named in code).
const ALLOWED: &[(&str, &str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn names(text: &str, ident: &str) -> bool {
    let bounded = |pat: &str| {
        text.match_indices(pat)
            .any(|(i, _)| i == 0 || !text[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_'))
    };
    bounded(&format!("{ident}::"))
        || bounded(&format!("{ident}!"))
        || [";", " as "].iter().any(|end| {
            text.contains(&format!("use {ident}{end}")) || text.contains(&format!("extern crate {ident}{end}"))
        })
}

#[test]
fn every_declared_dependency_is_used() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut packages: Vec<PathBuf> =
        std::fs::read_dir(root.join("crates")).unwrap().flatten().map(|e| e.path()).collect();
    packages.push(root.join("benchmarks"));
    packages.sort();
    let mut unused = Vec::new();
    let mut checked = 0;
    for pkg in packages.iter().filter(|p| p.join("Cargo.toml").is_file()) {
        let manifest: toml::Table = std::fs::read_to_string(pkg.join("Cargo.toml")).unwrap().parse().unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_owned();
        let read_all = |dirs: &[&str]| -> String {
            let mut files = Vec::new();
            for d in dirs {
                rust_files(&pkg.join(d), &mut files);
            }
            if pkg.join("build.rs").is_file() {
                files.push(pkg.join("build.rs"));
            }
            files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect::<Vec<_>>().join("\n")
        };
        // the package's own targets: library, binaries, benchmarks and examples
        let lib = read_all(&["src", "benches", "examples"]);
        let all = read_all(&["src", "tests", "benches", "examples"]);
        for (section, text) in [("dependencies", &lib), ("dev-dependencies", &all)] {
            let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else { continue };
            // with `package = "..."` renames the code names the key, which is what is checked
            for dep in deps.keys() {
                let ident = dep.replace('-', "_");
                checked += 1;
                if names(text, &ident) || ALLOWED.iter().any(|(p, d, _)| *p == name && d == dep) {
                    continue;
                }
                unused.push(format!("{}: [{section}] {dep}", pkg.join("Cargo.toml").display()));
            }
        }
    }
    assert!(checked > 50, "only {checked} dependencies found: is the workspace layout as expected?");
    assert!(
        unused.is_empty(),
        "dependencies no code names (remove them, or list them in ALLOWED with the reason):\n{}",
        unused.join("\n")
    );
}

/// The check itself: a name inside a longer identifier does not count.
#[test]
fn a_dependency_counts_only_as_a_whole_identifier() {
    assert!(names("use serde::Deserialize;", "serde"));
    assert!(names("let x = anyhow::bail!(\"x\");", "anyhow"));
    assert!(names("x\nanyhow!(\"e\")", "anyhow"));
    assert!(!names("use serde_json::Value;", "serde"));
    assert!(!names("my_toml::parse()", "toml"));
}

/// The first path component of every `../../<path>` a test names relative to its crate (the
/// workspace root), e.g. `results` for a join of `../../` and `results/tiny/cells`.
fn workspace_paths_named(text: &str) -> Vec<String> {
    text.match_indices("../../")
        .filter_map(|(i, m)| {
            let before = &text[..i];
            // `../../../shared` leaves the workspace: the data directory's fallback, not ours
            if before.ends_with("../") || before.ends_with('.') {
                return None;
            }
            let rest = &text[i + m.len()..];
            let first: String = rest.chars().take_while(|c| c.is_alphanumeric() || "_-.".contains(*c)).collect();
            (!first.is_empty() && first != "..").then_some(first)
        })
        .collect()
}

/// Tests read only what a clean checkout has: a test that reads a folder git ignores (results
/// a local run wrote, downloaded data, build output) passes on the machine that wrote it and
/// fails in CI. Every workspace path a test names must not be under an entry of the root
/// `.gitignore` (anchored entries `/name` or `/name/*`, the form this repository uses).
#[test]
fn tests_read_only_what_a_clean_checkout_has() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    let ignored: Vec<&str> = gitignore
        .lines()
        .filter_map(|l| l.strip_prefix('/'))
        .map(|l| l.trim_end_matches("/*").trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .collect();
    assert!(ignored.contains(&"results") && ignored.contains(&"target"), "{ignored:?}: is .gitignore as expected?");
    let mut files = Vec::new();
    for e in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        rust_files(&e.path().join("tests"), &mut files);
        rust_files(&e.path().join("src"), &mut files);
    }
    rust_files(&root.join("benchmarks"), &mut files);
    assert!(files.len() > 50, "only {} Rust files found", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for first in workspace_paths_named(&text) {
            if ignored.contains(&first.as_str()) {
                bad.push(format!("{}: reads ../../{first}, which git ignores", f.display()));
            }
        }
    }
    assert!(bad.is_empty(), "tests that read what a clean checkout does not have:\n{}", bad.join("\n"));
}

#[test]
fn the_workspace_path_scan_finds_the_first_component_only_inside_the_workspace() {
    // spelled with `UP/` for `../../` so that the scan above does not find this file itself
    let text = r#"join("UP/results/tiny/cells"); concat!(env!("X"), "/UP/scripts/a.py"); join("UP/../shared/data")"#
        .replace("UP/", "../../");
    assert_eq!(workspace_paths_named(&text), ["results", "scripts"]);
}
