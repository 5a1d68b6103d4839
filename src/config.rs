//! Node configuration: the TOML file, environment overrides, and validation.
//!
//! Two steps, so that every check lives in one place: [`RawConfig`] is what
//! serde reads (every optional field has a documented default), and
//! [`Config::from_raw`] turns it into a validated [`Config`] with absolute
//! paths, parsed addresses and typed capabilities. Errors name the field.
//! This module reads no key or certificate file: it only checks the names.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    auth::clients::{ClientCapability, ClientGrant},
    epochs::EpochConfig,
    flood::Thresholds,
    time::parse_time,
    trust::list::{check_member_id, MAX_LIST_BYTES},
};

/// Errors found while reading or checking a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}`: {rule}")]
    Invalid { field: String, rule: String },
}

fn invalid(field: impl Into<String>, rule: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}

/// The config file as written. See `config/node.example.toml`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub node: RawNode,
    pub member_listener: RawMemberListener,
    #[serde(default, rename = "token_epoch")]
    pub token_epochs: Vec<RawEpoch>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub shutdown: ShutdownSettings,
    /// The coalition trust list; without it the node runs standalone.
    #[serde(default)]
    pub trust: Option<RawTrust>,
    /// The listener for other members' nodes; required with `[trust]`.
    #[serde(default)]
    pub peer_listener: Option<RawPeerListener>,
    #[serde(default)]
    pub replication: ReplicationSettings,
    /// The watchlist (continuous screening); without it the Watchlist
    /// service answers FAILED_PRECONDITION.
    #[serde(default)]
    pub watchlist: Option<RawWatchlist>,
    #[serde(default)]
    pub alerts: AlertSettings,
    #[serde(default)]
    pub flood: FloodSettings,
    #[serde(default)]
    pub feedback: FeedbackSettings,
}

/// Flood control (`[flood]`): per indicator and UTC day, past either
/// threshold the indicator is quarantined on this node ([`crate::flood`]).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FloodSettings {
    /// Hits answered (Match, MatchStream, MatchTokens). Default 1000; more
    /// than zero.
    pub hits_per_day: u64,
    /// Distinct watch entries matched. Default 100; more than zero.
    pub watch_entries_per_day: u64,
}

impl Default for FloodSettings {
    fn default() -> Self {
        let t = Thresholds::default();
        FloodSettings {
            hits_per_day: t.hits_per_day,
            watch_entries_per_day: t.watch_entries_per_day,
        }
    }
}

/// `[feedback]`: whether outcomes go back to each indicator's origin, and
/// whether this node accepts them for its own indicators.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FeedbackSettings {
    /// "off" (nothing leaves the node; `Federation.Feedback` refused),
    /// "named" (to the origin under this node's identity) or "anonymous"
    /// (through an operator node that relays it under its own identity).
    /// Default "off".
    pub mode: String,
    /// With "anonymous": the id of the operator node that relays it; unset,
    /// the first operator (by id) on the trust list in force with the
    /// `feedback` capability and an endpoint.
    pub relay: Option<String>,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        FeedbackSettings {
            mode: "off".into(),
            relay: None,
        }
    }
}

/// `[feedback] mode`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FeedbackMode {
    /// Nothing leaves the node; `Federation.Feedback` is refused.
    #[default]
    Off,
    /// Feedback goes to each indicator's origin under this node's identity.
    Named,
    /// Feedback goes to an operator node, which relays it to each origin
    /// under its own identity, in daily shuffled batches of counts.
    Anonymous,
}

/// The alert log and its webhook sink (`[alerts]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AlertSettings {
    /// Events recorded longer ago than this are deleted from the alert log,
    /// once every configured sink (the webhook) has acknowledged them; the
    /// purge runs every `store.purge_interval`. Default "90d".
    pub retention: String,
    /// The webhook sink (`[alerts.webhook]`); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<RawWebhook>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            retention: "90d".into(),
            webhook: None,
        }
    }
}

/// `[alerts.webhook]`: every alert event POSTed, in order, to one URL.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    /// `https://HOST[:PORT]/PATH`; plain `http://` only to a loopback
    /// address (tests). Logged without user info or query.
    pub url: String,
    /// The signing secret (its bytes, a trailing newline aside; at least
    /// 16), mode 0600.
    pub secret_file: PathBuf,
    /// The receiver's CA (PEM); required with https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long one delivery (connect, request, answer) may take before it
    /// counts as failed and is retried. Default "10s".
    #[serde(default = "default_webhook_timeout")]
    pub timeout: String,
}

fn default_webhook_timeout() -> String {
    "10s".into()
}

