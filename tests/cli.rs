//! The `cix` command line end to end: the real binary, run as a child
//! process, against real node directories and a real `cix serve`.

mod support;

use std::{
    collections::BTreeSet,
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use cix::{ident::Kind, testbed::synth::Synth};
use serde_json::Value;
use support::{TestNode, BIN};

/// The spec's vector key k1.
const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Environment variables that would change what the binary does.
const CIX_ENV: &[&str] = &[
    "CIX_LOG",
    "CIX_DIR",
    "CIX_NODE",
    "CIX_CONFIG",
    "CIX_MEMBER_LISTEN",
    "CIX_MEMBER_CERT",
    "CIX_MEMBER_KEY",
    "CIX_MEMBER_CLIENT_CA",
    cix::time::TEST_CLOCK_ENV,
];

/// `cix ARGS` with a clean environment and no stdin.
fn cix<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    for k in CIX_ENV {
        c.env_remove(k);
    }
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("running cix")
}

/// Runs `c` with `input` on stdin.
fn run_with_stdin(mut c: Command, input: &str) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawning cix");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(o.status.success(), "cix failed: {}", describe(o));
}

#[track_caller]
fn assert_failed(o: &Output) {
    assert!(
        !o.status.success(),
        "cix should have failed: {}",
        describe(o)
    );
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Writes `content` to `path` and sets its mode.
fn write_with_mode(path: &Path, content: &str, mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A temp dir holding the k1 key file with mode 0600.
fn k1_key_file() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k1.key");
    write_with_mode(&path, &format!("{K1}\n"), 0o600);
    assert_eq!(mode_of(&path), 0o600);
    (tmp, path)
}

struct Vectors {
    valid: Vec<Value>,
    invalid: Vec<Value>,
}

fn vectors() -> Vectors {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/spec/token-vectors.json");
    let v: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(v["keys"]["k1"], K1, "the vectors' k1 is the spec key");
    Vectors {
        valid: v["valid"].as_array().unwrap().clone(),
        invalid: v["invalid"].as_array().unwrap().clone(),
    }
}

fn s(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector without {field}: {v}"))
        .to_string()
}

/// The first valid vector of every kind, in file order.
fn first_valid_per_kind(vs: &Vectors) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let firsts: Vec<Value> = vs
        .valid
        .iter()
        .filter(|v| seen.insert(s(v, "kind")))
        .cloned()
        .collect();
    assert_eq!(firsts.len(), Kind::ALL.len(), "a vector of every kind");
    firsts
}

fn token_cmd(key: &Path, kind: &str) -> Command {
    let mut c = cix(["token", "--kind", kind, "--key-file"]);
    c.arg(key);
    c
}

#[test]
fn token_prints_the_spec_vector_token_of_one_value_of_every_kind() {
    let vs = vectors();
    let (_tmp, key) = k1_key_file();
    for v in first_valid_per_kind(&vs) {
        let mut c = token_cmd(&key, &s(&v, "kind"));
        c.arg("--").arg(s(&v, "input"));
        let o = run(c);
        assert_ok(&o);
        assert_eq!(
            stdout(&o),
            format!("{}\n", v["token"]["k1"].as_str().unwrap()),
            "vector {v}"
        );
    }
}

