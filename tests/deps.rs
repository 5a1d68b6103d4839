//! One TLS stack, one crypto provider: `rustls` on `ring`. `Cargo.lock` must
//! hold no second TLS stack (OpenSSL, native-tls, BoringSSL, ...) and no
//! other rustls crypto provider (aws-lc-rs, ...), and exactly one version of
//! `rustls`. A failure names the offending package and the packages whose
//! `dependencies` pull it in, with one chain from `cix` down to it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Deserialize;

const LOCKFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock");

/// The root package of the lockfile.
const ROOT: &str = "cix";

/// Packages that are, or bind to, a TLS stack or crypto provider other than
/// rustls on ring.
const FORBIDDEN: &[&str] = &[
    // aws-lc, rustls's other built-in provider.
    "aws-lc-rs",
    "aws-lc-sys",
    "aws-lc-fips-sys",
    // OpenSSL.
    "openssl",
    "openssl-sys",
    "openssl-src",
    "tokio-openssl",
    "hyper-openssl",
    "rustls-openssl",
    // The platform's TLS (OpenSSL, Schannel, Secure Transport).
    "native-tls",
    "tokio-native-tls",
    "hyper-tls",
    // BoringSSL.
    "boring",
    "boring-sys",
    "tokio-boring",
    "hyper-boring",
    "rustls-boring",
    // Other TLS libraries and rustls providers.
    "s2n-tls",
    "s2n-tls-sys",
    "mbedtls",
    "mbedtls-sys-auto",
    "rustls-mbedtls-provider-utils",
    "rustls-mbedcrypto-provider",
    "wolfssl",
    "wolfssl-sys",
    "rustls-wolfcrypt-provider",
    "rustls-symcrypt",
    "symcrypt",
    "rustls-graviola",
    "graviola",
    "rustls-rustcrypto",
    "rustls-post-quantum",
];

#[derive(Deserialize)]
struct Lockfile {
    #[serde(default)]
    package: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// `name version` of a package.
type Id = (String, String);

/// The lockfile's packages and, for each, the packages depending on it.
struct Graph {
    packages: Vec<Id>,
    dependents: BTreeMap<Id, BTreeSet<Id>>,
}

impl Graph {
    fn parse(text: &str) -> Result<Graph, String> {
        let lock: Lockfile = toml::from_str(text).map_err(|e| format!("parse Cargo.lock: {e}"))?;
        let packages: Vec<Id> = lock
            .package
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        let mut dependents: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
        for p in &lock.package {
            let from = (p.name.clone(), p.version.clone());
            for dep in &p.dependencies {
                let to = resolve(&packages, dep)
                    .ok_or_else(|| format!("{} {}: unknown dependency {dep:?}", from.0, from.1))?;
                dependents.entry(to).or_default().insert(from.clone());
            }
        }
        Ok(Graph {
            packages,
            dependents,
        })
    }

