//! Key-epoch rotation end to end between real nodes, with the removal of a
//! member: operators add epoch 2 (overlapping epoch 1) and remove a member in
//! one signed list; the remaining members install the new key; during the
//! overlap both epochs match and new contributions use epoch 2; the liaison
//! re-contributes its indicators under epoch 2 with `Contribution.Rekey`; when
//! epoch 1 ends its tokens stop matching on every path, while the removed
//! member, which only ever held the epoch-1 key, can compute no token that
//! matches anything contributed after the rotation.

mod support;

use std::time::{Duration, Instant};

use cix::{
    ident::{self, Kind as IdKind},
    keys::TokenKey,
    proto::{self, Kind, MatchStatus},
    token::Tokenizer,
};
use support::*;

const LIAISON: usize = 0;
const BANK: usize = 1;
const GONE: usize = 2;

fn email_token(key: &TokenKey, value: &str) -> Vec<u8> {
    let canonical = ident::normalize(IdKind::Email, value).unwrap();
    Tokenizer::new(key)
        .token(IdKind::Email, canonical.as_bytes())
        .0
        .to_vec()
}

async fn match_token(c: &Coalition, i: usize, token: &[u8]) -> proto::MatchResult {
    let mut cl = c.nodes[i].clients().await;
    let req = proto::MatchTokensRequest {
        tokens: token.to_vec(),
    };
    let mut resp = cl
        .screening
        .match_tokens(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let r = resp.message().await.unwrap().unwrap();
    r.results.into_iter().next().unwrap()
}

async fn epochs_hit(c: &Coalition, i: usize, value: &str) -> Vec<u32> {
    let mut cl = c.nodes[i].clients().await;
    let mut e: Vec<u32> = match_one(&mut cl, Kind::Email, value)
        .await
        .hits
        .iter()
        .map(|h| h.epoch)
        .collect();
    e.sort();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rekey_and_a_removed_member_locked_out_of_new_tokens() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "gone-c"]);
    // Every node's time stands at `now` until the test moves it.
    let now = cix::time::Clock::system().now();
    for n in &mut c.nodes {
        n.use_test_clock(now);
    }
    c.start_all();
    let rekeyed = "rotation-rekeyed@example.org";
    let left = "rotation-left-behind@example.org";
    let after = "rotation-after@example.org";
    let r = c
        .contribute(
            LIAISON,
            vec![item(Kind::Email, rekeyed), item(Kind::Email, left)],
            "CASE-ROT",
        )
        .await;
    assert!(r.results.iter().all(|x| x.epoch == 1));
    c.wait_match(BANK, Kind::Email, left, MatchStatus::Match)
        .await;

    // Members (not the one being removed) install the epoch-2 key first.
    let key1 = TokenKey::load(&c.token_key).unwrap();
    let key2 = TokenKey::generate();
    let key2_path = c.tmp.path().join("epoch-2.key");
    key2.write_new(&key2_path).unwrap();
    for i in [LIAISON, BANK] {
        c.nodes[i].append_config(&format!(
            "\n[[token_epoch]]\nid = 2\nkey_file = {:?}\n",
            key2_path.display().to_string()
        ));
        c.nodes[i].restart();
    }

    // Operators: epoch 2 from now, epoch 1 ends shortly; gone-c removed.
    let end1 = now + 8;
    let signed = c.next(|l| {
        l.epochs[0].valid_until = end1;
        l.epochs.push(proto::KeyEpoch {
            id: 2,
            valid_from: now - 1,
            valid_until: now + 365 * 86_400,
            key_sha256: key2.fingerprint(),
        });
        l.members.retain(|m| m.id != "gone-c");
    });
    let mut fed = c.federation(LIAISON, BANK).await.unwrap();
    fed.publish_trust_list(signed).await.unwrap();
    c.wait_for_version(LIAISON, 2).await;
    c.wait_for_version(BANK, 2).await;

    // The removed member is cut off.
    assert!(
        match c.federation(BANK, GONE).await {
            Err(_) => true,
            Ok(mut f) => f
                .get_trust_list(proto::GetTrustListRequest { have_version: 0 })
                .await
                .is_err(),
        },
        "a removed member still reaches a peer"
    );

    // Overlap: both epochs valid; old indicators still match (epoch 1).
    let s = c.nodes[BANK].status().await;
    assert_eq!(
        s.epochs.iter().filter(|e| e.valid_now).count(),
        2,
        "{:?}",
        s.epochs
    );
    assert_eq!(epochs_hit(&c, BANK, rekeyed).await, vec![1]);

    // Rekey: counts only; idempotent.
    let ids = vec![
        id(Kind::Email, rekeyed),
        id(Kind::Email, "never-contributed@example.org"),
        id(Kind::Email, "not an e-mail"),
    ];
    let r = c.rekey(LIAISON, ids.clone()).await;
    assert_eq!(
        (r.rekeyed, r.current, r.not_held, r.invalid, r.epoch),
        (1, 0, 1, 1, 2)
    );
    let r = c.rekey(LIAISON, ids).await;
    assert_eq!((r.rekeyed, r.current), (0, 1), "rekey is idempotent");

    // The rekeyed indicator reaches the bank under epoch 2, same case.
    let start = Instant::now();
    while epochs_hit(&c, BANK, rekeyed).await != vec![1, 2] {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rekey never replicated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bank = c.nodes[BANK].clients().await;
    let hit = match_one(&mut bank, Kind::Email, rekeyed).await;
    assert!(hit.hits.iter().all(|h| h.case_ref == "CASE-ROT"));

    // New contributions use the newest key.
    let r = c
        .contribute(LIAISON, vec![item(Kind::Email, after)], "CASE-AFTER")
        .await;
    assert_eq!(r.results[0].epoch, 2);
    assert_eq!(r.results[0].token, email_token(&key2, after));
    c.wait_match(BANK, Kind::Email, after, MatchStatus::Match)
        .await;
    // What the removed member can compute (epoch 1) matches nothing new.
    let guess = email_token(&key1, after);
    assert_ne!(guess, r.results[0].token);
    assert_eq!(
        status_of(&match_token(&c, BANK, &guess).await),
        MatchStatus::NoMatch
    );
    assert_eq!(
        status_of(&match_token(&c, BANK, &r.results[0].token).await),
        MatchStatus::Match
    );

    // Epoch 1 ends: its tokens stop matching on every path.
    let old_token = email_token(&key1, left);
    assert_eq!(
        status_of(&match_token(&c, BANK, &old_token).await),
        MatchStatus::Match,
        "epoch 1 still valid"
    );
    for n in &c.nodes {
        n.set_time(end1);
    }
    for i in [LIAISON, BANK] {
        let mut cl = c.nodes[i].clients().await;
        assert_eq!(
            status_of(&match_one(&mut cl, Kind::Email, left).await),
            MatchStatus::NoMatch,
            "an indicator left under the ended epoch"
        );
        assert_eq!(
            status_of(&match_token(&c, i, &old_token).await),
            MatchStatus::NoMatch,
            "a pre-hashed token of the ended epoch"
        );
        assert_eq!(
            epochs_hit(&c, i, rekeyed).await,
            vec![2],
            "rekeyed survives"
        );
    }
}
