//! Operator tools: key generation and the coalition trust list (create,
//! edit, sign, verify, show, publish).
//!
//! Editing and signing are offline and file-based, so that operators can
//! sign in turn on separate machines: every edit writes a new version with
//! NO signatures (the body changed), and `sign` adds one. The rules are in
//! [`crate::trust::list`] and the edits in [`crate::trust::edit`]; this
//! module only reads flags and files, prints
//! and writes. It never prints a private key.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use ed25519_dalek::VerifyingKey;

use crate::{
    epochs::now_unix,
    keys::{
        signing::{load_public, write_public, SigningKeyFile},
        TokenKey,
    },
    proto::{self, KeyEpoch, Member, MemberKind, MemberStatus, PeerCapability, SignedTrustList},
    time::{format_time, parse_time},
    trust::{
        edit as edits,
        list::{self, QueryPolicy, TrustList, Update},
    },
};

/// The file formats, for every command's `--help`.
macro_rules! formats {
    () => {
        "File formats:\n  \
         trust-list file: binary protobuf cix.v1.SignedTrustList (proto/cix/v1/trust.proto); \
         its `body` is an encoded cix.v1.TrustList, its signatures Ed25519 over \
         \"cix-trust-list-v1\" || 0x00 || body.\n  \
         private key file: 64 hex characters of the 32-byte Ed25519 seed and a newline, mode 0600 \
         (group- or other-readable files are refused).\n  \
         public key file: 64 hex characters of the 32-byte Ed25519 public key and a newline.\n  \
         token key file: 64 hex characters of the 32-byte token key and a newline, mode 0600."
    };
}

macro_rules! edit_note {
    () => {
        "Every edit loads the file, bumps the version by 1, sets issued_at to now, keeps \
         expires_at unless --expires-in is given, checks the result, DROPS all signatures \
         (the body changed: operators sign again with `cix trust sign`) and replaces the file \
         atomically."
    };
}

/// `cix keygen --help` (set on the `Command` variant: its doc comment
/// would otherwise replace a struct-level `long_about`).
pub const KEYGEN_LONG_ABOUT: &str = concat!(
    "Make an Ed25519 key pair (an operator's trust-list key or a member's log key): \
     writes the private key to PATH (mode 0600, never overwritten) and the public key to \
     PATH.pub, and prints the public key. With --token, make a token key instead and print \
     its fingerprint (SHA-256 of the 32 key bytes). Never prints a private key.\n\n",
    formats!()
);

/// `cix trust --help` (set on the `Command` variant, like [`KEYGEN_LONG_ABOUT`]).
pub const TRUST_LONG_ABOUT: &str = concat!(
    "Edit, sign, verify, show and publish the coalition trust list: who may connect, with \
     which capabilities and keys, signed by a threshold of operator keys. Operators create \
     it (`new`), edit it (`member`, `epoch`, `operators`: each edit makes a new unsigned \
     version), sign it in turn offline (`sign`), check it (`verify`, `show`) and hand it to \
     a node (`publish`), which passes it on to its peers.\n\n",
    formats!()
);

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the private key; the public key goes to PATH.pub.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Make a 32-byte token key (for a key epoch) instead of an Ed25519 key pair.
    #[arg(long)]
    pub token: bool,
}