/// `[watchlist]`: the node-local key the watch entries are kept under.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWatchlist {
    /// 64 hex characters, mode 0600 (`cix init` makes one). Required in
    /// the section.
    pub key_file: PathBuf,
}

/// Pulling other origins' logs from peers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ReplicationSettings {
    /// Seconds between pulls from each peer (push hints trigger pulls at
    /// once; the timer repairs anything missed). Default 5.
    pub pull_seconds: u64,
    /// Pull only from these members (e.g. a coalition hub); empty: from
    /// every active member with `replicate` and an endpoint. Default [].
    pub peers: Vec<String>,
    /// HTTP/2 keepalive pings on every peer connection, both directions,
    /// idle or not. Default "20s".
    pub keepalive_interval: String,
    /// A connection whose ping is not answered within this is closed.
    /// Default "10s".
    pub keepalive_timeout: String,
    /// A Pull stream that sends nothing for this long ends the session with
    /// the peer (failure `stalled`). Default "60s".
    pub pull_idle_timeout: String,
    /// The wait before reconnecting to a peer after a failed session:
    /// doubles with each failure in a row, from `backoff_min` to
    /// `backoff_max`, each wait up to a quarter shorter at random; back to
    /// `backoff_min` after a healthy session. Defaults "1s" and "5m".
    pub backoff_min: String,
    pub backoff_max: String,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            pull_seconds: 5,
            peers: Vec::new(),
            keepalive_interval: "20s".into(),
            keepalive_timeout: "10s".into(),
            pull_idle_timeout: "60s".into(),
            backoff_min: "1s".into(),
            backoff_max: "5m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrust {
    /// The signed trust list the node starts from (its root of trust).
    pub root_file: PathBuf,
    /// Warn this many days before the list expires. Default 7.
    #[serde(default = "default_warning_days")]
    pub expiry_warning_days: u64,
    /// Seconds between trust-list version checks with peers. Default 30.
    #[serde(default = "default_sync_seconds")]
    pub sync_seconds: u64,
    /// A chain file (`cix trust chain`): the key-changing lists between the
    /// list kept in the store and a newer root file, walked at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_file: Option<PathBuf>,
}

fn default_warning_days() -> u64 {
    7
}

fn default_sync_seconds() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeerListener {
    /// Address of the peer listener. Env: `CIX_PEER_LISTEN`.
    pub listen: String,
    /// This node's peer certificate and key (PEM); its SPKI fingerprint is
    /// listed in the node's member entry. Env: `CIX_PEER_CERT`, `CIX_PEER_KEY`.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Optional: peer certificates must also chain to this coalition CA (PEM).
    #[serde(default)]
    pub coalition_ca: Option<PathBuf>,
    /// What a peer may cost this node (`[peer_listener.limits]`).
    #[serde(default)]
    pub limits: PeerLimits,
}

/// Limits of the peer listener: connections, handshakes, streams, request
/// size and trust-list publishes, so that no peer can stall or bloat the
/// node (`[peer_listener.limits]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PeerLimits {
    /// Connections open at once, handshakes included; more are closed at
    /// accept. Default 256.
    pub max_connections: usize,
    /// TLS handshakes in flight (not yet authenticated); more connections
    /// are closed at accept. Default 64.
    pub max_handshakes: usize,
    /// Seconds a connection gets to finish its TLS handshake. Default 10.
    pub handshake_timeout_seconds: u64,
    /// Concurrent HTTP/2 streams (calls) per connection. Default 32.
    pub max_streams_per_connection: u32,
    /// Largest request message a peer may send, in bytes; the largest
    /// legitimate one is a trust list of at most 1 MiB. Default 2097152 (2 MiB).
    pub max_message_bytes: usize,
    /// Trust lists each member may publish per second (PublishTrustList with
    /// a list other than the one in force). Default 1.
    pub trust_publish_per_second: u32,
    /// Trust lists a member may publish at once before the rate applies. Default 2.
    pub trust_publish_burst: u32,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            max_connections: 256,
            max_handshakes: 64,
            handshake_timeout_seconds: 10,
            max_streams_per_connection: 32,
            max_message_bytes: 2 * 1024 * 1024,
            trust_publish_per_second: 1,
            trust_publish_burst: 2,
        }
    }
}

