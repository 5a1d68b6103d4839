//! Trust lists across operator-key changes, on real nodes: a node down
//! while the operators rotated their keys (and the threshold) walks the
//! chain of key-changing lists its peers kept, version by version, to the
//! newest list; `cix trust publish` of a list past a key change to a node
//! that missed it ends with the node on that list through its peers; and a
//! node whose root file is newer than its stored list by a key change
//! starts only through a chain file (`cix trust chain`) whose every step
//! verifies, with an error naming the step or the missing versions.

mod support;

use std::path::{Path, PathBuf};

use cix::proto;
use prost::Message;
use support::*;

async fn held_list(c: &Coalition, node: usize) -> proto::SignedTrustList {
    c.trust_list_held(node, node).await.list.unwrap()
}

/// Node `to`'s answer to a caller at `have`, asked as member `from`.
async fn answer_from(
    c: &Coalition,
    to: usize,
    from: usize,
    have: u64,
) -> proto::GetTrustListResponse {
    c.federation(to, from)
        .await
        .unwrap()
        .get_trust_list(proto::GetTrustListRequest { have_version: have })
        .await
        .unwrap()
        .into_inner()
}

fn write_list(dir: &Path, name: &str, list: &proto::SignedTrustList) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, list.encode_to_vec()).unwrap();
    path
}

/// Sets the node's sync interval (seconds), replacing the tests' 1 s.
fn sync_every(n: &TestNode, seconds: u64) {
    let text = std::fs::read_to_string(&n.config).unwrap();
    assert!(text.contains("sync_seconds = 1\n"));
    std::fs::write(
        &n.config,
        text.replace("sync_seconds = 1\n", &format!("sync_seconds = {seconds}\n")),
    )
    .unwrap();
}

/// Names `chain` as the node's `[trust] chain_file`.
fn use_chain_file(n: &TestNode, chain: &Path) {
    let text = std::fs::read_to_string(&n.config).unwrap();
    let text = match text.find("\nchain_file = ") {
        Some(at) => {
            let end = at + 1 + text[at + 1..].find('\n').unwrap();
            format!("{}{}", &text[..at], &text[end..])
        }
        None => text,
    };
    std::fs::write(
        &n.config,
        text.replace(
            "sync_seconds = 1\n",
            &format!(
                "sync_seconds = 1\nchain_file = {:?}\n",
                chain.display().to_string()
            ),
        ),
    )
    .unwrap();
}

fn chain_file(lists: &[&proto::SignedTrustList]) -> Vec<u8> {
    proto::TrustListChain {
        lists: lists.iter().map(|l| (*l).clone()).collect(),
    }
    .encode_to_vec()
}

