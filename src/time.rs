//! Time as the node sees it: a [`Clock`] that the node state carries, so
//! that expiry, validity windows, rate limits and quotas all read one
//! source, and RFC 3339 text for config files, trust lists and output.
//!
//! Production reads the system clock. Builds made for tests (debug builds,
//! or the `test-clock` feature) can also start a node on a settable clock:
//! the environment variable [`TEST_CLOCK_ENV`] names a file holding unix
//! seconds, read on every call, so a test moves a running node's time by
//! rewriting the file instead of sleeping. A release build without the
//! feature has no such code: it ignores the variable and cannot be given a
//! time.
//!
//! A system clock before 1970 is an error ([`ClockError`]), never a silent 0
//! that would make every validity window look open or closed.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The environment variable that puts a test build's node on a settable
/// clock: the path of a file holding unix seconds (an integer or a decimal
/// fraction). Ignored by release builds without the `test-clock` feature.
pub const TEST_CLOCK_ENV: &str = "CIX_TEST_CLOCK_FILE";

/// Whether this build can be given a time ([`TEST_CLOCK_ENV`]).
pub const SETTABLE: bool = cfg!(any(debug_assertions, feature = "test-clock"));

/// Why the clock could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ClockError {
    /// The system clock reads a time before the unix epoch.
    #[error("the system clock reads before 1970-01-01T00:00:00Z")]
    BeforeEpoch,
    /// The test clock file does not read or does not hold unix seconds.
    #[error("test clock file {path}: {reason}")]
    TestClock {
        /// The file [`TEST_CLOCK_ENV`] names.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where the node's time comes from. Cheap to clone; every clone reads the
/// same source.
#[derive(Clone, Debug)]
pub struct Clock {
    source: Source,
    /// The last good reading (f64 bits), returned if the source fails later.
    last: Arc<AtomicU64>,
}

#[derive(Clone, Debug)]
enum Source {
    System,
    #[cfg(any(test, debug_assertions, feature = "test-clock"))]
    Fixed(Arc<parking_lot::Mutex<f64>>),
    #[cfg(any(debug_assertions, feature = "test-clock"))]
    File(Arc<PathBuf>),
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::with(Source::System)
    }

    /// The clock a node process runs on: the system clock, or, in a build
    /// made for tests with [`TEST_CLOCK_ENV`] set (and not empty), the file
    /// it names. Either way the first reading must succeed. A release build
    /// logs a warning if the variable is set, and runs on the system clock.
    pub fn from_env() -> Result<Clock, ClockError> {
        Clock::from_setting(std::env::var_os(TEST_CLOCK_ENV).filter(|v| !v.is_empty()))
    }

    /// [`Clock::from_env`] with the variable's value given.
    fn from_setting(file: Option<std::ffi::OsString>) -> Result<Clock, ClockError> {
        let clock = match file {
            #[cfg(any(debug_assertions, feature = "test-clock"))]
            Some(path) => Clock::with(Source::File(Arc::new(PathBuf::from(path)))),
            #[cfg(not(any(debug_assertions, feature = "test-clock")))]
            Some(_) => {
                tracing::warn!(
                    "{TEST_CLOCK_ENV} is set, but this build cannot be given a time: it runs on the system clock"
                );
                Clock::system()
            }
            None => Clock::system(),
        };
        clock.try_now_f64()?;
        Ok(clock)
    }

    /// A clock standing at `unix` seconds until [`Clock::set`] moves it
    /// (tests only: unit tests, and builds that can be given a time).
    #[cfg(any(test, debug_assertions, feature = "test-clock"))]
    pub fn fixed(unix: f64) -> Clock {
        Clock::with(Source::Fixed(Arc::new(parking_lot::Mutex::new(unix))))
    }

    /// Moves a [`Clock::fixed`] clock; other clocks ignore it.
    #[cfg(any(test, debug_assertions, feature = "test-clock"))]
    pub fn set(&self, unix: f64) {
        if let Source::Fixed(t) = &self.source {
            *t.lock() = unix;
        }
    }

    /// Where the time comes from, for logs: "system", "test file" or
    /// "fixed".
    pub fn kind(&self) -> &'static str {
        match &self.source {
            Source::System => "system",
            #[cfg(any(test, debug_assertions, feature = "test-clock"))]
            Source::Fixed(_) => "fixed",
            #[cfg(any(debug_assertions, feature = "test-clock"))]
            Source::File(_) => "test file",
        }
    }

    /// A clock on `source`, read once so that a later failing reading has
    /// a last good one to fall back on.
    fn with(source: Source) -> Clock {
        let clock = Clock {
            source,
            last: Arc::new(AtomicU64::new(0f64.to_bits())),
        };
        let _ = clock.try_now_f64();
        clock
    }

    /// Unix seconds with a fraction, or why the clock cannot be read.
    pub fn try_now_f64(&self) -> Result<f64, ClockError> {
        let now = match &self.source {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .map_err(|_| ClockError::BeforeEpoch),
            #[cfg(any(test, debug_assertions, feature = "test-clock"))]
            Source::Fixed(t) => Ok(*t.lock()),
            #[cfg(any(debug_assertions, feature = "test-clock"))]
            Source::File(path) => read_clock_file(path),
        }?;
        self.last.store(now.to_bits(), Ordering::Relaxed);
        Ok(now)
    }

    /// Unix seconds with a fraction. The node checks its clock at start
    /// ([`Clock::from_env`]); should it fail later (the system clock set
    /// before 1970, a test clock file removed), this logs the error and
    /// returns the last good reading, so time never jumps back to 1970.
    pub fn now_f64(&self) -> f64 {
        match self.try_now_f64() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "clock unreadable; using its last reading");
                f64::from_bits(self.last.load(Ordering::Relaxed))
            }
        }
    }

    /// Whole unix seconds.
    pub fn now(&self) -> i64 {
        self.now_f64().floor() as i64
    }
}

