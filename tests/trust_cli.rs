//! The operator tools end to end: `cix keygen` and `cix trust ...` run as a
//! child process on real files in a temporary directory (offline; no node).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_cix");

fn cix<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("CIX_LOG")
        .output()
        .expect("running cix")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success; returns stdout.
#[track_caller]
fn ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let o = cix(args);
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs and asserts failure; returns stderr.
#[track_caller]
fn fails<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let o = cix(args);
    assert!(
        !o.status.success(),
        "expected failure\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `cix keygen --out DIR/NAME`; returns (private, public) paths.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(name);
    let out = ok(["keygen", "--out", s(&key)]);
    let public = dir.join(format!("{name}.pub"));
    assert_eq!(out.trim(), fs::read_to_string(&public).unwrap().trim());
    (key, public)
}

#[test]
fn keygen_writes_private_0600_and_public_and_refuses_open_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("op1.key");
    let out = ok(["keygen", "--out", s(&key)]);
    let public_hex = out.trim();
    assert!(is_hex64(public_hex), "{out}");
    let private = fs::read_to_string(&key).unwrap();
    assert_eq!(private.len(), 65);
    assert!(is_hex64(&private[..64]) && private.ends_with('\n'));
    assert_eq!(mode(&key), 0o600);
    let public = fs::read_to_string(dir.path().join("op1.key.pub")).unwrap();
    assert_eq!(public, format!("{public_hex}\n"));
    // The private key is never printed.
    let o = cix(["keygen", "--out", s(&dir.path().join("op2.key"))]);
    let seed = fs::read_to_string(dir.path().join("op2.key")).unwrap();
    assert!(!stdout(&o).contains(seed.trim()) && !stderr(&o).contains(seed.trim()));
    // Never overwrites.
    fails(["keygen", "--out", s(&key)]);
    assert_eq!(fs::read_to_string(&key).unwrap(), private);

    // A group/other-readable private key is refused when used.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let list = dir.path().join("list.ctl");
    ok([
        "trust",
        "new",
        "--file",
        s(&list),
        "--coalition",
        "c1",
        "--operator-key",
        s(&dir.path().join("op1.key.pub")),
        "--threshold",
        "1",
    ]);
    let err = fails(["trust", "sign", "--file", s(&list), "--key", s(&key)]);
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    assert!(!err.contains(&private[..16]), "{err}");
}

#[test]
fn keygen_token_prints_sha256_of_key_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("epoch1.key");
    let out = ok(["keygen", "--token", "--out", s(&key)]);
    let fp = out.trim();
    assert!(is_hex64(fp), "{out}");
    assert_eq!(mode(&key), 0o600);
    let text = fs::read_to_string(&key).unwrap();
    let bytes = hex::decode(text.trim()).unwrap();
    assert_eq!(bytes.len(), 32);
    assert_eq!(fp, hex::encode(Sha256::digest(&bytes)));
    assert!(!out.contains(text.trim()));
    assert!(!dir.path().join("epoch1.key.pub").exists());
}

fn show_json(list: &Path) -> Value {
    serde_json::from_str(&ok(["trust", "show", "--json", "--file", s(list)])).unwrap()
}

