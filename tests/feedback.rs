//! Feedback to the contributor on real nodes over real mutual TLS: the
//! origin refuses `Federation.Feedback` while its `[feedback] mode` is off;
//! hostile items (from a peer with its own certificate, on the wire) are
//! refused one by one naming the field and the rule, and record nothing;
//! false positives from two distinct senders flag the indicator for review;
//! a retry counts once; a sender's durable queue reaches the origin across
//! the origin's kill -9 and the sender's restart, and more than a request's
//! worth of it arrives exactly once however often the sender (and once the
//! origin) is killed mid-delivery; a hit confirmed through
//! `cix.v1.Dispositions` at a bank reaches the liaison's `cix.v1.Outcomes`;
//! anonymous feedback reaches the origin only as an operator's daily counts
//! (hostile relay items refused one by one, no sender id on the wire to the
//! origin, in the origin's record, the relay's files or its log lines, and
//! two anonymous false positives flag the indicator); and the Feedback messages
//! peers exchanged (captured on the peer listener) carry no `reported`, no
//! case reference and no raw value.

mod support;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cix::{
    feedback::queue::Queue,
    outcome::{day_string, utc_day, Action, FeedbackOutcome, FeedbackSink, IndicatorRef},
    proto::{self, FeedbackAction, FeedbackItem, FeedbackRequest},
};
use support::*;
use tonic::Code;

const CASE: &str = "case-feedback-7";
const RAW_A: &str = "DE89370400440532013000";
const RAW_B: &str = "GB82WEST12345698765432";
const RAW_C: &str = "FR1420041010050500013M02606";