#[test]
fn token_json_prints_one_object_per_stdin_value_in_order_with_only_kind_canonical_token() {
    let vs = vectors();
    let (_tmp, key) = k1_key_file();
    for kind in Kind::ALL {
        let kind = kind.as_str();
        let of_kind: Vec<&Value> = vs.valid.iter().filter(|v| v["kind"] == kind).collect();
        assert!(!of_kind.is_empty(), "no vector of {kind}");
        let input: String = of_kind
            .iter()
            .map(|v| format!("{}\n", s(v, "input")))
            .collect();

        // --json: one object per value, in order, exactly these keys.
        let mut c = token_cmd(&key, kind);
        c.arg("--json");
        let o = run_with_stdin(c, &input);
        assert_ok(&o);
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), of_kind.len(), "{kind}: {}", describe(&o));
        for (line, v) in lines.iter().zip(&of_kind) {
            let obj: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
            let keys: BTreeSet<&str> = obj
                .as_object()
                .expect("a JSON object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                BTreeSet::from(["kind", "canonical", "token"]),
                "{line}"
            );
            assert_eq!(obj["kind"], kind);
            assert_eq!(obj["canonical"], v["canonical"], "{v}");
            assert_eq!(obj["token"], v["token"]["k1"], "{v}");
        }

        // Plain: one token per line, in order.
        let o = run_with_stdin(token_cmd(&key, kind), &input);
        assert_ok(&o);
        let want: String = of_kind
            .iter()
            .map(|v| format!("{}\n", v["token"]["k1"].as_str().unwrap()))
            .collect();
        assert_eq!(stdout(&o), want, "{kind}");
    }
}

#[test]
fn token_stdin_accepts_crlf_lines() {
    let vs = vectors();
    let (_tmp, key) = k1_key_file();
    let v = first_valid_per_kind(&vs).remove(0);
    let input = format!("{}\r\n{}\r\n", s(&v, "input"), s(&v, "input"));
    let o = run_with_stdin(token_cmd(&key, &s(&v, "kind")), &input);
    assert_ok(&o);
    let t = v["token"]["k1"].as_str().unwrap();
    assert_eq!(stdout(&o), format!("{t}\n{t}\n"));
}

#[test]
fn token_value_beginning_with_dash_after_double_dash_is_a_value_not_a_flag() {
    let vs = vectors();
    let (_tmp, key) = k1_key_file();
    // Valid vectors starting with '-' (none in v1) must tokenize.
    for v in vs.valid.iter().filter(|v| s(v, "input").starts_with('-')) {
        let mut c = token_cmd(&key, &s(v, "kind"));
        c.arg("--").arg(s(v, "input"));
        let o = run(c);
        assert_ok(&o);
        assert_eq!(
            stdout(&o),
            format!("{}\n", v["token"]["k1"].as_str().unwrap())
        );
    }
    // An invalid vector starting with '-' is rejected as a value, with its
    // reason, not taken for a flag.
    let dashed: Vec<&Value> = vs
        .invalid
        .iter()
        .filter(|v| s(v, "input").starts_with('-') && v["kind"] != "ssn")
        .collect();
    assert!(
        !dashed.is_empty(),
        "the vectors have a value beginning with '-'"
    );
    for v in dashed {
        let input = s(v, "input");
        let mut c = token_cmd(&key, &s(v, "kind"));
        c.arg("--").arg(&input);
        let o = run(c);
        assert_failed(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "a command error, not usage: {}",
            describe(&o)
        );
        let err = stderr(&o);
        assert!(
            err.contains(&format!("rejected: {}", s(v, "reason"))),
            "{}",
            describe(&o)
        );
        assert!(!err.contains("unexpected argument"), "{err}");
        assert!(!err.contains(&input), "stderr echoes the value: {err}");
        assert_eq!(stdout(&o), "");
    }
    // Without `--` the same text is a flag, refused by the parser (usage
    // error, exit 2).
    let mut c = token_cmd(&key, "domain");
    c.arg("-bad-.example");
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert_eq!(stdout(&o), "");
}

