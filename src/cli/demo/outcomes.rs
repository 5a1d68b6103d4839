//! The demo's Report and Disrupt steps: bank-b's analysts settle the two
//! alerts of the second case still open (one confirmed, reported and
//! blocked; one a false positive), the feedback reaches the liaison's node,
//! which prints what it heard, and the demo ends with the outcome figures
//! of bank-b's node, as `cix report outcomes` prints them.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Result};

use crate::{
    alerts::log::AlertEvent,
    api::convert,
    outcome::{day_string, utc_day},
    proto,
    testbed::coalition::LocalCoalition,
    time::system_now,
};

/// How long the demo waits for feedback to reach the liaison.
const FEEDBACK_WAIT: Duration = Duration::from_secs(30);

/// bank-b confirms the first of `open` and marks the second a false
/// positive; both settle their (watch entry, origin, case), and their
/// feedback reaches the liaison, whose node prints what it heard of `case`.
pub(super) async fn settle(c: &LocalCoalition, open: &[AlertEvent], case: &str) -> Result<()> {
    ensure!(open.len() >= 2, "expected two open alerts, {}", open.len());
    let mut bank_b = c.members[1].connect().await?;
    let steps: [(&AlertEvent, &str, &[&str]); 2] = [
        (&open[0], "confirmed", &["reported", "blocked"]),
        (&open[1], "false_positive", &[]),
    ];
    for (e, disposition, actions) in steps {
        let r = bank_b
            .dispositions
            .record(proto::RecordDispositionRequest {
                target: Some(proto::DispositionTarget {
                    target: Some(proto::disposition_target::Target::Alert(e.alert)),
                }),
                disposition: disposition.into(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
                case_system_ref: format!("BANKB-CASE-{:04}", e.alert),
            })
            .await?
            .into_inner();
        ensure!(
            r.in_force,
            "the disposition of alert {} is not in force",
            e.alert
        );
        println!(
            "-- bank-b's analyst recorded alert {} ({}, case {}) as {disposition}{}: the alert is never raised again for it",
            e.alert,
            e.reference,
            e.case_ref,
            if actions.is_empty() {
                String::new()
            } else {
                format!(" ({})", actions.join(", "))
            }
        );
    }
    let s = bank_b
        .admin
        .status(proto::StatusRequest {})
        .await?
        .into_inner();
    ensure!(
        s.alerts_settled >= 2,
        "bank-b settled {} alert triple(s), expected 2",
        s.alerts_settled
    );

    // The liaison hears of both, from bank-b by name, and of nothing else:
    // no token, kind, case, watch reference, and never `reported`.
    let start = Instant::now();
    let mut liaison = c.members[0].connect().await?;
    let heard = loop {
        let r = liaison
            .outcomes
            .list(proto::ListOutcomesRequest {
                case_ref: case.into(),
            })
            .await?
            .into_inner();
        let counts = r.cases.first().and_then(|c| c.counts);
        if counts
            .as_ref()
            .is_some_and(|k| k.confirmations >= 1 && k.false_positives >= 1)
        {
            break r;
        }
        if start.elapsed() > FEEDBACK_WAIT {
            bail!(
                "liaison-a heard {counts:?} of case {case} within {} s, expected a confirmation and a false positive",
                FEEDBACK_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "-- liaison-a's node heard back from bank-b (Federation.Feedback: sequence number, outcome, actions other than `reported`, date) {:.0} ms after the dispositions; cix outcomes --case-ref {case}:",
        start.elapsed().as_secs_f64() * 1e3
    );
    for i in &heard.indicators {
        let k = i.counts.unwrap_or_default();
        println!(
            "   seq {:<5} confirmed {} false positive {} blocked {} closed {}{} ({})",
            i.seq,
            k.confirmations,
            k.false_positives,
            k.blocked,
            k.closed,
            if k.flagged > 0 {
                ", flagged for review"
            } else {
                ""
            },
            i.first_date
        );
    }
    Ok(())
}

/// Prints bank-b's outcome figures of today and, when the demo's directory
/// is kept, writes their chart into it.
pub(super) async fn report(c: &LocalCoalition, kept: Option<&Path>) -> Result<()> {
    let mut bank_b = c.members[1].connect().await?;
    let today = day_string(utc_day(system_now()?));
    let r = bank_b
        .figures
        .outcomes(proto::OutcomesRequest {
            from: today.clone(),
            to: today.clone(),
        })
        .await?
        .into_inner();
    let figures = convert::figures_of(&r);
    let chart = kept.map(|d| d.join("outcomes.svg"));
    if let Some(path) = &chart {
        std::fs::write(path, figures.chart_svg()?)?;
    }
    println!(
        "-- bank-b's outcome figures for {today} (cix report outcomes; counts only, cells below {} suppressed):",
        figures.suppressed_below
    );
    let link = chart
        .as_ref()
        .map_or_else(String::new, |p| p.display().to_string());
    for line in figures.markdown(&link).lines() {
        let chart_line = line.starts_with("![");
        if !line.is_empty() && !line.starts_with('#') && (!chart_line || chart.is_some()) {
            println!("   {line}");
        }
    }
    Ok(())
}