    /// One shortest chain of dependencies from the root package to `to`.
    fn chain_from_root(&self, to: &Id) -> Option<Vec<Id>> {
        // Walk up from `to` through its dependents until the root.
        let mut came_from: BTreeMap<Id, Id> = BTreeMap::new();
        let mut seen = BTreeSet::from([to.clone()]);
        let mut queue = VecDeque::from([to.clone()]);
        while let Some(at) = queue.pop_front() {
            if at.0 == ROOT {
                let mut chain = vec![at.clone()];
                let mut cur = at;
                while let Some(next) = came_from.get(&cur) {
                    chain.push(next.clone());
                    cur = next.clone();
                }
                return Some(chain);
            }
            for up in self.dependents.get(&at).into_iter().flatten() {
                if seen.insert(up.clone()) {
                    came_from.insert(up.clone(), at.clone());
                    queue.push_back(up.clone());
                }
            }
        }
        None
    }
}

/// A `dependencies` entry (`name`, `name version` or `name version (source)`)
/// to the package it names.
fn resolve(packages: &[Id], entry: &str) -> Option<Id> {
    let mut words = entry.split_whitespace();
    let name = words.next()?;
    match words.next() {
        Some(version) => packages
            .iter()
            .find(|(n, v)| n == name && v == version)
            .cloned(),
        None => {
            let mut named = packages.iter().filter(|(n, _)| n == name);
            let only = named.next()?.clone();
            named.next().is_none().then_some(only)
        }
    }
}

fn show(id: &Id) -> String {
    format!("{} {}", id.0, id.1)
}

/// Every problem with the lockfile `text`, one line each; empty when it is
/// fine.
fn problems(text: &str) -> Vec<String> {
    let graph = match Graph::parse(text) {
        Ok(g) => g,
        Err(e) => return vec![e],
    };
    let mut out = Vec::new();
    for id in graph
        .packages
        .iter()
        .filter(|(n, _)| FORBIDDEN.contains(&n.as_str()))
    {
        let by: Vec<String> = graph
            .dependents
            .get(id)
            .into_iter()
            .flatten()
            .map(show)
            .collect();
        let by = if by.is_empty() {
            "nothing (a direct dependency, or a stale entry)".to_string()
        } else {
            by.join(", ")
        };
        let chain = graph
            .chain_from_root(id)
            .map(|c| c.iter().map(show).collect::<Vec<_>>().join(" -> "))
            .unwrap_or_else(|| format!("no chain from {ROOT}"));
        out.push(format!(
            "forbidden TLS/crypto package {} pulled in by {by} ({chain})",
            show(id)
        ));
    }
    let rustls: Vec<&Id> = graph
        .packages
        .iter()
        .filter(|(n, _)| n == "rustls")
        .collect();
    if rustls.len() != 1 {
        let versions: Vec<&str> = rustls.iter().map(|(_, v)| v.as_str()).collect();
        let mut line = format!(
            "rustls must appear with exactly one version, found {}: [{}]",
            rustls.len(),
            versions.join(", ")
        );
        for id in rustls {
            let by: Vec<String> = graph
                .dependents
                .get(id)
                .into_iter()
                .flatten()
                .map(show)
                .collect();
            line.push_str(&format!("; {} needed by {}", show(id), by.join(", ")));
        }
        out.push(line);
    }
    out
}

#[test]
fn lockfile_has_one_tls_stack_and_one_rustls() {
    let text = std::fs::read_to_string(LOCKFILE).expect("read Cargo.lock");
    let found = problems(&text);
    assert!(
        found.is_empty(),
        "Cargo.lock: {} problem(s):\n{}",
        found.len(),
        found.join("\n")
    );
}

/// A minimal lockfile: cix -> tonic -> rustls, plus `extra` packages.
fn synthetic(rustls_deps: &str, extra: &str) -> String {
    format!(
        r#"
version = 4

[[package]]
name = "cix"
version = "0.1.0"
dependencies = ["tonic"]

[[package]]
name = "tonic"
version = "0.14.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["rustls 0.23.46"]

[[package]]
name = "rustls"
version = "0.23.46"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = [{rustls_deps}]

[[package]]
name = "ring"
version = "0.17.14"
source = "registry+https://github.com/rust-lang/crates.io-index"
{extra}"#
    )
}

#[test]
fn checker_flags_aws_lc_rs_and_names_who_pulls_it_in() {
    assert_eq!(
        problems(&synthetic(r#""ring""#, "")),
        Vec::<String>::new(),
        "the synthetic lockfile without aws-lc-rs is fine"
    );

    let text = synthetic(
        r#""aws-lc-rs", "ring""#,
        r#"
[[package]]
name = "aws-lc-rs"
version = "1.13.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["aws-lc-sys"]

[[package]]
name = "aws-lc-sys"
version = "0.29.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#,
    );
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].contains("aws-lc-rs 1.13.0 pulled in by rustls 0.23.46")
            && found[0].contains("cix 0.1.0 -> tonic 0.14.0 -> rustls 0.23.46 -> aws-lc-rs 1.13.0"),
        "{}",
        found[0]
    );
    assert!(
        found[1].contains("aws-lc-sys 0.29.0 pulled in by aws-lc-rs 1.13.0"),
        "{}",
        found[1]
    );
}

#[test]
fn checker_flags_a_second_rustls_version() {
    let text = synthetic(
        r#""ring""#,
        r#"
[[package]]
name = "rustls"
version = "0.21.12"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["ring"]

[[package]]
name = "old-client"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["rustls 0.21.12"]
"#,
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("exactly one version, found 2")
            && found[0].contains("rustls 0.21.12 needed by old-client 1.0.0"),
        "{}",
        found[0]
    );
}