#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Create a new trust list (version 1, unsigned).
    #[command(long_about = concat!(
        "Create a new trust list: version 1, issued now, no members, no epochs, unsigned.\n\n",
        formats!()
    ))]
    New(NewArgs),
    /// Add, change, suspend, reinstate or remove members.
    #[command(subcommand, long_about = concat!(
        "Add, change, suspend, reinstate or remove members.\n\n", edit_note!(), "\n\n", formats!()
    ))]
    Member(MemberCommand),
    /// Add or retire token key epochs.
    #[command(subcommand, long_about = concat!(
        "Add or retire token key epochs. The list holds only the SHA-256 of each token key.\n\n",
        edit_note!(), "\n\n", formats!()
    ))]
    Epoch(EpochCommand),
    /// Rotate operator keys and change the threshold.
    #[command(long_about = concat!(
        "Rotate operator keys and change the threshold. Nodes accept the new list only when \
         a threshold of the CURRENT operator keys AND a threshold of the NEW keys signed it: \
         have the old and the new operators sign.\n\n",
        edit_note!(), "\n\n", formats!()
    ))]
    Operators(OperatorsArgs),
    /// Set the coalition's policy for prefix queries between members.
    #[command(long_about = concat!(
        "Set the coalition's policy for prefix queries (Federation.QueryPrefix): the prefix \
         length askers send (16-24 bits; each prefix narrows an identifier to about one in \
         2^bits of its identifier space for the answering member, who holds the token key), \
         the bucket size answers are padded to, and the per-member limits. Options not given \
         keep their value; 0 restores the default (20 bits, 64, 10/s, burst 20, 100000/day).\n\n",
        edit_note!(), "\n\n", formats!()
    ))]
    QueryPolicy(QueryPolicyArgs),
    /// Add a signature with an operator's private key (offline).
    #[command(long_about = concat!(
        "Add a signature with an operator's private key (offline; operators sign in turn). \
         Replaces an earlier signature by the same key. Prints how many valid signatures of \
         the list's own operator keys it now has against its threshold.\n\n",
        formats!()
    ))]
    Sign(SignArgs),
    /// Check whether a node would accept the list.
    #[command(long_about = concat!(
        "Check whether a node would accept the list. Without --current: as a node's root list \
         (valid, signed by a threshold of its own operator keys; expiry is only reported). With \
         --current: as an update of that list (same coalition, higher version, not expired, \
         signed by a threshold of the current operator keys, and of the new keys when they \
         change). Prints \"acceptable\" or the reason; exits non-zero when not acceptable.\n\n",
        formats!()
    ))]
    Verify(VerifyArgs),
    /// Print the list (or JSON with --json).
    #[command(long_about = concat!(
        "Print the list: coalition, version, times, threshold, operator keys, epochs, members \
         and signatures; with --json, one JSON object.\n\n",
        formats!()
    ))]
    Show(ShowArgs),
    /// Hand the list to a node's peer listener (Federation.PublishTrustList).
    #[command(long_about = concat!(
        "Hand the list to a node's peer listener over mutual TLS (Federation.PublishTrustList). \
         The node verifies it against the list it holds, applies it and passes it on to its \
         peers. The certificate given must be an active member's, and the node is recognised \
         by its certificate key fingerprint (--node-spki).\n\n",
        formats!()
    ))]
    Publish(PublishArgs),
}

