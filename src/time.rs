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

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ClockError {
    #[error("the system clock reads before 1970-01-01T00:00:00Z")]
    BeforeEpoch,
    #[error("test clock file {path}: {reason}")]
    TestClock { path: PathBuf, reason: String },
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
    #[cfg(any(debug_assertions, feature = "test-clock"))]
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
    /// made for tests with [`TEST_CLOCK_ENV`] set, the file it names (whose
    /// first reading must succeed).
    pub fn from_env() -> Result<Clock, ClockError> {
        #[cfg(any(debug_assertions, feature = "test-clock"))]
        if let Some(path) = std::env::var_os(TEST_CLOCK_ENV) {
            let clock = Clock::with(Source::File(Arc::new(PathBuf::from(path))));
            clock.try_now_f64()?;
            return Ok(clock);
        }
        let clock = Clock::system();
        clock.try_now_f64()?;
        Ok(clock)
    }

    /// A clock standing at `unix` seconds until [`Clock::set`] moves it
    /// (tests only).
    #[cfg(any(debug_assertions, feature = "test-clock"))]
    pub fn fixed(unix: f64) -> Clock {
        Clock::with(Source::Fixed(Arc::new(parking_lot::Mutex::new(unix))))
    }

    /// Moves a [`Clock::fixed`] clock; other clocks ignore it.
    #[cfg(any(debug_assertions, feature = "test-clock"))]
    pub fn set(&self, unix: f64) {
        if let Source::Fixed(t) = &self.source {
            *t.lock() = unix;
        }
    }

    fn with(source: Source) -> Clock {
        Clock {
            source,
            last: Arc::new(AtomicU64::new(0f64.to_bits())),
        }
    }

    /// Unix seconds with a fraction, or why the clock cannot be read.
    pub fn try_now_f64(&self) -> Result<f64, ClockError> {
        let now = match &self.source {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .map_err(|_| ClockError::BeforeEpoch),
            #[cfg(any(debug_assertions, feature = "test-clock"))]
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
