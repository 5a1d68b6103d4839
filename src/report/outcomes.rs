//! The coalition's outcome figures for a period: what a node's records say
//! happened to the indicators it holds (contributed, hit, alerted,
//! confirmed, false positives, actions, time to the first hit), per kind
//! and, on an origin or an operator node, per case or from relayed
//! feedback. Counts only; every cell below [`SUPPRESS_BELOW`] is
//! suppressed, and so is the next smallest cell of a column in which one
//! cell alone would be suppressed, so that no suppressed count can be
//! recovered by subtracting the others from the total.
//!
//! The sources hand over [`Fact`]s; [`aggregate`] makes [`Figures`], which
//! render as Markdown (with an SVG chart), CSV or JSON.

use std::collections::BTreeMap;

use plotters::prelude::*;
use serde::Serialize;

use crate::{
    ident::Kind,
    outcome::{day_string, Action, Disposition, FeedbackOutcome, DAY},
};

/// Counts below this are never shown.
pub const SUPPRESS_BELOW: u64 = 5;

/// The longest period a report covers, in days (three years).
pub const MAX_PERIOD_DAYS: i64 = 1096;

/// A report's period: UTC days, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// First day (days since 1970-01-01).
    pub from: i64,
    /// Last day, included.
    pub to: i64,
}

/// Why a period is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    /// `to` before `from`.
    #[error("to ({to}) is before from ({from})")]
    Reversed {
        /// The first day.
        from: String,
        /// The last day.
        to: String,
    },
    /// Longer than [`MAX_PERIOD_DAYS`].
    #[error("the period covers {days} days; at most {MAX_PERIOD_DAYS}")]
    TooLong {
        /// Its length.
        days: i64,
    },
}

impl Period {
    /// A checked period.
    pub fn new(from: i64, to: i64) -> Result<Period, PeriodError> {
        if to < from {
            return Err(PeriodError::Reversed {
                from: day_string(from),
                to: day_string(to),
            });
        }
        let days = to - from + 1;
        if days > MAX_PERIOD_DAYS {
            return Err(PeriodError::TooLong { days });
        }
        Ok(Period { from, to })
    }

    /// Whether `day` lies in the period.
    pub fn holds(&self, day: i64) -> bool {
        (self.from..=self.to).contains(&day)
    }

    /// Whether unix seconds `t` lie in the period.
    pub fn holds_time(&self, t: i64) -> bool {
        self.holds(t.div_euclid(DAY))
    }

    /// The chart's bucket length in days: a day up to a month, a week up to
    /// a year, 30 days beyond.
    pub fn bucket_days(&self) -> i64 {
        match self.to - self.from + 1 {
            0..=31 => 1,
            32..=366 => 7,
            _ => 30,
        }
    }
}

/// Whose figures these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// What this node holds and its member did (every node).
    Node,
    /// As [`Scope::Node`], with the feedback received about this node's own
    /// indicators, per case.
    Origin,
    /// As [`Scope::Node`], with the anonymous feedback this operator node
    /// relayed.
    Operator,
}

/// One thing that happened, as a source module tells it. No fact names an
/// identifier, token or watch reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// An indicator of `kind` was contributed at unix seconds `at`.
    Contributed {
        /// Its kind.
        kind: Kind,
        /// When.
        at: i64,
    },
    /// `count` hits answered on `day` for indicators of `kind`.
    Hits {
        /// The indicators' kind.
        kind: Kind,
        /// UTC day.
        day: i64,
        /// How many.
        count: u64,
    },
    /// An indicator of `kind` was hit for the first time, `delay` seconds
    /// after it was contributed, on `day`.
    FirstHit {
        /// Its kind.
        kind: Kind,
        /// UTC day of the hit.
        day: i64,
        /// Seconds from contribution to the hit.
        delay: i64,
    },
    /// An alert was raised on `day` for an indicator of `kind`.
    AlertRaised {
        /// Its kind.
        kind: Kind,
        /// UTC day.
        day: i64,
    },
    /// This member disposed of a hit or alert.
    Disposed {
        /// The indicator's kind.
        kind: Kind,
        /// UTC day.
        day: i64,
        /// The outcome in force.
        disposition: Disposition,
        /// The actions taken.
        actions: Vec<Action>,
    },
    /// Feedback this node received about one of its own indicators (on an
    /// origin) or relayed (on an operator node).
    Feedback {
        /// The case reference of the indicator (empty on an operator node,
        /// which knows none).
        case: String,
        /// UTC day.
        day: i64,
        /// What the sender said.
        outcome: FeedbackOutcome,
        /// The actions it named.
        actions: Vec<Action>,
        /// How many senders it stands for (1 for a named sender; the
        /// relay's count for anonymous feedback).
        senders: u64,
        /// Whether it counts for its outcome and its actions, or (a relay's
        /// count of anonymous senders who took an action) for its actions
        /// only.
        of_outcome: bool,
    },
}

