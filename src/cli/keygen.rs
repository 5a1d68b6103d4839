//! `cix keygen`: an Ed25519 key pair (an operator's trust-list key or a
//! member's log key: private key file mode 0600, never overwritten, and
//! PATH.pub) or, with `--token`, a token key. Never prints a private key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;

use super::trust::formats;
use crate::keys::{
    signing::{write_public, SigningKeyFile},
    TokenKey,
};

/// `cix keygen --help` (set on the `Command` variant: its doc comment
/// would otherwise replace a struct-level `long_about`).
pub(super) const KEYGEN_LONG_ABOUT: &str = concat!(
    "Make an Ed25519 key pair (an operator's trust-list key or a member's log key): \
     writes the private key to PATH (mode 0600, never overwritten) and the public key to \
     PATH.pub, and prints the public key. With --token, make a token key instead and print \
     its fingerprint (SHA-256 of the 32 key bytes). Never prints a private key.\n\n",
    formats!()
);

/// Options of `cix keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the private key; the public key goes to PATH.pub.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Make a 32-byte token key (for a key epoch) instead of an Ed25519 key pair.
    #[arg(long)]
    pub token: bool,
}

/// `cix keygen`.
pub(super) fn keygen(a: KeygenArgs) -> Result<()> {
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
