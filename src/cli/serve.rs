//! `cix serve`: loads and checks the config, then runs the node until
//! SIGTERM or Ctrl-C.

use std::path::Path;

use anyhow::Result;

use crate::config::Config;

/// `cix serve --config CONFIG`.
pub(super) async fn serve(config: &Path) -> Result<()> {
    let config = Config::load(config)?;
    crate::server::run(config, crate::server::shutdown::signal()).await?;
    Ok(())
}
