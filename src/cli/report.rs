//! `cix report`: the bank's reports. `cix report case` writes the case
//! package of an alert or a hit (Reports.CaseReport, capability `admin`):
//! the JSON a bank attaches to its report to its financial intelligence
//! unit, printed or written to a file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{
    conn::{status_error, Conn},
    disposition::TargetArgs,
};
use crate::proto;

/// `cix report`.
#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// The case package of an alert or a hit, as JSON.
    Case(CaseArgs),
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

/// Runs `cix report`.
pub(super) async fn report(c: ReportCommand) -> Result<()> {
    match c {
        ReportCommand::Case(a) => {
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
                    std::fs::write(path, pretty + "\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("case package written to {}", path.display());
                }
                None => println!("{pretty}"),
            }
            Ok(())
        }
    }
}
