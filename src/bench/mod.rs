//! `cix bench`: measured figures, never asserted in tests. Each mode prints
//! a table on stderr (figure, value, unit, target, whether it meets it) and,
//! with `--json`, one JSON array on stdout of objects with the keys
//! `figure`, `value`, `unit`, `target`, `better` and `meets`.
//!
//! Modes: `enumerate` measures what a member holding the token key can do
//! against low-entropy identifiers (the threat model's central figure);
//! `screen` measures the in-process engine against a minimal reference loop
//! and then a real node process over mTLS (and, with `--vs-redis`, a Redis
//! set); `ingest`, `memory` and `latency` measure a real node process from
//! real mTLS clients; `replicate` measures real nodes replicating, and a new
//! contribution reaching a bank under load; `compaction` measures a real
//! node's Match latency while it compacts its store, against idle; `watch`
//! measures continuous screening (a bank's book registered, new indicators
//! checked against it, a contribution timed to its alert); `all` runs
//! every one with a target but `compaction` (its store copy at 10M would
//! make `all` much slower). The Redis client is compiled in only with the `redis-bench` cargo
//! feature (a default one); without it `--vs-redis` is refused.

pub(crate) mod compaction;
pub(crate) mod enumerate;
pub(crate) mod node;
#[cfg(feature = "redis-bench")]
pub(crate) mod redis;
pub(crate) mod replicate;
pub mod screen;
pub(crate) mod watch;

use serde::Serialize;

/// Whether a higher or a lower value is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Higher is better: a rate or a ratio.
    Higher,
    /// Lower is better: a time or a size.
    Lower,
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    /// What was measured: the part of the run, a colon, then the figure.
    pub figure: String,
    /// The measured value, in `unit`.
    pub value: f64,
    /// Unit of `value` and `target`, e.g. `identifiers/s`, `µs` or `ratio`.
    pub unit: String,
    /// In the same unit; `None` where the figure has no target.
    pub target: Option<f64>,
    /// Which way the value is better, and so meets the target.
    pub better: Better,
    /// `None` without a target.
    pub meets: Option<bool>,
}

impl Figure {
    /// A figure; `meets` follows from `target` and `better`.
    pub fn new(
        figure: impl Into<String>,
        value: f64,
        unit: &str,
        target: Option<f64>,
        better: Better,
    ) -> Figure {
        let meets = target.map(|t| match better {
            Better::Higher => value >= t,
            Better::Lower => value <= t,
        });
        Figure {
            figure: figure.into(),
            value,
            unit: unit.to_string(),
            target,
            better,
            meets,
        }
    }
}

fn human(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The table, for humans.
pub fn table(figures: &[Figure]) -> String {
    let w = figures
        .iter()
        .map(|f| f.figure.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = format!(
        "{:<w$}  {:>10}  {:<14}  {:>10}  {}\n",
        "figure", "value", "unit", "target", "meets"
    );
    for f in figures {
        let target = f.target.map(human).unwrap_or_else(|| "-".into());
        let meets = match f.meets {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        s.push_str(&format!(
            "{:<w$}  {:>10}  {:<14}  {:>10}  {}\n",
            f.figure,
            human(f.value),
            f.unit,
            target,
            meets
        ));
    }
    s
}

/// Prints the figures: the table on stderr, and with `json` the JSON array
/// (only it) on stdout.
pub fn report(figures: &[Figure], json: bool) -> anyhow::Result<()> {
    eprint!("{}", table(figures));
    if json {
        println!("{}", serde_json::to_string_pretty(figures)?);
    }
    Ok(())
}

/// Worker threads to use: every core.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meets_follows_the_direction_and_json_has_the_keys() {
        let f = Figure::new("rate", 5.0, "1/s", Some(4.0), Better::Higher);
        assert_eq!(f.meets, Some(true));
        let f = Figure::new("latency", 5.0, "ms", Some(4.0), Better::Lower);
        assert_eq!(f.meets, Some(false));
        let f = Figure::new("info", 1.0, "s", None, Better::Lower);
        assert_eq!(f.meets, None);
        let v: serde_json::Value = serde_json::to_value([f]).unwrap();
        let o = v[0].as_object().unwrap();
        let mut keys: Vec<_> = o.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["better", "figure", "meets", "target", "unit", "value"]
        );
        assert_eq!(o["better"], "lower");
        assert!(o["target"].is_null() && o["meets"].is_null());
    }
}
