//! The crate's layers point one way: a module uses only modules of lower
//! layers (and itself). This reads every source file of the library and
//! checks each `crate::` path against the table in `docs/design.md`, so a
//! dependency upwards or sideways fails the build's tests instead of
//! creeping in. Unit-test modules are left out: a test of a low layer may
//! open a whole store.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The layers, bottom first. Modules on one line are siblings and do not
/// use each other.
const LAYERS: &[&[&str]] = &[
    &["vocab"],
    &["lmdb", "metrics"],
    &["record"],
    &["read", "writer"],
    &["store"],
    &["subscribe", "aggregate"],
    &["projection", "json"],
    &["admin"],
    &["protocol"],
];

/// Modules that only the named ones may use: the writer is reached through
/// the `Store` facade, never by a feature directly.
const ONLY_THROUGH: &[(&str, &[&str])] = &[("writer", &["store"])];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its unit-test module.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| {
                let n = next.trim_start();
                n.starts_with("mod ") || n.starts_with("#[allow")
            })
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        let line = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The first segment of every `crate::` path in `code`, with the names
/// the crate root re-exports resolved to the module they come from.
fn used_modules(code: &str, root_names: &HashMap<String, String>) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let firsts: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group only: `{a::{b, c}, d}` gives a, d.
            let mut depth = 0;
            let mut items = vec![String::new()];
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(String::new()),
                    _ if depth == 0 => items.last_mut().unwrap().push(c),
                    _ => {}
                }
            }
            items.iter().map(|s| s.trim().split("::").next().unwrap_or("").to_string()).collect()
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            vec![name]
        };
        for first in firsts.into_iter().filter(|f| !f.is_empty()) {
            let module = root_names.get(&first).cloned().unwrap_or(first);
            used.insert(module);
        }
    }
    used
}

/// What the crate root re-exports, name → the module it comes from.
fn root_names(lib: &str) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for stmt in lib.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else { continue };
        let module = path.split("::").next().unwrap_or("").trim().to_string();
        let tail = path.rsplit("::").next().unwrap_or("");
        for item in tail.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = item.split(" as ").last().unwrap_or("").trim();
            if !name.is_empty() {
                names.insert(name.to_string(), module.clone());
            }
        }
    }
    names
}

/// Guards the layering of `docs/design.md`: no module of the library uses
/// one of a higher layer or a sibling of its own.
#[test]
fn every_dependency_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let root = root_names(&lib);
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        if first == "lib" || first == "bin" {
            continue;
        }
        let own = layer_of(&first)
            .unwrap_or_else(|| panic!("{} belongs to no layer: add it to LAYERS", rel.display()));
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for used in used_modules(&code, &root) {
            checked += 1;
            if used == first {
                continue;
            }
            if let Some((_, users)) = ONLY_THROUGH.iter().find(|(m, _)| *m == used) {
                if !users.contains(&first.as_str()) {
                    wrong.push(format!(
                        "{} ({first}) uses {used}, which only {users:?} may use",
                        rel.display()
                    ));
                }
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                Some(_) => wrong.push(format!("{} ({first}) uses {used}", rel.display())),
                None => {
                    wrong.push(format!("{} uses crate::{used}, which belongs to no layer", rel.display()))
                }
            }
        }
    }
    assert!(checked > 100, "the check found only {checked} uses: is it still reading the sources?");
    assert!(wrong.is_empty(), "dependencies that do not point down:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_root_paths() {
    let root = root_names("pub use store::{Store, StoreBuilder};\npub use vocab::{Error, Result as R};");
    let used = used_modules(
        "use crate::{read::{A, B}, writer::C};\nfn f() -> crate::R<()> { crate::Store::x() }",
        &root,
    );
    assert_eq!(used.into_iter().collect::<Vec<_>>(), ["read", "store", "vocab", "writer"]);
    assert_eq!(code_of("a // crate::x\n#[cfg(test)]\nmod tests {\n crate::y\n}"), "a \n");
}
