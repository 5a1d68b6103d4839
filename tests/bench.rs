//! `cix bench` end to end at tiny sizes: with `--json`, stdout is exactly
//! one JSON array of figures with the documented keys, `meets` consistent
//! with value, target and direction. No timing is asserted.

use std::process::Command;

fn bench(args: &[&str]) -> Vec<serde_json::Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_cix"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is only JSON");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("figure") && stderr.contains("meets"),
        "{stderr}"
    );
    v.as_array().expect("an array").clone()
}

fn check(figures: &[serde_json::Value]) {
    assert!(!figures.is_empty());
    for f in figures {
        let o = f.as_object().unwrap();
        let mut keys: Vec<_> = o.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["better", "figure", "meets", "target", "unit", "value"]
        );
        let value = o["value"].as_f64().expect("a number");
        assert!(o["figure"].is_string() && o["unit"].is_string());
        let better = o["better"].as_str().unwrap();
        assert!(better == "higher" || better == "lower");
        match o["target"].as_f64() {
            None => assert!(o["target"].is_null() && o["meets"].is_null(), "{f}"),
            Some(t) => {
                let meets = if better == "higher" {
                    value >= t
                } else {
                    value <= t
                };
                assert_eq!(o["meets"].as_bool(), Some(meets), "{f}");
            }
        }
    }
}

fn value(figures: &[serde_json::Value], name: &str) -> f64 {
    figures
        .iter()
        .find(|f| f["figure"].as_str().unwrap().contains(name))
        .unwrap_or_else(|| panic!("no figure {name:?} in {figures:?}"))["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn enumerate_prints_well_formed_figures_and_finds_every_planted_indicator() {
    let e = bench(&["enumerate", "--candidates", "20000", "--planted", "5"]);
    check(&e);
    assert_eq!(value(&e, "recovered"), 5.0, "every planted indicator found");
}

/// Every node mode, through `all`, at tiny sizes: real node processes,
/// real mTLS clients, a real three-node coalition.
#[test]
fn all_runs_every_node_figure_on_real_nodes() {
    let a = bench(&[
        "all",
        "--indicators",
        "3000",
        "--queries",
        "6000",
        "--batch",
        "1000",
        "--rate",
        "200",
        "--seconds",
        "0.5",
        "--clients",
        "4",
        "--load-clients",
        "2",
        "--probes",
        "2",
    ]);
    check(&a);
    for name in [
        "engine / reference",
        "ingest",
        "MatchStream over mTLS",
        "MatchStream / in-process",
        "MatchTokens",
        "p50",
        "p99",
        "concurrent clients",
        "resident",
        "store on disk",
        "cold start",
        "to a new node",
        "under load",
    ] {
        assert!(value(&a, name) > 0.0, "{name}");
    }
    assert!(value(&a, "hits found") >= 60.0, "1% of 6,000 planted");
}

/// The compaction mode at a tiny size: a real node compacts its store
/// (Admin.Compact) while a paced client times Match, and the figures of
/// both sides and of the store are there.
#[test]
fn compaction_times_match_while_a_real_node_compacts_its_store() {
    let c = bench(&[
        "compaction",
        "--indicators",
        "3000",
        "--batch",
        "1000",
        "--rate",
        "200",
        "--seconds",
        "0.5",
    ]);
    check(&c);
    for name in [
        "p99 idle",
        "p99 while the store compacts",
        "compacting / idle",
    ] {
        assert!(value(&c, name) > 0.0, "{name}");
    }
    assert!(value(&c, "store on disk after") > 0.0);
}

/// The Redis comparison: both designs find the same hits (the bench fails
/// otherwise) and the ratio is printed. A machine without redis-server gets
/// it from the project's own script (Debian's package). Only in a build with
/// the `redis-bench` feature (a default one).
#[cfg(feature = "redis-bench")]
#[test]
fn screen_vs_redis_runs_the_same_workload() {
    let have = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !have("redis-server") {
        let o = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/install-redis.sh"
            ))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "scripts/install-redis.sh: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(have("redis-server"));
    }
    let r = bench(&[
        "screen",
        "--indicators",
        "2000",
        "--queries",
        "10000",
        "--batch",
        "1000",
        "--vs-redis",
    ]);
    check(&r);
    assert!(value(&r, "Redis set") > 0.0);
    assert!(value(&r, "MatchStream / Redis") > 0.0);
}

/// A build without the `redis-bench` feature refuses `--vs-redis` up front,
/// naming the feature.
#[cfg(not(feature = "redis-bench"))]
#[test]
fn screen_vs_redis_without_the_feature_says_so() {
    let o = Command::new(env!("CARGO_BIN_EXE_cix"))
        .args(["bench", "screen", "--in-process", "--vs-redis", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("cix was built without the redis-bench feature"),
        "{stderr}"
    );
    assert!(o.stdout.is_empty(), "no figures on stdout");
}