#[test]
fn token_rejected_value_exits_nonzero_with_reason_but_without_the_value() {
    let vs = vectors();
    let (_tmp, key) = k1_key_file();
    let checksum = vs
        .invalid
        .iter()
        .find(|v| v["reason"] == "checksum")
        .expect("a checksum vector");
    let input = s(checksum, "input");

    let mut c = token_cmd(&key, &s(checksum, "kind"));
    c.arg("--").arg(&input);
    let o = run(c);
    assert_failed(&o);
    let err = stderr(&o);
    assert!(err.contains("checksum"), "{}", describe(&o));
    assert!(!err.contains(&input), "stderr echoes the value: {err}");
    assert!(
        !err.contains(&input.replace(' ', "")),
        "stderr echoes the value: {err}"
    );
    assert_eq!(stdout(&o), "");

    // Among other values on stdin: the valid ones still print in order, the
    // rejected one is named by position and reason only.
    let valid = vs
        .valid
        .iter()
        .find(|v| v["kind"] == checksum["kind"])
        .unwrap();
    let stdin = format!("{}\n{input}\n{}\n", s(valid, "input"), s(valid, "input"));
    let o = run_with_stdin(token_cmd(&key, &s(checksum, "kind")), &stdin);
    assert_failed(&o);
    let t = valid["token"]["k1"].as_str().unwrap();
    assert_eq!(stdout(&o), format!("{t}\n{t}\n"));
    let err = stderr(&o);
    assert!(err.contains("value 2: rejected: checksum"), "{err}");
    assert!(err.contains("1 value(s) rejected"), "{err}");
    assert!(!err.contains(&input), "stderr echoes the value: {err}");

    // Every invalid vector of a known kind: rejected with its reason, never
    // echoed.
    for v in vs.invalid.iter().filter(|v| v["kind"] != "ssn") {
        let input = s(v, "input");
        let mut c = token_cmd(&key, &s(v, "kind"));
        c.arg("--").arg(&input);
        let o = run(c);
        assert_failed(&o);
        let err = stderr(&o);
        assert!(
            err.contains(&format!("rejected: {}", s(v, "reason"))),
            "{v}: {err}"
        );
        if !input.trim().is_empty() {
            assert!(!err.contains(input.trim()), "{v}: stderr echoes: {err}");
        }
        assert_eq!(stdout(&o), "", "{v}");
    }
}

#[test]
fn token_unknown_kind_is_a_usage_error() {
    let (_tmp, key) = k1_key_file();
    let o = run(token_cmd(&key, "ssn"));
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert!(stderr(&o).contains("unknown kind"), "{}", describe(&o));
}

#[test]
fn token_refuses_a_key_file_readable_by_others_and_says_chmod_600() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("open.key");
    write_with_mode(&key, &format!("{K1}\n"), 0o644);
    let mut c = token_cmd(&key, "pan");
    c.args(["--", "4111 1111 1111 1111"]);
    let o = run(c);
    assert_failed(&o);
    let err = stderr(&o);
    assert!(err.contains("chmod 600"), "{}", describe(&o));
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(!err.contains(&K1[..16]), "stderr shows key material: {err}");
    assert_eq!(stdout(&o), "", "no token from a refused key");

    // The same file at 0600 works.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = token_cmd(&key, "pan");
    c.args(["--", "4111 1111 1111 1111"]);
    let o = run(c);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "c5d63c2017fcb0fe14ccbcfe0afcd31a81685d8bf5d64a00ee7f6ed52142ad99\n"
    );
}

const INIT_FILES: &[&str] = &[
    "node.toml",
    "tls/ca.crt",
    "tls/node.crt",
    "tls/node.key",
    "tls/client.crt",
    "tls/client.key",
    "keys/epoch-1.key",
];