#[cfg(any(debug_assertions, feature = "test-clock"))]
fn read_clock_file(path: &std::path::Path) -> Result<f64, ClockError> {
    let bad = |reason: String| ClockError::TestClock {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let t: f64 = text
        .trim()
        .parse()
        .map_err(|_| bad("must hold unix seconds, e.g. 1767225600".into()))?;
    if !t.is_finite() || t < 0.0 {
        return Err(bad("must hold unix seconds, e.g. 1767225600".into()));
    }
    Ok(t)
}

/// The system clock's whole unix seconds, for tools that run outside a node
/// (operator commands, the testbed, benchmarks); a node reads its [`Clock`].
pub fn system_now() -> Result<i64, ClockError> {
    Ok(Clock::system().try_now_f64()?.floor() as i64)
}

/// Parses an RFC 3339 time into unix seconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|_| "must be an RFC 3339 time such as 2026-01-01T00:00:00Z".to_string())?;
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    Ok(secs)
}

/// Formats unix seconds as RFC 3339 (UTC).
pub fn format_time(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_system() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn the_system_clock_reads_the_system_time() {
        let c = Clock::system();
        assert_eq!(c.kind(), "system");
        let before = now_system();
        let t = c.try_now_f64().unwrap();
        assert!(before <= t && t <= now_system(), "{before} {t}");
        // Setting only moves a fixed clock.
        c.set(1_000.0);
        assert!(c.now() >= before.floor() as i64);
    }

    #[test]
    fn a_fixed_clock_stands_until_set_and_its_clones_follow() {
        let c = Clock::fixed(1_000.75);
        let other = c.clone();
        assert_eq!(c.kind(), "fixed");
        assert_eq!((c.now_f64(), c.now()), (1_000.75, 1_000));
        assert_eq!(c.now(), 1_000, "time does not pass by itself");
        other.set(5_000.0);
        assert_eq!(c.now(), 5_000);
        c.set(10.0);
        assert_eq!(other.now(), 10, "a clock can be set back");
    }

    #[test]
    #[cfg(any(debug_assertions, feature = "test-clock"))]
    fn a_file_clock_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        std::fs::write(&path, "1767225600\n").unwrap();
        let c = Clock::from_setting(Some(path.clone().into())).unwrap();
        assert_eq!(c.kind(), "test file");
        assert_eq!(c.now(), 1_767_225_600);
        std::fs::write(&path, " 1767229200.5 ").unwrap();
        assert_eq!(c.now_f64(), 1_767_229_200.5);
        assert_eq!(c.now(), 1_767_229_200);
    }

    #[test]
    #[cfg(any(debug_assertions, feature = "test-clock"))]
    fn a_file_clock_that_cannot_be_read_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        let err = Clock::from_setting(Some(path.clone().into())).unwrap_err();
        assert!(
            matches!(&err, ClockError::TestClock { path: p, .. } if *p == path),
            "{err:?}"
        );
        for bad in ["", "tomorrow", "-5", "NaN", "inf"] {
            std::fs::write(&path, bad).unwrap();
            let err = Clock::from_setting(Some(path.clone().into())).unwrap_err();
            assert!(err.to_string().contains("unix seconds"), "{bad:?}: {err}");
        }
    }

    #[test]
    #[cfg(any(debug_assertions, feature = "test-clock"))]
    fn a_file_clock_that_fails_later_keeps_its_last_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        std::fs::write(&path, "2000").unwrap();
        let c = Clock::from_setting(Some(path.clone().into())).unwrap();
        assert_eq!(c.now(), 2_000);
        std::fs::write(&path, "garbage").unwrap();
        assert!(c.try_now_f64().is_err());
        assert_eq!(c.now(), 2_000, "never back to 1970");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(c.clone().now(), 2_000, "clones share the last reading");
        std::fs::write(&path, "3000").unwrap();
        assert_eq!(c.now(), 3_000);
    }

    #[test]
    fn no_setting_is_the_system_clock() {
        assert_eq!(Clock::from_setting(None).unwrap().kind(), "system");
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = parse_time("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(t, 1_767_225_600);
        assert_eq!(format_time(t), "2026-01-01T00:00:00Z");
        assert!(parse_time("yesterday").is_err());
    }
}