/// A shown count, or `None` where suppressed.
pub type Cell = Option<u64>;

/// The columns of a per-kind row.
pub const KIND_COLUMNS: [&str; 9] = [
    "indicators",
    "hits",
    "alerts",
    "confirmed",
    "false_positive",
    "reported",
    "blocked",
    "closed",
    "median_hours_to_first_hit",
];

/// One kind's figures (or the total), in the order of [`KIND_COLUMNS`]
/// but the median, which is kept apart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindRow {
    /// The kind's name, or `all`.
    pub kind: String,
    /// Counts in the order of [`KIND_COLUMNS`] without the last.
    pub cells: Vec<Cell>,
    /// Median hours from contribution to first hit, where at least
    /// [`SUPPRESS_BELOW`] indicators had a first hit.
    pub median_hours_to_first_hit: Option<f64>,
}

/// The columns of a per-case row.
pub const CASE_COLUMNS: [&str; 5] = ["confirmed", "false_positive", "flood", "blocked", "closed"];

/// One case's feedback (on an origin), or the relayed total (operator).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseRow {
    /// The case reference; `relayed` on an operator node.
    pub case: String,
    /// Counts in the order of [`CASE_COLUMNS`].
    pub cells: Vec<Cell>,
}

/// One bucket of the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The bucket's first day, `YYYY-MM-DD`.
    pub from: String,
    /// Indicators contributed.
    pub indicators: Cell,
    /// Confirmed (dispositions and feedback).
    pub confirmed: Cell,
    /// False positives (dispositions and feedback).
    pub false_positive: Cell,
}

/// A period's figures, suppressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// The node whose records these are.
    pub node: String,
    /// Whose figures.
    pub scope: Scope,
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// Counts below this are suppressed.
    pub suppressed_below: u64,
    /// Per kind, in kind order; kinds with nothing are left out.
    pub kinds: Vec<KindRow>,
    /// Every kind.
    pub total: KindRow,
    /// Feedback received or relayed, per case.
    pub cases: Vec<CaseRow>,
    /// The chart's buckets.
    pub series: Vec<Point>,
}

#[derive(Default)]
struct KindAcc {
    counts: [u64; 8],
    delays: Vec<i64>,
}

