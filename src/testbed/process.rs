//! `cix serve` child processes: [`NodeProcess::start`] is the one place a
//! node process is spawned (binary, arguments, environment, log files) and
//! waited for (its member listener's address file); [`NodeProcess::stop`]
//! sends SIGTERM and waits for the exit. The `_async` variants run the same
//! code on tokio's blocking pool. Also [`free_port`], for a listener address
//! that must be known before its node starts.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use super::TestbedError;
use crate::config::RawConfig;

/// How often a start is checked on.
const POLL: Duration = Duration::from_millis(20);

/// How long a node may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run one node.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `cix` binary; `None`: this executable (the demo and `cix bench`
    /// are `cix` themselves).
    pub program: Option<PathBuf>,
    /// The node's config (`cix serve --config`).
    pub config: PathBuf,
    /// Where the node's stdout goes (truncated).
    pub stdout: PathBuf,
    /// Where its stderr goes; the same file as stdout when equal.
    pub stderr: PathBuf,
    /// Environment set for the node, on top of this process's own.
    pub env: Vec<(OsString, OsString)>,
    /// How long to wait for the member listener's address file.
    pub start_timeout: Duration,
}

impl Launch {
    /// This executable serving `config`, both output streams in `log`, two
    /// minutes to start (a cold start at 10M indicators takes seconds).
    pub fn new(config: &Path, log: &Path) -> Launch {
        Launch {
            program: None,
            config: config.to_path_buf(),
            stdout: log.to_path_buf(),
            stderr: log.to_path_buf(),
            env: Vec::new(),
            start_timeout: Duration::from_secs(120),
        }
    }

    /// Sets one environment variable of the node.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The node's data directory, as its config says (relative to the config's directory).
    pub fn data_dir(&self) -> Result<PathBuf, TestbedError> {
        let text = fs::read_to_string(&self.config).map_err(|source| TestbedError::Io {
            what: "reading",
            path: self.config.clone(),
            source,
        })?;
        let raw = RawConfig::parse(&text, &self.config)?;
        let base = self.config.parent().unwrap_or(Path::new("."));
        Ok(base.join(&raw.node.data_dir))
    }
}

/// A running node, killed if dropped while running.
#[derive(Debug)]
pub struct NodeProcess {
    child: Option<Child>,
    addr: String,
}

/// How a node ended on SIGTERM.
#[derive(Clone, Copy, Debug)]
pub struct Stopped {
    /// How it exited.
    pub status: ExitStatus,
    /// From SIGTERM to the exit.
    pub took: Duration,
}

impl Stopped {
    /// How long the stop took, if the node exited 0.
    pub fn clean(self) -> Result<Duration, TestbedError> {
        if self.status.success() {
            Ok(self.took)
        } else {
            Err(TestbedError::Unclean(self.status))
        }
    }
}

fn create_log(path: &Path) -> Result<fs::File, TestbedError> {
    fs::File::create(path).map_err(|source| TestbedError::Io {
        what: "creating",
        path: path.to_path_buf(),
        source,
    })
}