impl PeerLimits {
    /// Checks every key; the error names it.
    fn validate(&self) -> Result<(), ConfigError> {
        let field = |k: &str| format!("peer_listener.limits.{k}");
        let at_least_1 = [
            ("max_connections", self.max_connections as u64),
            ("max_handshakes", self.max_handshakes as u64),
            ("handshake_timeout_seconds", self.handshake_timeout_seconds),
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
            ),
            (
                "trust_publish_per_second",
                u64::from(self.trust_publish_per_second),
            ),
            ("trust_publish_burst", u64::from(self.trust_publish_burst)),
        ];
        for (k, v) in at_least_1 {
            if v == 0 {
                return Err(invalid(field(k), "must be at least 1"));
            }
        }
        if self.max_handshakes > self.max_connections {
            return Err(invalid(
                field("max_handshakes"),
                "must be at most max_connections",
            ));
        }
        let min = MAX_LIST_BYTES + 64 * 1024;
        if self.max_message_bytes < min {
            return Err(invalid(
                field("max_message_bytes"),
                format!("must be at least {min}, so that a trust list of the largest size accepted fits"),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    /// This member's id in the coalition (also the name of its origin log).
    pub id: String,
    /// Directory of the store. Env: `CIX_DATA_DIR`.
    pub data_dir: PathBuf,
    /// Ed25519 key that signs this node's origin-log batches (64 hex
    /// characters of the seed, mode 0600); its public key is listed in the
    /// member's trust-list entry.
    pub signing_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMemberListener {
    /// Address of the member listener. Env: `CIX_MEMBER_LISTEN`.
    pub listen: String,
    /// Server certificate chain (PEM). Env: `CIX_MEMBER_CERT`.
    pub cert: PathBuf,
    /// Server private key (PEM). Env: `CIX_MEMBER_KEY`.
    pub key: PathBuf,
    /// CA that the member's client certificates must chain to (PEM). Env: `CIX_MEMBER_CLIENT_CA`.
    pub client_ca: PathBuf,
    /// Which client certificates may do what.
    #[serde(default, rename = "client")]
    pub clients: Vec<RawClient>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    /// A label for logs and audit.
    pub name: String,
    /// SHA-256 of the certificate's DER SubjectPublicKeyInfo, lowercase hex.
    pub spki_sha256: String,
    /// Any of "screen", "contribute", "admin", "watchlist", "disposition".
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEpoch {
    pub id: u32,
    /// File holding the 32-byte key as 64 hex characters (mode 0600).
    pub key_file: PathBuf,
    /// RFC 3339 time, e.g. "2026-01-01T00:00:00Z". Standalone nodes only:
    /// with a trust list, the list's windows decide.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// RFC 3339 time; the epoch is valid in [valid_from, valid_until).
    #[serde(default)]
    pub valid_until: Option<String>,
}

/// Request limits of the member listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Limits {
    /// Most items in one request message (match, contribute, retract, extend). Default 10000,
    /// at most 100000.
    pub max_batch_items: usize,
    /// Most bytes of one encoded batch this node writes to its origin log
    /// (contributions, rekeys, retractions and extensions, split into as
    /// many batches as it takes). Default 2097152 (2 MiB), 4096 to 4194304.
    pub max_batch_bytes: usize,
    /// Largest request message the transport accepts, in bytes. Default 16777216 (16 MiB).
    pub max_message_bytes: usize,
    /// Match requests each client certificate may make per second: a unary
    /// call (Match, MatchRemote) is one, and so is every message of a
    /// stream (MatchStream, MatchTokens), which is refused mid-stream once
    /// the limit is passed; 0 (the default) for no limit: the callers are
    /// the bank's own systems.
    pub match_requests_per_second: u32,
    /// Requests a client may make at once before the per-second rate
    /// applies (0: the per-second rate). Default 0.
    pub match_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_items: 10_000,
            max_batch_bytes: crate::batch::DEFAULT_WRITTEN_BYTES,
            max_message_bytes: 16 * 1024 * 1024,
            match_requests_per_second: 0,
            match_burst: 0,
        }
    }
}

/// sled settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StoreSettings {
    /// sled page cache, in MiB (sled holds batch locations, heads, the trust
    /// list and fork evidence, not the batches). Matching runs on the
    /// in-memory index, so the store needs little cache. Default 64.
    pub cache_mb: u64,
    /// Entries expired or retracted for longer than this are purged from
    /// disk (token and metadata gone, entry hash kept). Default "30d".
    pub retention: String,
    /// How often the purge runs. Default "1h".
    pub purge_interval: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            cache_mb: 64,
            retention: "30d".into(),
            purge_interval: "1h".into(),
        }
    }
}

/// How the node stops on SIGINT or SIGTERM.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ShutdownSettings {
    /// Seconds in-flight requests get to finish before they are cut. Default 10.
    pub drain_seconds: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings { drain_seconds: 10 }
    }
}

