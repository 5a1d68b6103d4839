//! A local coalition: three operators' keys, the coalition's token key
//! (epoch 1), each member's federated node directory (a peer listener on a
//! free port, the coalition's token key installed) and the trust list
//! naming them, signed by two of the three operators and written as every
//! node's root list. Also connections to a member's peer listener as
//! another member. The nodes themselves are started with
//! [`super::process`].

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use ed25519_dalek::VerifyingKey;
use prost::Message;
use tonic::transport::Channel;

use super::{
    init,
    process::{free_port, Launch},
    TestbedError,
};
use crate::{
    client::{Clients, Identity},
    keys::{signing::SigningKeyFile, TokenKey},
    proto::{self, federation_client::FederationClient, MemberKind, SignedTrustList},
    time::system_now,
    tls,
    trust::{edit, list},
};

/// Operator keys of a local coalition.
pub const OPERATORS: usize = 3;
/// Signatures a list needs.
pub const THRESHOLD: u32 = 2;
/// The operators who sign each list: the first two.
pub const SIGNERS: [usize; 2] = [0, 1];

/// One member to make.
#[derive(Clone, Debug)]
pub struct MemberSpec {
    /// Member id (also its node id).
    pub id: String,
    /// Display name on the list.
    pub name: String,
    /// What kind of member it is.
    pub kind: MemberKind,
    /// Its node directory (made, or overwritten).
    pub dir: PathBuf,
}

/// The coalition to make.
#[derive(Clone, Debug)]
pub struct CoalitionSpec {
    /// The coalition id the list names.
    pub coalition_id: String,
    /// The members, in list order.
    pub members: Vec<MemberSpec>,
    /// How long the first list is valid from now.
    pub list_valid_for: Duration,
}

impl CoalitionSpec {
    /// The demo's coalition: a liaison and two banks, node directories
    /// under `root`, the list valid for 90 days.
    pub fn demo(root: &Path) -> CoalitionSpec {
        let member = |id: &str, kind| MemberSpec {
            id: id.to_string(),
            name: format!("Demo {id}"),
            kind,
            dir: root.join(id),
        };
        CoalitionSpec {
            coalition_id: "demo-coalition".to_string(),
            members: vec![
                member("liaison-a", MemberKind::Liaison),
                member("bank-b", MemberKind::Bank),
                member("bank-c", MemberKind::Bank),
            ],
            list_valid_for: Duration::from_secs(90 * 86_400),
        }
    }
}

/// A member's federated node directory, as made.
#[derive(Clone, Debug)]
pub struct MemberNode {
    /// Member id (also its node id).
    pub id: String,
    /// Its node directory.
    pub dir: PathBuf,
    /// Its config in that directory.
    pub config: PathBuf,
    /// HOST:PORT its peer listener binds, fixed before it starts.
    pub peer_listen: String,
    /// Its peer certificate's SPKI fingerprint, on the list.
    pub peer_spki: String,
    /// Its origin-log signing key, on the list.
    pub signing_public: VerifyingKey,
}

impl MemberNode {
    /// `cix init` of a federated node in `dir` (overwritten): its peer
    /// listener on a free port, `token_key` installed for epoch 1. It
    /// starts once the list is at `trust/root.ctl`.
    pub fn create(dir: &Path, id: &str, token_key: &Path) -> Result<MemberNode, TestbedError> {
        let peer_listen = format!("127.0.0.1:{}", free_port()?);
        let made = init::init(
            dir,
            &init::InitOptions {
                node_id: id,
                listen: "127.0.0.1:0",
                force: true,
                peer_listen: Some(&peer_listen),
                token_key: Some(token_key),
            },
        )
        .map_err(|e| TestbedError::Init {
            dir: dir.to_path_buf(),
            source: e.into(),
        })?;
        Ok(MemberNode {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            config: made.config,
            peer_listen,
            peer_spki: made
                .peer_spki_sha256
                .ok_or_else(|| TestbedError::NotFederated(dir.to_path_buf()))?,
            signing_public: made.signing_public,
        })
    }

