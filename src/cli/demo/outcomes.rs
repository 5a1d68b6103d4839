//! The demo's Report and Disrupt steps: bank-b's analysts settle the two
//! alerts of the second case still open (one confirmed, reported and
//! blocked; one a false positive), and the demo ends with the outcome
//! figures of bank-b's node, as `cix report outcomes` prints them.

use std::path::Path;

use anyhow::{ensure, Result};

use crate::{
    alerts::log::AlertEvent,
    api::convert,
    outcome::{day_string, utc_day},
    proto,
    testbed::coalition::LocalCoalition,
    time::system_now,
};

/// bank-b confirms the first of `open` and marks the second a false
/// positive; both settle their (watch entry, origin, case).
pub(super) async fn settle(c: &LocalCoalition, open: &[AlertEvent]) -> Result<()> {
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
