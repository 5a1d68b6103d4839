//! Prefix queries during a key rotation, between real nodes: while two key
//! epochs are valid, a member that keeps no replica screens through a peer
//! (`Screening.MatchRemote`) in the per-epoch form, sending for each epoch a
//! prefix of that epoch's token with the lengths adding up to the policy's
//! `prefix_bits`. The answering member, holding both keys and every request
//! it got (the peer listener's capture), can narrow a screened value down
//! to about one in 2^prefix_bits of a candidate range and no further;
//! indicators held only under the old epoch and only under the new one are
//! both found, as a local match finds them; bad per-epoch fields are
//! refused as INVALID_ARGUMENT naming the field, and counted.

mod support;

use std::path::Path;

use cix::{
    ident::{self, Kind as IdKind},
    index::token_prefix,
    keys::TokenKey,
    proto::{self, Kind, MatchStatus, PeerCapability},
    token::{Token, Tokenizer},
};
use prost::Message;
use support::*;

const LIAISON: usize = 0;
const ASKER: usize = 1;

/// The policy's prefix length in these tests.
const BITS: u32 = 16;

/// Candidate values the answering member tries: 2^20 account e-mails.
const RANGE: u32 = 1 << 20;

fn candidate(i: u32) -> String {
    format!("acct-{i:07}@bank.example")
}

/// A coalition in a rotation: liaison-a holds `old` under epoch 1 only and
/// `new` under epoch 2 only (plus a few more of each, so that both epochs
/// hold indicators); asker-c may only query (no replica). Both nodes hold
/// both keys; liaison-a captures its peer listener's messages in `capture`.
struct Rotating {
    c: Coalition,
    keys: [TokenKey; 2],
    capture: std::path::PathBuf,
}

async fn rotating(old: &str, new: &str) -> Rotating {
    let mut c = Coalition::new(&["liaison-a", "asker-c"]);
    c.list.members[ASKER].capabilities = vec![PeerCapability::Query as i32];
    c.list.members[LIAISON]
        .capabilities
        .retain(|&k| k != PeerCapability::Query as i32);
    c.list.query_policy = Some(proto::QueryPolicy {
        prefix_bits: BITS,
        bucket_size: 8,
        requests_per_second: 100,
        burst: 100,
        prefixes_per_day: 0,
    });
    c.rewrite_root();
    let capture = c.tmp.path().join("capture");
    c.nodes[LIAISON].capture = Some(capture.clone());
    let now = cix::time::Clock::system().now();
    for n in &mut c.nodes {
        n.use_test_clock(now);
    }
    c.start_all();
    let mut before = vec![item(Kind::Email, old)];
    before.extend((0..5).map(|i| item(Kind::Email, &format!("before-{i}@example.org"))));
    let r = c.contribute(LIAISON, before, "CASE-OLD").await;
    assert!(r.results.iter().all(|x| x.epoch == 1));

    let key1 = TokenKey::load(&c.token_key).unwrap();
    let key2 = TokenKey::generate();
    let key2_path = c.tmp.path().join("epoch-2.key");
    key2.write_new(&key2_path).unwrap();
    for i in [LIAISON, ASKER] {
        c.nodes[i].append_config(&format!(
            "\n[[token_epoch]]\nid = 2\nkey_file = {:?}\n",
            key2_path.display().to_string()
        ));
        c.nodes[i].restart();
    }
    let signed = c.next(|l| {
        l.epochs.push(proto::KeyEpoch {
            id: 2,
            valid_from: now - 1,
            valid_until: now + 365 * 86_400,
            key_sha256: key2.fingerprint(),
        });
    });
    c.publish(LIAISON, ASKER, signed.clone()).await;
    c.publish(ASKER, LIAISON, signed).await;
    c.wait_for_version(LIAISON, 2).await;
    c.wait_for_version(ASKER, 2).await;
    let s = c.nodes[ASKER].status().await;
    assert_eq!(s.epochs.iter().filter(|e| e.valid_now).count(), 2);

    let mut after = vec![item(Kind::Email, new)];
    after.extend((0..3).map(|i| item(Kind::Email, &format!("after-{i}@example.org"))));
    let r = c.contribute(LIAISON, after, "CASE-NEW").await;
    assert!(r.results.iter().all(|x| x.epoch == 2));
    Rotating {
        c,
        keys: [key1, key2],
        capture,
    }
}

