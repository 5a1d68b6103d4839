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

#[test]
fn enumerate_screen_and_node_print_well_formed_figures() {
    let e = bench(&["enumerate", "--candidates", "20000", "--planted", "5"]);
    check(&e);
    let recovered = e
        .iter()
        .find(|f| f["figure"].as_str().unwrap().contains("recovered"))
        .unwrap();
    assert_eq!(recovered["value"], 5.0, "every planted indicator found");
    check(&bench(&[
        "screen",
        "--indicators",
        "2000",
        "--queries",
        "10000",
    ]));
    let n = bench(&[
        "node",
        "--indicators",
        "3000",
        "--queries",
        "6000",
        "--batch",
        "1000",
    ]);
    check(&n);
    assert!(n
        .iter()
        .any(|f| f["figure"].as_str().unwrap().contains("MatchStream")));
}