/// A checked configuration: absolute paths, parsed values.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub member: MemberListener,
    pub epochs: Vec<EpochConfig>,
    pub limits: Limits,
    pub store: StoreSettings,
    pub drain: Duration,
    /// Present when the node is part of a federation.
    pub federation: Option<Federation>,
    pub signing_key: PathBuf,
    pub retention: Duration,
    pub purge_interval: Duration,
    /// `watchlist.key_file`, when the node keeps a watchlist.
    pub watchlist_key: Option<PathBuf>,
    /// How long delivered alert events are kept (`alerts.retention`).
    pub alert_retention: Duration,
    pub webhook: Option<Webhook>,
    /// `[flood]`, checked.
    pub flood: Thresholds,
    /// `[feedback] mode`.
    pub feedback: FeedbackMode,
    /// `[feedback] relay`, only with the anonymous mode.
    pub feedback_relay: Option<String>,
}

/// The checked `[alerts.webhook]`.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    /// https, or http to a loopback address.
    pub url: http::Uri,
    pub secret_file: PathBuf,
    /// Present whenever the URL is https.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// Checks a webhook URL: https with a CA file, or plain http to a loopback
/// address. The errors never echo the URL (it may hold credentials).
fn webhook_url(url: &str, has_ca: bool) -> Result<http::Uri, ConfigError> {
    const FIELD: &str = "alerts.webhook.url";
    let rule = "must be https://HOST[:PORT]/PATH, or http:// to a loopback address (127.0.0.1, [::1], localhost)";
    let uri: http::Uri = url.parse().map_err(|_| invalid(FIELD, rule))?;
    let host = uri.host().ok_or_else(|| invalid(FIELD, rule))?;
    match uri.scheme_str() {
        Some("https") if has_ca => Ok(uri),
        Some("https") => Err(invalid(
            "alerts.webhook.ca_file",
            "required with an https url: the receiver's CA certificate (PEM)",
        )),
        Some("http") => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = bare == "localhost"
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(uri)
            } else {
                Err(invalid(FIELD, rule))
            }
        }
        _ => Err(invalid(FIELD, rule)),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Federation {
    pub root_file: PathBuf,
    /// The key-changing lists to walk at start from the stored list to a
    /// newer root file, if any.
    pub chain_file: Option<PathBuf>,
    /// Seconds before expiry from which the node warns.
    pub expiry_warning_secs: i64,
    pub sync_interval: Duration,
    pub pull_interval: Duration,
    /// Members to pull from; empty for all.
    pub pull_from: Vec<String>,
    /// HTTP/2 keepalive on every peer connection: ping interval, and how
    /// long an answer may take.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Longest silence of a Pull stream before the session ends.
    pub pull_idle_timeout: Duration,
    /// Reconnect backoff after failed sessions: first and longest wait.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub peer: PeerListener,
}

#[derive(Debug, Clone)]
pub(crate) struct PeerListener {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub coalition_ca: Option<PathBuf>,
    pub limits: PeerLimits,
}

#[derive(Debug, Clone)]
pub(crate) struct MemberListener {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// SPKI fingerprint → (name, capabilities).
    pub clients: HashMap<String, ClientGrant>,
}

impl RawConfig {
    /// Parses TOML text. `path` only names the file in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Applies the `CIX_*` environment overrides, read through `get`, so that
    /// tests can feed them without touching the process environment.
    pub(crate) fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("CIX_DATA_DIR") {
            self.node.data_dir = v.into();
        }
        if let Some(v) = get("CIX_MEMBER_LISTEN") {
            self.member_listener.listen = v;
        }
        if let Some(v) = get("CIX_MEMBER_CERT") {
            self.member_listener.cert = v.into();
        }
        if let Some(v) = get("CIX_MEMBER_KEY") {
            self.member_listener.key = v.into();
        }
        if let Some(v) = get("CIX_MEMBER_CLIENT_CA") {
            self.member_listener.client_ca = v.into();
        }
        if let Some(p) = self.peer_listener.as_mut() {
            if let Some(v) = get("CIX_PEER_LISTEN") {
                p.listen = v;
            }
            if let Some(v) = get("CIX_PEER_CERT") {
                p.cert = v.into();
            }
            if let Some(v) = get("CIX_PEER_KEY") {
                p.key = v.into();
            }
        }
    }
}

