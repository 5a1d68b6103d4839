//! `cix report`: documents a node's admin draws from its records.
//! `cix report case` writes the case package of an alert or a hit
//! (Reports.CaseReport): the JSON a bank attaches to its report to its
//! financial intelligence unit. `cix report outcomes` renders the
//! coalition's outcome figures (Figures.Outcomes,
//! [`crate::report::outcomes`]) as Markdown with an SVG chart beside it, as
//! CSV or as JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use super::{
    conn::{status_error, Conn},
    disposition::TargetArgs,
};
use crate::{
    api::convert,
    outcome::{day_string, utc_day},
    proto,
    time::system_now,
};

/// `cix report`.
#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// The case package of an alert or a hit, as JSON.
    Case(CaseArgs),
    /// The coalition's outcome figures for a period: indicators by kind,
    /// hits, alerts, confirmed, false positives, actions, median time to
    /// the first hit; per case from the feedback received. Counts only,
    /// cells below 5 suppressed.
    Outcomes(OutcomesArgs),
}

/// How the figures are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Markdown tables, with the chart as an SVG file beside them.
    Md,
    /// One CSV table.
    Csv,
    /// One JSON object; suppressed cells are `null`.
    Json,
}

/// `cix report case`.
#[derive(Args, Debug)]
pub struct CaseArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Write the package here instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `cix report outcomes`.
#[derive(Args, Debug)]
pub struct OutcomesArgs {
    /// How to reach the node.
    #[command(flatten)]
    pub conn: Conn,
    /// First UTC day, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// Last UTC day, included (default: today).
    #[arg(long)]
    pub to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the Markdown report's chart goes (default: beside --out with
    /// the extension .svg, or outcomes-FROM-TO.svg here).
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

/// Runs `cix report`.
pub(super) async fn report(c: ReportCommand) -> Result<()> {
    match c {
        ReportCommand::Case(a) => case(a).await,
        ReportCommand::Outcomes(a) => outcomes(a).await,
    }
}

async fn case(a: CaseArgs) -> Result<()> {
    let mut clients = a.conn.connect().await?;
    let r = clients
        .reports
        .case_report(proto::CaseReportRequest {
            target: Some(a.target.to_proto()),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let v: serde_json::Value =
        serde_json::from_str(&r.json).context("the node's case package is not JSON")?;
    let pretty = serde_json::to_string_pretty(&v)?;
    match &a.out {
        Some(path) => {
            write(path, &(pretty + "\n"))?;
            eprintln!("case package written to {}", path.display());
        }
        None => println!("{pretty}"),
    }
    Ok(())
}

async fn outcomes(a: OutcomesArgs) -> Result<()> {
    let to = match a.to {
        Some(t) => t,
        None => day_string(utc_day(system_now()?)),
    };
    let mut clients = a.conn.connect().await?;
    let report = clients
        .figures
        .outcomes(proto::OutcomesRequest {
            from: a.from.clone(),
            to: to.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let figures = convert::figures_of(&report);
    let text = match a.format {
        Format::Csv => figures.csv()?,
        Format::Json => figures.json()? + "\n",
        Format::Md => {
            let chart = a.chart.clone().unwrap_or_else(|| match &a.out {
                Some(out) => out.with_extension("svg"),
                None => PathBuf::from(format!("outcomes-{}-{}.svg", figures.from, figures.to)),
            });
            write(&chart, &figures.chart_svg()?)?;
            eprintln!("chart written to {}", chart.display());
            figures.markdown(&link(&chart, a.out.as_deref()))
        }
    };
    match &a.out {
        Some(out) => {
            write(out, &text)?;
            eprintln!("report written to {}", out.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// The chart's path as the report links it: relative to the report's
/// folder when both share one, else as given.
fn link(chart: &Path, report: Option<&Path>) -> String {
    let folder = report.and_then(Path::parent).unwrap_or(Path::new(""));
    chart
        .strip_prefix(folder)
        .unwrap_or(chart)
        .display()
        .to_string()
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