    /// This node served with both output streams in `node.log` of its directory.
    pub fn launch(&self) -> Launch {
        Launch::new(&self.config, &self.dir.join("node.log"))
    }

    /// The operator identity `cix init` made (every capability).
    pub fn identity(&self) -> Result<Identity, TestbedError> {
        Ok(Identity::from_dir(&self.dir)?)
    }

    /// A member-API connection as that operator (the node must be running).
    pub async fn connect(&self) -> Result<Clients, TestbedError> {
        Ok(self.identity()?.connect().await?)
    }

    /// Its peer certificate and key.
    pub fn peer_cert(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("tls/peer.crt"), self.dir.join("tls/peer.key"))
    }

    /// Where its peer listener is, once started.
    pub fn peer_addr(&self) -> Result<String, TestbedError> {
        let path = self.dir.join("data").join(crate::node::PEER_ADDR_FILE);
        let addr = std::fs::read_to_string(&path).map_err(|source| TestbedError::Io {
            what: "reading",
            path,
            source,
        })?;
        Ok(addr.trim().to_string())
    }
}

/// Operators' keys, the token key, the members' node directories and the
/// list in force.
pub struct LocalCoalition {
    /// The operators' signing keys, [`OPERATORS`] of them.
    pub operators: Vec<SigningKeyFile>,
    /// The coalition's token key file (epoch 1).
    pub token_key: PathBuf,
    /// In the order of the spec.
    pub members: Vec<MemberNode>,
    /// The list last signed (edited by [`LocalCoalition::next`]).
    pub list: proto::TrustList,
}

impl LocalCoalition {
    /// Makes the coalition of `spec`: the token key at
    /// `root/coalition-epoch-1.key` (replaced), the member node directories,
    /// version 1 of the list (every member active with every capability,
    /// epoch 1 valid from a day ago for a year) signed by [`SIGNERS`] and
    /// written to every node's `trust/root.ctl`.
    pub fn create(root: &Path, spec: &CoalitionSpec) -> Result<LocalCoalition, TestbedError> {
        let operators: Vec<_> = (0..OPERATORS).map(|_| SigningKeyFile::generate()).collect();
        let token_key_path = root.join("coalition-epoch-1.key");
        if token_key_path.exists() {
            std::fs::remove_file(&token_key_path).map_err(|source| TestbedError::Io {
                what: "replacing",
                path: token_key_path.clone(),
                source,
            })?;
        }
        let token_key = TokenKey::generate();
        token_key.write_new(&token_key_path)?;
        let now = system_now()?;
        let mut members = Vec::new();
        let mut listed = Vec::new();
        for s in &spec.members {
            let node = MemberNode::create(&s.dir, &s.id, &token_key_path)?;
            let mut m = edit::member(&s.id, &s.name, s.kind, &node.peer_spki, &node.peer_listen);
            m.signing_keys.push(proto::LogSigningKey {
                public_key: node.signing_public.to_bytes().to_vec(),
                retired: false,
                last_seq: 0,
                first_seq: 0,
            });
            listed.push(m);
            members.push(node);
        }
        let list = edit::new_list(
            &spec.coalition_id,
            &operators
                .iter()
                .map(|k| k.verifying_key())
                .collect::<Vec<_>>(),
            THRESHOLD,
            vec![proto::KeyEpoch {
                id: 1,
                valid_from: now - 86_400,
                valid_until: now + 365 * 86_400,
                key_sha256: token_key.fingerprint(),
            }],
            listed,
            now,
            now + spec.list_valid_for.as_secs() as i64,
        );
        let c = LocalCoalition {
            operators,
            token_key: token_key_path,
            members,
            list,
        };
        c.write_root()?;
        Ok(c)
    }

