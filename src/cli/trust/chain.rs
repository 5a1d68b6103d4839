//! `cix trust chain`: writes a chain file (`cix.v1.TrustListChain`) of
//! signed lists, checked to walk one to the next, for nodes that start with
//! a root file newer than their stored list by a key change
//! (`[trust] chain_file`).

use std::{io::Write, path::PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use prost::Message;

use super::read_signed;
use crate::{
    proto::TrustListChain,
    trust::list::{self, MAX_CHAIN_LISTS},
};

/// Options of `cix trust chain`.
#[derive(Args, Debug)]
pub struct ChainArgs {
    /// The chain file to write (replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Trust-list files, oldest first: the list the nodes hold (or an older
    /// one), then every list after it that changed the operator keys or the
    /// threshold (other versions may be given too).
    #[arg(required = true, num_args = 1..)]
    pub lists: Vec<PathBuf>,
}

pub(super) fn chain(a: ChainArgs) -> Result<()> {
    if a.lists.len() > MAX_CHAIN_LISTS {
        bail!(
            "a chain holds at most {MAX_CHAIN_LISTS} lists, {} given",
            a.lists.len()
        );
    }
    let lists = a
        .lists
        .iter()
        .map(|p| read_signed(p))
        .collect::<Result<Vec<_>>>()?;
    let first = list::verify_root(&lists[0], None)
        .with_context(|| format!("trust list {}", a.lists[0].display()))?;
    if lists.len() > 1 {
        // History: no step's expiry matters here (a node checks the final
        // list it walks to, its root file, when it starts).
        let walked = list::verify_chain(&first, &lists[1..], i64::MIN)
            .context("the lists do not walk one to the next, oldest first")?;
        let versions: Vec<String> = std::iter::once(first.version())
            .chain(walked.iter().map(|l| l.version()))
            .map(|v| v.to_string())
            .collect();
        println!("chain of versions {}", versions.join(", "));
    } else {
        println!("chain of version {}", first.version());
    }
    let bytes = TrustListChain { lists }.encode_to_vec();
    let dir = match a.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing a temporary file in {}", dir.display()))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(&a.out)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", a.out.display()))?;
    println!("wrote {}", a.out.display());
    Ok(())
}