impl NodeProcess {
    /// Spawns `cix serve --config CONFIG` and waits (blocking) until its
    /// member listener has written its whole address file. An address file
    /// left by an earlier run is removed first.
    pub fn start(launch: &Launch) -> Result<NodeProcess, TestbedError> {
        let addr_file = launch.data_dir()?.join(crate::node::MEMBER_ADDR_FILE);
        let _ = fs::remove_file(&addr_file);
        let stdout = create_log(&launch.stdout)?;
        let stderr = if launch.stderr == launch.stdout {
            stdout.try_clone().map_err(|source| TestbedError::Io {
                what: "sharing",
                path: launch.stdout.clone(),
                source,
            })?
        } else {
            create_log(&launch.stderr)?
        };
        let program = match &launch.program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(TestbedError::Spawn)?,
        };
        let child = Command::new(program)
            .arg("serve")
            .arg("--config")
            .arg(&launch.config)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(TestbedError::Spawn)?;
        let mut node = NodeProcess {
            child: Some(child),
            addr: String::new(),
        };
        let deadline = Instant::now() + launch.start_timeout;
        loop {
            if let Ok(a) = fs::read_to_string(&addr_file) {
                if a.ends_with('\n') {
                    node.addr = a.trim().to_string();
                    return Ok(node);
                }
            }
            let child = node.child.as_mut().ok_or(TestbedError::NotRunning)?;
            if let Some(status) = child.try_wait().map_err(TestbedError::Process)? {
                return Err(TestbedError::ExitedAtStart {
                    status,
                    log: launch.stderr.clone(),
                });
            }
            if Instant::now() > deadline {
                return Err(TestbedError::StartTimeout {
                    seconds: launch.start_timeout.as_secs(),
                    log: launch.stderr.clone(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`NodeProcess::start`] on tokio's blocking pool.
    pub async fn start_async(launch: Launch) -> Result<NodeProcess, TestbedError> {
        tokio::task::spawn_blocking(move || NodeProcess::start(&launch))
            .await
            .map_err(TestbedError::Task)?
    }

    /// The member listener, HOST:PORT.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then wait (blocking, bounded) for the exit. A node that
    /// does not exit in time is killed.
    pub fn stop(&mut self) -> Result<Stopped, TestbedError> {
        terminate(self.child.take().ok_or(TestbedError::NotRunning)?)
    }

    /// [`NodeProcess::stop`] on tokio's blocking pool.
    pub async fn stop_async(&mut self) -> Result<Stopped, TestbedError> {
        let child = self.child.take().ok_or(TestbedError::NotRunning)?;
        tokio::task::spawn_blocking(move || terminate(child))
            .await
            .map_err(TestbedError::Task)?
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) -> Result<ExitStatus, TestbedError> {
        let mut child = self.child.take().ok_or(TestbedError::NotRunning)?;
        child.kill().map_err(TestbedError::Process)?;
        child.wait().map_err(TestbedError::Process)
    }
}

/// SIGTERM, then the exit as it happens (a thread waits on the child), or
/// SIGKILL after [`STOP_TIMEOUT`].
fn terminate(mut child: Child) -> Result<Stopped, TestbedError> {
    use nix::sys::signal::{kill, Signal};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let start = Instant::now();
    kill(pid, Signal::SIGTERM).map_err(TestbedError::Signal)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(STOP_TIMEOUT) {
        Ok(status) => Ok(Stopped {
            status: status.map_err(TestbedError::Process)?,
            took: start.elapsed(),
        }),
        Err(_) => {
            // The waiting thread has not reported an exit, so the child
            // is all but surely unreaped and the pid still the node's.
            let _ = kill(pid, Signal::SIGKILL);
            Err(TestbedError::StopTimeout {
                seconds: STOP_TIMEOUT.as_secs(),
            })
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free TCP port on 127.0.0.1 for a node to bind next. Taken below the
/// kernel's ephemeral range (32768 and up), so that no `:0` bind of a node
/// starting meanwhile can take it; distinct within this process (and spread
/// by process id across processes starting nodes side by side).
pub fn free_port() -> Result<u16, TestbedError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7919);
    for _ in 0..COUNT {
        let port = FIRST + offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = port as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(TestbedError::NoFreePort)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_dir(dir: &Path) -> PathBuf {
        let made = crate::testbed::init::init(
            dir,
            &crate::testbed::init::InitOptions {
                node_id: "n",
                listen: "127.0.0.1:0",
                ..Default::default()
            },
        )
        .unwrap();
        made.config
    }

    #[test]
    fn a_program_that_exits_at_once_is_reported_with_its_log() {
        let tmp = tempfile::tempdir().unwrap();
        let config = node_dir(&tmp.path().join("node"));
        let log = tmp.path().join("node.log");
        let mut launch = Launch::new(&config, &log);
        assert_eq!(launch.data_dir().unwrap(), tmp.path().join("node/data"));
        launch.program = Some("false".into());
        match NodeProcess::start(&launch) {
            Err(TestbedError::ExitedAtStart { status, log: l }) => {
                assert!(!status.success());
                assert_eq!(l, log);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let (a, b) = (free_port().unwrap(), free_port().unwrap());
        assert_ne!(a, b);
        assert!((20_000..32_000).contains(&a) && (20_000..32_000).contains(&b));
    }
}
