//! `cix bench screen --vs-redis`: the same workload through the design a
//! bank would otherwise build: the token of every indicator in a Redis set,
//! the screening client hashing each identifier itself (with cix's own token
//! code, so the hashing is no slower than cix's) and asking Redis with
//! pipelined `SMISMEMBER` commands of the same size as cix's messages, one
//! connection per core. `redis-server` runs as a child on a free loopback
//! port without persistence; `scripts/install-redis.sh` installs it.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::cores;
use crate::{
    ident::{self, Kind},
    token::{Token, Tokenizer},
};

/// Commands in flight per connection.
const PIPELINE: usize = 4;

/// A `redis-server` child process, killed when dropped.
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Whether `redis-server` can be run here.
    pub(crate) fn available() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Starts `redis-server` on a free loopback port without persistence and
    /// waits (up to 10 s) until it answers.
    pub(crate) fn start() -> Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (scripts/install-redis.sh installs it)")?;
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.connection().is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not answer on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn connection(&self) -> Result<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        Ok(client.get_connection()?)
    }

    /// Loads the tokens into the set `tokens`; returns Redis's memory use.
    pub(crate) fn load(&self, tokens: &[Token]) -> Result<u64> {
        let mut con = self.connection()?;
        for chunk in tokens.chunks(10_000) {
            let members: Vec<&[u8]> = chunk.iter().map(|t| &t.0[..]).collect();
            redis::cmd("SADD")
                .arg("tokens")
                .arg(members)
                .query::<u64>(&mut con)?;
        }
        let info: String = redis::cmd("INFO").arg("memory").query(&mut con)?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Screens `queries` as the bank's own client would: normalize and hash
    /// locally, then `SMISMEMBER` per `batch` items, `PIPELINE` commands in
    /// flight, one connection per core. Returns (identifiers/s, hits).
    pub(crate) fn screen(
        &self,
        tokenizer: &Tokenizer,
        queries: &[(Kind, String)],
        batch: usize,
    ) -> Result<(f64, usize)> {
        let threads = cores();
        let per = queries.len().div_ceil(threads).max(1);
        let start = Instant::now();
        let hits = std::thread::scope(|s| -> Result<usize> {
            let handles: Vec<_> = queries
                .chunks(per)
                .map(|part| {
                    s.spawn(move || -> Result<usize> {
                        let mut con = self.connection()?;
                        let mut buf = Vec::with_capacity(128);
                        let mut hits = 0;
                        for group in part.chunks(batch * PIPELINE) {
                            let mut pipe = redis::pipe();
                            for chunk in group.chunks(batch) {
                                let tokens: Vec<[u8; 32]> = chunk
                                    .iter()
                                    .filter_map(|(k, v)| {
                                        ident::normalize_into(*k, v, &mut buf).ok()?;
                                        Some(tokenizer.token(*k, &buf).0)
                                    })
                                    .collect();
                                let members: Vec<&[u8]> = tokens.iter().map(|t| &t[..]).collect();
                                pipe.cmd("SMISMEMBER").arg("tokens").arg(members);
                            }
                            let answers: Vec<Vec<u8>> = pipe.query(&mut con)?;
                            hits += answers.iter().flatten().filter(|b| **b == 1).count();
                        }
                        Ok(hits)
                    })
                })
                .collect();
            let mut total = 0;
            for h in handles {
                total += h.join().expect("worker")?;
            }
            Ok(total)
        })?;
        Ok((
            queries.len() as f64 / start.elapsed().as_secs_f64().max(1e-9),
            hits,
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