#[test]
fn offline_flow_new_members_epoch_sign_verify_show_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (k1, p1) = keygen(dir, "alice");
    let (k2, p2) = keygen(dir, "bob");
    let (_k3, p3) = keygen(dir, "carol");
    let (_t, _) = (
        ok(["keygen", "--token", "--out", s(&dir.join("epoch1.key"))]),
        (),
    );
    let list = dir.join("trust.ctl");
    let f = s(&list).to_string();

    let out = ok([
        "trust",
        "new",
        "--file",
        &f,
        "--coalition",
        "coal-1",
        "--operator-key",
        s(&p1),
        "--operator-key",
        s(&p2),
        "--operator-key",
        s(&p3),
        "--threshold",
        "2",
        "--expires-in",
        "90d",
    ]);
    assert!(out.contains("version 1"), "{out}");
    // Refuses an existing file without --force.
    let err = fails([
        "trust",
        "new",
        "--file",
        &f,
        "--coalition",
        "x",
        "--operator-key",
        s(&p1),
        "--threshold",
        "1",
    ]);
    assert!(err.contains("--force"), "{err}");

    let spki_a = "a".repeat(64);
    let spki_b = "b".repeat(64);
    let out = ok([
        "trust",
        "member",
        "add",
        "--file",
        &f,
        "--id",
        "bank-a",
        "--name",
        "Bank A",
        "--kind",
        "bank",
        "--capability",
        "contribute",
        "--capability",
        "query",
        "--tls-spki",
        &spki_a,
        "--endpoint",
        "a.example:7444",
    ]);
    assert!(out.contains("bank-a") && out.contains("version 2"), "{out}");
    ok([
        "trust",
        "member",
        "add",
        "--file",
        &f,
        "--id",
        "liaison-b",
        "--name",
        "Liaison B",
        "--kind",
        "liaison",
        "--capability",
        "replicate",
        "--tls-spki",
        &spki_b,
        "--sharing-basis-expires",
        "2099-01-01T00:00:00Z",
    ]);
    // A duplicate id is refused and the file is unchanged.
    let before = fs::read(&list).unwrap();
    let err = fails([
        "trust",
        "member",
        "add",
        "--file",
        &f,
        "--id",
        "bank-a",
        "--name",
        "x",
        "--kind",
        "bank",
        "--tls-spki",
        &"c".repeat(64),
    ]);
    assert!(err.contains("bank-a"), "{err}");
    // A bad fingerprint names the field.
    let err = fails([
        "trust",
        "member",
        "add",
        "--file",
        &f,
        "--id",
        "bank-c",
        "--name",
        "x",
        "--kind",
        "bank",
        "--tls-spki",
        "abc",
    ]);
    assert!(err.contains("tls_spki_sha256[0]"), "{err}");
    // A contact under the rule of a case reference, or refused naming it.
    let err = fails([
        "trust",
        "member",
        "update",
        "--file",
        &f,
        "--id",
        "bank-a",
        "--contact",
        "desk\tline",
    ]);
    assert!(err.contains("contact"), "{err}");
    assert_eq!(fs::read(&list).unwrap(), before);

    let out = ok([
        "trust",
        "epoch",
        "add",
        "--file",
        &f,
        "--id",
        "1",
        "--key-file",
        s(&dir.join("epoch1.key")),
        "--valid-from",
        "2024-01-01T00:00:00Z",
        "--valid-until",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(out.contains("version 4"), "{out}");

    // One signature of two: not acceptable.
    let out = ok(["trust", "sign", "--file", &f, "--key", s(&k1)]);
    assert!(out.contains("1 valid"), "{out}");
    let err = fails(["trust", "verify", "--file", &f]);
    assert!(
        err.contains("not acceptable") && err.contains("too few signatures"),
        "{err}"
    );
    assert!(err.contains("1 valid") && err.contains("2 needed"), "{err}");
    // Signing twice with the same key changes nothing.
    ok(["trust", "sign", "--file", &f, "--key", s(&k1)]);
    fails(["trust", "verify", "--file", &f]);

    let out = ok(["trust", "sign", "--file", &f, "--key", s(&k2)]);
    assert!(out.contains("2 valid"), "{out}");
    let out = ok(["trust", "verify", "--file", &f]);
    assert!(out.starts_with("acceptable"), "{out}");

    let v = show_json(&list);
    assert_eq!(v["coalition_id"], "coal-1");
    assert_eq!(v["version"], 4);
    assert_eq!(v["threshold"], 2);
    assert_eq!(v["signatures"], 2);
    assert_eq!(v["valid_signatures"], 2);
    assert_eq!(v["operator_keys"].as_array().unwrap().len(), 3);
    assert_eq!(v["operator_keys"][0]["id"], "alice");
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["id"], "bank-a");
    assert_eq!(members[0]["kind"], "bank");
    assert_eq!(
        members[0]["capabilities"],
        serde_json::json!(["contribute", "query"])
    );
    assert_eq!(members[0]["tls_spki_sha256"][0], spki_a.as_str());
    assert_eq!(members[0]["status"], "active");
    assert_eq!(members[1]["id"], "liaison-b");
    assert_eq!(
        members[1]["sharing_basis_expires_at"],
        "2099-01-01T00:00:00Z"
    );
    assert_eq!(v["epochs"][0]["id"], 1);
    let human = ok(["trust", "show", "--file", &f]);
    for want in [
        "coal-1",
        "bank-a",
        "liaison-b",
        "alice",
        "threshold   2 of 3",
        "signatures  2",
    ] {
        assert!(human.contains(want), "{want}: {human}");
    }

    // Keep the signed version 4, then edit: the signatures are dropped.
    let v4 = dir.join("v4.ctl");
    fs::copy(&list, &v4).unwrap();
    let out = ok([
        "trust",
        "member",
        "suspend",
        "--file",
        &f,
        "--id",
        "liaison-b",
        "--last-seq",
        "17",
    ]);
    assert!(
        out.contains("version 5") && out.contains("2 signature(s) dropped"),
        "{out}"
    );
    let v = show_json(&list);
    assert_eq!(v["signatures"], 0);
    assert_eq!(v["members"][1]["status"], "suspended");
    assert_eq!(v["members"][1]["suspended_after_seq"], 17);
    let err = fails(["trust", "verify", "--file", &f]);
    assert!(err.contains("0 valid"), "{err}");

    // Unsigned v5 as an update of v4: not enough current signatures.
    let err = fails(["trust", "verify", "--file", &f, "--current", s(&v4)]);
    assert!(err.contains("current operator keys"), "{err}");
    ok(["trust", "sign", "--file", &f, "--key", s(&k1)]);
    ok(["trust", "sign", "--file", &f, "--key", s(&k2)]);
    let out = ok(["trust", "verify", "--file", &f, "--current", s(&v4)]);
    assert!(
        out.contains("acceptable") && out.contains("from version 4 to 5"),
        "{out}"
    );
    // Identical list: acceptable, nothing to do.
    let out = ok(["trust", "verify", "--file", &f, "--current", s(&list)]);
    assert!(out.contains("identical"), "{out}");
    // Rollback: v4 offered to a node holding v5.
    let err = fails(["trust", "verify", "--file", s(&v4), "--current", &f]);
    assert!(
        err.contains("not acceptable") && err.contains("rollback"),
        "{err}"
    );
    assert!(
        err.contains("version 4") && err.contains("version 5"),
        "{err}"
    );
}

