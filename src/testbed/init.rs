//! `cix init DIR`: a ready-to-run node directory for local use: config, a
//! demo CA with server and client certificates (rcgen), and a token key.
//! The demo CA is for trying cix on one machine; a member's real
//! certificates come from its own PKI.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

use crate::{keys::TokenKey, tls};

/// What `init` made.
#[derive(Debug)]
pub struct Initialized {
    /// The node directory.
    pub dir: PathBuf,
    /// Its config, `node.toml` in the directory.
    pub config: PathBuf,
    /// The local operator's client certificate's SPKI fingerprint, as the
    /// config lists it.
    pub client_spki_sha256: String,
    /// For a federated node: its peer certificate's SPKI fingerprint, for
    /// the operators' trust list.
    pub peer_spki_sha256: Option<String>,
    /// The token key's fingerprint.
    pub token_key_sha256: String,
    /// The node's origin-log signing key (public, hex), for the trust list.
    pub signing_public_hex: String,
    /// The same key.
    pub signing_public: ed25519_dalek::VerifyingKey,
}

/// What `init` makes.
#[derive(Default)]
pub struct InitOptions<'a> {
    /// The node's id (a member id, for a federated node).
    pub node_id: &'a str,
    /// HOST:PORT the member listener binds.
    pub listen: &'a str,
    /// Overwrite a directory that is not empty, removing its store.
    pub force: bool,
    /// Makes a federated node: its peer listener's address. The config then
    /// expects the operators' signed trust list at `trust/root.ctl`.
    pub peer_listen: Option<&'a str>,
    /// Install this token key (the coalition's, epoch 1) instead of a new one.
    pub token_key: Option<&'a Path>,
}