/// Counts `facts` within `period` into suppressed figures.
pub fn aggregate(
    node: &str,
    scope: Scope,
    period: Period,
    facts: impl IntoIterator<Item = Fact>,
) -> Figures {
    let mut kinds: BTreeMap<Kind, KindAcc> = BTreeMap::new();
    let mut cases: BTreeMap<String, [u64; 5]> = BTreeMap::new();
    let step = period.bucket_days();
    let buckets = ((period.to - period.from) / step + 1) as usize;
    let mut series = vec![[0u64; 3]; buckets];
    let bucket = |day: i64| ((day - period.from) / step) as usize;
    for fact in facts {
        match fact {
            Fact::Contributed { kind, at } if period.holds_time(at) => {
                kinds.entry(kind).or_default().counts[0] += 1;
                series[bucket(at.div_euclid(DAY))][0] += 1;
            }
            Fact::Hits { kind, day, count } if period.holds(day) => {
                kinds.entry(kind).or_default().counts[1] += count;
            }
            Fact::FirstHit { kind, day, delay } if period.holds(day) => {
                kinds.entry(kind).or_default().delays.push(delay.max(0));
            }
            Fact::AlertRaised { kind, day } if period.holds(day) => {
                kinds.entry(kind).or_default().counts[2] += 1;
            }
            Fact::Disposed {
                kind,
                day,
                disposition,
                actions,
            } if period.holds(day) => {
                let acc = kinds.entry(kind).or_default();
                match disposition {
                    Disposition::Confirmed => {
                        acc.counts[3] += 1;
                        series[bucket(day)][1] += 1;
                    }
                    Disposition::FalsePositive => {
                        acc.counts[4] += 1;
                        series[bucket(day)][2] += 1;
                    }
                    Disposition::UnderReview => {}
                }
                for a in dedup(&actions) {
                    acc.counts[5 + a as usize] += 1;
                }
            }
            Fact::Feedback {
                case,
                day,
                outcome,
                actions,
                senders,
                of_outcome,
            } if period.holds(day) => {
                let row = cases.entry(case).or_default();
                let column = match outcome {
                    FeedbackOutcome::Confirmed => 0,
                    FeedbackOutcome::FalsePositive => 1,
                    FeedbackOutcome::Flood => 2,
                };
                if of_outcome {
                    row[column] += senders;
                    if column < 2 {
                        series[bucket(day)][1 + column] += senders;
                    }
                }
                for a in dedup(&actions) {
                    match a {
                        Action::Blocked => row[3] += senders,
                        Action::Closed => row[4] += senders,
                        // Never carried by feedback; ignored if it were.
                        Action::Reported => {}
                    }
                }
            }
            _ => {}
        }
    }

    let mut all = KindAcc::default();
    let raw: Vec<(Kind, KindAcc)> = kinds.into_iter().collect();
    for (_, acc) in &raw {
        for (t, c) in all.counts.iter_mut().zip(acc.counts) {
            *t += c;
        }
        all.delays.extend(&acc.delays);
    }
    let table: Vec<Vec<u64>> = raw.iter().map(|(_, a)| a.counts.to_vec()).collect();
    let shown = suppress(&table);
    let kind_rows = raw
        .iter()
        .zip(shown)
        .map(|((kind, acc), cells)| KindRow {
            kind: kind.as_str().to_string(),
            cells,
            median_hours_to_first_hit: median_hours(&acc.delays),
        })
        .collect();
    let total = KindRow {
        kind: "all".into(),
        cells: all.counts.iter().map(|&c| shown_cell(c)).collect(),
        median_hours_to_first_hit: median_hours(&all.delays),
    };
    let case_table: Vec<Vec<u64>> = cases.values().map(|r| r.to_vec()).collect();
    let case_rows = cases
        .keys()
        .zip(suppress(&case_table))
        .map(|(case, cells)| CaseRow {
            case: case.clone(),
            cells,
        })
        .collect();
    let series = series
        .iter()
        .enumerate()
        .map(|(i, [n, c, f])| Point {
            from: day_string(period.from + i as i64 * step),
            indicators: shown_cell(*n),
            confirmed: shown_cell(*c),
            false_positive: shown_cell(*f),
        })
        .collect();
    Figures {
        node: node.to_string(),
        scope,
        from: day_string(period.from),
        to: day_string(period.to),
        suppressed_below: SUPPRESS_BELOW,
        kinds: kind_rows,
        total,
        cases: case_rows,
        series,
    }
}

fn dedup(actions: &[Action]) -> Vec<Action> {
    let mut a = actions.to_vec();
    a.sort();
    a.dedup();
    a
}

fn shown_cell(c: u64) -> Cell {
    (c >= SUPPRESS_BELOW).then_some(c)
}