fn today() -> i64 {
    utc_day(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
}

fn fb(seq: u64, outcome: proto::FeedbackOutcome, day: i64) -> FeedbackItem {
    FeedbackItem {
        seq,
        outcome: outcome as i32,
        actions: vec![],
        date: day_string(day),
        anonymous_senders: 0,
    }
}

async fn send(
    c: &Coalition,
    to: usize,
    from: usize,
    items: Vec<FeedbackItem>,
) -> Result<proto::FeedbackResponse, tonic::Status> {
    c.federation(to, from)
        .await
        .unwrap()
        .feedback(FeedbackRequest { items })
        .await
        .map(|r| r.into_inner())
}

/// A log line without its colour codes.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Waits (bounded) until `f` holds of node `i`'s Status.
async fn wait_status(
    c: &Coalition,
    i: usize,
    what: &str,
    f: impl Fn(&proto::StatusResponse) -> bool,
) -> proto::StatusResponse {
    let start = Instant::now();
    loop {
        let s = c.nodes[i].status().await;
        if f(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node {} never reached {what}: {s:?}",
            c.ids[i]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_refuses_feedback_while_off_and_hostile_items_one_by_one() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c", "op-d", "bank-e"]);
    c.list.members[3].kind = proto::MemberKind::Operator as i32;
    c.list.members[4]
        .capabilities
        .retain(|cap| *cap != proto::PeerCapability::Feedback as i32);
    c.rewrite_root();
    c.start_all();
    let day = today();

    // Off (the default): refused whole, nothing recorded, counted.
    let e = send(
        &c,
        0,
        1,
        vec![fb(1, proto::FeedbackOutcome::Confirmed, day)],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(
        e.message().contains("[feedback] mode = off"),
        "{}",
        e.message()
    );
    let counters = c.nodes[0].counters("bank-b").await;
    assert_eq!(reason_count(&counters.requests_refused, "feedback_off"), 1);
    assert_eq!(c.nodes[0].status().await.feedback_received, 0);

    c.nodes[0].stop();
    feedback_on(&c.nodes[0]);
    c.nodes[0].start();
    let added = c
        .contribute(
            0,
            vec![
                item(proto::Kind::Iban, RAW_A),
                item(proto::Kind::Iban, RAW_B),
            ],
            CASE,
        )
        .await;
    assert_eq!((added.first_seq, added.last_seq), (1, 2));
    let mut clients = c.nodes[0].clients().await;
    let retracted = clients
        .contribution
        .retract(proto::RetractRequest {
            identifiers: vec![id(proto::Kind::Iban, RAW_B)],
            reason: "wrong account".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retracted.retracted, 1);
    let retract_seq = c
        .heads(0)
        .await
        .into_iter()
        .find(|(o, _)| o == "liaison-a")
        .unwrap()
        .1;
    assert_eq!(retract_seq, 3);

    // Hostile items, each refused on its own, naming field and rule.
    let mut unknown_action = fb(1, proto::FeedbackOutcome::Confirmed, day);
    unknown_action.actions = vec![FeedbackAction::Blocked as i32, 99];
    let mut repeated_action = fb(1, proto::FeedbackOutcome::Confirmed, day);
    repeated_action.actions = vec![FeedbackAction::Closed as i32; 2];
    let mut anonymous = fb(1, proto::FeedbackOutcome::FalsePositive, day);
    anonymous.anonymous_senders = 3;
    let mut not_a_date = fb(1, proto::FeedbackOutcome::Confirmed, day);
    not_a_date.date = "2026-02-30".into();
    let mut unknown_outcome = fb(1, proto::FeedbackOutcome::Confirmed, day);
    unknown_outcome.outcome = 7;
    let hostile = vec![
        (
            fb(99, proto::FeedbackOutcome::Confirmed, day),
            "seq",
            "no such entry",
            "feedback_seq",
        ),
        (
            fb(0, proto::FeedbackOutcome::Confirmed, day),
            "seq",
            "0 is no entry",
            "feedback_seq",
        ),
        (
            fb(retract_seq, proto::FeedbackOutcome::FalsePositive, day),
            "seq",
            "retract",
            "feedback_seq",
        ),
        (
            fb(1, proto::FeedbackOutcome::Confirmed, day - 2),
            "date",
            "before the add entry's day",
            "feedback_date",
        ),
        (
            fb(1, proto::FeedbackOutcome::Confirmed, day + 2),
            "date",
            "tomorrow",
            "feedback_date",
        ),
        (not_a_date, "date", "UTC date", "feedback_date"),
        (
            unknown_outcome,
            "outcome",
            "confirmed, false_positive or flood",
            "feedback_outcome",
        ),
        (
            fb(1, proto::FeedbackOutcome::Unspecified, day),
            "outcome",
            "confirmed",
            "feedback_outcome",
        ),
        (
            unknown_action,
            "actions",
            "blocked or closed",
            "feedback_actions",
        ),
        (
            repeated_action,
            "actions",
            "at most once",
            "feedback_actions",
        ),
        (
            anonymous,
            "anonymous_senders",
            "operator",
            "feedback_anonymous",
        ),
    ];
    let answer = send(&c, 0, 1, hostile.iter().map(|h| h.0.clone()).collect())
        .await
        .unwrap();
    assert_eq!(answer.results.len(), hostile.len());
    for (i, (r, h)) in answer.results.iter().zip(&hostile).enumerate() {
        assert!(!r.accepted, "item {i} accepted");
        assert_eq!(r.field, format!("items[{i}].{}", h.1), "{r:?}");
        assert!(r.rule.contains(h.2), "item {i}: {r:?}");
    }
    // A member without the `feedback` capability: refused before any check.
    let e = send(
        &c,
        0,
        4,
        vec![fb(1, proto::FeedbackOutcome::Confirmed, day)],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());
    assert!(e.message().contains("`feedback`"), "{}", e.message());
    let counters = c.nodes[0].counters("bank-e").await;
    assert_eq!(
        reason_count(&counters.requests_refused, "missing_capability"),
        1
    );

    // Too many items: the whole request, before any item.
    let many = vec![fb(1, proto::FeedbackOutcome::Confirmed, day); 1001];
    let e = send(&c, 0, 1, many).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().contains("items: must hold 1 to 1000"),
        "{}",
        e.message()
    );
    let e = send(&c, 0, 1, vec![]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());

    let s = c.nodes[0].status().await;
    assert_eq!(s.feedback_received, 0, "nothing recorded");
    assert_eq!(s.feedback_received_refused, hostile.len() as u64);
    assert_eq!(s.feedback_flagged_for_review, 0);
    let counters = c.nodes[0].counters("bank-b").await;
    for reason in [
        "feedback_seq",
        "feedback_date",
        "feedback_outcome",
        "feedback_actions",
        "feedback_anonymous",
    ] {
        let want = hostile.iter().filter(|h| h.3 == reason).count() as u64;
        assert_eq!(
            reason_count(&counters.requests_refused, reason),
            want,
            "{reason}"
        );
    }
    assert_eq!(
        reason_count(&counters.requests_refused, "feedback_items"),
        2
    );

    // Two distinct senders' false positives flag review; a retry counts once.
    let fp = fb(1, proto::FeedbackOutcome::FalsePositive, day);
    for _ in 0..2 {
        let r = send(&c, 0, 1, vec![fp.clone()]).await.unwrap();
        assert!(r.results[0].accepted, "{r:?}");
    }
    let s = c.nodes[0].status().await;
    assert_eq!((s.feedback_received, s.feedback_flagged_for_review), (1, 0));
    let r = send(&c, 0, 2, vec![fp.clone()]).await.unwrap();
    assert!(r.results[0].accepted, "{r:?}");
    let s = c.nodes[0].status().await;
    assert_eq!((s.feedback_received, s.feedback_flagged_for_review), (2, 1));
    // An operator relaying two anonymous senders flags on its own.
    let mut relayed = fb(2, proto::FeedbackOutcome::FalsePositive, day);
    relayed.anonymous_senders = 2;
    let r = send(&c, 0, 3, vec![relayed]).await.unwrap();
    assert!(r.results[0].accepted, "{r:?}");
    assert_eq!(c.nodes[0].status().await.feedback_flagged_for_review, 2);

    // The liaison's own view, per indicator and per case.
    let listed = clients
        .outcomes
        .list(proto::ListOutcomesRequest {
            case_ref: CASE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let seqs: Vec<_> = listed.indicators.iter().map(|i| i.seq).collect();
    assert_eq!(seqs, [1, 2]);
    let one = listed.indicators[0].counts.unwrap();
    assert_eq!(
        (one.false_positives, one.false_positive_senders, one.flagged),
        (2, 2, 1)
    );
    assert_eq!(listed.indicators[0].case_ref, CASE);
    assert_eq!(listed.cases.len(), 1);
    assert_eq!(listed.cases[0].indicators, 2);
    assert_eq!(listed.cases[0].counts.unwrap().flagged, 2);
    let other = clients
        .outcomes
        .list(proto::ListOutcomesRequest {
            case_ref: "another case".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(other.indicators.is_empty());
    let e = clients
        .outcomes
        .list(proto::ListOutcomesRequest {
            case_ref: "\u{7}".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("case_ref:"), "{}", e.message());

    // The same through `cix outcomes`.
    let (ok, out, err) = run_cli(&c.nodes[0], &["outcomes", "--case-ref", CASE, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["indicators"][0]["seq"], 1);
    assert_eq!(v["indicators"][0]["counts"]["flagged"], 1);
    assert_eq!(v["cases"][0]["case_ref"], CASE);
    let (ok, out, err) = run_cli(&c.nodes[0], &["outcomes"]);
    assert!(ok, "{err}");
    assert!(out.contains("FLAGGED FOR REVIEW"), "{out}");

    // The review flag is logged with origin, seq and case reference, never
    // a raw value; it outlives a restart.
    c.nodes[0].restart();
    assert_eq!(c.nodes[0].status().await.feedback_flagged_for_review, 2);
    let logs = c.nodes[0].logs();
    let flag = logs
        .lines()
        .map(plain)
        .find(|l| l.contains("flagged for review") && l.contains(" seq=1 "))
        .unwrap_or_else(|| panic!("no review log:\n{logs}"));
    assert!(flag.contains("liaison-a") && flag.contains(CASE), "{flag}");
    for raw in [RAW_A, RAW_B] {
        assert!(!logs.contains(raw), "raw value in the logs");
        for (path, bytes) in files_under(&c.nodes[0].data_dir()) {
            assert!(!contains(&bytes, raw.as_bytes()), "raw value in {path:?}");
        }
    }
}

/// A liaison and a bank, feedback on at both, peer messages captured; the
/// liaison contributed `raw` (seq 1) and the bank holds it. Gives the
/// capture directory and the indicator's token.
async fn liaison_and_bank(raw: &str) -> (Coalition, PathBuf, Vec<u8>) {
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    let capture = c.tmp.path().join("capture");
    for n in &mut c.nodes {
        n.capture = Some(capture.clone());
        feedback_on(n);
    }
    c.start_all();
    let added = c
        .contribute(0, vec![item(proto::Kind::Iban, raw)], CASE)
        .await;
    assert_eq!(added.first_seq, 1);
    let token = added.results[0].token.clone();
    assert_eq!(token.len(), 32);
    c.converge().await;
    (c, capture, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_feedback_reaches_the_origin_across_its_kill9_and_carries_nothing_more() {
    let (mut c, capture, token) = liaison_and_bank(RAW_C).await;

    // The origin dies; the sender queues (the queue a disposition or flood
    // control writes through FeedbackSink) while stopped, then restarts.
    c.nodes[0].kill9();
    c.nodes[1].kill9();
    {
        let q = Queue::open(&c.nodes[1].data_dir()).unwrap();
        let about = IndicatorRef {
            origin: Arc::from("liaison-a"),
            seq: 1,
        };
        q.send(
            &about,
            FeedbackOutcome::Confirmed,
            &[Action::Reported, Action::Blocked, Action::Closed],
            today(),
        )
        .unwrap();
        q.send(&about, FeedbackOutcome::Flood, &[Action::Reported], today())
            .unwrap();
        // Not an add entry of the origin: refused for good, dropped, counted.
        let unknown = IndicatorRef {
            origin: Arc::from("liaison-a"),
            seq: 42,
        };
        q.send(&unknown, FeedbackOutcome::Confirmed, &[], today())
            .unwrap();
        assert_eq!(q.pending(), 3);
    }
    c.nodes[1].start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = c.nodes[1].status().await;
    assert_eq!(
        (s.feedback_pending, s.feedback_delivered),
        (3, 0),
        "held while the origin is down"
    );

    c.nodes[0].start();
    wait_status(&c, 1, "delivery", |s| {
        s.feedback_pending == 0 && s.feedback_delivered == 2 && s.feedback_refused == 1
    })
    .await;
    let s = c.nodes[0].status().await;
    assert_eq!(s.feedback_received, 2);
    assert_eq!(s.feedback_received_refused, 1);
    // Delivered is removed: after a restart of the sender nothing is resent.
    c.nodes[1].restart();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.nodes[1].status().await.feedback_pending, 0);
    assert_eq!(c.nodes[0].status().await.feedback_received, 2);

    // On the wire: one request with seq, outcome, actions and date only.
    let frames = feedback_frames(&capture);
    assert!(
        frames.iter().any(|(h, _)| h.starts_with("request")),
        "no Feedback request captured: {:?}",
        frames.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (header, data) in &frames {
        for needle in [
            b"reported".as_slice(),
            b"Reported",
            CASE.as_bytes(),
            RAW_C.as_bytes(),
            token.as_slice(),
        ] {
            assert!(
                !contains(data, needle),
                "{header} carries {:?}",
                String::from_utf8_lossy(needle)
            );
        }
        if header.starts_with("request") && data.len() > 5 {
            let req: FeedbackRequest = prost::Message::decode(&data[5..]).unwrap();
            assert_eq!(req.items.len(), 3, "{req:?}");
            assert_eq!(
                req.items[0].actions,
                [
                    FeedbackAction::Blocked as i32,
                    FeedbackAction::Closed as i32
                ]
            );
            assert!(req.items[1].actions.is_empty());
            assert_eq!(
                req.items.iter().map(|i| i.seq).collect::<Vec<_>>(),
                [1, 1, 42]
            );
            assert!(req.items.iter().all(|i| i.anonymous_senders == 0));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_confirmed_at_the_bank_reaches_the_liaisons_outcomes_without_the_report() {
    let (c, capture, token) = liaison_and_bank(RAW_A).await;
    let hit = |seq| proto::DispositionTarget {
        target: Some(proto::disposition_target::Target::Hit(proto::HitTarget {
            origin: "liaison-a".into(),
            seq,
            watch_reference: String::new(),
        })),
    };
    let mut bank = c.nodes[1].clients().await;
    // Under review gives no feedback.
    bank.dispositions
        .record(proto::RecordDispositionRequest {
            target: Some(hit(1)),
            disposition: "under_review".into(),
            actions: vec![],
            case_system_ref: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(c.nodes[1].status().await.feedback_queued, 0);
    bank.dispositions
        .record(proto::RecordDispositionRequest {
            target: Some(hit(1)),
            disposition: "confirmed".into(),
            actions: vec!["reported".into(), "closed".into()],
            case_system_ref: "BANK-CASE-0001".into(),
        })
        .await
        .unwrap();
    wait_status(&c, 1, "delivery", |s| {
        s.feedback_queued == 1 && s.feedback_delivered == 1 && s.feedback_pending == 0
    })
    .await;
    let listed = c.nodes[0].outcomes().await;
    assert_eq!(listed.indicators.len(), 1, "{listed:?}");
    let i = &listed.indicators[0];
    assert_eq!((i.seq, i.case_ref.as_str()), (1, CASE));
    let counts = i.counts.unwrap();
    assert_eq!(
        (
            counts.confirmations,
            counts.closed,
            counts.blocked,
            counts.false_positives
        ),
        (1, 1, 0, 0)
    );
    // The liaison's outcome figures are an origin's: per case, from the
    // feedback received (one confirmation: below 5, suppressed).
    let today = cix::outcome::day_string(cix::outcome::utc_day(cix::time::system_now().unwrap()));
    let figures = c.nodes[0].figures_of_day(&today).await;
    assert_eq!(figures.scope(), proto::FiguresScope::Origin);
    assert_eq!(figures.cases.len(), 1, "{figures:?}");
    assert_eq!(figures.cases[0].case_ref, CASE);
    assert!(figures.cases[0].cells.iter().all(|c| c.suppressed));
    let frames = feedback_frames(&capture);
    assert!(frames.iter().any(|(h, _)| h.starts_with("request")));
    for (header, data) in &frames {
        for needle in [
            b"reported".as_slice(),
            b"BANK-CASE-0001",
            CASE.as_bytes(),
            RAW_A.as_bytes(),
            token.as_slice(),
        ] {
            assert!(!contains(data, needle), "{header} carries {needle:?}");
        }
    }
}

/// Kills node `i` of a coalition with SIGKILL while its feedback queue still
/// holds items, and checks on disk that it did: gives what the dead node's
/// queue holds.
fn kill9_mid_delivery(c: &mut Coalition, i: usize) -> usize {
    c.nodes[i].kill9();
    let left = Queue::open(&c.nodes[i].data_dir()).unwrap().pending();
    assert!(left > 0, "the kill came after the delivery ended");
    left
}

/// Waits (bounded) until the origin has recorded more than `past` items
/// since its start: a Feedback request is being answered.
async fn origin_recording_past(c: &Coalition, origin: usize, past: u64) {
    c.nodes[origin]
        .wait_status_for("items recorded", Duration::from_secs(120), |s| {
            s.feedback_received > past
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_killed_again_and_again_mid_delivery_loses_and_doubles_nothing() {
    const LIAISON: usize = 0;
    const BANK: usize = 1;
    /// Add entries of the origin's log the items are about.
    const SEQS: u64 = 400;
    let mut c = Coalition::new(&["liaison-a", "bank-b"]);
    for n in &mut c.nodes {
        feedback_on(n);
    }
    c.start_all();
    let values: Vec<String> = (0..SEQS)
        .map(|i| format!("killed.sender.{i}@feedback.example"))
        .collect();
    let added = c
        .contribute(
            LIAISON,
            values.iter().map(|v| item(proto::Kind::Email, v)).collect(),
            CASE,
        )
        .await;
    assert_eq!((added.first_seq, added.last_seq), (1, SEQS));
    c.converge().await;

    // The bank's queue, filled while it is stopped: every (indicator,
    // outcome, day) once over the three days an outcome may be dated (from
    // the add entry's day, one day of skew, to tomorrow), with actions
    // varying by indicator and day. The origin counts each sender once per
    // indicator and outcome, its actions merged over the days; what it must
    // end up with is summed alongside.
    c.nodes[BANK].kill9();
    let day0 = today();
    let mut want: std::collections::BTreeMap<u64, proto::OutcomeCounts> = Default::default();
    let mut dates: std::collections::BTreeMap<u64, (i64, i64)> = Default::default();
    let mut queued = 0usize;
    {
        let q = Queue::open(&c.nodes[BANK].data_dir()).unwrap();
        for seq in 1..=SEQS {
            let about = IndicatorRef {
                origin: Arc::from("liaison-a"),
                seq,
            };
            let w = want.entry(seq).or_default();
            w.false_positive_senders = 1;
            dates.insert(seq, (day0 - 1, day0 + 1));
            for outcome in FeedbackOutcome::ALL {
                let (mut blocked_any, mut closed_any) = (false, false);
                for day in day0 - 1..=day0 + 1 {
                    let mut actions = vec![Action::Reported];
                    let blocked = (seq as i64 + day) % 2 == 0;
                    let closed = (seq as i64 * day) % 3 == 1;
                    if blocked {
                        actions.push(Action::Blocked);
                    }
                    if closed {
                        actions.push(Action::Closed);
                    }
                    blocked_any |= blocked;
                    closed_any |= closed;
                    q.send(&about, outcome, &actions, day).unwrap();
                    queued += 1;
                }
                w.blocked += u64::from(blocked_any);
                w.closed += u64::from(closed_any);
                match outcome {
                    FeedbackOutcome::Confirmed => w.confirmations += 1,
                    FeedbackOutcome::FalsePositive => w.false_positives += 1,
                    FeedbackOutcome::Flood => w.floods += 1,
                }
            }
        }
        assert_eq!(q.pending(), queued);
    }
    assert!(queued > 3000, "more than three requests of 1000: {queued}");

    // Killed as soon as the origin is recording the first request.
    c.nodes[BANK].start();
    origin_recording_past(&c, LIAISON, 0).await;
    let left = kill9_mid_delivery(&mut c, BANK);
    assert_eq!(left, queued, "nothing was answered yet");

    // Killed once a request was answered and removed.
    c.nodes[BANK].start();
    c.nodes[BANK]
        .wait_status_for("a request answered", Duration::from_secs(120), |s| {
            (s.feedback_pending as usize) < queued
        })
        .await;
    let left = kill9_mid_delivery(&mut c, BANK);
    assert!(left < queued);

    // The origin killed while it records, then restarted.
    c.nodes[BANK].start();
    let past = c.nodes[LIAISON].status().await.feedback_received;
    origin_recording_past(&c, LIAISON, past).await;
    c.nodes[LIAISON].kill9();
    c.nodes[LIAISON].start();

    // Killed again while the restarted origin records.
    origin_recording_past(&c, LIAISON, 0).await;
    kill9_mid_delivery(&mut c, BANK);

    // And once more right after its start, before it can finish.
    c.nodes[BANK].start();
    assert!(c.nodes[BANK].status().await.feedback_pending > 0);
    kill9_mid_delivery(&mut c, BANK);

    // Let it finish.
    c.nodes[BANK].start();
    let s = c.nodes[BANK]
        .wait_status_for("an empty queue", Duration::from_secs(300), |s| {
            s.feedback_pending == 0
        })
        .await;
    assert_eq!(s.feedback_refused, 0, "{s:?}");
    assert!(c.nodes[BANK].stop());
    let q = Queue::open(&c.nodes[BANK].data_dir()).unwrap();
    assert_eq!(q.pending(), 0, "empty on disk too");
    drop(q);

    // Every item recorded once: per indicator, the counts queued.
    let listed = c.nodes[LIAISON].outcomes().await;
    assert_eq!(
        listed.indicators.iter().map(|i| i.seq).collect::<Vec<_>>(),
        (1..=SEQS).collect::<Vec<_>>()
    );
    for i in &listed.indicators {
        let got = i.counts.unwrap();
        assert_eq!(got, want[&i.seq], "indicator {}", i.seq);
        let (first, last) = dates[&i.seq];
        assert_eq!(
            (i.first_date.as_str(), i.last_date.as_str()),
            (day_string(first).as_str(), day_string(last).as_str()),
            "indicator {}",
            i.seq
        );
    }
    let s = c.nodes[LIAISON].status().await;
    assert_eq!(s.feedback_received_refused, 0, "{s:?}");
    assert_eq!(s.feedback_flagged_for_review, 0, "one sender flags nothing");
}

/// The RelayFeedback frames in a capture file.
fn relay_frames(capture: &Path) -> Vec<(String, Vec<u8>)> {
    method_frames(capture, "/cix.v1.Federation/RelayFeedback")
}

fn relayed(origin: &str, item: FeedbackItem) -> proto::RelayedFeedback {
    proto::RelayedFeedback {
        origin: origin.into(),
        item: Some(item),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_feedback_reaches_the_origin_only_as_the_operators_daily_counts() {
    let mut c = Coalition::new(&["liaison-a", "bank-b", "bank-c", "operator"]);
    c.list.members[3].kind = proto::MemberKind::Operator as i32;
    c.rewrite_root();
    let capture = c.tmp.path().join("capture");
    let now = cix::time::system_now().unwrap();
    for (i, n) in c.nodes.iter_mut().enumerate() {
        n.capture = Some(capture.clone());
        let mode = if i == 1 || i == 2 {
            "anonymous"
        } else {
            "named"
        };
        n.append_config(&format!("\n[feedback]\nmode = \"{mode}\"\n"));
    }
    c.nodes[3].use_test_clock(now);
    c.start_all();
    let added = c
        .contribute(0, vec![item(proto::Kind::Iban, RAW_B)], CASE)
        .await;
    assert_eq!(added.first_seq, 1);
    let token = added.results[0].token.clone();
    c.converge().await;
    let day = today();

    // bank-b's analysts: a false positive, through its durable queue and
    // its delivery task (the anonymous route picks the operator).
    c.nodes[1].stop();
    {
        let q = Queue::open_anonymous(&c.nodes[1].data_dir()).unwrap();
        let about = IndicatorRef {
            origin: Arc::from("liaison-a"),
            seq: 1,
        };
        q.send(
            &about,
            FeedbackOutcome::FalsePositive,
            &[Action::Reported],
            day,
        )
        .unwrap();
    }
    c.nodes[1].start();
    wait_status(&c, 1, "delivery to the relay", |s| {
        s.feedback_delivered == 1 && s.feedback_pending == 0
    })
    .await;

    // bank-c on the wire: hostile items refused one by one, then a false
    // positive with `blocked`, sent twice (a retry counts once).
    let mut relay = c.federation(3, 2).await.unwrap();
    let mut fp = fb(1, proto::FeedbackOutcome::FalsePositive, day);
    fp.actions = vec![FeedbackAction::Blocked as i32];
    let mut counted = fp.clone();
    counted.anonymous_senders = 3;
    let answer = relay
        .relay_feedback(proto::RelayFeedbackRequest {
            items: vec![
                relayed("liaison-a", fp.clone()),
                relayed("no-such-member", fp.clone()),
                relayed("bank-c", fp.clone()),
                relayed("operator", fp.clone()),
                relayed("liaison-a", counted),
                relayed("liaison-a", fb(7, proto::FeedbackOutcome::Confirmed, day)),
                proto::RelayedFeedback {
                    origin: "liaison-a".into(),
                    item: None,
                },
                relayed("liaison-a", fp.clone()),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let shown: Vec<_> = answer
        .results
        .iter()
        .map(|r| (r.accepted, r.field.as_str(), r.retry_later))
        .collect();
    assert_eq!(
        shown,
        [
            (true, "", false),
            (false, "items[1].origin", false),
            (false, "items[2].origin", false),
            (false, "items[3].origin", false),
            (false, "items[4].item.anonymous_senders", false),
            // Past the head the relay holds: perhaps not replicated yet, so
            // neither recorded nor refused; the sender keeps it.
            (false, "items[5].item.seq", true),
            (false, "items[6].item", false),
            (true, "", false),
        ],
        "{answer:?}"
    );
    // A member that is not an operator relays nothing.
    let refused = c
        .federation(0, 2)
        .await
        .unwrap()
        .relay_feedback(proto::RelayFeedbackRequest {
            items: vec![relayed("bank-b", fp.clone())],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("not an operator"), "{refused:?}");

    // Past its burst of requests (the operator's clock stands still, so
    // nothing refills) a sender is refused whole, to retry later.
    for n in 1..=20 {
        let r = relay
            .relay_feedback(proto::RelayFeedbackRequest {
                items: vec![relayed("liaison-a", fp.clone())],
            })
            .await;
        if n < 20 {
            assert!(r.is_ok(), "request {n}: {r:?}");
        } else {
            let e = r.unwrap_err();
            assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
            assert!(e.message().contains("per member and UTC day"), "{e:?}");
        }
    }

    let s = wait_status(&c, 3, "relay received", |s| s.feedback_relay_received >= 3).await;
    assert!(s.feedback_relay_pending >= 1, "{s:?}");
    // Nothing reaches the origin before the operator's UTC day turns.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.nodes[0].status().await.feedback_received, 0);

    c.nodes[3].set_time(now + 86_400);
    wait_status(&c, 3, "the batch delivered", |s| {
        s.feedback_relay_forwarded == 2 && s.feedback_relay_pending == 0
    })
    .await;
    let s = wait_status(&c, 0, "received from the relay", |s| {
        s.feedback_received == 2
    })
    .await;
    assert_eq!(
        s.feedback_flagged_for_review, 1,
        "two distinct anonymous senders of false positives flag the indicator"
    );
    let listed = c.nodes[0].outcomes().await;
    assert_eq!(listed.indicators.len(), 1, "{listed:?}");
    let counts = listed.indicators[0].counts.unwrap();
    assert_eq!(
        (
            counts.false_positives,
            counts.blocked,
            counts.confirmations,
            counts.false_positive_senders,
            counts.flagged
        ),
        (2, 1, 0, 2, 1),
        "{counts:?}"
    );

    // On the wire to the origin: only counts, dated the operator's day
    // before, never a sender; what the banks sent the relay carries no
    // `reported`, case, value or token either.
    let to_origin = feedback_frames(&capture);
    let mut items = Vec::new();
    for (header, data) in &to_origin {
        if header.starts_with("request") && data.len() > 5 {
            let req: FeedbackRequest = prost::Message::decode(&data[5..]).unwrap();
            items.extend(req.items);
        }
    }
    let mut got: Vec<_> = items
        .iter()
        .map(|i| {
            (
                i.seq,
                i.actions.clone(),
                i.anonymous_senders,
                i.date.clone(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (1, vec![], 2, day_string(utc_day(now))),
            (
                1,
                vec![FeedbackAction::Blocked as i32],
                1,
                day_string(utc_day(now))
            ),
        ],
        "only the relay's counts reach the origin"
    );
    for (header, data) in to_origin.iter().chain(relay_frames(&capture).iter()) {
        for needle in [
            b"reported".as_slice(),
            b"bank-b",
            b"bank-c",
            CASE.as_bytes(),
            RAW_B.as_bytes(),
            token.as_slice(),
        ] {
            if needle.starts_with(b"bank-") && header.contains("RelayFeedback") {
                // bank-c named itself as an origin in a refused item.
                continue;
            }
            assert!(!contains(data, needle), "{header} carries {needle:?}");
        }
    }

    // The operator's figures: what it relayed, per origin and case (counts
    // below 5 suppressed).
    let relayed_day = day_string(utc_day(now));
    let figures = c.nodes[3].figures_of_day(&relayed_day).await;
    assert_eq!(figures.scope(), proto::FiguresScope::Operator);
    assert_eq!(
        figures
            .cases
            .iter()
            .map(|c| c.case_ref.as_str())
            .collect::<Vec<_>>(),
        [format!("liaison-a: {CASE}")],
        "{figures:?}"
    );

    // What the origin recorded names the operator, never a bank; the
    // relay keeps no sender id on disk or in its log lines about feedback.
    for i in [0, 3] {
        c.nodes[i].stop();
    }
    let record = files_under(&c.nodes[0].data_dir().join("feedback_received"));
    assert!(record.iter().any(|(_, d)| contains(d, b"operator")));
    let relay_files: Vec<_> = ["feedback_relay", "feedback", "feedback_anonymous"]
        .iter()
        .flat_map(|d| files_under(&c.nodes[3].data_dir().join(d)))
        .collect();
    assert!(!relay_files.is_empty());
    for (path, data) in record.iter().chain(relay_files.iter()) {
        for id in [b"bank-b".as_slice(), b"bank-c"] {
            assert!(!contains(data, id), "{} holds {id:?}", path.display());
        }
    }
    // Nor did the raw value reach any node's disk or log on the way.
    for i in [1, 2] {
        c.nodes[i].stop();
    }
    for n in &c.nodes {
        for (path, data) in files_under(&n.data_dir()) {
            assert!(
                !contains(&data, RAW_B.as_bytes()),
                "raw value in {}",
                path.display()
            );
        }
        assert!(!n.logs().contains(RAW_B), "raw value in a log");
    }
    for line in c.nodes[3].logs().lines().map(plain) {
        if line.to_lowercase().contains("feedback") {
            assert!(
                !line.contains("bank-b") && !line.contains("bank-c"),
                "the relay logged a sender: {line}"
            );
        }
    }
}