fn write_private(path: &Path, data: &str) -> Result<()> {
    // A file left by an earlier run would keep its mode: start afresh.
    if path.exists() {
        fs::remove_file(path).with_context(|| format!("replacing {}", path.display()))?;
    }
    crate::keys::file::write_new_private(path, data.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn write(path: &Path, data: &str) -> Result<()> {
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// Issues a certificate signed by `ca` for `name`, as a server (with
/// localhost SANs) or a client.
fn issue(ca: &Issuer<'_, KeyPair>, name: &str, server: bool) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = if server {
        CertificateParams::new(vec!["localhost".to_string()])?
    } else {
        CertificateParams::new(Vec::<String>::new())?
    };
    if server {
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new CA: its certificate (PEM) and the issuer to sign with.
pub fn new_ca(name: &str) -> Result<(String, String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    Ok((cert.pem(), key_pem, Issuer::new(params, key)))
}

/// Writes a client certificate and key signed by the directory's CA, and
/// returns its SPKI fingerprint.
pub fn issue_client(
    ca: &Issuer<'_, KeyPair>,
    name: &str,
    cert: &Path,
    key: &Path,
) -> Result<String> {
    let (cert_pem, key_pem) = issue(ca, name, false)?;
    write(cert, &cert_pem)?;
    write_private(key, &key_pem)?;
    let der = tls::load_certs(cert)?.remove(0);
    Ok(tls::spki_sha256(&der)?)
}

/// Makes a node directory in `dir`: config, demo CA, node and local
/// operator certificates, token key (epoch 1) and log signing key.
/// Refuses a directory that is not empty unless `opts.force`.
pub fn init(dir: &Path, opts: &InitOptions<'_>) -> Result<Initialized> {
    crate::trust::list::check_member_id(opts.node_id)
        .map_err(|r| anyhow::anyhow!("--node-id: {r}"))?;
    if opts.force && dir.join("data").exists() {
        // A new node: a store kept from the old one would hold tokens under
        // a key that is gone.
        fs::remove_dir_all(dir.join("data")).context("removing the old store")?;
    }
    if dir.exists() && fs::read_dir(dir)?.next().is_some() && !opts.force {
        bail!(
            "{} exists and is not empty; choose another directory or pass --force to overwrite",
            dir.display()
        );
    }
    for sub in ["tls", "keys", "data"] {
        fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let (ca_pem, ca_key_pem, ca) = new_ca(&format!("cix demo CA ({})", opts.node_id))?;
    write(&dir.join("tls/ca.crt"), &ca_pem)?;
    write_private(&dir.join("tls/ca.key"), &ca_key_pem)?;
    let (node_pem, node_key) = issue(&ca, &format!("cix node {}", opts.node_id), true)?;
    write(&dir.join("tls/node.crt"), &node_pem)?;
    write_private(&dir.join("tls/node.key"), &node_key)?;
    let client_fp = issue_client(
        &ca,
        "cix local operator",
        &dir.join("tls/client.crt"),
        &dir.join("tls/client.key"),
    )?;

    let key_path = dir.join("keys/epoch-1.key");
    if key_path.exists() {
        fs::remove_file(&key_path)?;
    }
    let token_key = match opts.token_key {
        Some(p) => TokenKey::load(p)?,
        None => TokenKey::generate(),
    };
    token_key.write_new(&key_path)?;
    let signing_path = dir.join("keys/log-signing.key");
    if signing_path.exists() {
        fs::remove_file(&signing_path)?;
    }
    let signing = crate::keys::signing::SigningKeyFile::generate();
    signing.write_new(&signing_path)?;
    let watch_key = dir.join("keys/watchlist.key");
    if watch_key.exists() {
        fs::remove_file(&watch_key)?;
    }
    crate::watchlist::WatchKey::generate(&watch_key)?;

    let now = crate::time::system_now()?;
    let from = crate::time::format_time(now - 86_400);
    let until = crate::time::format_time(now + 365 * 86_400);
    let mut peer_spki = None;
    let (epoch_window, federation) = match opts.peer_listen {
        None => (
            format!("valid_from = \"{from}\"\nvalid_until = \"{until}\"\n"),
            String::new(),
        ),
        Some(peer_listen) => {
            let (pem, key) = issue(&ca, &format!("cix peer {}", opts.node_id), true)?;
            write(&dir.join("tls/peer.crt"), &pem)?;
            write_private(&dir.join("tls/peer.key"), &key)?;
            let der = tls::load_certs(&dir.join("tls/peer.crt"))?.remove(0);
            peer_spki = Some(tls::spki_sha256(&der)?);
            fs::create_dir_all(dir.join("trust"))?;
            (
                String::new(),
                format!(
                    r#"
# The operators' signed trust list goes here before the first start.
[trust]
root_file = "trust/root.ctl"

[peer_listener]
listen = "{peer_listen}"
cert = "tls/peer.crt"
key = "tls/peer.key"
"#
                ),
            )
        }
    };
    let config = format!(
        r#"# Made by `cix init`. See config/node.example.toml for every field.
[node]
id = "{id}"
data_dir = "data"
signing_key = "keys/log-signing.key"

[member_listener]
listen = "{listen}"
cert = "tls/node.crt"
key = "tls/node.key"
client_ca = "tls/ca.crt"

[[member_listener.client]]
name = "local operator"
spki_sha256 = "{client_fp}"
capabilities = ["screen", "contribute", "admin", "watchlist", "disposition"]

[watchlist]
key_file = "keys/watchlist.key"

[[token_epoch]]
id = 1
key_file = "keys/epoch-1.key"
{epoch_window}{federation}"#,
        id = opts.node_id,
        listen = opts.listen,
    );
    let config_path = dir.join("node.toml");
    write(&config_path, &config)?;
    Ok(Initialized {
        dir: dir.to_path_buf(),
        config: config_path,
        client_spki_sha256: client_fp,
        peer_spki_sha256: peer_spki,
        token_key_sha256: token_key.fingerprint(),
        signing_public_hex: signing.public_hex(),
        signing_public: signing.verifying_key(),
    })
}

/// The CA of a directory made by `init`, to issue more client certificates.
pub fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>> {
    let cert = fs::read_to_string(dir.join("tls/ca.crt")).context("reading tls/ca.crt")?;
    let key = fs::read_to_string(dir.join("tls/ca.key")).context("reading tls/ca.key")?;
    Ok(Issuer::from_ca_cert_pem(&cert, KeyPair::from_pem(&key)?)?)
}