/// Primary suppression of every cell below [`SUPPRESS_BELOW`], then, per
/// column, the smallest shown cell too where exactly one cell is
/// suppressed and the column's total is shown (else the total minus the
/// shown cells gives the suppressed one away).
fn suppress(rows: &[Vec<u64>]) -> Vec<Vec<Cell>> {
    let mut out: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| r.iter().map(|&c| shown_cell(c)).collect())
        .collect();
    let columns = rows.first().map_or(0, Vec::len);
    for col in 0..columns {
        let total: u64 = rows.iter().map(|r| r[col]).sum();
        let hidden = out.iter().filter(|r| r[col].is_none()).count();
        if hidden == 1 && shown_cell(total).is_some() {
            let smallest = out
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r[col].map(|v| (v, i)))
                .min();
            if let Some((_, i)) = smallest {
                out[i][col] = None;
            }
        }
    }
    out
}

fn median_hours(delays: &[i64]) -> Option<f64> {
    if (delays.len() as u64) < SUPPRESS_BELOW {
        return None;
    }
    let mut d = delays.to_vec();
    d.sort_unstable();
    let n = d.len();
    let m = if n % 2 == 1 {
        d[n / 2] as f64
    } else {
        (d[n / 2 - 1] as f64 + d[n / 2] as f64) / 2.0
    };
    Some((m / 3600.0 * 10.0).round() / 10.0)
}

