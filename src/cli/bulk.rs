//! Bulk input and output for `cix match` and `cix contribute`: values from
//! one argument, stdin (one per line) or a file (one per line, or CSV with a
//! named column), results to CSV or JSON lines, a progress bar and a summary.
//! A [`Row`]'s raw value is zeroized when the row is dropped, and the line
//! buffer values are read through is zeroized once read.

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use zeroize::Zeroize;

use crate::{
    api::convert,
    ident::{Kind, Reason},
    proto,
};

/// One input value with its 1-based row number.
pub struct Row {
    /// 1-based row number: the line of a file or stdin (empty lines count),
    /// or the data row of a CSV file (the header is not a row).
    pub row: usize,
    /// Its kind (`--kind`, or the row's kind column), or why it has none.
    pub kind: Result<Kind, Reason>,
    /// The value as read; the node normalizes it.
    pub value: String,
    /// The row's reference (`cix watchlist --ref-column`), else empty.
    pub reference: String,
}

impl Drop for Row {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl Row {
    /// This row as an identifier of a request.
    pub fn identifier(&self) -> proto::Identifier {
        proto::Identifier {
            kind: self.kind.map(convert::kind_to_proto).unwrap_or(0),
            value: self.value.clone(),
        }
    }
}

/// A node's reason for an item, as printed after its status: ` (REASON)`, or nothing.
pub(super) fn reason_suffix(r: &str) -> String {
    if r.is_empty() {
        String::new()
    } else {
        format!(" ({r})")
    }
}

/// Where values come from.
#[derive(clap::Args, Debug, Clone)]
pub struct Input {
    /// Identifier kind of every value: iban, pan, bank_account, merchant, wallet, email, phone, domain.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<Kind>,
    /// Read values from this file (one per line, or CSV with --column) instead of stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The file is CSV with a header row; take values from this column.
    #[arg(long, requires = "file")]
    pub column: Option<String>,
    /// With --column: take each row's kind from this column instead of --kind.
    #[arg(long, requires = "column")]
    pub kind_column: Option<String>,
    /// One value (may begin with '-': put it after `--`). Without it, values are read from stdin.
    pub value: Option<String>,
}

/// Parses a `--kind` value; the error lists every kind.
pub(super) fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).map_err(|_| {
        let all: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind; use one of {}", all.join(", "))
    })
}

impl Input {
    /// Whether this is a bulk run (file or stdin) rather than one value.
    pub fn is_bulk(&self) -> bool {
        self.value.is_none()
    }

    /// Reads the values: the one given, else the lines of the file or stdin
    /// (empty ones skipped) or a column of the CSV file. Needs `--kind` or
    /// `--kind-column`.
    pub fn read(&self) -> Result<Vec<Row>> {
        self.read_with_reference(None)
    }

    /// [`Input::read`], with each CSV row's reference taken from
    /// `ref_column` too.
    pub fn read_with_reference(&self, ref_column: Option<&str>) -> Result<Vec<Row>> {
        if ref_column.is_some() && self.column.is_none() {
            bail!("--ref-column needs a CSV file with --column");
        }
        if self.kind.is_none() && self.kind_column.is_none() {
            bail!("give --kind, or --kind-column for a CSV file with a kind per row");
        }
        let default = self.kind.ok_or(Reason::Kind);
        if let Some(v) = &self.value {
            return Ok(vec![Row {
                row: 1,
                kind: default,
                value: v.clone(),
                reference: String::new(),
            }]);
        }
        match (&self.file, &self.column) {
            (Some(path), Some(column)) => read_csv(
                path,
                column,
                self.kind_column.as_deref(),
                ref_column,
                default,
            ),
            (Some(path), None) => {
                let f = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                read_lines(std::io::BufReader::new(f), default)
            }
            (None, _) => read_lines(std::io::stdin().lock(), default),
        }
    }
}

fn read_lines(mut r: impl BufRead, kind: Result<Kind, Reason>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    // One buffer for every line, zeroized when done (or on an error).
    let mut buf = zeroize::Zeroizing::new(String::with_capacity(256));
    for i in 1.. {
        buf.clear();
        if r.read_line(&mut buf).context("reading input")? == 0 {
            break;
        }
        let line = buf.strip_suffix('\n').unwrap_or(&buf);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        rows.push(Row {
            row: i,
            kind,
            value: line.to_string(),
            reference: String::new(),
        });
    }
    Ok(rows)
}

