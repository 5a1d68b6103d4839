//! `cix trust sign` (an operator's signature, offline) and `cix trust
//! verify` (whether a node would accept the list, as a root or as an
//! update of the list it holds).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{read_body, read_signed, write_atomic};
use crate::{
    keys::signing::SigningKeyFile,
    time::format_time,
    time::system_now,
    trust::list::{self, Update},
};

/// Options of `cix trust sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// Trust-list file (replaced atomically).
    #[arg(long)]
    pub file: PathBuf,
    /// Operator private key file (mode 0600).
    #[arg(long, value_name = "PRIVFILE")]
    pub key: PathBuf,
}

/// Options of `cix trust verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Trust-list file to check.
    #[arg(long)]
    pub file: PathBuf,
    /// The list a node holds now: check FILE as an update of it.
    #[arg(long, value_name = "CURRENT_FILE")]
    pub current: Option<PathBuf>,
}

pub(super) fn sign(a: SignArgs) -> Result<()> {
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

pub(super) fn verify(a: VerifyArgs) -> Result<()> {
    let signed = read_signed(&a.file)?;
    let now = system_now()?;
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
