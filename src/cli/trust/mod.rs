//! `cix trust`: the coalition trust list from the operators' side (create,
//! edit, sign, verify, show, publish, chain), one file per step.
//!
//! Editing and signing are offline and file-based, so that operators can
//! sign in turn on separate machines: every edit writes a new version with
//! NO signatures (the body changed), and `sign` adds one. The rules are in
//! [`crate::trust::list`] and the edits in [`crate::trust::edit`]; these
//! modules only read flags and files, print and write. They never print a
//! private key.
//!
//! This module: the subcommands, the file handling every step shares and
//! `edit`, the frame of every edit.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ed25519_dalek::VerifyingKey;

use crate::{
    keys::signing::load_public,
    proto::{self, SignedTrustList},
    time::parse_time,
    time::system_now,
    trust::{edit as edits, list},
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

// `cix keygen --help` shows the file formats too.
pub(crate) use formats;

mod body;
mod chain;
mod members;
mod publish;
mod show;
mod signatures;

pub(super) use body::{EpochCommand, NewArgs, OperatorsArgs, QueryPolicyArgs};
pub(super) use chain::ChainArgs;
pub(super) use members::MemberCommand;
pub(super) use publish::PublishArgs;
pub(super) use show::ShowArgs;
pub(super) use signatures::{SignArgs, VerifyArgs};

/// `cix trust --help` (set on the `Command` variant, like [`super::keygen::KEYGEN_LONG_ABOUT`]).
pub(super) const TRUST_LONG_ABOUT: &str = concat!(
    "Edit, sign, verify, show and publish the coalition trust list: who may connect, with \
     which capabilities and keys, signed by a threshold of operator keys. Operators create \
     it (`new`), edit it (`member`, `epoch`, `operators`: each edit makes a new unsigned \
     version), sign it in turn offline (`sign`), check it (`verify`, `show`) and hand it to \
     a node (`publish`), which passes it on to its peers.\n\n",
    formats!()
);

/// The `cix trust` subcommands.
#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Create a new trust list (version 1, unsigned).
    #[command(long_about = concat!(
        "Create a new trust list: version 1, issued now, no members, no epochs, unsigned.\n\n",
        formats!()
    ))]
    New(NewArgs),
    /// Add, change, suspend, reinstate, rotate the key of, or remove members.
    #[command(subcommand, long_about = concat!(
        "Add, change, suspend, reinstate, rotate the key of, or remove members.\n\n", edit_note!(), "\n\n", formats!()
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
    /// Write a chain file: the lists a node needs to walk to a newer root file.
    #[command(long_about = concat!(
        "Write a chain file (binary protobuf cix.v1.TrustListChain) of trust-list files, oldest \
         first: the list the nodes hold, then every list after it that changed the operator keys \
         or the threshold. Each must verify as an update of the one before it (expiry aside). A \
         node whose root file is newer than its stored list by a key change walks these lists at \
         start when `[trust] chain_file` names the file.\n\n",
        formats!()
    ))]
    Chain(ChainArgs),
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

/// `cix trust ...`.
pub(super) async fn trust(c: TrustCommand) -> Result<()> {
    match c {
        TrustCommand::New(a) => body::new(a),
        TrustCommand::Member(m) => members::member(m),
        TrustCommand::Epoch(e) => body::epoch(e),
        TrustCommand::Operators(a) => body::operators(a),
        TrustCommand::QueryPolicy(a) => body::query_policy(a),
        TrustCommand::Sign(a) => signatures::sign(a),
        TrustCommand::Verify(a) => signatures::verify(a),
        TrustCommand::Show(a) => show::show(a),
        TrustCommand::Publish(a) => publish::publish(a).await,
        TrustCommand::Chain(a) => chain::chain(a),
    }
}

pub(super) fn read_signed(path: &Path) -> Result<SignedTrustList> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading trust list {}", path.display()))?;
    list::decode_signed(&bytes).with_context(|| format!("trust list {}", path.display()))
}

pub(super) fn read_body(path: &Path) -> Result<(SignedTrustList, proto::TrustList)> {
    let signed = read_signed(path)?;
    let body =
        list::decode_body(&signed).with_context(|| format!("trust list {}", path.display()))?;
    Ok((signed, body))
}

/// Writes next to `path` and renames over it, so a reader never sees half a file.
pub(super) fn write_atomic(path: &Path, signed: &SignedTrustList) -> Result<()> {
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

pub(super) fn label_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".pub").unwrap_or(&name);
    name.strip_suffix(".key").unwrap_or(name).to_string()
}

pub(super) fn load_pub(path: &Path) -> Result<VerifyingKey> {
    Ok(load_public(path)?)
}

pub(super) fn expiry_from_now(d: &humantime::Duration) -> Result<i64> {
    Ok(system_now()?.saturating_add(d.as_secs().min(i64::MAX as u64) as i64))
}

pub(super) fn time_arg(flag: &str, s: &str) -> Result<i64> {
    parse_time(s).map_err(|r| anyhow::anyhow!("{flag}: {r}"))
}

pub(super) fn spki_arg(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// Loads, applies `f` (which says what it did), bumps the version, checks,
/// drops the signatures and writes.
pub(super) fn edit(
    e: &EditFile,
    f: impl FnOnce(&mut proto::TrustList) -> Result<String>,
) -> Result<()> {
    let (signed, mut body) = read_body(&e.file)?;
    let what = f(&mut body)?;
    let now = system_now()?;
    edits::next_version(
        &mut body,
        now,
        e.expires_in.as_ref().map(expiry_from_now).transpose()?,
    );
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
