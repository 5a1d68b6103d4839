//! Edits of the list as a whole: `cix trust new` (version 1), `epoch add|retire`
//! (token key epochs), `operators` (operator keys and threshold) and
//! `query-policy` (the prefix-query policy).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use super::{
    edit, expiry_from_now, label_of, load_pub, spki_arg, time_arg, write_atomic, EditFile,
};
use crate::{
    keys::TokenKey,
    proto::KeyEpoch,
    time::format_time,
    time::system_now,
    trust::{
        edit as edits,
        list::{self, QueryPolicy},
    },
};

/// Options of `cix trust new`.
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

/// The `cix trust epoch` subcommands.
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
        /// The file to edit and `--expires-in`.
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

/// Options of `cix trust epoch add`.
#[derive(Args, Debug)]
pub struct EpochAddArgs {
    /// The file to edit and `--expires-in`.
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

/// Options of `cix trust operators`.
#[derive(Args, Debug)]
pub struct OperatorsArgs {
    /// The file to edit and `--expires-in`.
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

/// Options of `cix trust query-policy`.
#[derive(Args, Debug)]
pub struct QueryPolicyArgs {
    /// The file to edit and `--expires-in`.
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
    /// Prefixes per asking member per UTC day across the coalition: each
    /// answering node grants its share, this divided (rounded up) among the
    /// active members with an endpoint that hold indicators (replicate or
    /// contribute), other than the asker.
    #[arg(long)]
    pub prefixes_per_day: Option<u64>,
}

pub(super) fn new(a: NewArgs) -> Result<()> {
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
    let now = system_now()?;
    let mut body = edits::new_list(
        &a.coalition,
        &keys,
        a.threshold,
        Vec::new(),
        Vec::new(),
        now,
        expiry_from_now(&a.expires_in)?,
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

pub(super) fn query_policy(a: QueryPolicyArgs) -> Result<()> {
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

pub(super) fn epoch(c: EpochCommand) -> Result<()> {
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
                None => system_now()?,
            };
            edit(&e, |b| {
                edits::retire_epoch(b, id, at)?;
                Ok(format!("epoch {id} retired at {}", format_time(at)))
            })
        }
    }
}

pub(super) fn operators(a: OperatorsArgs) -> Result<()> {
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