#[test]
fn init_writes_a_node_directory_with_private_keys_0600_and_needs_force_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let o = run({
        let mut c = cix(["init"]);
        c.arg(&dir);
        c
    });
    assert_ok(&o);
    assert!(
        stdout(&o).contains(&dir.join("node.toml").display().to_string()),
        "{}",
        describe(&o)
    );
    for f in INIT_FILES {
        let p = dir.join(f);
        assert!(p.is_file(), "{} missing", p.display());
        assert!(fs::metadata(&p).unwrap().len() > 0, "{} empty", p.display());
    }
    for f in ["keys/epoch-1.key", "tls/node.key", "tls/client.key"] {
        assert_eq!(mode_of(&dir.join(f)), 0o600, "{f}");
    }
    let key1 = fs::read_to_string(dir.join("keys/epoch-1.key")).unwrap();
    assert_eq!(key1.len(), 65, "64 hex + newline");
    // The key file is one `cix token` accepts.
    let mut c = token_cmd(&dir.join("keys/epoch-1.key"), "email");
    c.args(["--", "a@example.test"]);
    assert_ok(&run(c));

    // A second init on the now non-empty directory is refused, touches
    // nothing, and points at --force.
    let o = run({
        let mut c = cix(["init"]);
        c.arg(&dir);
        c
    });
    assert_failed(&o);
    assert!(stderr(&o).contains("--force"), "{}", describe(&o));
    assert_eq!(
        fs::read_to_string(dir.join("keys/epoch-1.key")).unwrap(),
        key1,
        "a refused init must not replace the key"
    );

    // With --force it succeeds and writes a new key, still 0600.
    let o = run({
        let mut c = cix(["init", "--force"]);
        c.arg(&dir);
        c
    });
    assert_ok(&o);
    for f in INIT_FILES {
        assert!(dir.join(f).is_file(), "{f} missing after --force");
    }
    assert_eq!(mode_of(&dir.join("keys/epoch-1.key")), 0o600);
    assert_ne!(
        fs::read_to_string(dir.join("keys/epoch-1.key")).unwrap(),
        key1,
        "--force makes a new key"
    );
}

#[test]
fn help_lists_every_subcommand_and_version_is_the_crate_version() {
    let o = run(cix(["--help"]));
    assert_ok(&o);
    let help = stdout(&o);
    let listed: BTreeSet<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for sub in [
        "serve",
        "init",
        "demo",
        "token",
        "contribute",
        "retract",
        "indicators",
        "match",
        "status",
    ] {
        assert!(listed.contains(sub), "{sub} not listed in:\n{help}");
    }

    let o = run(cix(["match", "--help"]));
    assert_ok(&o);
    let help = stdout(&o);
    for flag in ["--file", "--column", "--kind-column", "--out", "--dir"] {
        assert!(help.contains(flag), "{flag} not in:\n{help}");
    }

    let o = run(cix(["--version"]));
    assert_ok(&o);
    assert_eq!(
        stdout(&o).trim(),
        format!("cix {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `cix SUB... --dir DIR ARGS...`.
fn at_node(node: &TestNode, sub: &[&str], args: &[&str]) -> Output {
    let mut c = cix(sub);
    c.arg("--dir").arg(&node.dir).args(args);
    run(c)
}

const CASE: &str = "CASE-CLI-1";
const EMAIL: &str = "someone@example.test";

#[test]
fn contribute_match_status_bulk_list_and_retract_through_the_cli() {
    let mut node = TestNode::new("cli-node");
    node.start();
    let epoch_key = node.dir.join("keys/epoch-1.key");

    // The token the node will store, computed offline with its key.
    let mut c = token_cmd(&epoch_key, "email");
    c.args(["--", EMAIL]);
    let o = run(c);
    assert_ok(&o);
    let token = stdout(&o).trim().to_string();
    assert_eq!(token.len(), 64);

    // Contribute one value: prints its token.
    let o = at_node(
        &node,
        &["contribute"],
        &["--kind", "email", "--case-ref", CASE, "--", EMAIL],
    );
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), token, "{}", describe(&o));

    // Match another spelling: normalization lower-cases the e-mail.
    let o = at_node(
        &node,
        &["match"],
        &["--kind", "email", "--", "SOMEONE@example.test"],
    );
    assert_ok(&o);
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("MATCH"), "{}", describe(&o));
    assert!(out.contains(&format!("case={CASE:?}")), "{out}");
    assert!(out.contains("origin=cli-node"), "{out}");

    // A value that was never contributed.
    let o = at_node(
        &node,
        &["match"],
        &["--kind", "email", "--", "nobody@example.test"],
    );
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), "NO_MATCH", "{}", describe(&o));

    // Status.
    let o = at_node(&node, &["status"], &["--json"]);
    assert_ok(&o);
    let st: Value = serde_json::from_str(stdout(&o).trim())
        .unwrap_or_else(|e| panic!("status --json: {e}: {}", describe(&o)));
    assert_eq!(st["node_id"], "cli-node");
    assert!(st["indicators"].as_u64().unwrap() >= 1, "{st}");

    // Own indicators list the token with its case.
    let o = at_node(&node, &["indicators", "list"], &[]);
    assert_ok(&o);
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with(&token))
        .unwrap_or_else(|| panic!("token {token} not listed:\n{out}"));
    assert!(line.contains(" email "), "{line}");
    assert!(line.contains(&format!("case={CASE:?}")), "{line}");
    let o = at_node(&node, &["indicators", "list"], &["--json"]);
    assert_ok(&o);
    let listed: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        listed
            .iter()
            .any(|i| i["token"] == token.as_str() && i["case_ref"] == CASE && i["kind"] == "email"),
        "{listed:?}"
    );

    // Bulk: a CSV with a kind per row.
    let tmp = tempfile::tempdir().unwrap();
    let (csv_in, expected) = bulk_input(tmp.path());
    let out_jsonl = tmp.path().join("out.jsonl");
    let o = bulk_match(&node, &csv_in, &out_jsonl);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains(&format!("items {}", expected.len())), "{err}");
    assert!(err.contains("matched 1"), "{err}");
    assert!(err.contains("invalid 1"), "{err}");
    check_jsonl(&fs::read_to_string(&out_jsonl).unwrap(), &expected);

    let out_csv = tmp.path().join("out.csv");
    let o = bulk_match(&node, &csv_in, &out_csv);
    assert_ok(&o);
    check_csv(&out_csv, &expected);

    for out in [&out_jsonl, &out_csv] {
        let text = fs::read_to_string(out).unwrap();
        assert!(
            !text.to_lowercase().contains(EMAIL),
            "{} holds a raw identifier",
            out.display()
        );
    }

    // Retract the case: the value no longer matches nor is listed.
    let o = at_node(
        &node,
        &["retract"],
        &["--reason", "closed", "--case-ref", CASE],
    );
    assert_ok(&o);
    assert!(
        stdout(&o).lines().any(|l| l == "retracted 1"),
        "{}",
        describe(&o)
    );
    let o = at_node(
        &node,
        &["match"],
        &["--kind", "email", "--", "SOMEONE@example.test"],
    );
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), "NO_MATCH", "{}", describe(&o));
    let o = at_node(&node, &["indicators", "list"], &[]);
    assert_ok(&o);
    assert!(
        !stdout(&o).contains(&token),
        "retracted token still listed: {}",
        describe(&o)
    );
}