async fn match_remote(c: &Coalition, ids: Vec<proto::Identifier>) -> proto::MatchResponse {
    let mut asker = c.nodes[ASKER].clients().await;
    asker
        .screening
        .match_remote(proto::MatchRemoteRequest {
            peer: "liaison-a".into(),
            identifiers: ids,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Every QueryPrefix request liaison-a's peer listener received, decoded
/// from its capture (each gRPC message after its 5-byte frame header).
fn captured_queries(dir: &Path) -> Vec<proto::QueryPrefixRequest> {
    let bytes = std::fs::read(dir.join("liaison-a.peer-grpc.bin")).unwrap();
    let label = b"\n--- request /cix.v1.Federation/QueryPrefix (";
    let mut body = Vec::new();
    let mut at = 0;
    while let Some(off) = find(&bytes[at..], label) {
        let start = at + off + label.len();
        let end_num = start + find(&bytes[start..], b" bytes)\n").unwrap();
        let n: usize = std::str::from_utf8(&bytes[start..end_num])
            .unwrap()
            .parse()
            .unwrap();
        let data = end_num + b" bytes)\n".len();
        body.extend_from_slice(&bytes[data..data + n]);
        at = data + n;
    }
    let mut out = Vec::new();
    let mut rest = body.as_slice();
    while rest.len() >= 5 {
        let n = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        out.push(proto::QueryPrefixRequest::decode(&rest[5..5 + n]).unwrap());
        rest = &rest[5 + n..];
    }
    assert!(rest.is_empty(), "a partial gRPC frame in the capture");
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether the tokens (epoch 1, epoch 2) of one value agree with every
/// request: as the answering member reads them, knowing one value was
/// screened. The per-epoch form constrains each epoch's token by its own
/// prefix; the older form sends B bits of every valid epoch's token.
fn consistent(t: &[Token; 2], queries: &[proto::QueryPrefixRequest]) -> bool {
    queries.iter().all(|q| {
        let legacy = q.prefixes.is_empty()
            || t.iter()
                .all(|t| q.prefixes.contains(&token_prefix(t, q.prefix_bits)));
        legacy
            && q.by_epoch.iter().all(|e| {
                e.prefixes.is_empty()
                    || e.prefixes
                        .contains(&token_prefix(&t[e.epoch as usize - 1], e.prefix_bits))
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_rotation_the_answering_member_narrows_a_screened_value_to_one_in_two_to_the_prefix_bits(
) {
    let secret = 777_777;
    let value = candidate(secret);
    assert_eq!(
        ident::normalize(IdKind::Email, &value).unwrap().as_str(),
        value,
        "candidates are written in canonical form"
    );
    let r = rotating(&value, "acct-new@bank.example").await;
    let out = match_remote(&r.c, vec![id(Kind::Email, &value)]).await;
    assert_eq!(status_of(&out.results[0]), MatchStatus::Match);

    let queries = captured_queries(&r.capture);
    assert!(
        queries.iter().any(|q| !q.by_epoch.is_empty()),
        "{queries:?}"
    );
    // What the asker sent about the value adds up to the policy's bits.
    let sent: u32 = queries
        .iter()
        .flat_map(|q| &q.by_epoch)
        .filter(|e| !e.prefixes.is_empty())
        .map(|e| e.prefix_bits)
        .sum();
    assert_eq!(sent, BITS, "{queries:?}");
    assert!(queries.iter().all(|q| q.prefixes.is_empty()));

    // The answering member's brute force: every candidate under both keys,
    // on two threads.
    let tk = [Tokenizer::new(&r.keys[0]), Tokenizer::new(&r.keys[1])];
    let started = std::time::Instant::now();
    let left: Vec<u32> = std::thread::scope(|s| {
        let halves: Vec<_> = [0, RANGE / 2]
            .into_iter()
            .map(|from| {
                let (tk, queries) = (&tk, &queries);
                s.spawn(move || {
                    (from..from + RANGE / 2)
                        .filter(|i| {
                            let v = candidate(*i);
                            let t = [
                                tk[0].token(IdKind::Email, v.as_bytes()),
                                tk[1].token(IdKind::Email, v.as_bytes()),
                            ];
                            consistent(&t, queries)
                        })
                        .collect::<Vec<u32>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    eprintln!(
        "brute force over {RANGE} candidates: {:?}, {} left",
        started.elapsed(),
        left.len()
    );
    assert!(left.contains(&secret));
    // About RANGE / 2^BITS = 16 remain (one before the per-epoch form).
    assert!(
        left.len() as u32 >= RANGE >> (BITS + 2),
        "{} candidates left: the asker gave away more than {BITS} bits",
        left.len()
    );
    assert!(left.len() as u32 <= RANGE >> (BITS - 2), "{}", left.len());
}

/// Origin, case, kind, epoch, seq.
type HitKey = (String, String, i32, u32, u64);

fn key(r: &proto::MatchResult) -> (i32, Vec<HitKey>) {
    let mut hits: Vec<_> = r
        .hits
        .iter()
        .map(|h| (h.origin.clone(), h.case_ref.clone(), h.kind, h.epoch, h.seq))
        .collect();
    hits.sort();
    (r.status, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_rotation_remote_matching_finds_old_only_and_new_only_indicators_like_a_local_match() {
    let (old, new) = (
        "held-under-epoch-1@example.org",
        "held-under-epoch-2@example.org",
    );
    let r = rotating(old, new).await;
    let ids = vec![
        id(Kind::Email, old),
        id(Kind::Email, new),
        id(Kind::Email, "nobody-here@example.org"),
        id(Kind::Email, "not an e-mail"),
    ];
    let remote = match_remote(&r.c, ids.clone()).await;
    let mut liaison = r.c.nodes[LIAISON].clients().await;
    let local = liaison
        .screening
        .r#match(proto::MatchRequest { identifiers: ids })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(remote.results.len(), local.results.len());
    for (a, b) in remote.results.iter().zip(&local.results) {
        assert_eq!(key(a), key(b));
    }
    use MatchStatus::*;
    let statuses: Vec<_> = remote.results.iter().map(status_of).collect();
    assert_eq!(statuses, [Match, Match, NoMatch, Invalid]);
    assert_eq!(remote.results[0].hits[0].epoch, 1);
    assert_eq!(remote.results[1].hits[0].epoch, 2);
    // Asked in the per-epoch form only: the counts probe and the prefixes.
    let queries = captured_queries(&r.capture);
    assert!(queries
        .iter()
        .all(|q| q.prefixes.is_empty() && !q.by_epoch.is_empty()));
    let c = r.c.nodes[LIAISON].counters("asker-c").await;
    assert_eq!(c.queries_answered, queries.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_epoch_prefix_fields_out_of_rule_are_invalid_argument_naming_the_field_and_counted() {
    let r = rotating("a@example.org", "b@example.org").await;
    let mut fed = r.c.federation(LIAISON, ASKER).await.unwrap();
    let by = |epoch, prefix_bits, prefixes: Vec<u32>| proto::QueryPrefixRequest {
        by_epoch: vec![proto::EpochPrefixes {
            epoch,
            prefix_bits,
            prefixes,
        }],
        ..Default::default()
    };
    let cases = [
        (by(9, 8, vec![1]), "by_epoch[0].epoch"),
        (by(1, BITS + 1, vec![1]), "by_epoch[0].prefix_bits"),
        (by(2, 4, vec![3, 16]), "by_epoch[0].prefixes[1]"),
        (
            proto::QueryPrefixRequest {
                prefixes: vec![1],
                prefix_bits: BITS,
                ..by(1, 8, vec![1])
            },
            "prefixes, prefix_bits",
        ),
    ];
    for (req, field) in cases {
        let e = fed.query_prefix(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "{}", e.message());
    }
    // A well-formed one is answered, with the counts per epoch.
    let ok = fed
        .query_prefix(by(2, 4, vec![3]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.buckets.len(), 1);
    assert!(ok.buckets[0].entries.iter().all(|e| e.epoch == 2));
    let mut counts: Vec<(u32, u64)> = ok.epochs.iter().map(|e| (e.epoch, e.active)).collect();
    counts.sort();
    assert_eq!(counts, [(1, 6), (2, 4)]);
    let c = r.c.nodes[LIAISON].counters("asker-c").await;
    let refused = |r: &str| reason_count(&c.requests_refused, r);
    assert_eq!(
        (
            refused("prefix_epoch"),
            refused("prefix_bits"),
            refused("prefix_range"),
            refused("prefix_count")
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(c.queries_answered, 1);
}