/// A chart line: its legend, colour and value per bucket.
type ChartLine = (&'static str, RGBColor, fn(&Point) -> Cell);

fn text(c: Cell) -> String {
    match c {
        Some(v) => v.to_string(),
        None => format!("<{SUPPRESS_BELOW}"),
    }
}

fn hours(m: Option<f64>) -> String {
    m.map_or_else(|| "–".to_string(), |h| format!("{h:.1}"))
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
    /// CSV or JSON could not be written.
    #[error("{0}")]
    Format(String),
}

impl Figures {
    /// Markdown: the tables and the chart, embedded as `chart` says.
    pub fn markdown(&self, chart: &str) -> String {
        let mut s = format!(
            "# Outcomes {} to {}\n\nNode `{}`. Counts only; cells below {} are shown as <{}, \
             and so is the next smallest cell of a column in which one cell alone would be.\n\n",
            self.from, self.to, self.node, SUPPRESS_BELOW, SUPPRESS_BELOW
        );
        s.push_str("## Indicators by kind\n\n| kind |");
        for c in KIND_COLUMNS {
            s.push_str(&format!(" {} |", c.replace('_', " ")));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(KIND_COLUMNS.len()));
        s.push('\n');
        for row in self.kinds.iter().chain(std::iter::once(&self.total)) {
            s.push_str(&format!("| {} |", row.kind));
            for c in &row.cells {
                s.push_str(&format!(" {} |", text(*c)));
            }
            s.push_str(&format!(" {} |\n", hours(row.median_hours_to_first_hit)));
        }
        if !self.cases.is_empty() {
            s.push_str("\n## Feedback by case\n\n| case |");
            for c in CASE_COLUMNS {
                s.push_str(&format!(" {} |", c.replace('_', " ")));
            }
            s.push_str("\n|---|");
            s.push_str(&"---:|".repeat(CASE_COLUMNS.len()));
            s.push('\n');
            for row in &self.cases {
                s.push_str(&format!("| {} |", row.case));
                for c in &row.cells {
                    s.push_str(&format!(" {} |", text(*c)));
                }
                s.push('\n');
            }
        }
        s.push_str(&format!(
            "\n## Over time\n\n![Indicators contributed, confirmed and false positives per {} \
             day(s)]({chart})\n",
            self.series_step()
        ));
        s
    }

    fn series_step(&self) -> usize {
        match self.series.as_slice() {
            [a, b, ..] => {
                let (a, b) = (
                    crate::outcome::parse_day(&a.from).unwrap_or(0),
                    crate::outcome::parse_day(&b.from).unwrap_or(0),
                );
                (b - a).max(1) as usize
            }
            _ => 1,
        }
    }

    /// CSV: one row per kind, the total, then one per case; columns a
    /// row has not are empty.
    pub fn csv(&self) -> Result<String, RenderError> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let bad = |e: csv::Error| RenderError::Format(e.to_string());
        let mut header = vec!["table", "name"];
        header.extend(KIND_COLUMNS);
        header.push("flood");
        w.write_record(&header).map_err(bad)?;
        for row in self.kinds.iter().chain(std::iter::once(&self.total)) {
            let mut r = vec!["kind".to_string(), row.kind.clone()];
            r.extend(row.cells.iter().map(|c| text(*c)));
            r.push(hours(row.median_hours_to_first_hit));
            r.push(String::new());
            w.write_record(&r).map_err(bad)?;
        }
        for row in &self.cases {
            let mut r = vec!["case".to_string(), row.case.clone()];
            r.extend(KIND_COLUMNS.iter().chain(["flood"].iter()).map(|name| {
                CASE_COLUMNS
                    .iter()
                    .position(|c| c == name)
                    .map_or_else(String::new, |i| text(row.cells[i]))
            }));
            w.write_record(&r).map_err(bad)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| RenderError::Format(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| RenderError::Format(e.to_string()))
    }

    /// JSON, suppressed cells as `null`.
    pub fn json(&self) -> Result<String, RenderError> {
        serde_json::to_string_pretty(self).map_err(|e| RenderError::Format(e.to_string()))
    }

    /// The chart: indicators contributed, confirmed and false positives per
    /// bucket as lines, suppressed buckets left as gaps.
    pub fn chart_svg(&self) -> Result<String, RenderError> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
            let err = |e: &dyn std::fmt::Display| RenderError::Chart(e.to_string());
            root.fill(&WHITE).map_err(|e| err(&e))?;
            let n = self.series.len().max(1);
            let top = self
                .series
                .iter()
                .flat_map(|p| [p.indicators, p.confirmed, p.false_positive])
                .flatten()
                .max()
                .unwrap_or(SUPPRESS_BELOW)
                .max(SUPPRESS_BELOW);
            let labels: Vec<String> = self.series.iter().map(|p| p.from.clone()).collect();
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("Outcomes {} to {}", self.from, self.to),
                    ("sans-serif", 20),
                )
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(0..n, 0..top + top / 10 + 1)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .x_labels(8.min(n))
                .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
                .y_desc("count")
                .x_desc(format!("gaps: counts below {SUPPRESS_BELOW}, suppressed"))
                .draw()
                .map_err(|e| err(&e))?;
            let lines: [ChartLine; 3] = [
                ("indicators contributed", BLUE, |p| p.indicators),
                ("confirmed", GREEN, |p| p.confirmed),
                ("false positives", RED, |p| p.false_positive),
            ];
            for (name, color, value) in lines {
                let mut runs: Vec<Vec<(usize, u64)>> = vec![Vec::new()];
                for (i, p) in self.series.iter().enumerate() {
                    match value(p) {
                        Some(v) => runs.last_mut().expect("one run").push((i, v)),
                        None => runs.push(Vec::new()),
                    }
                }
                // An empty series carries the legend, so that every line is
                // named even where all its points are suppressed.
                chart
                    .draw_series(LineSeries::new(Vec::new(), color.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                for run in runs.into_iter().filter(|r| !r.is_empty()) {
                    chart
                        .draw_series(run.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| err(&e))?;
                    chart
                        .draw_series(LineSeries::new(run, color.stroke_width(2)))
                        .map_err(|e| err(&e))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
            root.present().map_err(|e| err(&e))?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::parse_day;

    fn period() -> Period {
        Period::new(
            parse_day("2026-11-01").unwrap(),
            parse_day("2026-11-30").unwrap(),
        )
        .unwrap()
    }

    fn contributed(kind: Kind, n: usize, day: &str) -> Vec<Fact> {
        let at = parse_day(day).unwrap() * DAY + 3600;
        (0..n).map(|_| Fact::Contributed { kind, at }).collect()
    }

    #[test]
    fn periods_are_checked() {
        let d = parse_day("2026-01-01").unwrap();
        assert!(matches!(
            Period::new(d, d - 1),
            Err(PeriodError::Reversed { .. })
        ));
        assert_eq!(
            Period::new(d, d + MAX_PERIOD_DAYS),
            Err(PeriodError::TooLong {
                days: MAX_PERIOD_DAYS + 1
            })
        );
        assert_eq!(Period::new(d, d).unwrap().bucket_days(), 1);
        assert_eq!(Period::new(d, d + 100).unwrap().bucket_days(), 7);
        assert_eq!(Period::new(d, d + 800).unwrap().bucket_days(), 30);
    }

    #[test]
    fn small_cells_are_suppressed_and_cannot_be_recovered_from_the_total() {
        let mut facts = contributed(Kind::Iban, 12, "2026-11-03");
        facts.extend(contributed(Kind::Email, 7, "2026-11-04"));
        facts.extend(contributed(Kind::Phone, 2, "2026-11-05"));
        // Outside the period: not counted.
        facts.extend(contributed(Kind::Phone, 9, "2026-12-01"));
        let f = aggregate("bank-b", Scope::Node, period(), facts);
        let by: BTreeMap<&str, &KindRow> = f.kinds.iter().map(|r| (r.kind.as_str(), r)).collect();
        assert_eq!(by["phone"].cells[0], None, "2 is below 5");
        // The total (21) is shown, so the next smallest (email, 7) goes too.
        assert_eq!(by["email"].cells[0], None);
        assert_eq!(by["iban"].cells[0], Some(12));
        assert_eq!(f.total.cells[0], Some(21));
        // Zero is suppressed like any small count.
        assert_eq!(by["iban"].cells[1], None);
    }

    #[test]
    fn dispositions_feedback_and_the_median() {
        let day = parse_day("2026-11-10").unwrap();
        let mut facts = contributed(Kind::Iban, 6, "2026-11-02");
        for i in 0..6 {
            facts.push(Fact::Disposed {
                kind: Kind::Iban,
                day,
                disposition: Disposition::Confirmed,
                actions: vec![Action::Reported, Action::Blocked, Action::Blocked],
            });
            facts.push(Fact::FirstHit {
                kind: Kind::Iban,
                day,
                delay: 3600 * (i + 1),
            });
            facts.push(Fact::Hits {
                kind: Kind::Iban,
                day,
                count: 3,
            });
        }
        facts.push(Fact::Feedback {
            case: "CASE-1".into(),
            day,
            outcome: FeedbackOutcome::FalsePositive,
            actions: vec![],
            senders: 5,
            of_outcome: true,
        });
        let f = aggregate("liaison-a", Scope::Node, period(), facts);
        let iban = &f.kinds[0];
        assert_eq!(iban.kind, "iban");
        assert_eq!(iban.cells[1], Some(18));
        assert_eq!(iban.cells[3], Some(6));
        assert_eq!(iban.cells[5], Some(6), "reported");
        assert_eq!(iban.cells[6], Some(6), "blocked once per disposition");
        assert_eq!(iban.median_hours_to_first_hit, Some(3.5));
        assert_eq!(f.cases[0].case, "CASE-1");
        assert_eq!(f.cases[0].cells[1], Some(5));
        // The chart's bucket of the 10th holds 6 confirmed and 5 false positives.
        let p = &f.series[9];
        assert_eq!(p.from, "2026-11-10");
        assert_eq!((p.confirmed, p.false_positive), (Some(6), Some(5)));
    }

    #[test]
    fn renders_markdown_csv_json_and_svg() {
        let mut facts = contributed(Kind::Iban, 12, "2026-11-03");
        facts.extend(contributed(Kind::Iban, 8, "2026-11-20"));
        let f = aggregate("bank-b", Scope::Node, period(), facts);
        let md = f.markdown("outcomes.svg");
        assert!(md.contains("| iban | 20 |"), "{md}");
        assert!(md.contains("![Indicators contributed"), "{md}");
        assert!(md.contains("<5"));
        let csv = f.csv().unwrap();
        assert!(csv.starts_with("table,name,indicators,hits"), "{csv}");
        assert!(csv.contains("kind,iban,20,<5"), "{csv}");
        let json: serde_json::Value = serde_json::from_str(&f.json().unwrap()).unwrap();
        assert_eq!(json["total"]["cells"][0], 20);
        assert!(json["total"]["cells"][1].is_null());
        let svg = f.chart_svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("indicators contributed"));
    }
}
