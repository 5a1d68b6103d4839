//! Known-answer vectors of `docs/spec/IDENTIFIERS.md` v1 (`docs/spec/token-vectors.json`).
//! Every failure is collected and reported, not just the first.

use std::collections::BTreeMap;
use std::path::Path;

use cix::ident::{normalize, normalize_into, Kind, Reason};
use cix::{
    keys::TokenKey,
    token::{Token, Tokenizer},
};
use serde::Deserialize;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/spec/token-vectors.json");

#[derive(Deserialize)]
struct Vectors {
    keys: BTreeMap<String, String>,
    valid: Vec<Valid>,
    invalid: Vec<Invalid>,
}

#[derive(Deserialize)]
struct Valid {
    kind: String,
    input: String,
    canonical: String,
    token: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Invalid {
    kind: String,
    input: String,
    reason: String,
}

fn load() -> Vectors {
    let text = std::fs::read_to_string(VECTORS).expect("read token-vectors.json");
    serde_json::from_str(&text).expect("parse token-vectors.json")
}

#[test]
fn known_answers() {
    let v = load();
    let mut failures: Vec<String> = Vec::new();

    let tokenizers: BTreeMap<&str, Tokenizer> = v
        .keys
        .iter()
        .map(|(name, hex)| {
            let key = TokenKey::from_hex(hex).expect("vector key");
            (name.as_str(), Tokenizer::new(&key))
        })
        .collect();
    assert!(tokenizers.contains_key("k1") && tokenizers.contains_key("k2"));
    assert!(!v.valid.is_empty() && !v.invalid.is_empty());

    let mut buf = Vec::new();
    for (i, c) in v.valid.iter().enumerate() {
        let at = format!("valid[{i}] {} {:?}", c.kind, c.input);
        let kind = match Kind::parse(&c.kind) {
            Ok(k) => k,
            Err(r) => {
                failures.push(format!("{at}: kind refused ({r})"));
                continue;
            }
        };
        let canonical = match normalize(kind, &c.input) {
            Ok(canon) => canon,
            Err(r) => {
                failures.push(format!("{at}: rejected ({r}), want {:?}", c.canonical));
                continue;
            }
        };
        if canonical.as_str() != c.canonical {
            failures.push(format!(
                "{at}: canonical {:?}, want {:?}",
                canonical.as_str(),
                c.canonical
            ));
        }
        match normalize_into(kind, &c.input, &mut buf) {
            Ok(()) if buf == canonical.as_bytes() => {}
            other => failures.push(format!("{at}: normalize_into disagrees: {other:?}")),
        }
        for key in ["k1", "k2"] {
            let Some(want) = c.token.get(key) else {
                failures.push(format!("{at}: no token for {key}"));
                continue;
            };
            let want = match Token::from_hex(want) {
                Ok(t) => t,
                Err(e) => {
                    failures.push(format!("{at}: bad expected token for {key}: {e}"));
                    continue;
                }
            };
            let got = tokenizers[key].token(kind, canonical.as_bytes());
            if got.0 != want.0 {
                failures.push(format!("{at}: token[{key}] {got}, want {want}"));
            }
        }
    }

    for (i, c) in v.invalid.iter().enumerate() {
        let at = format!("invalid[{i}] {} {:?}", c.kind, c.input);
        let got = Kind::parse(&c.kind).and_then(|k| normalize(k, &c.input).map(|_| ()));
        match got {
            Ok(()) => failures.push(format!("{at}: accepted, want {}", c.reason)),
            Err(r) if r.as_str() == c.reason => {}
            Err(r) => failures.push(format!("{at}: reason {r}, want {}", c.reason)),
        }
        if c.reason == "kind" && Kind::parse(&c.kind) != Err(Reason::Kind) {
            failures.push(format!("{at}: Kind::parse did not give Reason::Kind"));
        }
    }

    assert!(
        failures.is_empty(),
        "{} vector failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The spec files shipped in `docs/spec/`, compared byte for byte with the
/// shared spec's when a checkout of it sits beside the repository.
const SPEC_FILES: [&str; 2] = ["IDENTIFIERS.md", "token-vectors.json"];

#[test]
fn spec_copy_matches_shared_spec() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/spec");
    if !shared.is_dir() {
        println!(
            "note: {} not found; SKIPPED the comparison of docs/spec/ with the shared spec",
            shared.display()
        );
        return;
    }
    let mut differ = Vec::new();
    for name in SPEC_FILES {
        let ours_path = root.join("docs/spec").join(name);
        let theirs_path = shared.join(name);
        let ours = std::fs::read(&ours_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", ours_path.display()));
        let theirs = match std::fs::read(&theirs_path) {
            Ok(bytes) => bytes,
            Err(e) => {
                differ.push(format!("{}: cannot read ({e})", theirs_path.display()));
                continue;
            }
        };
        if ours != theirs {
            differ.push(format!(
                "docs/spec/{name} differs from {}; copy the spec's file over",
                theirs_path.display()
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