#[derive(Args, Debug)]
pub struct QueryPolicyArgs {
    #[command(flatten)]
    pub edit: EditFile,
    /// Bits of the token an asker sends (16 to 24).
    #[arg(long)]
    pub prefix_bits: Option<u32>,
    /// Answers per prefix are padded with decoys to a multiple of this.
    #[arg(long)]
    pub bucket_size: Option<u32>,
    /// Requests per second per asking member.
    #[arg(long)]
    pub requests_per_second: Option<u32>,
    /// Requests an asking member may send at once.
    #[arg(long)]
    pub burst: Option<u32>,
    /// Prefixes per asking member per UTC day.
    #[arg(long)]
    pub prefixes_per_day: Option<u64>,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// Trust-list file to create.
    #[arg(long)]
    pub file: PathBuf,
    /// Coalition id.
    #[arg(long)]
    pub coalition: String,
    /// Operator public key file (repeat for each operator).
    #[arg(long = "operator-key", value_name = "PUBFILE", required = true)]
    pub operator_keys: Vec<PathBuf>,
    /// Label of each operator key, in the same order (default: the file name without .pub).
    #[arg(long = "operator-id", value_name = "NAME")]
    pub operator_ids: Vec<String>,
    /// Signatures of distinct operator keys a list needs.
    #[arg(long)]
    pub threshold: u32,
    /// Validity from now, e.g. 90d.
    #[arg(long, default_value = "365d")]
    pub expires_in: humantime::Duration,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Options of every edit.
#[derive(Args, Debug)]
pub struct EditFile {
    /// Trust-list file to edit (replaced atomically).
    #[arg(long)]
    pub file: PathBuf,
    /// Set expires_at to now + this (e.g. 90d); default: keep it.
    #[arg(long)]
    pub expires_in: Option<humantime::Duration>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    Bank,
    Liaison,
    Operator,
    Other,
}

impl From<KindArg> for MemberKind {
    fn from(k: KindArg) -> MemberKind {
        match k {
            KindArg::Bank => MemberKind::Bank,
            KindArg::Liaison => MemberKind::Liaison,
            KindArg::Operator => MemberKind::Operator,
            KindArg::Other => MemberKind::Other,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CapabilityArg {
    Contribute,
    Replicate,
    Query,
}

impl From<CapabilityArg> for PeerCapability {
    fn from(c: CapabilityArg) -> PeerCapability {
        match c {
            CapabilityArg::Contribute => PeerCapability::Contribute,
            CapabilityArg::Replicate => PeerCapability::Replicate,
            CapabilityArg::Query => PeerCapability::Query,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add an active member.
    #[command(long_about = concat!("Add an active member.\n\n", edit_note!(), "\n\n", formats!()))]
    Add(MemberAddArgs),
    /// Change a member.
    #[command(long_about = concat!("Change a member.\n\n", edit_note!(), "\n\n", formats!()))]
    Update(MemberUpdateArgs),
    /// Suspend a member; its origin log is accepted up to --last-seq.
    #[command(long_about = concat!(
        "Suspend a member: peers refuse its connections; its origin log is accepted up to and \
         including --last-seq.\n\n", edit_note!(), "\n\n", formats!()
    ))]
    Suspend {
        #[command(flatten)]
        edit: EditFile,
        /// Member id.
        #[arg(long)]
        id: String,
        /// Last sequence number of the member's origin log to accept.
        #[arg(long)]
        last_seq: u64,
    },
    /// Make a suspended member active again.
    #[command(long_about = concat!(
        "Make a suspended member active again.\n\n", edit_note!(), "\n\n", formats!()
    ))]
    Reinstate {
        #[command(flatten)]
        edit: EditFile,
        /// Member id.
        #[arg(long)]
        id: String,
    },
    /// Remove a member.
    #[command(long_about = concat!("Remove a member.\n\n", edit_note!(), "\n\n", formats!()))]
    Remove {
        #[command(flatten)]
        edit: EditFile,
        /// Member id.
        #[arg(long)]
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct MemberAddArgs {
    #[command(flatten)]
    pub edit: EditFile,
    /// Member id, [a-z0-9._-]{1,64} (also its origin log's name).
    #[arg(long)]
    pub id: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// What kind of member.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// What the member may do on peer listeners (repeat).
    #[arg(long, value_enum)]
    pub capability: Vec<CapabilityArg>,
    /// SHA-256 of a TLS certificate's SubjectPublicKeyInfo, 64 hex (repeat).
    #[arg(long, value_name = "HEX")]
    pub tls_spki: Vec<String>,
    /// The member's log signing public key file.
    #[arg(long, value_name = "PUBFILE")]
    pub signing_key: Option<PathBuf>,
    /// HOST:PORT of the member node's peer listener.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// End of the member's sharing basis (RFC 3339); from then on it counts as suspended.
    #[arg(long, value_name = "RFC3339")]
    pub sharing_basis_expires: Option<String>,
}

#[derive(Args, Debug)]
pub struct MemberUpdateArgs {
    #[command(flatten)]
    pub edit: EditFile,
    /// Member id.
    #[arg(long)]
    pub id: String,
    /// New display name.
    #[arg(long)]
    pub name: Option<String>,
    /// New kind.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Replace the capabilities (repeat).
    #[arg(long, value_enum)]
    pub capability: Vec<CapabilityArg>,
    /// Replace all certificate fingerprints (repeat).
    #[arg(long, value_name = "HEX")]
    pub tls_spki: Vec<String>,
    /// Add a certificate fingerprint (repeat), e.g. for a certificate rotation.
    #[arg(long, value_name = "HEX")]
    pub add_tls_spki: Vec<String>,
    /// Remove a certificate fingerprint (repeat).
    #[arg(long, value_name = "HEX")]
    pub remove_tls_spki: Vec<String>,
    /// HOST:PORT of the peer listener; "" for none.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// End of the sharing basis (RFC 3339), or "none".
    #[arg(long, value_name = "RFC3339")]
    pub sharing_basis_expires: Option<String>,
    /// Add a log signing public key file.
    #[arg(long, value_name = "PUBFILE")]
    pub add_signing_key: Option<PathBuf>,
    /// Retire a log signing public key file; it may sign up to --last-seq.
    #[arg(long, value_name = "PUBFILE", requires = "last_seq")]
    pub retire_signing_key: Option<PathBuf>,
    /// With --retire-signing-key: the last sequence number the retired key may sign.
    #[arg(long, requires = "retire_signing_key")]
    pub last_seq: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum EpochCommand {
    /// Add a token key epoch.
    #[command(long_about = concat!("Add a token key epoch.\n\n", edit_note!(), "\n\n", formats!()))]
    Add(EpochAddArgs),
    /// End an epoch's validity (sets valid_until).
    #[command(long_about = concat!(
        "End an epoch's validity: sets valid_until to --at (default now).\n\n",
        edit_note!(), "\n\n", formats!()
    ))]
    Retire {
        #[command(flatten)]
        edit: EditFile,
        /// Epoch id.
        #[arg(long)]
        id: u32,
        /// RFC 3339 (default: now).
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct EpochAddArgs {
    #[command(flatten)]
    pub edit: EditFile,
    /// Epoch id.
    #[arg(long)]
    pub id: u32,
    /// SHA-256 of the 32 token key bytes, 64 hex.
    #[arg(
        long,
        value_name = "HEX",
        required_unless_present = "key_file",
        conflicts_with = "key_file"
    )]
    pub key_fingerprint: Option<String>,
    /// Token key file to take the fingerprint from.
    #[arg(long, value_name = "TOKENKEY")]
    pub key_file: Option<PathBuf>,
    /// Start of validity (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub valid_from: String,
    /// End of validity, exclusive (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub valid_until: String,
}