/// What a bulk row should come back as.
struct Expected {
    kind: &'static str,
    status: &'static str,
    invalid_reason: &'static str,
}

/// Writes a `kind,value` CSV of 50 rows: synthetic values of every kind, the
/// contributed e-mail (another spelling) at row 10 and an IBAN with a wrong
/// check digit at row 20.
fn bulk_input(dir: &Path) -> (PathBuf, Vec<Expected>) {
    let mut synth = Synth::new(0xC11);
    let mut w = csv::Writer::from_path(dir.join("in.csv")).unwrap();
    w.write_record(["kind", "value"]).unwrap();
    let mut expected = Vec::new();
    for n in 0..50 {
        let row = n + 1;
        let (kind, value, status, reason) = match row {
            10 => (
                Kind::Email,
                "  SomeOne@Example.TEST ".to_string(),
                "MATCH",
                "",
            ),
            20 => {
                let good = synth.of(Kind::Iban);
                // Change one check digit: mod 97 then fails.
                let mut b = good.into_bytes();
                b[3] = if b[3] == b'9' { b'0' } else { b[3] + 1 };
                (
                    Kind::Iban,
                    String::from_utf8(b).unwrap(),
                    "INVALID",
                    "checksum",
                )
            }
            _ => {
                let (k, v) = synth.any(n);
                (k, v, "NO_MATCH", "")
            }
        };
        w.write_record([kind.as_str(), value.as_str()]).unwrap();
        expected.push(Expected {
            kind: kind.as_str(),
            status,
            invalid_reason: reason,
        });
    }
    w.flush().unwrap();
    let kinds: BTreeSet<&str> = expected.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.len(), Kind::ALL.len(), "every kind in the input");
    (dir.join("in.csv"), expected)
}