#[test]
fn operator_rotation_needs_old_and_new_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (k1, p1) = keygen(dir, "op1");
    let (k2, p2) = keygen(dir, "op2");
    let (k3, p3) = keygen(dir, "op3");
    let list = dir.join("t.ctl");
    let f = s(&list).to_string();
    ok([
        "trust",
        "new",
        "--file",
        &f,
        "--coalition",
        "c",
        "--operator-key",
        s(&p1),
        "--operator-key",
        s(&p2),
        "--threshold",
        "2",
    ]);
    ok(["trust", "sign", "--file", &f, "--key", s(&k1)]);
    ok(["trust", "sign", "--file", &f, "--key", s(&k2)]);
    let v1 = dir.join("v1.ctl");
    fs::copy(&list, &v1).unwrap();
    // Replace op2 by op3.
    let out = ok([
        "trust",
        "operators",
        "--file",
        &f,
        "--remove",
        s(&p2),
        "--add",
        s(&p3),
    ]);
    assert!(out.contains("version 2"), "{out}");
    ok(["trust", "sign", "--file", &f, "--key", s(&k1)]);
    ok(["trust", "sign", "--file", &f, "--key", s(&k3)]);
    // op1 + op3: the new keys agree but only one current key signed.
    let err = fails(["trust", "verify", "--file", &f, "--current", s(&v1)]);
    assert!(err.contains("current operator keys"), "{err}");
    let out = ok(["trust", "sign", "--file", &f, "--key", s(&k2)]);
    assert!(out.contains("2 valid"), "{out}");
    ok(["trust", "verify", "--file", &f, "--current", s(&v1)]);
}

