//! The watchlist over real nodes and real mTLS: registering, duplicates,
//! completion after a key rotation, removal, sync (mark and sweep), invalid
//! items by reason, the capability and the config key it needs, durability
//! across a restart, and where values and references may (not) appear.

mod support;

use cix::{keys::TokenKey, proto};
use support::*;

const BOOK: &[(&str, &str)] = &[
    ("CUST-0001", "watch.canary.one@example.org"),
    ("CUST-0002", "watch.canary.two@example.org"),
    ("CUST-0003", "watch.canary.three@example.org"),
];

fn email(reference: &str, value: &str) -> proto::WatchItem {
    proto::WatchItem {
        reference: reference.into(),
        item: Some(proto::watch_item::Item::Identifier(id(
            proto::Kind::Email,
            value,
        ))),
    }
}

fn book() -> Vec<proto::WatchItem> {
    BOOK.iter().map(|(r, v)| email(r, v)).collect()
}

fn statuses(r: &proto::WatchAddResponse) -> Vec<(proto::WatchAddStatus, String)> {
    r.results
        .iter()
        .map(|x| (x.status(), x.invalid_reason.clone()))
        .collect()
}

async fn add(
    c: &mut cix::client::Clients,
    items: Vec<proto::WatchItem>,
) -> proto::WatchAddResponse {
    c.watchlist
        .add(proto::WatchAddRequest { items })
        .await
        .unwrap()
        .into_inner()
}