fn bulk_match(node: &TestNode, input: &Path, out: &Path) -> Output {
    let mut c = cix(["match", "--dir"]);
    c.arg(&node.dir)
        .arg("--file")
        .arg(input)
        .args(["--column", "value", "--kind-column", "kind", "--out"])
        .arg(out);
    run(c)
}

fn check_jsonl(text: &str, expected: &[Expected]) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "one line per row:\n{text}");
    for (i, (line, e)) in lines.iter().zip(expected).enumerate() {
        let r: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON: {line}: {err}"));
        for field in ["row", "kind", "status", "hits"] {
            assert!(r.get(field).is_some(), "no {field}: {line}");
        }
        assert_eq!(r["row"], i + 1, "{line}");
        assert_eq!(r["kind"], e.kind, "{line}");
        assert_eq!(r["status"], e.status, "{line}");
        let hits = r["hits"].as_array().expect("hits is an array");
        if e.status == "MATCH" {
            assert_eq!(hits.len(), 1, "{line}");
            assert_eq!(hits[0]["case_ref"], CASE, "{line}");
            assert_eq!(hits[0]["origin"], "cli-node", "{line}");
            assert_eq!(hits[0]["tier"], "confirmed", "{line}");
            assert_eq!(hits[0]["epoch"], 1, "{line}");
        } else {
            assert!(hits.is_empty(), "{line}");
        }
        if e.invalid_reason.is_empty() {
            assert!(r.get("invalid_reason").is_none(), "{line}");
        } else {
            assert_eq!(r["invalid_reason"], e.invalid_reason, "{line}");
        }
    }
}

fn check_csv(path: &Path, expected: &[Expected]) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        ["row", "kind", "status", "hits", "invalid_reason"],
        "CSV header"
    );
    let recs: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), expected.len(), "one line per row");
    for (i, (rec, e)) in recs.iter().zip(expected).enumerate() {
        assert_eq!(rec.len(), 5, "{rec:?}");
        assert_eq!(rec[0], (i + 1).to_string(), "{rec:?}");
        assert_eq!(&rec[1], e.kind, "{rec:?}");
        assert_eq!(&rec[2], e.status, "{rec:?}");
        if e.status == "MATCH" {
            assert!(rec[3].contains(CASE), "{rec:?}");
            assert!(rec[3].contains("cli-node"), "{rec:?}");
        } else {
            assert_eq!(&rec[3], "", "{rec:?}");
        }
        assert_eq!(&rec[4], e.invalid_reason, "{rec:?}");
    }
}

/// Runs `cix serve --config CONFIG`; it must exit by itself within 30 s
/// (bounded polling; killed otherwise). Returns its exit status and stderr.
fn serve_expecting_exit(config: &Path) -> (std::process::ExitStatus, String) {
    let logs = tempfile::tempdir().unwrap();
    let err_path = logs.path().join("stderr");
    let mut c = cix(["serve", "--config"]);
    c.arg(config)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cix serve kept running with a broken config:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, fs::read_to_string(&err_path).unwrap())
}

