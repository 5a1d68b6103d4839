//! Which clock a node runs on. A build made for tests (debug, what `cargo
//! test` builds) follows the file named by `CIX_TEST_CLOCK_FILE`; the release
//! binary cannot be given a time: started the same way, it runs on the
//! system clock. Shown through the node's own answers (Status' start time
//! and epoch validity, whether a contribution finds a valid key epoch) and
//! its start-up log line.
//!
//! The test builds the release binary (`cargo build --release --locked`;
//! nothing to do when it is up to date).

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cix::{
    proto::{self, Kind},
    time::{Clock, TEST_CLOCK_ENV},
};
use support::*;
use tonic::Code;

/// 2001-09-09T01:46:40Z: long before any key epoch of a node made today.
const LONG_AGO: i64 = 1_000_000_000;

/// Builds the release binary of this checkout and returns its path. The
/// variables `cargo test` sets for a test are left out, so that the build
/// sees what `cargo build --release` in a shell sees and the two share
/// their artifacts (a build script that reads `CARGO_MANIFEST_DIR`, say,
/// would run again otherwise, and every crate after it).
fn release_binary() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let set_for_tests = [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .contains(&&*k)
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_EXE_");
        if set_for_tests {
            cargo.env_remove(&*k);
        }
    }
    let out = cargo
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "cix",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo build --release failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "cix")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no cix executable")
}

/// A node process of another binary than the harness's, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin serve` for `node` with `CIX_TEST_CLOCK_FILE` set to `clock`,
/// and waits (bounded) until its member listener is up.
fn start_with(bin: &Path, node: &mut TestNode, clock: &Path) -> Running {
    let addr_file = node.data_dir().join("member.addr");
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&node.config)
        .env("CIX_LOG", "info")
        .env(TEST_CLOCK_ENV, clock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(node.dir.join("logs/stderr-release.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(a) = fs::read_to_string(&addr_file) {
            if a.ends_with('\n') {
                node.addr = a.trim().to_string();
                return Running(child);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("node exited at start: {status}\n{}", node.logs());
        }
        assert!(
            Instant::now() < deadline,
            "node did not start\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The node's start-up line naming its clock, without terminal colours.
fn clock_line(node: &TestNode) -> String {
    let logs = node.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("node clock"))
        .unwrap_or_else(|| panic!("no clock line in the logs:\n{logs}"));
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    plain
}

async fn contribute(node: &TestNode, value: &str) -> Result<proto::ContributeResponse, Code> {
    node.clients()
        .await
        .contribution
        .contribute(contribute_req(vec![item(Kind::Email, value)], "CASE-CLOCK"))
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_test_build_follows_the_test_clock_file() {
    let release = release_binary();
    let real = Clock::system().now();

    // The release binary, told that it is 2001.
    let mut node = TestNode::new("clock-release");
    let file = node.tmp.path().join("clock");
    fs::write(&file, format!("{LONG_AGO}\n")).unwrap();
    let running = start_with(&release, &mut node, &file);
    let s = node.status().await;
    let started = s.started_at.unwrap().seconds;
    assert!(
        (started - real).abs() < 300,
        "the release node reports starting at {started}, not about {real}"
    );
    assert!(s.epochs.iter().all(|e| e.valid_now), "{:?}", s.epochs);
    let r = contribute(&node, "release@clock.example").await.unwrap();
    assert_eq!(r.results[0].status, proto::ItemStatus::Stored as i32);
    let mut c = node.clients().await;
    assert_eq!(
        status_of(&match_one(&mut c, Kind::Email, "release@clock.example").await),
        proto::MatchStatus::Match
    );
    let line = clock_line(&node);
    assert!(line.contains(r#"clock="system""#), "{line}");
    assert!(
        node.logs().contains("cannot be given a time"),
        "the release node says it ignores {TEST_CLOCK_ENV}"
    );
    drop((c, running));

    // The same setup with the debug binary follows the file.
    let mut node = TestNode::new("clock-debug");
    node.use_test_clock(LONG_AGO);
    node.start();
    let s = node.status().await;
    assert_eq!(s.started_at.unwrap().seconds, LONG_AGO);
    assert!(s.epochs.iter().all(|e| !e.valid_now), "{:?}", s.epochs);
    assert_eq!(
        contribute(&node, "debug@clock.example").await.unwrap_err(),
        Code::FailedPrecondition,
        "no key epoch is valid in 2001"
    );
    let line = clock_line(&node);
    assert!(line.contains(r#"clock="test file""#), "{line}");
    // Moved to today, the running node finds its epoch valid.
    node.set_time(real);
    let s = node.status().await;
    assert_eq!(s.started_at.unwrap().seconds, LONG_AGO);
    assert!(s.epochs.iter().all(|e| e.valid_now), "{:?}", s.epochs);
    let r = contribute(&node, "debug@clock.example").await.unwrap();
    assert_eq!(r.results[0].status, proto::ItemStatus::Stored as i32);
}

/// A test build told to follow a clock file it cannot read refuses to
/// start, naming the file, rather than running at some other time.
#[test]
fn an_unreadable_test_clock_file_stops_the_node_at_start() {
    let node = TestNode::new("clock-missing");
    let file = node.tmp.path().join("no-such-clock");
    let err_path = node.dir.join("logs/stderr-missing.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&node.config)
        .env(TEST_CLOCK_ENV, &file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let guard_deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > guard_deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node kept running without a readable clock");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let err = fs::read_to_string(&err_path).unwrap();
    assert!(
        err.contains("test clock file") && err.contains(&*file.to_string_lossy()),
        "{err}"
    );
    assert!(!node.data_dir().join("member.addr").exists());
}