    /// `body` signed by the operators at `signers`.
    pub fn sign(&self, body: &proto::TrustList, signers: &[usize]) -> SignedTrustList {
        let mut signed = edit::unsigned(body);
        for &i in signers {
            list::sign(&mut signed, &self.operators[i]);
        }
        signed
    }

    /// [`LocalCoalition::list`] signed by [`SIGNERS`].
    pub fn signed(&self) -> SignedTrustList {
        self.sign(&self.list, &SIGNERS)
    }

    /// Writes [`LocalCoalition::signed`] as every node's root list (for a
    /// list edited before the nodes start).
    pub fn write_root(&self) -> Result<(), TestbedError> {
        let root = self.signed().encode_to_vec();
        for m in &self.members {
            let path = m.dir.join("trust/root.ctl");
            std::fs::write(&path, &root).map_err(|source| TestbedError::Io {
                what: "writing",
                path,
                source,
            })?;
        }
        Ok(())
    }

    /// The next version of the list: version + 1, issued now, then `edit`;
    /// signed by [`SIGNERS`].
    pub fn next(&mut self, edit: impl FnOnce(&mut proto::TrustList)) -> SignedTrustList {
        self.list.version += 1;
        // Issued now; should the clock fail, no earlier than the last version.
        self.list.issued_at = system_now().unwrap_or(self.list.issued_at);
        edit(&mut self.list);
        self.signed()
    }

    /// A connection to member `to`'s peer listener with this certificate,
    /// pinning `to`'s certificate key.
    pub async fn peer_channel_with(
        &self,
        to: usize,
        cert: &Path,
        key: &Path,
    ) -> Result<Channel, TestbedError> {
        let to = &self.members[to];
        let config = tls::peer_client_config(cert, key, vec![to.peer_spki.clone()])?;
        Ok(tls::connect(&to.peer_addr()?, None, config).await?)
    }

    /// A connection to member `to`'s peer listener, as member `from`.
    pub async fn peer_channel(&self, to: usize, from: usize) -> Result<Channel, TestbedError> {
        let (cert, key) = self.members[from].peer_cert();
        self.peer_channel_with(to, &cert, &key).await
    }

    /// A Federation client to member `to`'s peer listener, as member `from`.
    pub async fn federation(
        &self,
        to: usize,
        from: usize,
    ) -> Result<FederationClient<Channel>, TestbedError> {
        Ok(crate::federation::client(
            self.peer_channel(to, from).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_holds_the_signed_list_naming_its_own_keys_and_the_next_version_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = LocalCoalition::create(tmp.path(), &CoalitionSpec::demo(tmp.path())).unwrap();
        assert_eq!(c.members.len(), 3);
        let mut root = None;
        for m in &c.members {
            let bytes = std::fs::read(m.dir.join("trust/root.ctl")).unwrap();
            let signed = list::decode_signed(&bytes).unwrap();
            let l = list::verify_root(&signed, Some("demo-coalition")).unwrap();
            assert_eq!(l.version(), 1);
            let listed = l.member(&m.id).unwrap();
            assert_eq!(listed.tls_spki_sha256, std::slice::from_ref(&m.peer_spki));
            assert_eq!(listed.endpoint, m.peer_listen);
            assert_eq!(
                listed.signing_keys[0].public_key,
                m.signing_public.to_bytes()
            );
            root = Some(l);
        }
        let mut ports: Vec<_> = c.members.iter().map(|m| m.peer_listen.clone()).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 3, "one peer port per member");

        let v2 = c.next(|l| l.members[2].status = proto::MemberStatus::Suspended as i32);
        match list::verify_update(&root.unwrap(), &v2, system_now().unwrap()).unwrap() {
            list::Update::Newer(l) => {
                assert_eq!(l.version(), 2);
                assert!(l
                    .active_member_by_spki(&c.members[2].peer_spki, system_now().unwrap())
                    .is_none());
            }
            list::Update::Same => panic!("expected a newer list"),
        }
    }
}