#[test]
fn rotate_key_retires_every_key_before_the_continuation_point_and_adds_the_new_one_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_k1, p1) = keygen(dir, "alice");
    let (_old, old_pub) = keygen(dir, "log-old");
    let (_new, new_pub) = keygen(dir, "log-new");
    let list = dir.join("trust.ctl");
    let f = s(&list).to_string();
    ok([
        "trust",
        "new",
        "--file",
        &f,
        "--coalition",
        "x",
        "--operator-key",
        s(&p1),
        "--threshold",
        "1",
    ]);
    let spki = "c".repeat(64);
    ok([
        "trust",
        "member",
        "add",
        "--file",
        &f,
        "--id",
        "bank-c",
        "--name",
        "Bank C",
        "--kind",
        "bank",
        "--capability",
        "contribute",
        "--tls-spki",
        &spki,
        "--signing-key",
        s(&old_pub),
    ]);
    let out = ok([
        "trust",
        "member",
        "rotate-key",
        "--file",
        &f,
        "--id",
        "bank-c",
        "--signing-key",
        s(&new_pub),
        "--from-seq",
        "42",
    ]);
    assert!(out.contains("from seq 42"), "{out}");
    let keys = show_json(&list)["members"][0]["signing_keys"].clone();
    assert_eq!(keys[0]["retired"], true);
    assert_eq!(keys[0]["last_seq"], 41);
    assert_eq!(keys[1]["retired"], false);
    assert_eq!(keys[1]["first_seq"], 42);
    // The same key again, or a continuation point of 0, is refused.
    let err = fails([
        "trust",
        "member",
        "rotate-key",
        "--file",
        &f,
        "--id",
        "bank-c",
        "--signing-key",
        s(&new_pub),
        "--from-seq",
        "50",
    ]);
    assert!(err.contains("already has signing key"), "{err}");
    let err = fails([
        "trust",
        "member",
        "rotate-key",
        "--file",
        &f,
        "--id",
        "bank-c",
        "--signing-key",
        s(&old_pub),
        "--from-seq",
        "0",
    ]);
    assert!(err.contains("continuation point"), "{err}");
}

#[test]
fn help_states_file_formats() {
    let mut commands: Vec<Vec<&str>> = vec![
        vec!["keygen"],
        vec!["trust"],
        vec!["trust", "new"],
        vec!["trust", "member"],
        vec!["trust", "member", "add"],
        vec!["trust", "member", "update"],
        vec!["trust", "member", "suspend"],
        vec!["trust", "member", "reinstate"],
        vec!["trust", "member", "rotate-key"],
        vec!["trust", "member", "remove"],
        vec!["trust", "epoch"],
        vec!["trust", "epoch", "add"],
        vec!["trust", "epoch", "retire"],
        vec!["trust", "operators"],
        vec!["trust", "sign"],
        vec!["trust", "verify"],
        vec!["trust", "show"],
        vec!["trust", "publish"],
    ];
    for c in &mut commands {
        c.push("--help");
        let out = ok(c.iter());
        for want in [
            "cix.v1.SignedTrustList",
            "cix.v1.TrustList",
            "64 hex characters of the 32-byte Ed25519 seed",
            "mode 0600",
            "token key file",
        ] {
            assert!(
                out.contains(want),
                "`cix {}` lacks {want:?}:\n{out}",
                c.join(" ")
            );
        }
    }
}

#[test]
fn query_policy_is_set_checked_and_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_k1, p1) = keygen(dir, "alice");
    let list = dir.join("trust.ctl");
    let f = s(&list).to_string();
    ok([
        "trust",
        "new",
        "--file",
        &f,
        "--coalition",
        "coal-q",
        "--operator-key",
        s(&p1),
        "--threshold",
        "1",
        "--expires-in",
        "90d",
    ]);
    let v = show_json(&list);
    assert_eq!(v["query_policy"]["prefix_bits"], 20, "the default");
    let err = fails(["trust", "query-policy", "--file", &f, "--prefix-bits", "12"]);
    assert!(
        err.contains("query_policy.prefix_bits") && err.contains("16 to 24"),
        "{err}"
    );
    let out = ok([
        "trust",
        "query-policy",
        "--file",
        &f,
        "--prefix-bits",
        "18",
        "--bucket-size",
        "32",
        "--prefixes-per-day",
        "5000",
    ]);
    assert!(out.contains("18 prefix bits"), "{out}");
    let v = show_json(&list);
    assert_eq!(v["query_policy"]["prefix_bits"], 18);
    assert_eq!(v["query_policy"]["bucket_size"], 32);
    assert_eq!(v["query_policy"]["prefixes_per_day"], 5000);
    assert_eq!(v["query_policy"]["requests_per_second"], 10, "kept default");
}