async fn count(c: &mut cix::client::Clients) -> proto::WatchCountResponse {
    c.watchlist
        .count(proto::WatchCountRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_again_remove_sync_and_restart_over_grpc() {
    use proto::WatchAddStatus as S;
    let mut node = TestNode::new("bank-watch");
    node.start();
    let mut c = node.clients().await;
    let r = add(&mut c, book()).await;
    assert!(statuses(&r).iter().all(|(s, _)| *s == S::Added), "{r:?}");
    let again = add(&mut c, book()).await;
    assert!(statuses(&again)
        .iter()
        .all(|(s, _)| *s == S::AlreadyPresent));
    // The same value under a second reference is a second entry.
    let second = add(&mut c, vec![email("CUST-9999", BOOK[0].1)]).await;
    assert_eq!(statuses(&second)[0].0, S::Added);
    assert_eq!(count(&mut c).await.entries, 4);

    let list = c
        .watchlist
        .list(proto::WatchListRequest {
            order: proto::WatchOrder::Reference as i32,
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let refs: Vec<_> = list.entries.iter().map(|e| e.reference.as_str()).collect();
    assert_eq!(refs, vec!["CUST-0001", "CUST-0002"]);
    assert!(!list.next_page_token.is_empty());
    assert_eq!(list.entries[0].epochs, vec![1]);

    let gone = c
        .watchlist
        .remove(proto::WatchRemoveRequest {
            references: vec!["CUST-9999".into()],
            items: vec![email("", BOOK[2].1)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.removed, 2);
    assert_eq!(gone.removed_per_reference, vec![1]);
    assert_eq!(gone.items[0].removed, 1);
    assert_eq!(count(&mut c).await.entries, 2);

    // A sync stream that ends without commit removes nothing.
    let sync = |items: Vec<proto::WatchItem>, commit: bool| {
        futures::stream::iter(vec![proto::WatchSyncRequest { items, commit }])
    };
    let broken = c
        .watchlist
        .sync(sync(vec![email(BOOK[0].0, BOOK[0].1)], false))
        .await
        .unwrap()
        .into_inner();
    assert!(!broken.committed);
    assert_eq!(broken.removed, 0);
    assert_eq!(count(&mut c).await.entries, 2);
    let done = c
        .watchlist
        .sync(sync(
            vec![
                email(BOOK[0].0, BOOK[0].1),
                email("CUST-0004", "watch.canary.four@example.org"),
            ],
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(done.committed);
    assert_eq!((done.added, done.already_present, done.removed), (1, 1, 1));

    drop(c);
    node.restart();
    let mut c = node.clients().await;
    assert_eq!(count(&mut c).await.entries, 2, "entries are durable");
    let after = add(&mut c, vec![email(BOOK[0].0, BOOK[0].1)]).await;
    assert_eq!(statuses(&after)[0].0, S::AlreadyPresent);
    let status = node.status().await;
    assert!(status.watchlist_enabled);
    assert_eq!(status.watch_entries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_items_are_answered_per_item_with_the_reason() {
    let mut node = TestNode::new("bank-watch-invalid");
    node.start();
    let mut c = node.clients().await;
    let token = |bytes: Vec<u8>, epoch: u32| proto::WatchItem {
        reference: "CUST-T".into(),
        item: Some(proto::watch_item::Item::Token(proto::PrecomputedToken {
            kind: proto::Kind::Email as i32,
            token: bytes,
            epoch,
        })),
    };
    let items = vec![
        email("CUST-1", "not an e-mail"),
        email("", BOOK[0].1),
        email("CUST 1", BOOK[0].1),
        email(&"x".repeat(129), BOOK[0].1),
        email(BOOK[0].1, BOOK[0].1),
        email(
            "watch.canary.one@example.org",
            "Watch.Canary.One@Example.org",
        ),
        token(vec![7; 31], 1),
        token(vec![7; 32], 9),
        proto::WatchItem {
            reference: "CUST-2".into(),
            item: Some(proto::watch_item::Item::Identifier(id(
                proto::Kind::Iban,
                "DE00 3704 0044 0532 0130 00",
            ))),
        },
        token(vec![7; 32], 1),
    ];
    let r = add(&mut c, items).await;
    let reasons: Vec<_> = statuses(&r).into_iter().map(|(_, why)| why).collect();
    assert_eq!(
        reasons,
        vec![
            "format",
            "reference_length",
            "reference_chars",
            "reference_length",
            "reference_is_value",
            "reference_is_value",
            "token_length",
            "unknown_epoch",
            "checksum",
            "",
        ]
    );
    assert_eq!(r.results[9].status(), proto::WatchAddStatus::Added);
    assert_eq!(
        count(&mut c).await.entries,
        1,
        "invalid items change nothing"
    );
    let too_many = c
        .watchlist
        .add(proto::WatchAddRequest {
            items: (0..10_001)
                .map(|i| email(&format!("R{i}"), BOOK[0].1))
                .collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::ResourceExhausted);
    assert!(
        too_many.message().contains("items"),
        "{}",
        too_many.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_without_the_capability_or_without_a_key_file() {
    let mut node = TestNode::new("bank-watch-refused");
    let screener = node.add_client("screener", &["screen"]);
    node.start();
    let mut c = node.identity_of(&screener).connect().await.unwrap();
    let e = c
        .watchlist
        .add(proto::WatchAddRequest { items: book() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("watchlist"), "{}", e.message());
    assert!(node.stop());

    let config = std::fs::read_to_string(&node.config).unwrap();
    let without = config.replace("[watchlist]\nkey_file = \"keys/watchlist.key\"\n", "");
    assert_ne!(config, without);
    std::fs::write(&node.config, without).unwrap();
    node.start();
    let mut c = node.clients().await;
    let e = c
        .watchlist
        .count(proto::WatchCountRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("watchlist.key_file"),
        "{}",
        e.message()
    );
    assert!(!node.status().await.watchlist_enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_never_reach_disk_logs_or_status_and_references_stay_in_the_watchlist() {
    let mut node = TestNode::new("bank-watch-leak");
    node.start();
    let mut c = node.clients().await;
    add(&mut c, book()).await;
    let status = node.status().await;
    drop(c);
    assert!(node.stop());
    let logs = node.logs();
    assert!(logs.contains("watchlist opened"));
    let status_bytes = prost::Message::encode_to_vec(&status);
    let watch_dir = node.data_dir().join("watchlist");
    let files = files_under(&node.data_dir());
    let mut references_seen = false;
    for (reference, value) in BOOK {
        assert!(
            !logs.contains(value) && !logs.contains(reference),
            "a log line names {reference}"
        );
        assert!(!contains(&status_bytes, reference.as_bytes()));
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, value.as_bytes()),
                "{} holds a value",
                path.display()
            );
            if contains(bytes, reference.as_bytes()) {
                assert!(
                    path.starts_with(&watch_dir),
                    "{} holds a reference",
                    path.display()
                );
                references_seen = true;
            }
        }
    }
    assert!(
        references_seen,
        "the search is not vacuous: the journal keeps references"
    );
    let key = std::fs::metadata(node.dir.join("keys/watchlist.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_rotation_entries_lack_the_new_epoch_until_registered_again() {
    let mut node = TestNode::new("bank-watch-rotation");
    node.start();
    let mut c = node.clients().await;
    add(&mut c, book()).await;
    drop(c);
    assert!(node.stop());
    let key2 = node.dir.join("keys/epoch-2.key");
    TokenKey::generate().write_new(&key2).unwrap();
    let now = cix::time::system_now().unwrap();
    node.append_config(&format!(
        "\n[[token_epoch]]\nid = 2\nkey_file = {:?}\nvalid_from = {:?}\nvalid_until = {:?}\n",
        key2,
        cix::time::format_time(now - 60),
        cix::time::format_time(now + 400 * 86_400),
    ));
    node.start();
    let status = node.status().await;
    assert_eq!(status.watch_newest_valid_epoch, 2);
    assert_eq!(status.watch_entries_lacking_newest_epoch, 3);
    let mut c = node.clients().await;
    let r = add(&mut c, book()).await;
    assert!(
        r.results
            .iter()
            .all(|x| x.status() == proto::WatchAddStatus::Completed),
        "{r:?}"
    );
    let status = node.status().await;
    assert_eq!(status.watch_entries, 3);
    assert_eq!(status.watch_entries_lacking_newest_epoch, 0);
    let n = count(&mut c).await;
    assert_eq!(
        n.by_epoch
            .iter()
            .map(|e| (e.epoch, e.entries))
            .collect::<Vec<_>>(),
        vec![(1, 3), (2, 3)]
    );
}

fn cix_cli(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    run_cli(node, &[&["watchlist"], args].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_a_book_once_lists_syncs_and_removes() {
    let mut node = TestNode::new("bank-watch-cli");
    node.start();
    let csv = node.dir.join("book.csv");
    let mut text = String::from("customer_id,email\n");
    for (r, v) in BOOK {
        text.push_str(&format!("{r},{v}\n"));
    }
    text.push_str("CUST-BAD,not an e-mail\n");
    std::fs::write(&csv, &text).unwrap();
    let csv_s = csv.to_str().unwrap();
    let args = [
        "add",
        "--kind",
        "email",
        "--file",
        csv_s,
        "--column",
        "email",
        "--ref-column",
        "customer_id",
    ];
    let (ok, out, err) = cix_cli(&node, &args);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("3 added, 0 already present, 0 completed, 1 invalid"),
        "{out}"
    );
    assert!(out.contains("invalid (format): 1 row(s): 4"), "{out}");
    let (_, out, _) = cix_cli(&node, &args);
    assert!(out.contains("0 added, 3 already present"), "{out}");
    for (_, v) in BOOK {
        assert!(!out.contains(v), "the summary never shows values");
    }
    let (ok, out, _) = cix_cli(&node, &["list", "--by-reference"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.starts_with("CUST-0001\temail\tepochs 1"), "{out}");

    std::fs::write(
        &csv,
        format!("customer_id,email\n{},{}\n", BOOK[1].0, BOOK[1].1),
    )
    .unwrap();
    let mut sync = args;
    sync[0] = "sync";
    let (ok, out, err) = cix_cli(&node, &sync);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("0 added, 1 already present, 0 completed, 0 invalid, 2 removed"),
        "{out}"
    );
    let (ok, out, _) = cix_cli(&node, &["remove", "--ref", BOOK[1].0]);
    assert!(ok);
    assert!(out.contains("1 removed"), "{out}");
    let (_, out, _) = cix_cli(&node, &["count"]);
    assert!(out.starts_with("0 entries"), "{out}");
}