#[derive(Args, Debug)]
pub struct OperatorsArgs {
    #[command(flatten)]
    pub edit: EditFile,
    /// Add an operator public key file (repeat); labelled by its file name without .pub.
    #[arg(long, value_name = "PUBFILE")]
    pub add: Vec<PathBuf>,
    /// Remove an operator public key file (repeat).
    #[arg(long, value_name = "PUBFILE")]
    pub remove: Vec<PathBuf>,
    /// New threshold.
    #[arg(long)]
    pub threshold: Option<u32>,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Trust-list file (replaced atomically).
    #[arg(long)]
    pub file: PathBuf,
    /// Operator private key file (mode 0600).
    #[arg(long, value_name = "PRIVFILE")]
    pub key: PathBuf,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Trust-list file to check.
    #[arg(long)]
    pub file: PathBuf,
    /// The list a node holds now: check FILE as an update of it.
    #[arg(long, value_name = "CURRENT_FILE")]
    pub current: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Trust-list file.
    #[arg(long)]
    pub file: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Trust-list file to publish.
    #[arg(long)]
    pub file: PathBuf,
    /// The node's peer listener, HOST:PORT.
    #[arg(long)]
    pub node: String,
    /// Name to check in the node's certificate (default: HOST).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Client certificate (PEM) of an active member.
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// SHA-256 of the node's certificate SubjectPublicKeyInfo, 64 hex (repeat to allow several).
    #[arg(long, value_name = "HEX", required = true)]
    pub node_spki: Vec<String>,
}

/// `cix keygen`.
pub fn keygen(a: KeygenArgs) -> Result<()> {
    if a.token {
        let key = TokenKey::generate();
        key.write_new(&a.out)?;
        println!("{}", key.fingerprint());
        eprintln!("token key written to {} (mode 0600)", a.out.display());
        return Ok(());
    }
    let pub_path = pub_path(&a.out);
    if pub_path.exists() {
        bail!("{} already exists; not overwriting", pub_path.display());
    }
    let key = SigningKeyFile::generate();
    key.write_new(&a.out)?;
    if let Err(e) = write_public(&pub_path, &key.verifying_key()) {
        let _ = std::fs::remove_file(&a.out);
        return Err(e.into());
    }
    println!("{}", key.public_hex());
    eprintln!(
        "private key written to {} (mode 0600), public key to {}",
        a.out.display(),
        pub_path.display()
    );
    Ok(())
}

fn pub_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// `cix trust ...`.
pub async fn trust(c: TrustCommand) -> Result<()> {
    match c {
        TrustCommand::New(a) => new(a),
        TrustCommand::Member(m) => member(m),
        TrustCommand::Epoch(e) => epoch(e),
        TrustCommand::Operators(a) => operators(a),
        TrustCommand::QueryPolicy(a) => query_policy(a),
        TrustCommand::Sign(a) => sign(a),
        TrustCommand::Verify(a) => verify(a),
        TrustCommand::Show(a) => show(a),
        TrustCommand::Publish(a) => publish(a).await,
    }
}

fn read_signed(path: &Path) -> Result<SignedTrustList> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading trust list {}", path.display()))?;
    list::decode_signed(&bytes).with_context(|| format!("trust list {}", path.display()))
}

fn read_body(path: &Path) -> Result<(SignedTrustList, proto::TrustList)> {
    let signed = read_signed(path)?;
    let body =
        list::decode_body(&signed).with_context(|| format!("trust list {}", path.display()))?;
    Ok((signed, body))
}

/// Writes next to `path` and renames over it, so a reader never sees half a file.
fn write_atomic(path: &Path, signed: &SignedTrustList) -> Result<()> {
    use prost::Message;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing a temporary file in {}", dir.display()))?;
    tmp.write_all(&signed.encode_to_vec())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    // The list is not secret: readable like any other file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn label_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".pub").unwrap_or(&name);
    name.strip_suffix(".key").unwrap_or(name).to_string()
}

fn load_pub(path: &Path) -> Result<VerifyingKey> {
    Ok(load_public(path)?)
}

fn expiry_from_now(d: &humantime::Duration) -> i64 {
    now_unix().saturating_add(d.as_secs().min(i64::MAX as u64) as i64)
}

fn time_arg(flag: &str, s: &str) -> Result<i64> {
    parse_time(s).map_err(|r| anyhow::anyhow!("{flag}: {r}"))
}

