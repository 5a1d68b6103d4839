//! `cix init DIR`: writes a ready-to-run node directory (made by
//! [`crate::testbed::init`]) and prints what the operators' trust list
//! needs from it.

use std::path::Path;

use anyhow::Result;

use crate::testbed::init::{self, InitOptions};

/// `cix init DIR`.
pub(super) fn init(dir: &Path, opts: &InitOptions<'_>) -> Result<()> {
    let made = init::init(dir, opts)?;
    println!("node directory: {}", made.dir.display());
    println!("config:         {}", made.config.display());
    println!("client spki:    {}", made.client_spki_sha256);
    println!("token key:      sha256 {}", made.token_key_sha256);
    println!(
        "log signing:    {}  (public key, for the operators' trust list)",
        made.signing_public_hex
    );
    if let Some(peer) = &made.peer_spki_sha256 {
        println!("peer spki:      {peer}  (for the operators' trust list)");
        println!(
            "trust list:     put the signed list at {}",
            dir.join("trust/root.ctl").display()
        );
    }
    println!(
        "start it with:  cix serve --config {}",
        made.config.display()
    );
    Ok(())
}