impl Config {
    /// Reads, overrides from the process environment, and validates.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut raw = RawConfig::parse(&text, path)?;
        raw.apply_env(|k| std::env::var(k).ok());
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_raw(raw, base)
    }

    /// Validates `raw`; relative paths are taken relative to `base` (the
    /// config file's directory).
    pub(crate) fn from_raw(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let node_id = raw.node.id;
        check_member_id(&node_id).map_err(|rule| invalid("node.id", rule))?;
        let listen: SocketAddr = raw.member_listener.listen.parse().map_err(|_| {
            invalid(
                "member_listener.listen",
                "must be IP:PORT, e.g. 127.0.0.1:7443",
            )
        })?;
        let mut clients = HashMap::new();
        for (i, c) in raw.member_listener.clients.iter().enumerate() {
            let field = format!("member_listener.client[{i}]");
            if !is_lower_hex(&c.spki_sha256, 64) {
                return Err(invalid(
                    format!("{field}.spki_sha256"),
                    "must be 64 lowercase hex characters (SHA-256 of the certificate's SubjectPublicKeyInfo)",
                ));
            }
            if c.name.trim().is_empty() {
                return Err(invalid(format!("{field}.name"), "must not be empty"));
            }
            let mut caps = Vec::new();
            for cap in &c.capabilities {
                let cap = ClientCapability::parse(cap).ok_or_else(|| {
                    invalid(
                        format!("{field}.capabilities"),
                        format!("unknown capability {cap:?}: use screen, contribute or admin"),
                    )
                })?;
                if !caps.contains(&cap) {
                    caps.push(cap);
                }
            }
            let grant = ClientGrant {
                name: c.name.clone(),
                capabilities: caps,
            };
            if clients.insert(c.spki_sha256.clone(), grant).is_some() {
                return Err(invalid(
                    format!("{field}.spki_sha256"),
                    "listed twice: give each certificate one entry with all its capabilities",
                ));
            }
        }
        if raw.token_epochs.is_empty() {
            return Err(invalid("token_epoch", "at least one key epoch is required"));
        }
        let federated = raw.trust.is_some();
        let windows_rule =
            "with [trust] the trust list gives epoch windows: leave out valid_from and valid_until";
        let mut epochs: Vec<EpochConfig> = Vec::new();
        for (i, e) in raw.token_epochs.iter().enumerate() {
            let field = format!("token_epoch[{i}]");
            let window = match (federated, &e.valid_from, &e.valid_until) {
                (false, Some(f), Some(u)) => {
                    let from =
                        parse_time(f).map_err(|r| invalid(format!("{field}.valid_from"), r))?;
                    let until =
                        parse_time(u).map_err(|r| invalid(format!("{field}.valid_until"), r))?;
                    if until <= from {
                        return Err(invalid(
                            format!("{field}.valid_until"),
                            "must be later than valid_from",
                        ));
                    }
                    Some((from, until))
                }
                (false, _, _) => {
                    return Err(invalid(
                        format!("{field}.valid_from"),
                        "a standalone node (no [trust]) needs valid_from and valid_until",
                    ))
                }
                (true, None, None) => None,
                (true, _, _) => return Err(invalid(format!("{field}.valid_from"), windows_rule)),
            };
            if epochs.iter().any(|x| x.id == e.id) {
                return Err(invalid(format!("{field}.id"), "epoch ids must be unique"));
            }
            epochs.push(EpochConfig {
                id: e.id,
                key_file: abs(&e.key_file),
                window,
            });
        }
        let duration = |field: &str, v: &str| {
            humantime::parse_duration(v)
                .map_err(|_| invalid(field, "must be a duration such as 30d, 12h or 90s"))
        };
        let federation = match (&raw.trust, &raw.peer_listener) {
            (Some(t), Some(p)) => {
                let r = &raw.replication;
                let positive = |field: &str, v: &str| {
                    let d = duration(field, v)?;
                    if d.is_zero() {
                        return Err(invalid(field, "must be more than zero"));
                    }
                    Ok(d)
                };
                let keepalive_interval =
                    positive("replication.keepalive_interval", &r.keepalive_interval)?;
                let keepalive_timeout =
                    positive("replication.keepalive_timeout", &r.keepalive_timeout)?;
                let pull_idle_timeout =
                    positive("replication.pull_idle_timeout", &r.pull_idle_timeout)?;
                let backoff_min = positive("replication.backoff_min", &r.backoff_min)?;
                let backoff_max = positive("replication.backoff_max", &r.backoff_max)?;
                if backoff_max < backoff_min {
                    return Err(invalid(
                        "replication.backoff_max",
                        "must not be shorter than replication.backoff_min",
                    ));
                }
                let listen = p.listen.parse().map_err(|_| {
                    invalid("peer_listener.listen", "must be IP:PORT, e.g. 0.0.0.0:7444")
                })?;
                if t.sync_seconds == 0 {
                    return Err(invalid("trust.sync_seconds", "must be at least 1"));
                }
                p.limits.validate()?;
                Some(Federation {
                    root_file: abs(&t.root_file),
                    chain_file: t.chain_file.as_deref().map(abs),
                    expiry_warning_secs: (t.expiry_warning_days as i64).saturating_mul(86_400),
                    sync_interval: Duration::from_secs(t.sync_seconds),
                    pull_interval: Duration::from_secs(raw.replication.pull_seconds.max(1)),
                    pull_from: raw.replication.peers.clone(),
                    keepalive_interval,
                    keepalive_timeout,
                    pull_idle_timeout,
                    backoff_min,
                    backoff_max,
                    peer: PeerListener {
                        listen,
                        cert: abs(&p.cert),
                        key: abs(&p.key),
                        coalition_ca: p.coalition_ca.as_deref().map(abs),
                        limits: p.limits.clone(),
                    },
                })
            }
            (Some(_), None) => return Err(invalid("peer_listener", "required with [trust]")),
            (None, Some(_)) => {
                return Err(invalid("trust", "[peer_listener] needs a [trust] section"))
            }
            (None, None) => None,
        };
        let retention = duration("store.retention", &raw.store.retention)?;
        let purge_interval = duration("store.purge_interval", &raw.store.purge_interval)?;
        if purge_interval.is_zero() {
            return Err(invalid("store.purge_interval", "must be more than zero"));
        }
        let alert_retention = duration("alerts.retention", &raw.alerts.retention)?;
        let webhook = match &raw.alerts.webhook {
            Some(w) => {
                let timeout = duration("alerts.webhook.timeout", &w.timeout)?;
                if timeout.is_zero() {
                    return Err(invalid("alerts.webhook.timeout", "must be more than zero"));
                }
                Some(Webhook {
                    url: webhook_url(&w.url, w.ca_file.is_some())?,
                    secret_file: abs(&w.secret_file),
                    ca_file: w.ca_file.as_deref().map(abs),
                    timeout,
                })
            }
            None => None,
        };
        let feedback = match raw.feedback.mode.as_str() {
            "off" => FeedbackMode::Off,
            "named" => FeedbackMode::Named,
            "anonymous" => FeedbackMode::Anonymous,
            _ => {
                return Err(invalid(
                    "feedback.mode",
                    "must be \"off\", \"named\" or \"anonymous\"",
                ))
            }
        };
        let feedback_relay = match &raw.feedback.relay {
            None => None,
            Some(_) if feedback != FeedbackMode::Anonymous => {
                return Err(invalid(
                    "feedback.relay",
                    "only with mode = \"anonymous\" (named feedback goes to the origin itself)",
                ))
            }
            Some(r) => {
                check_member_id(r).map_err(|rule| invalid("feedback.relay", rule))?;
                if *r == node_id {
                    return Err(invalid(
                        "feedback.relay",
                        "must be another member's node, not this one",
                    ));
                }
                Some(r.clone())
            }
        };
        if !(1..=MAX_BATCH_ITEMS).contains(&raw.limits.max_batch_items) {
            return Err(invalid(
                "limits.max_batch_items",
                format!("must be 1 to {MAX_BATCH_ITEMS}"),
            ));
        }
        let batch_bytes = crate::batch::MIN_WRITTEN_BYTES..=crate::batch::MAX_WRITTEN_BYTES;
        if !batch_bytes.contains(&raw.limits.max_batch_bytes) {
            return Err(invalid(
                "limits.max_batch_bytes",
                format!(
                    "must be {} to {} (what every node decodes)",
                    batch_bytes.start(),
                    batch_bytes.end()
                ),
            ));
        }
        for (field, v) in [
            ("flood.hits_per_day", raw.flood.hits_per_day),
            (
                "flood.watch_entries_per_day",
                raw.flood.watch_entries_per_day,
            ),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be more than zero"));
            }
        }
        if raw.limits.max_message_bytes < 4096 {
            return Err(invalid("limits.max_message_bytes", "must be at least 4096"));
        }
        Ok(Config {
            node_id,
            data_dir: abs(&raw.node.data_dir),
            member: MemberListener {
                listen,
                cert: abs(&raw.member_listener.cert),
                key: abs(&raw.member_listener.key),
                client_ca: abs(&raw.member_listener.client_ca),
                clients,
            },
            epochs,
            limits: raw.limits,
            store: raw.store,
            drain: Duration::from_secs(raw.shutdown.drain_seconds),
            federation,
            signing_key: abs(&raw.node.signing_key),
            retention,
            purge_interval,
            watchlist_key: raw.watchlist.as_ref().map(|w| abs(&w.key_file)),
            alert_retention,
            webhook,
            flood: Thresholds {
                hits_per_day: raw.flood.hits_per_day,
                watch_entries_per_day: raw.flood.watch_entries_per_day,
            },
            feedback,
            feedback_relay,
        })
    }
}

