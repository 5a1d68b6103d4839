//! The coalition's outcome figures end to end: a real node's records
//! (indicators held, alerts raised) through Figures.Outcomes over mTLS and
//! `cix report outcomes` as a real process, in Markdown with its SVG chart,
//! CSV and JSON; small cells suppressed; no raw value in any output; the
//! capability and the period's rules.

mod support;

use cix::{
    outcome::{day_string, utc_day},
    proto::{self, Kind},
};
use support::*;

fn values(kind: Kind, k: usize) -> Vec<String> {
    (0..k)
        .map(|i| match kind {
            Kind::Email => format!("reported.{i}@figures.example"),
            Kind::Phone => format!("+4420794600{i:02}"),
            _ => format!("NL{:02}ABNA04171643{i:02}", 91 - i),
        })
        .collect()
}

fn report(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    run_cli(node, &[&["report", "outcomes"], args].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_indicators_and_alerts_suppresses_small_cells_and_renders_every_format() {
    let mut n = TestNode::new("liaison-fig");
    n.start();
    let emails = values(Kind::Email, 7);
    let phones = values(Kind::Phone, 2);
    let ibans: Vec<String> = [
        "GB82WEST12345698765432",
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "ES9121000418450200051332",
    ]
    .map(String::from)
    .to_vec();
    // Six of the e-mails are customers on the node's own watchlist.
    let items = emails[..6]
        .iter()
        .enumerate()
        .map(|(i, v)| proto::WatchItem {
            reference: format!("CUST-{i:04}"),
            item: Some(proto::watch_item::Item::Identifier(id(Kind::Email, v))),
        })
        .collect();
    watchlist(&n)
        .await
        .add(proto::WatchAddRequest { items })
        .await
        .unwrap();
    let mut sub = subscribe(&n, 0).await.unwrap();
    let mut c = n.clients().await;
    let mut all: Vec<proto::ContributionItem> =
        emails.iter().map(|v| item(Kind::Email, v)).collect();
    all.extend(phones.iter().map(|v| item(Kind::Phone, v)));
    all.extend(ibans.iter().map(|v| item(Kind::Iban, v)));
    let r = c
        .contribution
        .contribute(contribute_req(all, "CASE-FIG-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.last_seq - r.first_seq + 1, 15, "{r:?}");
    next(&mut sub, 6).await;

    let today = utc_day(cix::time::system_now().unwrap());
    let (from, to) = (day_string(today - 1), day_string(today));
    let figures = c
        .figures
        .outcomes(proto::OutcomesRequest {
            from: from.clone(),
            to: to.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let cell = |kind: &str, col: usize| {
        let row = figures
            .kinds
            .iter()
            .chain(figures.total.iter())
            .find(|r| r.kind == kind)
            .unwrap_or_else(|| panic!("{kind}: {figures:?}"));
        let c = &row.cells[col];
        (!c.suppressed).then_some(c.value)
    };
    assert_eq!(figures.node_id, "liaison-fig");
    assert_eq!(figures.suppressed_below, 5);
    assert_eq!(cell("email", 0), Some(7));
    assert_eq!(cell("phone", 0), None, "2 is below 5");
    // With the total shown, the next smallest (iban, 6) goes too, so that
    // the phones' count cannot be had by subtraction.
    assert_eq!(cell("iban", 0), None);
    assert_eq!(cell("all", 0), Some(15));
    assert_eq!(cell("email", 2), Some(6), "alerts raised");
    assert_eq!(cell("iban", 2), None);
    assert_eq!(cell("all", 2), Some(6));
    assert_eq!(figures.series.len(), 2);

    // The CLI in every format.
    let out = n.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let md = out.join("outcomes.md");
    let (ok, _, err) = report(
        &n,
        &["--from", &from, "--to", &to, "--out", md.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("| email | 7 |"), "{text}");
    assert!(text.contains("| phone | <5 |"), "{text}");
    assert!(text.contains("](outcomes.svg)"), "{text}");
    let svg = std::fs::read_to_string(out.join("outcomes.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("indicators contributed"));
    let (ok, csv, err) = report(&n, &["--from", &from, "--to", &to, "--format", "csv"]);
    assert!(ok, "{err}");
    assert!(csv.contains("kind,email,7,<5,6,"), "{csv}");
    assert!(csv.contains("kind,all,15,"), "{csv}");
    let (ok, json, err) = report(&n, &["--from", &from, "--to", &to, "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["total"]["cells"][0], 15);
    assert!(v["kinds"][2]["cells"][0].is_null() || v["kinds"][1]["cells"][0].is_null());

    // No raw value in any output, the chart included.
    let outputs = [text, svg, csv, json];
    for raw in emails.iter().chain(&phones).chain(&ibans) {
        for o in &outputs {
            assert!(!o.contains(raw.as_str()), "{raw} in a report");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_needs_admin_and_a_period_it_can_cover() {
    let mut n = TestNode::new("bank-fig");
    let screener = n.add_client("screener", &["screen"]);
    n.start();
    let mut c = n.clients().await;
    let ask = |from: &str, to: &str| proto::OutcomesRequest {
        from: from.into(),
        to: to.into(),
    };
    let e = c
        .figures
        .outcomes(ask("2026-13-01", "2026-12-01"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("from: must be a UTC date"), "{e:?}");
    let e = c
        .figures
        .outcomes(ask("2026-12-02", "2026-12-01"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("is before from"), "{e:?}");
    let e = c
        .figures
        .outcomes(ask("2020-01-01", "2026-12-01"))
        .await
        .unwrap_err();
    assert!(e.message().contains("at most 1096"), "{e:?}");

    let mut other = cix::client::Clients::new(n.identity_of(&screener).channel().await.unwrap());
    let e = other
        .figures
        .outcomes(ask("2026-12-01", "2026-12-01"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
}