fn read_csv(
    path: &Path,
    column: &str,
    kind_column: Option<&str>,
    ref_column: Option<&str>,
    kind: Result<Kind, Reason>,
) -> Result<Vec<Row>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers = r
        .headers()
        .with_context(|| format!("{}: reading the header row", path.display()))?;
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no column named {name:?}", path.display()))
    };
    let col = find(column)?;
    let kind_col = kind_column.map(find).transpose()?;
    let ref_col = ref_column.map(find).transpose()?;
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        // Row numbers count data rows from 1 (the header is not a row). The
        // csv error names only the position, never the content.
        let rec = rec.map_err(|e| {
            anyhow::anyhow!(
                "{}: data row {}: {}",
                path.display(),
                i + 1,
                csv_error_kind(&e)
            )
        })?;
        let value = rec.get(col).unwrap_or("").to_string();
        let kind = match kind_col {
            Some(k) => Kind::parse(rec.get(k).unwrap_or("")),
            None => kind,
        };
        let reference = ref_col.and_then(|c| rec.get(c)).unwrap_or("").to_string();
        rows.push(Row {
            row: i + 1,
            kind,
            value,
            reference,
        });
    }
    Ok(rows)
}

fn csv_error_kind(e: &csv::Error) -> &'static str {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { .. } => "wrong number of fields",
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8",
        csv::ErrorKind::Io(_) => "read error",
        _ => "malformed CSV",
    }
}

/// A progress bar on stderr (drawn only on a terminal).
pub(super) fn progress(total: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Result file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    // No doc comments here: clap shows them as help text, which would switch
    // `cix match --help` to its long layout for two self-explanatory values.
    #[allow(missing_docs)]
    Csv,
    #[allow(missing_docs)]
    Jsonl,
}

/// One result row of a bulk match.
#[derive(serde::Serialize)]
pub(super) struct ResultRow {
    /// Row number of the input value ([`Row::row`]).
    pub row: usize,
    /// The kind's tag, or `?` without one.
    pub kind: String,
    /// `MATCH`, `NO_MATCH`, `INVALID` or `UNKNOWN`.
    pub status: &'static str,
    /// The hits; none unless `MATCH`.
    pub hits: Vec<HitRow>,
    /// Why the node found the value invalid; empty (and left out of JSON) otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub invalid_reason: String,
}

/// One hit of a matched row.
#[derive(serde::Serialize)]
pub(super) struct HitRow {
    /// Member whose origin log holds the indicator.
    pub origin: String,
    /// The indicator's case reference.
    pub case_ref: String,
    /// `confirmed`, `probable` or `suspected` (`?` if unknown).
    pub tier: &'static str,
    /// When it was contributed (RFC 3339).
    pub created_at: String,
    /// Its expiry (RFC 3339); `None` if it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Key epoch of the matching token.
    pub epoch: u32,
}

/// An open result output: a file, or stdout.
pub(super) enum Out {
    /// CSV, its header row written.
    Csv(Box<csv::Writer<Box<dyn Write>>>),
    /// JSON lines.
    Jsonl(std::io::BufWriter<Box<dyn Write>>),
}

impl Out {
    /// Creates `path` (or, without one, writes to stdout) in `format`, by
    /// default JSON lines for a `.json`, `.jsonl` or `.ndjson` path and CSV
    /// otherwise; CSV starts with its header row.
    pub(super) fn open(path: Option<&Path>, format: Option<OutFormat>) -> Result<Out> {
        let format = format.unwrap_or(
            match path.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
                Some("json") | Some("jsonl") | Some("ndjson") => OutFormat::Jsonl,
                _ => OutFormat::Csv,
            },
        );
        let w: Box<dyn Write> = match path {
            Some(p) => Box::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Box::new(std::io::stdout()),
        };
        Ok(match format {
            OutFormat::Csv => {
                let mut w = csv::Writer::from_writer(w);
                w.write_record(["row", "kind", "status", "hits", "invalid_reason"])?;
                Out::Csv(Box::new(w))
            }
            OutFormat::Jsonl => Out::Jsonl(std::io::BufWriter::new(w)),
        })
    }

    /// Writes one result row; in CSV the hits are one field, each
    /// `origin|case_ref|tier|epoch N`, joined by `; `.
    pub(super) fn write(&mut self, r: &ResultRow) -> Result<()> {
        match self {
            Out::Csv(w) => {
                let hits: Vec<String> = r
                    .hits
                    .iter()
                    .map(|h| format!("{}|{}|{}|epoch {}", h.origin, h.case_ref, h.tier, h.epoch))
                    .collect();
                w.write_record([
                    r.row.to_string().as_str(),
                    &r.kind,
                    r.status,
                    &hits.join("; "),
                    &r.invalid_reason,
                ])?;
            }
            Out::Jsonl(w) => {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Flushes the output.
    pub(super) fn finish(self) -> Result<()> {
        match self {
            Out::Csv(mut w) => w.flush()?,
            Out::Jsonl(mut w) => w.flush()?,
        }
        Ok(())
    }
}