/// The most `limits.max_batch_items` may be: a request, and the answer to
/// it, stay far under the transport's limits.
const MAX_BATCH_ITEMS: usize = 100_000;

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config/node.example.toml");

    /// The example file shows every default as it really is.
    #[test]
    fn example_config_matches_defaults() {
        let raw = RawConfig::parse(EXAMPLE, Path::new("node.example.toml")).unwrap();
        assert_eq!(raw.limits, Limits::default());
        assert_eq!(raw.store, StoreSettings::default());
        assert_eq!(raw.shutdown, ShutdownSettings::default());
        assert_eq!(raw.replication, ReplicationSettings::default());
        assert_eq!(raw.alerts.retention, AlertSettings::default().retention);
        assert_eq!(raw.flood, FloodSettings::default());
        assert!(EXAMPLE.contains(&format!("# timeout = \"{}\"", default_webhook_timeout())));
        assert_eq!(
            raw.peer_listener.as_ref().unwrap().limits,
            PeerLimits::default()
        );
        let cfg = Config::from_raw(raw, Path::new("/etc/cix")).unwrap();
        assert_eq!(cfg.data_dir, Path::new("/etc/cix/data"));
        let fed = cfg.federation.expect("the example is a federated node");
        assert_eq!(
            fed.expiry_warning_secs,
            default_warning_days() as i64 * 86_400
        );
        assert_eq!(fed.sync_interval.as_secs(), default_sync_seconds());
        assert!(EXAMPLE.contains(&format!("expiry_warning_days = {}", default_warning_days())));
        assert!(EXAMPLE.contains(&format!("sync_seconds = {}", default_sync_seconds())));
    }

    #[test]
    fn every_section_with_defaults_appears_in_the_example() {
        for section in [
            "[limits]",
            "[store]",
            "[shutdown]",
            "[[token_epoch]]",
            "[[member_listener.client]]",
            "[trust]",
            "[peer_listener]",
            "[peer_listener.limits]",
            "[replication]",
            "[flood]",
            "[feedback]",
        ] {
            assert!(EXAMPLE.contains(section), "example lacks {section}");
        }
        let defaults = toml::to_string(&Limits::default()).unwrap()
            + &toml::to_string(&StoreSettings::default()).unwrap()
            + &toml::to_string(&ShutdownSettings::default()).unwrap()
            + &toml::to_string(&ReplicationSettings::default()).unwrap()
            + &toml::to_string(&PeerLimits::default()).unwrap()
            + &toml::to_string(&FloodSettings::default()).unwrap()
            + &toml::to_string(&FeedbackSettings::default()).unwrap();
        for line in defaults.lines() {
            assert!(
                EXAMPLE.contains(line),
                "example lacks default line {line:?}"
            );
        }
    }

    /// The webhook goes over https with the receiver's CA, or plain http to
    /// loopback only; the refusal names the field and never echoes the URL.
    #[test]
    fn a_webhook_is_https_or_loopback_http() {
        let with = |url: &str, ca: bool| {
            let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
            raw.alerts.webhook = Some(RawWebhook {
                url: url.into(),
                secret_file: "webhook.secret".into(),
                ca_file: ca.then(|| "ca.pem".into()),
                timeout: default_webhook_timeout(),
            });
            Config::from_raw(raw, Path::new("/etc/cix")).map(|c| c.webhook.unwrap())
        };
        let w = with("https://cases.example/hook?k=1", true).unwrap();
        assert_eq!(w.url.host(), Some("cases.example"));
        assert_eq!(w.ca_file.as_deref(), Some(Path::new("/etc/cix/ca.pem")));
        assert_eq!(w.timeout, Duration::from_secs(10));
        for ok in [
            "http://127.0.0.1:8080/a",
            "http://[::1]/a",
            "http://localhost/a",
        ] {
            with(ok, false).unwrap();
        }
        let e = with("https://cases.example/hook", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("alerts.webhook.ca_file"), "{e}");
        for bad in [
            "http://user:pw@cases.example/hook",
            "http://10.0.0.1/hook",
            "ftp://127.0.0.1/x",
            "cases.example/hook",
        ] {
            let e = with(bad, true).unwrap_err().to_string();
            assert!(e.contains("alerts.webhook.url"), "{bad}: {e}");
            assert!(!e.contains("cases.example") && !e.contains("pw"), "{e}");
        }
    }

    /// `[feedback] relay` only with the anonymous mode, naming another
    /// member's node.
    #[test]
    fn the_feedback_relay_goes_with_the_anonymous_mode_only() {
        let with = |mode: &str, relay: Option<&str>| {
            let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
            raw.feedback.mode = mode.into();
            raw.feedback.relay = relay.map(String::from);
            Config::from_raw(raw, Path::new("/")).map_err(|e| e.to_string())
        };
        let c = with("anonymous", Some("coalition-operator")).unwrap();
        assert_eq!(c.feedback, FeedbackMode::Anonymous);
        assert_eq!(c.feedback_relay.as_deref(), Some("coalition-operator"));
        assert_eq!(with("anonymous", None).unwrap().feedback_relay, None);
        for (mode, relay, says) in [
            ("named", Some("coalition-operator"), "only with mode"),
            ("anonymous", Some("has space"), "feedback.relay"),
            ("anonymous", Some(""), "feedback.relay"),
            ("loud", None, "feedback.mode"),
        ] {
            let e = with(mode, relay).unwrap_err();
            assert!(e.contains(says), "{mode} {relay:?}: {e}");
        }
        let own = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap().node.id;
        let e = with("anonymous", Some(&own)).unwrap_err();
        assert!(e.contains("not this one"), "{e}");
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
        raw.member_listener.listen = "nowhere".into();
        let e = Config::from_raw(raw, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("member_listener.listen"), "{e}");

        let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
        raw.member_listener.clients[0]
            .capabilities
            .push("root".into());
        let e = Config::from_raw(raw, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("member_listener.client[0].capabilities"), "{e}");

        // A standalone node gives epoch windows; a bad one is named.
        let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
        raw.trust = None;
        raw.peer_listener = None;
        raw.token_epochs[0].valid_from = Some("2026-01-01T00:00:00Z".into());
        raw.token_epochs[0].valid_until = Some("tomorrow".into());
        let e = Config::from_raw(raw, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token_epoch[0].valid_until"), "{e}");

        let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
        raw.trust = None;
        raw.peer_listener = None;
        let e = Config::from_raw(raw, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("standalone node"), "{e}");

        // A federated node takes windows from the trust list only.
        let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
        raw.token_epochs[0].valid_from = Some("2026-01-01T00:00:00Z".into());
        let e = Config::from_raw(raw, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("trust list gives epoch windows"), "{e}");

        let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
        raw.peer_listener = None;
        let e = Config::from_raw(raw, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("peer_listener") && e.contains("required with [trust]"),
            "{e}"
        );

        // The peer listener's limits, each named.
        type Edit = fn(&mut PeerLimits);
        let cases: [(&str, Edit); 4] = [
            ("max_connections", |l| l.max_connections = 0),
            ("max_handshakes", |l| {
                l.max_handshakes = l.max_connections + 1
            }),
            ("trust_publish_per_second", |l| {
                l.trust_publish_per_second = 0
            }),
            ("max_message_bytes", |l| {
                l.max_message_bytes = MAX_LIST_BYTES
            }),
        ];
        for (key, edit) in cases {
            let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
            edit(&mut raw.peer_listener.as_mut().unwrap().limits);
            let e = Config::from_raw(raw, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("peer_listener.limits.{key}")), "{e}");
        }

        let e = RawConfig::parse(
            "[node]\nid='a'\ndata_dir='d'\nbogus=1\n",
            Path::new("f.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus"), "{e}");

        for (items, bytes, field) in [
            (0, 4096, "limits.max_batch_items"),
            (100_001, 4096, "limits.max_batch_items"),
            (10, 4095, "limits.max_batch_bytes"),
            (10, 4 * 1024 * 1024 + 1, "limits.max_batch_bytes"),
        ] {
            let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
            raw.limits.max_batch_items = items;
            raw.limits.max_batch_bytes = bytes;
            let e = Config::from_raw(raw, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{e}");
        }

        type ReplicationEdit = fn(&mut ReplicationSettings);
        let replication: [(ReplicationEdit, &str); 3] = [
            (
                |r| r.backoff_max = "500ms".into(),
                "replication.backoff_max",
            ),
            (|r| r.pull_idle_timeout = "0s".into(), "more than zero"),
            (|r| r.keepalive_interval = "often".into(), "a duration"),
        ];
        for (edit, rule) in replication {
            let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
            edit(&mut raw.replication);
            let e = Config::from_raw(raw, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("`replication.") && e.contains(rule), "{e}");
        }
    }

    #[test]
    fn env_overrides_paths_and_addresses() {
        let mut raw = RawConfig::parse(EXAMPLE, Path::new("x")).unwrap();
        raw.apply_env(|k| match k {
            "CIX_DATA_DIR" => Some("/var/lib/cix".into()),
            "CIX_MEMBER_LISTEN" => Some("127.0.0.1:9999".into()),
            _ => None,
        });
        let cfg = Config::from_raw(raw, Path::new("/etc/cix")).unwrap();
        assert_eq!(cfg.data_dir, Path::new("/var/lib/cix"));
        assert_eq!(cfg.member.listen.port(), 9999);
    }
}