/// A copy of the node's config next to it with `from` replaced by `to`.
fn broken_config(node: &TestNode, name: &str, from: &str, to: &str) -> PathBuf {
    let text = fs::read_to_string(&node.config).unwrap();
    assert!(text.contains(from), "{from:?} not in node.toml:\n{text}");
    let path = node.dir.join(name);
    fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn serve_with_an_invalid_listen_address_exits_naming_the_field() {
    let node = TestNode::new("broken-listen");
    let config = broken_config(
        &node,
        "bad-listen.toml",
        r#"listen = "127.0.0.1:0""#,
        r#"listen = "nowhere""#,
    );
    let (status, err) = serve_expecting_exit(&config);
    assert!(!status.success(), "{status}: {err}");
    assert!(err.contains("member_listener.listen"), "{err}");
    assert!(!node.data_dir().join("member.addr").exists());
}

#[test]
fn serve_with_a_missing_key_file_exits_naming_the_file() {
    let node = TestNode::new("broken-key");
    let config = broken_config(
        &node,
        "bad-key.toml",
        r#"key_file = "keys/epoch-1.key""#,
        r#"key_file = "keys/missing-epoch.key""#,
    );
    let (status, err) = serve_expecting_exit(&config);
    assert!(!status.success(), "{status}: {err}");
    assert!(err.contains("missing-epoch.key"), "{err}");
    assert!(!node.data_dir().join("member.addr").exists());
}

#[test]
fn serve_with_a_key_file_readable_by_others_exits_saying_chmod_600() {
    let node = TestNode::new("open-key");
    let key = node.dir.join("keys/epoch-1.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (status, err) = serve_expecting_exit(&node.config);
    assert!(!status.success(), "{status}: {err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("epoch-1.key"), "{err}");
}

/// A webhook that would send alerts in the clear off the machine, or sign
/// them with a secret others can read, stops the start, naming the field
/// (and never echoing the URL).
#[test]
fn serve_with_an_unsafe_webhook_exits_naming_the_field() {
    let node = TestNode::new("bad-webhook");
    let secret = node.dir.join("keys/webhook.secret");
    fs::write(&secret, "a secret of at least sixteen bytes\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let webhook = |url: &str| {
        let text = fs::read_to_string(&node.config).unwrap();
        let path = node.dir.join("webhook.toml");
        fs::write(
            &path,
            format!(
                "{text}\n[alerts.webhook]\nurl = {url:?}\nsecret_file = \"keys/webhook.secret\"\n"
            ),
        )
        .unwrap();
        path
    };
    let (status, err) = serve_expecting_exit(&webhook("http://192.0.2.7/cases"));
    assert!(!status.success(), "{status}: {err}");
    assert!(err.contains("alerts.webhook.url"), "{err}");
    assert!(!err.contains("192.0.2.7"), "{err}");
    let (status, err) = serve_expecting_exit(&webhook("https://cases.example/hook"));
    assert!(!status.success(), "{status}: {err}");
    assert!(err.contains("alerts.webhook.ca_file"), "{err}");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o640)).unwrap();
    let (status, err) = serve_expecting_exit(&webhook("http://127.0.0.1:9/cases"));
    assert!(!status.success(), "{status}: {err}");
    assert!(
        err.contains("chmod 600") && err.contains("webhook.secret"),
        "{err}"
    );
    assert!(!node.data_dir().join("member.addr").exists());
}

#[test]
fn serve_with_an_unreadable_config_exits_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.toml");
    let (status, err) = serve_expecting_exit(&missing);
    assert!(!status.success(), "{status}: {err}");
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn serve_with_a_tls_key_readable_by_others_exits_saying_chmod_600() {
    let node = TestNode::new("open-tls-key");
    let key = node.dir.join("tls/node.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (status, err) = serve_expecting_exit(&node.config);
    assert!(!status.success(), "{status}: {err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("node.key"), "{err}");
    assert!(err.contains("group or others"), "{err}");
}

#[test]
fn client_commands_with_a_client_key_readable_by_others_exit_saying_chmod_600() {
    let node = TestNode::new("open-client-key");
    let key = node.dir.join("tls/client.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    // The key is refused before any connection is tried: no node runs.
    for (sub, args) in [
        (&["status"][..], &[][..]),
        (&["match"][..], &["--kind", "email", "--", EMAIL][..]),
    ] {
        let o = at_node(&node, sub, args);
        assert!(!o.status.success(), "{sub:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("chmod 600"), "{sub:?}: {err}");
        assert!(err.contains("client.key"), "{sub:?}: {err}");
    }
}
