//! `cix trust member add|update|suspend|reinstate|rotate-key|remove`: who
//! is on the list, with which capabilities, certificate fingerprints, log
//! signing keys (and their rotation with a continuation point), endpoint
//! and status.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};

use super::{edit, load_pub, spki_arg, time_arg, EditFile};
use crate::{
    proto::{Member, MemberKind, MemberStatus, PeerCapability},
    trust::edit as edits,
};

/// Kind of member (`--kind`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    /// A member institution.
    Bank,
    /// A law-enforcement liaison.
    Liaison,
    /// A coalition operator.
    Operator,
    /// Any other member.
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

/// What a member may do on peer listeners (`--capability`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CapabilityArg {
    /// May contribute: its origin log is accepted.
    Contribute,
    /// May pull and relay batches.
    Replicate,
    /// May send prefix queries.
    Query,
    /// May send outcomes of the receiver's own indicators.
    Feedback,
}

impl From<CapabilityArg> for PeerCapability {
    fn from(c: CapabilityArg) -> PeerCapability {
        match c {
            CapabilityArg::Contribute => PeerCapability::Contribute,
            CapabilityArg::Replicate => PeerCapability::Replicate,
            CapabilityArg::Query => PeerCapability::Query,
            CapabilityArg::Feedback => PeerCapability::Feedback,
        }
    }
}

/// The `cix trust member` subcommands.
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
        /// The file to edit and `--expires-in`.
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
        /// The file to edit and `--expires-in`.
        #[command(flatten)]
        edit: EditFile,
        /// Member id.
        #[arg(long)]
        id: String,
    },
    /// Rotate a member's log signing key from sequence number --from-seq on.
    #[command(long_about = concat!(
        "Rotate a member's log signing key with a continuation point: every key it has is \
         retired at --from-seq - 1 (a key already retired earlier keeps its bound) and the new \
         key signs from --from-seq on. What the old keys signed from there on verifies nowhere \
         any more (a forged branch, say, from a leaked key); the member's node, restarted with \
         the new key as node.signing_key, signs its stored batches from there on again and the \
         other nodes pull them. --from-seq must be where a batch of the member's log begins: \
         the fork point `cix status` shows is one.\n\n", edit_note!(), "\n\n", formats!()
    ))]
    RotateKey {
        /// The file to edit and `--expires-in`.
        #[command(flatten)]
        edit: EditFile,
        /// Member id.
        #[arg(long)]
        id: String,
        /// The new log signing public key file.
        #[arg(long, value_name = "PUBFILE")]
        signing_key: PathBuf,
        /// First sequence number the new key signs (the continuation point).
        #[arg(long)]
        from_seq: u64,
    },
    /// Remove a member.
    #[command(long_about = concat!("Remove a member.\n\n", edit_note!(), "\n\n", formats!()))]
    Remove {
        /// The file to edit and `--expires-in`.
        #[command(flatten)]
        edit: EditFile,
        /// Member id.
        #[arg(long)]
        id: String,
    },
}

/// Options of `cix trust member add`.
#[derive(Args, Debug)]
pub struct MemberAddArgs {
    /// The file to edit and `--expires-in`.
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
    /// Whom a bank's report to its financial intelligence unit names for
    /// the member (1 to 128 printable ASCII characters or spaces).
    #[arg(long)]
    pub contact: Option<String>,
    /// End of the member's sharing basis (RFC 3339); from then on it counts as suspended.
    #[arg(long, value_name = "RFC3339")]
    pub sharing_basis_expires: Option<String>,
}

/// Options of `cix trust member update`.
#[derive(Args, Debug)]
pub struct MemberUpdateArgs {
    /// The file to edit and `--expires-in`.
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
    /// The member's contact for banks' case packages; "" for none.
    #[arg(long)]
    pub contact: Option<String>,
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

pub(super) fn member(c: MemberCommand) -> Result<()> {
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
                    contact: a.contact.clone().unwrap_or_default(),
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
                if let Some(c) = &a.contact {
                    m.contact = c.clone();
                    changed.push("contact");
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
        MemberCommand::RotateKey {
            edit: e,
            id,
            signing_key,
            from_seq,
        } => {
            let key = load_pub(&signing_key)?;
            edit(&e, |b| {
                edits::rotate_signing_key(edits::member_mut(b, &id)?, &key, from_seq)?;
                Ok(format!(
                    "member {id}: signing keys retired at seq {}, new key signs from seq {from_seq}",
                    from_seq - 1
                ))
            })
        }
        MemberCommand::Remove { edit: e, id } => edit(&e, |b| {
            edits::remove_member(b, &id)?;
            Ok(format!("member {id} removed"))
        }),
    }
}