fn spki_arg(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

fn new(a: NewArgs) -> Result<()> {
    if a.file.exists() && !a.force {
        bail!(
            "{} already exists; give --force to replace it",
            a.file.display()
        );
    }
    if !a.operator_ids.is_empty() && a.operator_ids.len() != a.operator_keys.len() {
        bail!(
            "{} --operator-id for {} --operator-key: give one per key, or none",
            a.operator_ids.len(),
            a.operator_keys.len()
        );
    }
    let keys = a
        .operator_keys
        .iter()
        .map(|p| load_pub(p))
        .collect::<Result<Vec<_>>>()?;
    let now = now_unix();
    let mut body = edits::new_list(
        &a.coalition,
        &keys,
        a.threshold,
        Vec::new(),
        Vec::new(),
        now,
        expiry_from_now(&a.expires_in),
    );
    for (i, k) in body.operator_keys.iter_mut().enumerate() {
        k.id = match a.operator_ids.get(i) {
            Some(id) => id.clone(),
            None => label_of(&a.operator_keys[i]),
        };
    }
    list::check_body(&body)?;
    write_atomic(&a.file, &edits::unsigned(&body))?;
    println!(
        "created trust list {} for coalition {}: version 1, {} operator keys, threshold {}, expires {} (unsigned)",
        a.file.display(),
        body.coalition_id,
        body.operator_keys.len(),
        body.threshold,
        format_time(body.expires_at)
    );
    Ok(())
}

/// Loads, applies `f` (which says what it did), bumps the version, checks,
/// drops the signatures and writes.
fn edit(e: &EditFile, f: impl FnOnce(&mut proto::TrustList) -> Result<String>) -> Result<()> {
    let (signed, mut body) = read_body(&e.file)?;
    let what = f(&mut body)?;
    let now = now_unix();
    edits::next_version(&mut body, now, e.expires_in.as_ref().map(expiry_from_now));
    list::check_body(&body).with_context(|| {
        if body.expires_at <= now {
            "the list has expired: give --expires-in".to_string()
        } else {
            "refusing to write an invalid list".to_string()
        }
    })?;
    write_atomic(&e.file, &edits::unsigned(&body))?;
    let dropped = if signed.signatures.is_empty() {
        String::new()
    } else {
        format!(", {} signature(s) dropped", signed.signatures.len())
    };
    println!(
        "{what}; trust list version {} (unsigned, needs {} signatures{dropped})",
        body.version, body.threshold
    );
    Ok(())
}

fn query_policy(a: QueryPolicyArgs) -> Result<()> {
    edit(&a.edit, |b| {
        let p = b.query_policy.get_or_insert_with(Default::default);
        if let Some(v) = a.prefix_bits {
            p.prefix_bits = v;
        }
        if let Some(v) = a.bucket_size {
            p.bucket_size = v;
        }
        if let Some(v) = a.requests_per_second {
            p.requests_per_second = v;
        }
        if let Some(v) = a.burst {
            p.burst = v;
        }
        if let Some(v) = a.prefixes_per_day {
            p.prefixes_per_day = v;
        }
        let q = QueryPolicy::of(b);
        Ok(format!(
            "query policy: {} prefix bits, buckets of {}, {}/s (burst {}), {} prefixes/day",
            q.prefix_bits, q.bucket_size, q.requests_per_second, q.burst, q.prefixes_per_day
        ))
    })
}

fn member(c: MemberCommand) -> Result<()> {
    match c {
        MemberCommand::Add(a) => {
            let signing = a.signing_key.as_deref().map(load_pub).transpose()?;
            let basis = a
                .sharing_basis_expires
                .as_deref()
                .map(|s| time_arg("--sharing-basis-expires", s))
                .transpose()?;
            edit(&a.edit, |b| {
                let mut m = Member {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    kind: MemberKind::from(a.kind) as i32,
                    capabilities: a
                        .capability
                        .iter()
                        .map(|&c| PeerCapability::from(c) as i32)
                        .collect(),
                    tls_spki_sha256: a.tls_spki.iter().map(|s| spki_arg(s)).collect(),
                    signing_keys: Vec::new(),
                    endpoint: a.endpoint.clone().unwrap_or_default(),
                    status: MemberStatus::Active as i32,
                    suspended_after_seq: 0,
                    sharing_basis_expires_at: basis.unwrap_or(0),
                };
                if let Some(k) = &signing {
                    edits::add_signing_key(&mut m, k)?;
                }
                edits::add_member(b, m)?;
                Ok(format!("member {} added", a.id))
            })
        }
        MemberCommand::Update(a) => {
            let add_key = a.add_signing_key.as_deref().map(load_pub).transpose()?;
            let retire_key = a.retire_signing_key.as_deref().map(load_pub).transpose()?;
            let basis = match a.sharing_basis_expires.as_deref() {
                None => None,
                Some("none") => Some(0),
                Some(s) => Some(time_arg("--sharing-basis-expires", s)?),
            };
            edit(&a.edit, |b| {
                let m = edits::member_mut(b, &a.id)?;
                let mut changed = Vec::new();
                if let Some(n) = &a.name {
                    m.name = n.clone();
                    changed.push("name");
                }
                if let Some(k) = a.kind {
                    m.kind = MemberKind::from(k) as i32;
                    changed.push("kind");
                }
                if !a.capability.is_empty() {
                    m.capabilities = a
                        .capability
                        .iter()
                        .map(|&c| PeerCapability::from(c) as i32)
                        .collect();
                    changed.push("capabilities");
                }
                if !a.tls_spki.is_empty() {
                    m.tls_spki_sha256 = a.tls_spki.iter().map(|s| spki_arg(s)).collect();
                    changed.push("tls fingerprints");
                }
                for s in &a.remove_tls_spki {
                    let s = spki_arg(s);
                    let before = m.tls_spki_sha256.len();
                    m.tls_spki_sha256.retain(|x| *x != s);
                    if m.tls_spki_sha256.len() == before {
                        bail!("member {} has no tls fingerprint {s}", m.id);
                    }
                    changed.push("tls fingerprint removed");
                }
                for s in &a.add_tls_spki {
                    let s = spki_arg(s);
                    if m.tls_spki_sha256.contains(&s) {
                        bail!("member {} already has tls fingerprint {s}", m.id);
                    }
                    m.tls_spki_sha256.push(s);
                    changed.push("tls fingerprint added");
                }
                if let Some(e) = &a.endpoint {
                    m.endpoint = e.clone();
                    changed.push("endpoint");
                }
                if let Some(t) = basis {
                    m.sharing_basis_expires_at = t;
                    changed.push("sharing basis");
                }
                if let (Some(k), Some(seq)) = (&retire_key, a.last_seq) {
                    edits::retire_signing_key(m, k, seq)?;
                    changed.push("signing key retired");
                }
                if let Some(k) = &add_key {
                    edits::add_signing_key(m, k)?;
                    changed.push("signing key added");
                }
                if changed.is_empty() {
                    bail!("nothing to change: give at least one option to update");
                }
                changed.dedup();
                Ok(format!("member {} updated ({})", a.id, changed.join(", ")))
            })
        }
        MemberCommand::Suspend {
            edit: e,
            id,
            last_seq,
        } => edit(&e, |b| {
            edits::suspend(edits::member_mut(b, &id)?, last_seq);
            Ok(format!(
                "member {id} suspended (origin log accepted up to seq {last_seq})"
            ))
        }),
        MemberCommand::Reinstate { edit: e, id } => edit(&e, |b| {
            edits::reinstate(edits::member_mut(b, &id)?);
            Ok(format!("member {id} reinstated"))
        }),
        MemberCommand::Remove { edit: e, id } => edit(&e, |b| {
            edits::remove_member(b, &id)?;
            Ok(format!("member {id} removed"))
        }),
    }
}

fn epoch(c: EpochCommand) -> Result<()> {
    match c {
        EpochCommand::Add(a) => {
            let key_sha256 = match (&a.key_fingerprint, &a.key_file) {
                (Some(h), _) => spki_arg(h),
                (None, Some(p)) => TokenKey::load(p)?.fingerprint(),
                (None, None) => bail!("give --key-fingerprint or --key-file"),
            };
            let valid_from = time_arg("--valid-from", &a.valid_from)?;
            let valid_until = time_arg("--valid-until", &a.valid_until)?;
            edit(&a.edit, |b| {
                edits::add_epoch(
                    b,
                    KeyEpoch {
                        id: a.id,
                        valid_from,
                        valid_until,
                        key_sha256,
                    },
                )?;
                Ok(format!(
                    "epoch {} added (valid {} to {})",
                    a.id,
                    format_time(valid_from),
                    format_time(valid_until)
                ))
            })
        }
        EpochCommand::Retire { edit: e, id, at } => {
            let at = match at {
                Some(s) => time_arg("--at", &s)?,
                None => now_unix(),
            };
            edit(&e, |b| {
                edits::retire_epoch(b, id, at)?;
                Ok(format!("epoch {id} retired at {}", format_time(at)))
            })
        }
    }
}

fn operators(a: OperatorsArgs) -> Result<()> {
    if a.add.is_empty() && a.remove.is_empty() && a.threshold.is_none() {
        bail!("nothing to change: give --add, --remove or --threshold");
    }
    let add = a
        .add
        .iter()
        .map(|p| Ok((label_of(p), load_pub(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let remove = a
        .remove
        .iter()
        .map(|p| load_pub(p))
        .collect::<Result<Vec<_>>>()?;
    edit(&a.edit, |b| {
        for k in &remove {
            edits::remove_operator_key(b, k)?;
        }
        for (label, k) in &add {
            edits::add_operator_key(b, label, k)?;
        }
        if let Some(t) = a.threshold {
            b.threshold = t;
        }
        Ok(format!(
            "operator keys: {} added, {} removed; now {} keys, threshold {}",
            add.len(),
            remove.len(),
            b.operator_keys.len(),
            b.threshold
        ))
    })
}

fn sign(a: SignArgs) -> Result<()> {
    let key = SigningKeyFile::load(&a.key)?;
    let (mut signed, body) = read_body(&a.file)?;
    list::check_body(&body).context("refusing to sign an invalid list")?;
    list::sign(&mut signed, &key);
    write_atomic(&a.file, &signed)?;
    let got = list::count_valid(&signed, &body.operator_keys);
    let listed = body
        .operator_keys
        .iter()
        .any(|k| k.public_key[..] == key.verifying_key().as_bytes()[..]);
    println!(
        "signed version {} with {}: {got} valid signature(s) of its operator keys, threshold {}{}",
        body.version,
        key.public_hex(),
        body.threshold,
        if got >= body.threshold as usize {
            " (enough)"
        } else {
            ""
        }
    );
    if !listed {
        eprintln!(
            "note: this key is not one of the list's operator keys; its signature counts only \
             towards a rotation from a list that has it"
        );
    }
    Ok(())
}

fn verify(a: VerifyArgs) -> Result<()> {
    let signed = read_signed(&a.file)?;
    let now = now_unix();
    match &a.current {
        None => {
            let l = list::verify_root(&signed, None)
                .map_err(|e| anyhow::anyhow!("not acceptable: {e}"))?;
            println!(
                "acceptable: version {} of coalition {}, {} of {} needed signatures valid",
                l.version(),
                l.coalition_id(),
                list::count_valid(l.signed(), &l.body().operator_keys),
                l.body().threshold
            );
            if l.is_expired(now) {
                eprintln!(
                    "warning: the list expired at {}; a node starting from it runs in the expired state",
                    format_time(l.expires_at())
                );
            }
        }
        Some(cur) => {
            let current = list::verify_root(&read_signed(cur)?, None).with_context(|| {
                format!("the current list {} is not valid itself", cur.display())
            })?;
            match list::verify_update(&current, &signed, now)
                .map_err(|e| anyhow::anyhow!("not acceptable: {e}"))?
            {
                Update::Same => println!(
                    "acceptable: identical to the current list (version {})",
                    current.version()
                ),
                Update::Newer(l) => println!(
                    "acceptable: update of coalition {} from version {} to {}",
                    l.coalition_id(),
                    current.version(),
                    l.version()
                ),
            }
        }
    }
    Ok(())
}

/// `MEMBER_KIND_BANK` → `bank`.
fn short_name(name: Option<&str>, prefix: &str) -> String {
    name.map(|n| n.trim_start_matches(prefix).to_ascii_lowercase())
        .unwrap_or_else(|| "unknown".to_string())
}

fn kind_name(k: i32) -> String {
    short_name(
        MemberKind::try_from(k).ok().map(|k| k.as_str_name()),
        "MEMBER_KIND_",
    )
}

fn status_name(s: i32) -> String {
    short_name(
        MemberStatus::try_from(s).ok().map(|s| s.as_str_name()),
        "MEMBER_STATUS_",
    )
}

fn cap_names(m: &Member) -> Vec<String> {
    m.capabilities
        .iter()
        .map(|&c| {
            short_name(
                PeerCapability::try_from(c).ok().map(|c| c.as_str_name()),
                "PEER_CAPABILITY_",
            )
        })
        .collect()
}

fn show(a: ShowArgs) -> Result<()> {
    let (signed, b) = read_body(&a.file)?;
    let valid = list::count_valid(&signed, &b.operator_keys);
    let now = now_unix();
    if a.json {
        let q = QueryPolicy::of(&b);
        let v = serde_json::json!({
            "coalition_id": b.coalition_id,
            "version": b.version,
            "issued_at": format_time(b.issued_at),
            "expires_at": format_time(b.expires_at),
            "expired": now >= b.expires_at,
            "threshold": b.threshold,
            "operator_keys": b.operator_keys.iter().map(|k| serde_json::json!({
                "id": k.id, "public_key": hex::encode(&k.public_key),
            })).collect::<Vec<_>>(),
            "query_policy": serde_json::json!({"prefix_bits": q.prefix_bits, "bucket_size": q.bucket_size,
                "requests_per_second": q.requests_per_second, "burst": q.burst,
                "prefixes_per_day": q.prefixes_per_day}),
            "epochs": b.epochs.iter().map(|e| serde_json::json!({
                "id": e.id, "valid_from": format_time(e.valid_from),
                "valid_until": format_time(e.valid_until), "key_sha256": e.key_sha256,
            })).collect::<Vec<_>>(),
            "members": b.members.iter().map(|m| serde_json::json!({
                "id": m.id, "name": m.name, "kind": kind_name(m.kind),
                "capabilities": cap_names(m), "status": status_name(m.status),
                "active_now": TrustList::is_active(m, now),
                "suspended_after_seq": m.suspended_after_seq,
                "sharing_basis_expires_at": (m.sharing_basis_expires_at != 0).then(|| format_time(m.sharing_basis_expires_at)),
                "endpoint": m.endpoint, "tls_spki_sha256": m.tls_spki_sha256,
                "signing_keys": m.signing_keys.iter().map(|k| serde_json::json!({
                    "public_key": hex::encode(&k.public_key), "retired": k.retired, "last_seq": k.last_seq,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "signatures": signed.signatures.len(),
            "valid_signatures": valid,
        });
        println!("{v}");
        return Ok(());
    }
    println!("coalition   {}", b.coalition_id);
    println!("version     {}", b.version);
    println!("issued      {}", format_time(b.issued_at));
    println!(
        "expires     {}{}",
        format_time(b.expires_at),
        if now >= b.expires_at {
            " (EXPIRED)"
        } else {
            ""
        }
    );
    println!(
        "threshold   {} of {} operator keys",
        b.threshold,
        b.operator_keys.len()
    );
    for k in &b.operator_keys {
        println!("operator    {} {}", k.id, hex::encode(&k.public_key));
    }
    for e in &b.epochs {
        println!(
            "epoch       {} valid {}..{} key sha256 {}",
            e.id,
            format_time(e.valid_from),
            format_time(e.valid_until),
            e.key_sha256
        );
    }
    let q = QueryPolicy::of(&b);
    println!(
        "queries     prefix {} bits, buckets of {}, {}/s (burst {}), {} prefixes/day per member",
        q.prefix_bits, q.bucket_size, q.requests_per_second, q.burst, q.prefixes_per_day
    );
    for m in &b.members {
        let mut status = status_name(m.status);
        if m.status == MemberStatus::Suspended as i32 {
            status.push_str(&format!(" after seq {}", m.suspended_after_seq));
        }
        if m.sharing_basis_expires_at != 0 {
            status.push_str(&format!(
                ", sharing basis until {}",
                format_time(m.sharing_basis_expires_at)
            ));
        }
        println!("member      {} ({:?}) {}", m.id, m.name, kind_name(m.kind));
        println!("  status      {status}");
        println!("  caps        {}", cap_names(m).join(", "));
        println!(
            "  endpoint    {}",
            if m.endpoint.is_empty() {
                "(none)"
            } else {
                &m.endpoint
            }
        );
        for s in &m.tls_spki_sha256 {
            println!("  tls spki    {s}");
        }
        for k in &m.signing_keys {
            let state = if k.retired {
                format!("retired after seq {}", k.last_seq)
            } else {
                "current".to_string()
            };
            println!("  log key     {} {state}", hex::encode(&k.public_key));
        }
    }
    println!(
        "signatures  {} ({valid} valid of its operator keys, {} needed)",
        signed.signatures.len(),
        b.threshold
    );
    Ok(())
}

async fn publish(a: PublishArgs) -> Result<()> {
    let signed = read_signed(&a.file)?;
    // A list no node would take is not worth a connection.
    let l = list::verify_root(&signed, None).map_err(|e| anyhow::anyhow!("not publishing: {e}"))?;
    if l.is_expired(now_unix()) {
        bail!(
            "not publishing: the list expired at {}",
            format_time(l.expires_at())
        );
    }
    let spkis = a.node_spki.iter().map(|s| spki_arg(s)).collect();
    let config = crate::tls::peer_client_config(&a.cert, &a.key, spkis)?;
    let channel = crate::tls::connect(&a.node, a.server_name.as_deref(), config).await?;
    let resp = crate::proto::federation_client::FederationClient::new(channel)
        .publish_trust_list(signed)
        .await
        .map_err(|s| anyhow::anyhow!("node refused: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    println!(
        "node {} holds version {} ({})",
        a.node,
        resp.version,
        if resp.applied {
            "applied"
        } else {
            "unchanged: it already had this list"
        }
    );
    Ok(())
}