/// `cix serve` on the node's config: must fail; returns its stderr.
fn start_fails(n: &TestNode) -> String {
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&n.config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the node started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_through_an_operator_key_rotation_walks_the_chain_from_its_peers() {
    let mut c = Coalition::new(&["bank-a", "bank-b", "liaison-c"]);
    c.start_all();
    assert!(c.nodes[2].stop());
    // While liaison-c is down at version 1: version 2 replaces every
    // operator key and raises the threshold to 3, version 3 is signed by
    // the new keys only.
    let v2 = c.rotate_operators(3);
    assert!(c.publish(0, 1, v2.clone()).await.applied);
    let v3 = c.next_by_all(|l| l.members[0].name = "Bank A, after the rotation".into());
    assert!(c.publish(0, 1, v3.clone()).await.applied);
    c.wait_for_version(1, 3).await;
    // Version 3 alone is no update of version 1: the peers send the
    // rotation with it.
    let answer = answer_from(&c, 0, 1, 1).await;
    assert_eq!(answer.chain, std::slice::from_ref(&v2));
    assert_eq!(answer.list.as_ref(), Some(&v3));
    assert!(!answer.chain_partial);

    c.nodes[2].start();
    c.wait_for_version(2, 3).await;
    assert_eq!(held_list(&c, 2).await, v3);
    // It kept the rotation, and serves it in turn to a caller behind.
    let answer = answer_from(&c, 2, 0, 1).await;
    assert_eq!(answer.chain, [v2]);
    assert_eq!(answer.list, Some(v3.clone()));
    // A caller at the rotation or later needs no chain.
    assert!(answer_from(&c, 2, 0, 2).await.chain.is_empty());
    for peer in ["bank-a", "bank-b"] {
        assert!(
            c.nodes[2]
                .counters(peer)
                .await
                .trust_answers_refused
                .is_empty(),
            "{peer}"
        );
    }
    // The walk survives a restart: the node starts on version 3.
    c.nodes[2].restart();
    assert_eq!(c.nodes[2].status().await.trust_version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cix_trust_publish_past_a_key_change_to_a_node_that_missed_it_ends_on_the_new_list() {
    let mut c = Coalition::new(&["bank-a", "bank-b", "liaison-c"]);
    // liaison-c lists no endpoint (no peer pushes lists to it) and asks its
    // peers only once an hour, first while they are still down: it misses
    // the rotation.
    c.list.members[2].endpoint.clear();
    c.rewrite_root();
    sync_every(&c.nodes[2], 3600);
    c.nodes[2].start();
    c.nodes[0].start();
    c.nodes[1].start();
    let v2 = c.rotate_operators(2);
    assert!(c.publish(0, 1, v2).await.applied);
    let v3 = c.next_by_all(|l| l.members[1].name = "Bank B, after the rotation".into());
    assert!(c.publish(0, 1, v3.clone()).await.applied);
    c.wait_for_version(1, 3).await;
    assert_eq!(c.nodes[2].status().await.trust_version, 1);

    let file = write_list(c.tmp.path(), "v3.ctl", &v3);
    let (cert, key) = c.nodes[1].peer_cert();
    let out = std::process::Command::new(BIN)
        .args(["trust", "publish", "--file"])
        .arg(&file)
        .args([
            "--node",
            &c.nodes[2].peer_addr(),
            "--node-spki",
            &c.spkis[2],
            "--cert",
        ])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The node said what it lacked, then walked the chain from its peers.
    assert!(
        stderr.contains("version 3 is not signed by a threshold of the operator keys of version 1")
            && stderr.contains("if version 2 changed the operator keys"),
        "{stderr}"
    );
    assert!(stdout.contains("holds version 3"), "{stdout}");
    assert_eq!(held_list(&c, 2).await, v3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_file_newer_by_a_key_change_starts_the_node_only_through_a_chain_that_walks() {
    let mut c = Coalition::new(&["bank-a"]);
    c.start_all();
    assert!(c.nodes[0].stop());
    let dir = c.tmp.path().to_path_buf();
    let v1 = c.signed();
    // 1 → 2: keys A → B; 2 → 3: keys B → C (threshold 3); 4: signed by C.
    let v2 = c.rotate_operators(2);
    let v3 = c.rotate_operators(3);
    let v4 = c.next_by_all(|l| l.members[0].name = "Bank A, two rotations later".into());
    write_list(&c.nodes[0].dir, "trust/root.ctl", &v4);

    // No chain file: the start fails, naming the versions it lacks and what
    // the operator does.
    let err = start_fails(&c.nodes[0]);
    assert!(
        err.contains("(version 4) cannot be reached from the list kept in the store (version 1)")
            && err.contains("versions 2 to 3 changed the operator keys")
            && err.contains("chain_file"),
        "{err}"
    );

    let chain = dir.join("chain.ctc");
    use_chain_file(&c.nodes[0], &chain);
    // A gap: the chain lacks the first rotation.
    std::fs::write(&chain, chain_file(&[&v3])).unwrap();
    let err = start_fails(&c.nodes[0]);
    assert!(
        err.contains("trust list chain step 0 (version 3) as an update of version 1")
            && err.contains("version 2 changed the operator keys"),
        "{err}"
    );
    // A step signed below the old threshold: the first rotation signed by
    // one key of version 1 (and every new key).
    let mut thin = v2.clone();
    let a_keys: Vec<Vec<u8>> = v1.signatures.iter().map(|s| s.public_key.clone()).collect();
    let dropped = thin
        .signatures
        .iter()
        .position(|s| s.public_key == a_keys[0])
        .unwrap();
    thin.signatures.remove(dropped);
    std::fs::write(&chain, chain_file(&[&thin, &v3])).unwrap();
    let err = start_fails(&c.nodes[0]);
    assert!(
        err.contains("trust list chain step 0 (version 2) as an update of version 1")
            && err.contains(
                "too few signatures: 1 valid from distinct current operator keys, 2 needed"
            ),
        "{err}"
    );
    // A forged intermediate: the second rotation's body altered after signing.
    let mut forged = v3.clone();
    let n = forged.body.len();
    forged.body[n - 1] ^= 0x01;
    std::fs::write(&chain, chain_file(&[&v2, &forged])).unwrap();
    let err = start_fails(&c.nodes[0]);
    assert!(
        err.contains("trust list chain step 1") && err.contains("as an update of version 2"),
        "{err}"
    );
    // Nothing of the refused starts was kept.
    {
        let store = cix::store::Store::open(&c.nodes[0].data_dir(), 8).unwrap();
        assert_eq!(store.trust_list().unwrap().unwrap(), v1.encode_to_vec());
        assert!(store.trust_chain().unwrap().is_empty());
    }

    // The operators' chain file, written by `cix trust chain`.
    let files: Vec<PathBuf> = [(&v1, "v1.ctl"), (&v2, "v2.ctl"), (&v3, "v3.ctl")]
        .into_iter()
        .map(|(l, name)| write_list(&dir, name, l))
        .collect();
    let out = std::process::Command::new(BIN)
        .args(["trust", "chain", "--out"])
        .arg(&chain)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("chain of versions 1, 2, 3"));
    // `cix trust chain` refuses lists that do not walk.
    let out = std::process::Command::new(BIN)
        .args(["trust", "chain", "--out"])
        .arg(dir.join("bad.ctc"))
        .args([&files[0], &files[2]])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not walk one to the next"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    c.nodes[0].start();
    assert_eq!(c.nodes[0].status().await.trust_version, 4);
    assert_eq!(held_list(&c, 0).await, v4);
    // Both rotations are kept, for peers behind.
    assert_eq!(answer_from(&c, 0, 0, 1).await.chain, [v2, v3]);
}
