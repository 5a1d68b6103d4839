//! Unit tests of the watchlist: uniqueness, completion, removal, sync,
//! reopening after a torn tail, the key check, lookups across merges and
//! counts by epoch.

use super::*;

fn key(dir: &Path) -> WatchKey {
    let path = dir.join("watch.key");
    if !path.exists() {
        WatchKey::generate(&path).unwrap();
    }
    WatchKey::load(&path).unwrap()
}

fn open(dir: &Path) -> Watchlist {
    Watchlist::open(&dir.join("watchlist"), key(dir)).unwrap()
}

fn tok(n: u32) -> Token {
    let mut t = [0u8; 32];
    t[..4].copy_from_slice(&n.to_be_bytes());
    t[31] = 0x5a;
    Token(t)
}

fn entry(r: &str, epochs: &[(u32, u32)]) -> NewEntry {
    NewEntry {
        reference: r.into(),
        kind: Kind::Iban,
        tokens: epochs.iter().map(|&(e, n)| (e, tok(n))).collect(),
    }
}

#[test]
fn entries_are_unique_on_reference_kind_and_token() {
    let d = tempfile::tempdir().unwrap();
    let w = open(d.path());
    let r = w
        .add(&[
            entry("a", &[(1, 10)]),
            entry("b", &[(1, 10)]),
            entry("a", &[(1, 11)]),
        ])
        .unwrap();
    assert!(r.iter().all(|(a, _)| *a == Added::Added));
    let before = std::fs::metadata(d.path().join("watchlist/journal"))
        .unwrap()
        .len();
    let again = w
        .add(&[entry("a", &[(1, 10)]), entry("b", &[(1, 10)])])
        .unwrap();
    assert_eq!(
        again,
        vec![
            (Added::AlreadyPresent, r[0].1),
            (Added::AlreadyPresent, r[1].1)
        ]
    );
    let after = std::fs::metadata(d.path().join("watchlist/journal"))
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing new, nothing written");
    // A repeat within one call is present too.
    let twice = w
        .add(&[entry("c", &[(1, 12)]), entry("c", &[(1, 12)])])
        .unwrap();
    assert_eq!(twice[0].0, Added::Added);
    assert_eq!(twice[1], (Added::AlreadyPresent, twice[0].1));
    assert_eq!(w.len(), 4);
    let mut hits = w.lookup(&w.hash(&tok(10))).to_vec();
    hits.sort();
    assert_eq!(
        hits,
        vec![r[0].1, r[1].1],
        "a token may have many references"
    );
}

#[test]
fn a_new_epoch_completes_an_entry_and_counts_show_what_lacks_it() {
    let d = tempfile::tempdir().unwrap();
    let w = open(d.path());
    let r = w
        .add(&[entry("a", &[(1, 10)]), entry("b", &[(1, 20)])])
        .unwrap();
    let c = w.counts();
    assert_eq!(c.entries, 2);
    assert_eq!(c.lacking(2), 2);
    let done = w.add(&[entry("a", &[(1, 10), (2, 110)])]).unwrap();
    assert_eq!(done, vec![(Added::Completed, r[0].1)]);
    let c = w.counts();
    assert_eq!(c.by_epoch, vec![(1, 2), (2, 1)]);
    assert_eq!(c.lacking(2), 1);
    assert_eq!(w.entry(r[0].1).unwrap().unwrap().epochs, vec![1, 2]);
    assert_eq!(w.lookup(&w.hash(&tok(110))).to_vec(), vec![r[0].1]);
    // Again: nothing new.
    let same = w.add(&[entry("a", &[(1, 10), (2, 110)])]).unwrap();
    assert_eq!(same[0].0, Added::AlreadyPresent);
    drop(w);
    let w = open(d.path());
    assert_eq!(w.counts().by_epoch, vec![(1, 2), (2, 1)]);
    assert_eq!(w.entry(r[0].1).unwrap().unwrap().epochs, vec![1, 2]);
}

