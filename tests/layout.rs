//! The crate's layout as `src/lib.rs` describes it: every top-level module
//! sits on a floor and imports only from floors below its own, so no two
//! folders import each other and nothing in the library imports the
//! command line. Read from the source text (`crate::name` paths, outside
//! comments and `#[cfg(test)]` modules), as a reviewer would.

use std::{collections::BTreeMap, fs, path::Path};

/// The floors of `src/lib.rs`'s map, bottom up.
const FLOORS: &[&[&str]] = &[
    &[
        "ident",
        "proto",
        "time",
        "keys",
        "counters",
        "ratelimit",
        "telemetry",
        "capture",
    ],
    &["token", "tls", "outcome"],
    &["epochs", "batch"],
    &["store", "index", "watchlist", "dispositions", "flood"],
    &["trust"],
    &["logs", "screening", "retention", "auth"],
    &["contribution", "federation", "config", "alerts", "report"],
    &["feedback"],
    &["node"],
    &["api"],
    &["server"],
    &["client"],
    &["testbed"],
    &["bench"],
    &["cli"],
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

/// The source of `text` without comments and without a trailing
/// `#[cfg(test)] mod tests` (tests may build fixtures from anywhere).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules named by `crate::name` or inside `use crate::{...}`.
fn imports(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Names at the group's top level: `a::b`, `c`, `d::{e, f}`.
            let (mut depth, mut start) = (0usize, 0usize);
            for (j, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.push(first_name(&group[start..j]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(first_name(&group[start..j]));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(first_name(rest));
        }
    }
    found.retain(|n| !n.is_empty());
    found
}

fn first_name(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// (importing module, imported module) for every top-level module of `src`.
fn edges(src: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut by_module: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        for m in imports(&code(&text)) {
            by_module
                .entry(top.clone())
                .or_default()
                .push((m, rel.display().to_string()));
        }
        by_module.entry(top).or_default();
    }
    by_module
}

#[test]
fn every_import_runs_down_the_floors_of_the_module_map() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    // The reading sees the real graph (so this test cannot pass by reading
    // nothing): the node state is built on federation and the store.
    let node: Vec<&str> = edges["node"].iter().map(|(m, _)| m.as_str()).collect();
    assert!(
        node.contains(&"federation") && node.contains(&"store"),
        "{node:?}"
    );
    let mut wrong = Vec::new();
    for (module, imports) in edges {
        let Some(own) = floor_of(&module) else {
            wrong.push(format!(
                "module {module} is on no floor: add it to src/lib.rs's map and to FLOORS here"
            ));
            continue;
        };
        for (to, file) in imports {
            if to == module {
                continue;
            }
            match floor_of(&to) {
                Some(f) if f < own => {}
                Some(f) => wrong.push(format!(
                    "{file}: {module} (floor {own}) imports {to} (floor {f}), which is not below it"
                )),
                // `crate::` followed by something that is not a module of
                // ours (a macro path, say) is not a layout edge.
                None => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_plain_imports() {
    let text = "use crate::{a::b, c, d::{e, f}};\nfn x() { crate::g::h(); }\n// crate::comment\n";
    assert_eq!(imports(&code(text)), ["a", "c", "d", "g"]);
    let cut = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\n";
    assert_eq!(imports(&code(cut)), ["a"]);
}