#[test]
fn remove_by_reference_and_by_token() {
    let d = tempfile::tempdir().unwrap();
    let w = open(d.path());
    let r = w
        .add(&[
            entry("a", &[(1, 1)]),
            entry("a", &[(1, 2)]),
            entry("b", &[(1, 2)]),
            entry("c", &[(1, 3)]),
        ])
        .unwrap();
    let gone = w.remove(&[Removal::Reference("a".into())]).unwrap();
    assert_eq!(gone.per_item, vec![2]);
    assert_eq!(gone.ids, vec![r[0].1, r[1].1]);
    assert!(w.entry(r[0].1).unwrap().is_none());
    assert_eq!(w.lookup(&w.hash(&tok(2))).to_vec(), vec![r[2].1]);
    let by_token = w
        .remove(&[
            Removal::Tokens {
                reference: Some("x".into()),
                tokens: vec![tok(3)],
            },
            Removal::Tokens {
                reference: None,
                tokens: vec![tok(3)],
            },
        ])
        .unwrap();
    assert_eq!(
        by_token.per_item,
        vec![0, 1],
        "a reference given must match"
    );
    assert_eq!(w.len(), 1);
    assert_eq!(w.counts().by_epoch, vec![(1, 1)]);
    drop(w);
    let w = open(d.path());
    assert_eq!(w.len(), 1);
    assert_eq!(w.of_reference("b").unwrap().len(), 1);
    assert!(w.of_reference("a").unwrap().is_empty());
}

#[test]
fn sync_sweeps_only_on_commit() {
    let d = tempfile::tempdir().unwrap();
    let w = open(d.path());
    w.add(&[
        entry("a", &[(1, 1)]),
        entry("b", &[(1, 2)]),
        entry("c", &[(1, 3)]),
    ])
    .unwrap();
    // A broken session: marks, never commits.
    let mut broken = SyncSession::default();
    for (_, id) in w.add(&[entry("a", &[(1, 1)])]).unwrap() {
        broken.mark(id);
    }
    drop(broken);
    assert_eq!(w.len(), 3, "a broken sync removes nothing");
    let mut s = SyncSession::default();
    for (_, id) in w
        .add(&[entry("a", &[(1, 1)]), entry("d", &[(1, 4)])])
        .unwrap()
    {
        s.mark(id);
    }
    let swept = w.sync_commit(&s).unwrap();
    assert_eq!(swept.len(), 2);
    let refs: Vec<String> = w
        .page_by_reference(None, 10)
        .unwrap()
        .into_iter()
        .map(|v| v.reference)
        .collect();
    assert_eq!(refs, vec!["a", "d"]);
}

#[test]
fn a_torn_tail_is_dropped_at_open() {
    let d = tempfile::tempdir().unwrap();
    let w = open(d.path());
    w.add(&[entry("a", &[(1, 1)])]).unwrap();
    w.add(&[entry("b", &[(1, 2)])]).unwrap();
    drop(w);
    let path = d.path().join("watchlist/journal");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let w = open(d.path());
    assert_eq!(w.len(), 1);
    assert_eq!(w.lookup(&w.hash(&tok(1))).len(), 1);
    assert!(w.lookup(&w.hash(&tok(2))).is_empty());
    let added = w.add(&[entry("b", &[(1, 2)])]).unwrap();
    assert_eq!(added[0].0, Added::Added);
    drop(w);
    assert_eq!(open(d.path()).len(), 2, "the journal goes on after the cut");
}

#[test]
fn a_different_key_is_refused_naming_the_check_file() {
    let d = tempfile::tempdir().unwrap();
    open(d.path()).add(&[entry("a", &[(1, 1)])]).unwrap();
    let other = d.path().join("other.key");
    WatchKey::generate(&other).unwrap();
    let err = Watchlist::open(&d.path().join("watchlist"), WatchKey::load(&other).unwrap())
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, WatchError::WrongKey { .. }), "{msg}");
    assert!(
        msg.contains("key.check") && msg.contains("different watch key"),
        "{msg}"
    );
}

#[test]
fn lookups_hold_across_merges_of_the_delta() {
    let d = tempfile::tempdir().unwrap();
    let w = open(d.path());
    let n = 40_000u32;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let items: Vec<NewEntry> = chunk
            .iter()
            .map(|&i| entry(&format!("r{i}"), &[(1, i)]))
            .collect();
        w.add(&items).unwrap();
    }
    assert_eq!(w.len(), u64::from(n));
    for i in (0..n).step_by(997) {
        let hit = w.lookup(&w.hash(&tok(i)));
        assert_eq!(hit.len(), 1);
        assert_eq!(w.entry(hit[0]).unwrap().unwrap().reference, format!("r{i}"));
    }
    assert!(w.lookup(&w.hash(&tok(n + 1))).is_empty());
    let page = w.page_by_id(Some(9), 3).unwrap();
    assert_eq!(
        page.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    let hs: Vec<WatchHash> = [5, n + 7, 6].iter().map(|&i| w.hash(&tok(i))).collect();
    assert_eq!(
        w.lookup_all(&hs)
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>(),
        vec![0, 2]
    );
}
