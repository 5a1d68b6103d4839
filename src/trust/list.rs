//! The coalition trust list: decoding, signing and the acceptance rules.
//!
//! Modelled on The Update Framework's root metadata. A list is a
//! `cix.v1.SignedTrustList`: the exact bytes of an encoded `cix.v1.TrustList`
//! (the body) and Ed25519 signatures by operator keys over
//! [`SIGNING_CONTEXT`] `||` body. A node accepts its first list (the root of
//! trust, from its config) by [`verify_root`], and every later one by
//! [`verify_update`] against the list in force: never an older version,
//! never a different list under the same version, never an expired one, and
//! only with a threshold of the CURRENT operator keys (and, when the keys
//! change, a threshold of the new ones too). Before any signature is
//! verified, a list must be within its bounds ([`MAX_LIST_BYTES`] encoded,
//! at most [`MAX_OPERATOR_KEYS`] operator keys, at most one signature per
//! operator key of the list in force and of its own), so that a list
//! costs a bounded number of signature checks whoever sends it.
//!
//! A node that missed lists walks a chain ([`verify_chain`]): the lists
//! that changed the operator keys or the threshold ([`changes_keys`]) since
//! its own, then the newest, each step verified against the one before it.
//!
//! Pure: no I/O, no clock (callers pass `now`). What operators' tools
//! change in a body is in [`super::edit`].

use std::collections::{BTreeSet, HashSet};

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message;

use crate::{
    keys::signing::SigningKeyFile,
    proto::{
        self, KeyEpoch, Member, MemberKind, MemberStatus, OperatorKey, PeerCapability,
        SignedTrustList, TrustSignature,
    },
    time::format_time,
};

/// Member ids: 1 to 64 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn check_member_id(id: &str) -> Result<(), &'static str> {
    let ok_first = id
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if id.len() > 64
        || !ok_first
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err("must be 1 to 64 of [a-z0-9._-], starting with a letter or digit");
    }
    Ok(())
}

/// Domain separation of trust-list signatures: `"cix-trust-list-v1" || 0x00`.
pub const SIGNING_CONTEXT: &[u8] = b"cix-trust-list-v1\0";

/// Largest encoded `SignedTrustList` accepted: 1 MiB. A bound of the
/// coalition's format rather than a node setting, so that every node accepts
/// the same lists; a thousand members take well under a tenth of it.
pub const MAX_LIST_BYTES: usize = 1024 * 1024;

/// Most operator keys a list may name.
pub const MAX_OPERATOR_KEYS: usize = 32;

/// Why a list was refused. Messages say what was wrong and what is needed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The signed list or its body is not valid protobuf; carries the
    /// decoder's message.
    #[error("trust list does not decode: {0}")]
    Decode(String),
    /// The list names another coalition.
    #[error("trust list is for coalition {got:?}, but this coalition is {expected:?}")]
    CoalitionMismatch {
        /// The coalition id expected: the caller's, or the list in force's.
        expected: String,
        /// The coalition id the offered list names.
        got: String,
    },
    /// The offered list's version is older than the one in force.
    #[error(
        "rollback refused: offered version {got} is older than version {have} in force; \
         only a newer version is accepted"
    )]
    Rollback {
        /// Version of the list in force.
        have: u64,
        /// Version of the offered list.
        got: u64,
    },
    /// The offered list has the version in force but other bytes.
    #[error(
        "offered list has version {version} like the list in force but different content; \
         a changed list needs a higher version"
    )]
    SameVersionDifferent {
        /// The version both lists carry.
        version: u64,
    },
    /// The offered list's expiry is not after `now`.
    #[error(
        "trust list expired at {expires_at}; operators must issue a newer list with a later expiry"
    )]
    Expired {
        /// The offered list's expiry, as an RFC 3339 UTC time.
        expires_at: String,
    },
    /// Too few distinct operator keys signed the list validly.
    #[error("too few signatures: {got} valid from distinct {of} operator keys, {needed} needed")]
    BelowThreshold {
        /// The threshold of the keys counted.
        needed: usize,
        /// Distinct keys among them that signed validly.
        got: usize,
        /// Whose keys: "current" (the list in force), "new" (the offered
        /// list's own, when it changes them) or "listed" (a root list's own).
        of: &'static str,
    },
    /// The signed list is over a bound checked before any signature is
    /// verified: its encoded size, its operator keys or its signatures.
    #[error("trust list over its bounds: {field}: {rule}")]
    OverBounds {
        /// What is over: `signed list`, `operator_keys` or `signatures`.
        field: &'static str,
        /// The bound, and the count found.
        rule: String,
    },
    /// A step of a chain repeats the list before it: each step must be
    /// strictly newer.
    #[error("the list repeats version {version} before it; each step of a chain must be newer")]
    NotNewer {
        /// The version repeated.
        version: u64,
    },
    /// The body breaks a rule of [`check_body`].
    #[error("invalid trust list: {field}: {rule}")]
    Invalid {
        /// The field at fault, as a path into the body.
        field: String,
        /// The rule it breaks.
        rule: String,
    },
}

fn invalid(field: impl Into<String>, rule: impl Into<String>) -> TrustError {
    TrustError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}

/// A decoded, signature-checked list: the exact signed bytes and the parsed body.
#[derive(Clone, Debug)]
pub struct TrustList {
    signed: SignedTrustList,
    body: proto::TrustList,
    /// `signed`, encoded.
    encoded: Vec<u8>,
}

impl TrustList {
    fn new(signed: SignedTrustList, body: proto::TrustList) -> TrustList {
        let encoded = signed.encode_to_vec();
        TrustList {
            signed,
            body,
            encoded,
        }
    }

    /// The signed list, as accepted.
    pub fn signed(&self) -> &SignedTrustList {
        &self.signed
    }

    /// The decoded body.
    pub fn body(&self) -> &proto::TrustList {
        &self.body
    }

    /// The `SignedTrustList`, encoded.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The list's version.
    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// The coalition the list is for.
    pub fn coalition_id(&self) -> &str {
        &self.body.coalition_id
    }

    /// Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.body.expires_at
    }

    /// `now >= expires_at`.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.body.expires_at
    }

    /// The member with this id, whatever its status.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.body.members.iter().find(|m| m.id == id)
    }

    /// The member listing this certificate key fingerprint, whatever its status.
    pub fn member_by_spki(&self, spki_sha256: &str) -> Option<&Member> {
        self.body
            .members
            .iter()
            .find(|m| m.tls_spki_sha256.iter().any(|s| s == spki_sha256))
    }

    /// ACTIVE status and sharing basis not expired (0 = none) at `now`.
    pub fn is_active(m: &Member, now: i64) -> bool {
        m.status == MemberStatus::Active as i32
            && (m.sharing_basis_expires_at == 0 || now < m.sharing_basis_expires_at)
    }

    /// Whether the member's entry lists `cap`. Only known capabilities can
    /// be asked for, so a listed value this build does not know grants
    /// nothing.
    pub fn has_capability(m: &Member, cap: PeerCapability) -> bool {
        m.capabilities.contains(&(cap as i32))
    }

    /// Which member, if any, may connect with this TLS key now (active member
    /// listing the fingerprint).
    pub fn active_member_by_spki(&self, spki: &str, now: i64) -> Option<&Member> {
        self.member_by_spki(spki)
            .filter(|m| TrustList::is_active(m, now))
    }

    /// The key epoch with this id.
    pub fn epoch(&self, id: u32) -> Option<&KeyEpoch> {
        self.body.epochs.iter().find(|e| e.id == id)
    }
}

/// Decodes a `cix.v1.SignedTrustList` of at most [`MAX_LIST_BYTES`]
/// (nothing else checked yet).
pub fn decode_signed(bytes: &[u8]) -> Result<SignedTrustList, TrustError> {
    check_size(bytes.len())?;
    SignedTrustList::decode(bytes).map_err(|e| TrustError::Decode(e.to_string()))
}

/// The first bound of a signed list, checked before it is even decoded
/// further: at most [`MAX_LIST_BYTES`] encoded.
pub fn check_encoded_size(signed: &SignedTrustList) -> Result<(), TrustError> {
    check_size(signed.encoded_len())
}

fn check_size(bytes: usize) -> Result<(), TrustError> {
    if bytes > MAX_LIST_BYTES {
        return Err(TrustError::OverBounds {
            field: "signed list",
            rule: format!("must be at most {MAX_LIST_BYTES} bytes encoded, is {bytes}"),
        });
    }
    Ok(())
}

/// The bounds of a signed list whose body is `body`, checked before any
/// signature: at most [`MAX_LIST_BYTES`] encoded, [`MAX_OPERATOR_KEYS`]
/// operator keys, and no more signatures than `current_keys` (the operator
/// keys of the list in force, none for a root list) plus the body's own
/// operator keys: one per key that may count. The body's own count matters
/// for a rotation that adds keys, and is itself bounded, so a list costs at
/// most `2 × MAX_OPERATOR_KEYS` signature checks whoever wrote it.
pub fn check_bounds(
    signed: &SignedTrustList,
    body: &proto::TrustList,
    current_keys: usize,
) -> Result<(), TrustError> {
    check_encoded_size(signed)?;
    let own = body.operator_keys.len();
    if own > MAX_OPERATOR_KEYS {
        return Err(TrustError::OverBounds {
            field: "operator_keys",
            rule: format!("at most {MAX_OPERATOR_KEYS} are allowed, the list names {own}"),
        });
    }
    let max = current_keys + own;
    let got = signed.signatures.len();
    if got > max {
        return Err(TrustError::OverBounds {
            field: "signatures",
            rule: format!(
                "at most {max} are allowed (one per operator key of the list in force and of the offered list), the list carries {got}"
            ),
        });
    }
    Ok(())
}

/// Decodes the body of a signed list (nothing checked yet).
pub fn decode_body(signed: &SignedTrustList) -> Result<proto::TrustList, TrustError> {
    proto::TrustList::decode(&signed.body[..]).map_err(|e| TrustError::Decode(format!("body: {e}")))
}

/// Accepting the node's FIRST list (the root of trust from its config
/// file): it must decode, be for `coalition_id` (when given), be internally
/// valid ([`check_body`]) and carry valid signatures from at least
/// `threshold` distinct keys of its OWN operator keys. Expiry is NOT
/// checked here: an expired root still loads, and the node then runs in the
/// expired state until a newer list arrives.
pub fn verify_root(
    signed: &SignedTrustList,
    coalition_id: Option<&str>,
) -> Result<TrustList, TrustError> {
    let body = decode_body(signed)?;
    if let Some(expected) = coalition_id {
        if body.coalition_id != expected {
            return Err(TrustError::CoalitionMismatch {
                expected: expected.to_string(),
                got: body.coalition_id,
            });
        }
    }
    check_bounds(signed, &body, 0)?;
    check_body(&body)?;
    let needed = body.threshold as usize;
    let got = count_valid(signed, &body.operator_keys);
    if got < needed {
        return Err(TrustError::BelowThreshold {
            needed,
            got,
            of: "listed",
        });
    }
    Ok(TrustList::new(signed.clone(), body))
}

/// What [`verify_update`] found acceptable.
// Made once per offered list; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Update {
    /// Byte-identical to the list in force: nothing to do.
    Same,
    /// A newer list, verified.
    Newer(TrustList),
}

/// Accepting a NEW list given the current one. In this order: the signed
/// list is at most [`MAX_LIST_BYTES`] encoded; the body decodes; same
/// coalition; version: lower is [`TrustError::Rollback`], equal is
/// [`Update::Same`] only if byte-identical to the current list, else
/// [`TrustError::SameVersionDifferent`]; not expired at `now`; within
/// [`check_bounds`] (before any signature is verified); at least
/// `current.threshold` distinct CURRENT operator keys signed validly; if the
/// operator key set or the threshold changes, also at least `new.threshold`
/// distinct NEW keys; and [`check_body`].
pub fn verify_update(
    current: &TrustList,
    signed: &SignedTrustList,
    now: i64,
) -> Result<Update, TrustError> {
    update(current, signed, Some(now))
}

/// [`verify_update`], with the expiry checked only when `now` is given (a
/// step of a chain that is history may have expired since).
fn update(
    current: &TrustList,
    signed: &SignedTrustList,
    now: Option<i64>,
) -> Result<Update, TrustError> {
    check_encoded_size(signed)?;
    let body = decode_body(signed)?;
    if body.coalition_id != current.coalition_id() {
        return Err(TrustError::CoalitionMismatch {
            expected: current.coalition_id().to_string(),
            got: body.coalition_id,
        });
    }
    if body.version < current.version() {
        return Err(TrustError::Rollback {
            have: current.version(),
            got: body.version,
        });
    }
    if body.version == current.version() {
        return if signed.encode_to_vec() == current.encoded() {
            Ok(Update::Same)
        } else {
            Err(TrustError::SameVersionDifferent {
                version: body.version,
            })
        };
    }
    if now.is_some_and(|now| now >= body.expires_at) {
        return Err(TrustError::Expired {
            expires_at: format_time(body.expires_at),
        });
    }
    let cur = current.body();
    check_bounds(signed, &body, cur.operator_keys.len())?;
    let needed = cur.threshold as usize;
    let got = count_valid(signed, &cur.operator_keys);
    if got < needed {
        return Err(TrustError::BelowThreshold {
            needed,
            got,
            of: "current",
        });
    }
    if changes_keys(cur, &body) {
        let needed = body.threshold as usize;
        let got = count_valid(signed, &body.operator_keys);
        if got < needed {
            return Err(TrustError::BelowThreshold {
                needed,
                got,
                of: "new",
            });
        }
    }
    check_body(&body)?;
    Ok(Update::Newer(TrustList::new(signed.clone(), body)))
}

/// Whether `next` changes the operator key set or the threshold of `prev`:
/// the lists a node keeps in its chain, since a node behind cannot verify
/// what follows them without them.
pub fn changes_keys(prev: &proto::TrustList, next: &proto::TrustList) -> bool {
    key_set(&next.operator_keys) != key_set(&prev.operator_keys) || next.threshold != prev.threshold
}

/// Most lists one chain may hold, the final list included: as many as a
/// node keeps of its key-changing lists ([`MAX_CHAIN_LISTS`] − 1) and the
/// list in force. At [`MAX_LIST_BYTES`] each, a walk costs at most
/// `MAX_CHAIN_LISTS × 2 × MAX_OPERATOR_KEYS` signature checks.
pub const MAX_CHAIN_LISTS: usize = 65;

/// Why a chain of lists (a walk from the list in force, step by step, to a
/// newer one) was refused. Nothing of a refused chain is applied.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// No list at all.
    #[error("trust list chain is empty: at least the final list is needed")]
    Empty,
    /// More lists than [`MAX_CHAIN_LISTS`]: refused before any is decoded.
    #[error("trust list chain over its bounds: at most {max} lists, got {got}")]
    TooLong {
        /// [`MAX_CHAIN_LISTS`].
        max: usize,
        /// Lists in the chain.
        got: usize,
    },
    /// One step is not a valid update of the step before it (the list in
    /// force for the first).
    #[error(
        "trust list chain step {index} (version {}) as an update of version {after}{}",
        .version.map_or("?".to_string(), |v| v.to_string()),
        missing_hint(*.after, *.version, .source)
    )]
    Step {
        /// The step's place in the chain, from 0.
        index: usize,
        /// The step's version, if its body decodes.
        version: Option<u64>,
        /// The version it was judged against.
        after: u64,
        /// The rule it breaks.
        #[source]
        source: TrustError,
    },
}

impl ChainError {
    /// The rule a step broke, if a step broke one.
    pub fn step_error(&self) -> Option<&TrustError> {
        match self {
            ChainError::Step { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// For a step signed too little by the keys before it, past a version gap:
/// the versions that may hold the missing key change.
fn missing_hint(after: u64, version: Option<u64>, source: &TrustError) -> String {
    match (version, source) {
        (Some(v), TrustError::BelowThreshold { of: "current", .. }) if v > after + 1 => {
            missing_versions(after, v)
        }
        _ => String::new(),
    }
}

/// `"; if versions A to B changed ..."`: the lists a node needs between
/// version `have` and version `got` when `got` does not verify by `have`'s
/// keys.
pub fn missing_versions(have: u64, got: u64) -> String {
    let range = if got == have + 2 {
        format!("version {}", have + 1)
    } else {
        format!("versions {} to {}", have + 1, got - 1)
    };
    format!(
        "; if {range} changed the operator keys or the threshold, those key-changing lists are missing and are needed first"
    )
}

/// Walks from `current` through `steps`, in order, to the last of them:
/// each step must be a valid update ([`verify_update`]) of the step before
/// it (of `current` for the first) and strictly newer, under the rules in
/// force at that step (the threshold of the keys before it; for a step that
/// changes the keys or threshold, also its own). Only the last step must be
/// unexpired at `now`: the others are history. Returns every step, verified;
/// the first step that fails refuses the whole chain, naming its place,
/// its version and the rule.
pub fn verify_chain(
    current: &TrustList,
    steps: &[SignedTrustList],
    now: i64,
) -> Result<Vec<TrustList>, ChainError> {
    if steps.is_empty() {
        return Err(ChainError::Empty);
    }
    if steps.len() > MAX_CHAIN_LISTS {
        return Err(ChainError::TooLong {
            max: MAX_CHAIN_LISTS,
            got: steps.len(),
        });
    }
    let mut walked: Vec<TrustList> = Vec::with_capacity(steps.len());
    for (index, signed) in steps.iter().enumerate() {
        let prev = walked.last().unwrap_or(current);
        let after = prev.version();
        let last = index + 1 == steps.len();
        let step_err = |source| ChainError::Step {
            index,
            version: decode_body(signed).ok().map(|b| b.version),
            after,
            source,
        };
        match update(prev, signed, last.then_some(now)) {
            Ok(Update::Newer(list)) => walked.push(list),
            Ok(Update::Same) => return Err(step_err(TrustError::NotNewer { version: after })),
            Err(e) => return Err(step_err(e)),
        }
    }
    Ok(walked)
}

fn key_set(keys: &[OperatorKey]) -> BTreeSet<&[u8]> {
    keys.iter().map(|k| &k.public_key[..]).collect()
}

fn is_lower_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

const HEX64: &str = "must be 64 lowercase hex characters";

/// Internal validity of a body; the error names the field.
pub fn check_body(b: &proto::TrustList) -> Result<(), TrustError> {
    if b.coalition_id.is_empty() || b.coalition_id.len() > 128 {
        return Err(invalid("coalition_id", "must be 1 to 128 bytes"));
    }
    if b.version == 0 {
        return Err(invalid("version", "must be at least 1"));
    }
    if b.expires_at <= b.issued_at {
        return Err(invalid("expires_at", "must be after issued_at"));
    }
    let mut keys = HashSet::new();
    for (i, k) in b.operator_keys.iter().enumerate() {
        let field = || format!("operator_keys[{i}].public_key");
        let bytes: [u8; 32] = k
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| invalid(field(), "must be 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| invalid(field(), "not a valid Ed25519 public key"))?;
        if !keys.insert(bytes) {
            return Err(invalid(field(), "listed twice"));
        }
    }
    if b.threshold == 0 {
        return Err(invalid("threshold", "must be at least 1"));
    }
    if b.threshold as usize > keys.len() {
        return Err(invalid(
            "threshold",
            format!(
                "is {} but there are only {} operator keys",
                b.threshold,
                keys.len()
            ),
        ));
    }
    let mut epochs = HashSet::new();
    for (i, e) in b.epochs.iter().enumerate() {
        if !epochs.insert(e.id) {
            return Err(invalid(
                format!("epochs[{i}].id"),
                format!("epoch {} listed twice", e.id),
            ));
        }
        if e.valid_until <= e.valid_from {
            return Err(invalid(
                format!("epochs[{i}].valid_until"),
                "must be after valid_from",
            ));
        }
        if !is_lower_hex64(&e.key_sha256) {
            return Err(invalid(format!("epochs[{i}].key_sha256"), HEX64));
        }
    }
    let mut ids = HashSet::new();
    let mut spkis = HashSet::new();
    for (i, m) in b.members.iter().enumerate() {
        let f = |name: &str| format!("members[{i}].{name}");
        check_member_id(&m.id).map_err(|r| invalid(f("id"), r))?;
        if !ids.insert(m.id.as_str()) {
            return Err(invalid(f("id"), format!("member {} listed twice", m.id)));
        }
        if !matches!(MemberKind::try_from(m.kind), Ok(k) if k != MemberKind::Unspecified) {
            return Err(invalid(
                f("kind"),
                "must be bank, liaison, operator or other",
            ));
        }
        if !matches!(MemberStatus::try_from(m.status), Ok(s) if s != MemberStatus::Unspecified) {
            return Err(invalid(f("status"), "must be active or suspended"));
        }
        // A contact is optional; present, a case reference's rule.
        if !m.contact.is_empty() && !crate::batch::is_label(&m.contact) {
            return Err(invalid(f("contact"), crate::batch::LABEL_RULE));
        }
        let mut caps = HashSet::new();
        for (j, &c) in m.capabilities.iter().enumerate() {
            // A value this build does not know (one a later version added)
            // is kept as listed and never granted: `has_capability` only
            // asks for known ones.
            if c == PeerCapability::Unspecified as i32 {
                return Err(invalid(
                    f(&format!("capabilities[{j}]")),
                    "unspecified is not a capability",
                ));
            }
            if !caps.insert(c) {
                return Err(invalid(f(&format!("capabilities[{j}]")), "listed twice"));
            }
        }
        for (j, s) in m.tls_spki_sha256.iter().enumerate() {
            if !is_lower_hex64(s) {
                return Err(invalid(f(&format!("tls_spki_sha256[{j}]")), HEX64));
            }
            if !spkis.insert(s.as_str()) {
                return Err(invalid(
                    f(&format!("tls_spki_sha256[{j}]")),
                    "fingerprint listed more than once",
                ));
            }
        }
        let mut signing = HashSet::new();
        for (j, k) in m.signing_keys.iter().enumerate() {
            if k.public_key.len() != 32 {
                return Err(invalid(
                    f(&format!("signing_keys[{j}].public_key")),
                    "must be 32 bytes",
                ));
            }
            if !signing.insert(&k.public_key[..]) {
                return Err(invalid(
                    f(&format!("signing_keys[{j}].public_key")),
                    "listed twice",
                ));
            }
            if k.retired && k.first_seq > k.last_seq.saturating_add(1) {
                return Err(invalid(
                    f(&format!("signing_keys[{j}].first_seq")),
                    "must be at most last_seq + 1 for a retired key",
                ));
            }
        }
        if !m.endpoint.is_empty() && !is_host_port(&m.endpoint) {
            return Err(invalid(f("endpoint"), "must be HOST:PORT"));
        }
        if m.sharing_basis_expires_at < 0 {
            return Err(invalid(
                f("sharing_basis_expires_at"),
                "must be 0 (none) or a time",
            ));
        }
    }
    if let Some(p) = &b.query_policy {
        check_query_policy(p)?;
    }
    Ok(())
}

/// The query policy in force, with the defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryPolicy {
    /// Bits of the token an asker sends: 16 to 24 (default 20).
    pub prefix_bits: u32,
    /// Answers for one prefix are padded with decoys to a multiple of this
    /// many entries (default 64).
    pub bucket_size: u32,
    /// Requests per second an asking member may make (default 10).
    pub requests_per_second: u32,
    /// Requests an asking member may make at once (default 20).
    pub burst: u32,
    /// Prefixes a member may ask per UTC day (default 100,000).
    pub prefixes_per_day: u64,
}

impl QueryPolicy {
    /// The defaults, for a list without a query policy.
    pub const DEFAULT: QueryPolicy = QueryPolicy {
        prefix_bits: 20,
        bucket_size: 64,
        requests_per_second: 10,
        burst: 20,
        prefixes_per_day: 100_000,
    };

    /// The list's policy; zero (or absent) fields take the defaults.
    pub fn of(b: &proto::TrustList) -> QueryPolicy {
        let d = QueryPolicy::DEFAULT;
        let Some(p) = &b.query_policy else {
            return d;
        };
        let or = |v: u32, d: u32| if v == 0 { d } else { v };
        QueryPolicy {
            prefix_bits: or(p.prefix_bits, d.prefix_bits),
            bucket_size: or(p.bucket_size, d.bucket_size),
            requests_per_second: or(p.requests_per_second, d.requests_per_second),
            burst: or(p.burst, d.burst),
            prefixes_per_day: if p.prefixes_per_day == 0 {
                d.prefixes_per_day
            } else {
                p.prefixes_per_day
            },
        }
    }
}

/// Most entries one padded bucket may be made of.
pub const MAX_BUCKET_SIZE: u32 = 4096;

fn check_query_policy(p: &proto::QueryPolicy) -> Result<(), TrustError> {
    if p.prefix_bits != 0 && !(16..=24).contains(&p.prefix_bits) {
        return Err(invalid("query_policy.prefix_bits", "must be 16 to 24"));
    }
    if p.bucket_size > MAX_BUCKET_SIZE {
        return Err(invalid(
            "query_policy.bucket_size",
            format!("must be at most {MAX_BUCKET_SIZE}"),
        ));
    }
    Ok(())
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty()
            && !h.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
            && p.parse::<u16>().is_ok_and(|p| p != 0)
    })
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(body);
    msg
}

/// Adds `key`'s signature over the body, replacing an earlier one by the
/// same key.
pub fn sign(signed: &mut SignedTrustList, key: &SigningKeyFile) {
    let public = key.verifying_key().to_bytes();
    let sig = key.sign(&signed_message(&signed.body));
    signed.signatures.retain(|s| s.public_key[..] != public[..]);
    signed.signatures.push(TrustSignature {
        public_key: public.to_vec(),
        signature: sig.to_bytes().to_vec(),
    });
}

/// Count of distinct valid signatures by keys in `keys`. Signatures by other
/// keys and invalid signatures are ignored; a key signing twice counts once,
/// and only its first signature is checked (`sign` keeps one per key), so
/// at most one signature check is spent per key in `keys`.
pub fn count_valid(signed: &SignedTrustList, keys: &[OperatorKey]) -> usize {
    let allowed = key_set(keys);
    let msg = signed_message(&signed.body);
    let mut tried: BTreeSet<&[u8]> = BTreeSet::new();
    let mut good = 0;
    for s in &signed.signatures {
        if !allowed.contains(&s.public_key[..]) || !tried.insert(&s.public_key[..]) {
            continue;
        }
        let Ok(pk) = <[u8; 32]>::try_from(&s.public_key[..]) else {
            continue;
        };
        let Ok(vk) = VerifyingKey::from_bytes(&pk) else {
            continue;
        };
        let Ok(sig) = Signature::from_slice(&s.signature) else {
            continue;
        };
        if vk.verify_strict(&msg, &sig).is_ok() {
            good += 1;
        }
    }
    good
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::edit::{member, new_list, reinstate, suspend, unsigned};

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn key(n: u8) -> SigningKeyFile {
        SigningKeyFile::from_seed(&[n; 32])
    }

    fn op(n: u8) -> OperatorKey {
        OperatorKey {
            id: format!("op-{n}"),
            public_key: key(n).verifying_key().to_bytes().to_vec(),
        }
    }

    fn bank(id: &str, spki: char) -> Member {
        let spki = spki.to_string().repeat(64);
        let mut m = member(
            id,
            &format!("{id} bank"),
            MemberKind::Bank,
            &spki,
            "node.example:7444",
        );
        m.capabilities = vec![
            PeerCapability::Contribute as i32,
            PeerCapability::Query as i32,
        ];
        m
    }

    /// Version `v` with operator keys `ops`, threshold `t`.
    fn body(v: u64, ops: &[u8], t: u32) -> proto::TrustList {
        let keys: Vec<_> = ops.iter().map(|&n| key(n).verifying_key()).collect();
        let epochs = vec![KeyEpoch {
            id: 1,
            valid_from: NOW - DAY,
            valid_until: NOW + 365 * DAY,
            key_sha256: "e".repeat(64),
        }];
        let members = vec![bank("bank-a", 'a'), bank("bank-b", 'b')];
        let mut b = new_list("c1", &keys, t, epochs, members, NOW - DAY, NOW + 30 * DAY);
        b.version = v;
        for (k, &n) in b.operator_keys.iter_mut().zip(ops) {
            k.id = format!("op-{n}");
        }
        b
    }

    fn signed_by(b: &proto::TrustList, signers: &[u8]) -> SignedTrustList {
        let mut s = unsigned(b);
        for &n in signers {
            sign(&mut s, &key(n));
        }
        s
    }

    /// Version 1, keys 1..=3, threshold 2, signed by 1 and 2.
    fn root() -> TrustList {
        verify_root(&signed_by(&body(1, &[1, 2, 3], 2), &[1, 2]), Some("c1")).unwrap()
    }

    #[test]
    fn root_accepted_and_accessors() {
        let r = root();
        assert_eq!(r.version(), 1);
        assert_eq!(r.coalition_id(), "c1");
        assert!(!r.is_expired(NOW));
        assert!(r.is_expired(r.expires_at()));
        assert_eq!(r.member("bank-a").unwrap().id, "bank-a");
        assert_eq!(r.member_by_spki(&"b".repeat(64)).unwrap().id, "bank-b");
        assert!(r.member_by_spki(&"c".repeat(64)).is_none());
        assert_eq!(r.epoch(1).unwrap().id, 1);
        assert!(r.epoch(2).is_none());
        let m = r.member("bank-a").unwrap();
        assert!(TrustList::has_capability(m, PeerCapability::Query));
        assert!(!TrustList::has_capability(m, PeerCapability::Replicate));
        assert_eq!(decode_signed(r.encoded()).unwrap(), *r.signed());
    }

    #[test]
    fn root_below_own_threshold_and_wrong_coalition() {
        let s = signed_by(&body(1, &[1, 2, 3], 2), &[1]);
        assert!(matches!(
            verify_root(&s, None),
            Err(TrustError::BelowThreshold {
                needed: 2,
                got: 1,
                of: "listed"
            })
        ));
        let s = signed_by(&body(1, &[1, 2, 3], 2), &[1, 2]);
        assert!(matches!(
            verify_root(&s, Some("c2")),
            Err(TrustError::CoalitionMismatch { .. })
        ));
    }

    #[test]
    fn expired_root_still_loads() {
        let mut b = body(1, &[1, 2, 3], 2);
        b.issued_at = NOW - 10 * DAY;
        b.expires_at = NOW - DAY;
        let r = verify_root(&signed_by(&b, &[1, 2]), None).unwrap();
        assert!(r.is_expired(NOW));
    }

    #[test]
    fn valid_update_accepted() {
        let r = root();
        let mut b = body(2, &[1, 2, 3], 2);
        b.members.push(bank("bank-c", 'c'));
        match verify_update(&r, &signed_by(&b, &[2, 3]), NOW).unwrap() {
            Update::Newer(l) => {
                assert_eq!(l.version(), 2);
                assert!(l.member("bank-c").is_some());
            }
            Update::Same => panic!("expected newer"),
        }
    }

    #[test]
    fn rollback_to_lower_version() {
        let current = verify_root(&signed_by(&body(5, &[1, 2, 3], 2), &[1, 2]), None).unwrap();
        let old = signed_by(&body(4, &[1, 2, 3], 2), &[1, 2, 3]);
        assert!(matches!(
            verify_update(&current, &old, NOW),
            Err(TrustError::Rollback { have: 5, got: 4 })
        ));
    }

    #[test]
    fn same_version_other_content_refused_identical_is_same() {
        let r = root();
        // Identical bytes.
        assert!(matches!(
            verify_update(&r, r.signed(), NOW),
            Ok(Update::Same)
        ));
        // Same body, another signature set.
        let s = signed_by(&body(1, &[1, 2, 3], 2), &[1, 2, 3]);
        assert!(matches!(
            verify_update(&r, &s, NOW),
            Err(TrustError::SameVersionDifferent { version: 1 })
        ));
        // Other body, same version, well signed.
        let mut b = body(1, &[1, 2, 3], 2);
        b.members.pop();
        assert!(matches!(
            verify_update(&r, &signed_by(&b, &[1, 2]), NOW),
            Err(TrustError::SameVersionDifferent { version: 1 })
        ));
    }

    #[test]
    fn expired_update_refused() {
        let mut b = body(2, &[1, 2, 3], 2);
        b.issued_at = NOW - 10 * DAY;
        b.expires_at = NOW;
        let e = verify_update(&root(), &signed_by(&b, &[1, 2]), NOW).unwrap_err();
        assert!(matches!(e, TrustError::Expired { .. }), "{e}");
        assert!(e.to_string().contains("2023-11-14T22:13:20Z"), "{e}");
    }

    #[test]
    fn below_threshold_one_signature_of_two() {
        let e = verify_update(&root(), &signed_by(&body(2, &[1, 2, 3], 2), &[1]), NOW).unwrap_err();
        assert!(
            matches!(
                e,
                TrustError::BelowThreshold {
                    needed: 2,
                    got: 1,
                    of: "current"
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "too few signatures: 1 valid from distinct current operator keys, 2 needed"
        );
    }

    #[test]
    fn one_key_signing_twice_counts_once() {
        let b = body(2, &[1, 2, 3], 2);
        let mut s = signed_by(&b, &[1]);
        // `sign` replaces; forge a duplicate entry by hand.
        let dup = s.signatures[0].clone();
        s.signatures.push(dup);
        assert_eq!(s.signatures.len(), 2);
        assert!(matches!(
            verify_update(&root(), &s, NOW),
            Err(TrustError::BelowThreshold {
                needed: 2,
                got: 1,
                of: "current"
            })
        ));
        // And `sign` by the same key twice keeps one signature.
        let mut s = signed_by(&b, &[1]);
        sign(&mut s, &key(1));
        assert_eq!(s.signatures.len(), 1);
    }

    fn over_bounds(r: Result<impl std::fmt::Debug, TrustError>) -> (&'static str, String) {
        match r {
            Err(e @ TrustError::OverBounds { field, .. }) => (field, e.to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signatures_bounded_by_the_operator_keys_of_both_lists() {
        let r = root();
        let b = body(2, &[1, 2, 3], 2);
        // Three keys in force and in the list: six signatures, whoever's.
        assert!(matches!(
            verify_update(&r, &signed_by(&b, &[1, 2, 3, 4, 5, 6]), NOW),
            Ok(Update::Newer(_))
        ));
        let (field, msg) = over_bounds(verify_update(
            &r,
            &signed_by(&b, &[1, 2, 3, 4, 5, 6, 7]),
            NOW,
        ));
        assert_eq!(field, "signatures");
        assert!(
            msg.starts_with("trust list over its bounds: signatures: at most 6"),
            "{msg}"
        );
        // Copies of one signature count once, and count against the bound.
        let mut dup = signed_by(&b, &[1]);
        for _ in 0..5 {
            dup.signatures.push(dup.signatures[0].clone());
        }
        assert!(matches!(
            verify_update(&r, &dup, NOW),
            Err(TrustError::BelowThreshold { got: 1, .. })
        ));
        dup.signatures.push(dup.signatures[0].clone());
        assert_eq!(over_bounds(verify_update(&r, &dup, NOW)).0, "signatures");
        // A rotation that adds keys may carry one signature per key of each list.
        let grown = body(2, &[4, 5, 6, 7, 8], 3);
        assert!(matches!(
            verify_update(&r, &signed_by(&grown, &[1, 2, 3, 4, 5, 6, 7, 8]), NOW),
            Ok(Update::Newer(_))
        ));
        // A root list: one per key it names.
        let root_body = body(1, &[1, 2, 3], 2);
        assert!(verify_root(&signed_by(&root_body, &[1, 2, 3]), None).is_ok());
        assert_eq!(
            over_bounds(verify_root(&signed_by(&root_body, &[1, 2, 3, 4]), None)).0,
            "signatures"
        );
    }

    #[test]
    fn a_keys_first_signature_is_the_only_one_checked() {
        let mut s = signed_by(&body(2, &[1, 2, 3], 2), &[1, 2]);
        let mut bad = s.signatures[0].clone();
        bad.signature[0] ^= 1;
        s.signatures.insert(0, bad);
        assert!(matches!(
            verify_update(&root(), &s, NOW),
            Err(TrustError::BelowThreshold { got: 1, .. })
        ));
    }

    #[test]
    fn operator_keys_and_size_bounded() {
        let many: Vec<u8> = (1..=MAX_OPERATOR_KEYS as u8 + 1).collect();
        let (field, msg) = over_bounds(verify_update(
            &root(),
            &signed_by(&body(2, &many, 2), &[1, 2]),
            NOW,
        ));
        assert_eq!(field, "operator_keys");
        assert!(msg.contains("at most 32"), "{msg}");
        let mut b = body(2, &[1, 2, 3], 2);
        b.members[0].name = "x".repeat(MAX_LIST_BYTES);
        let big = signed_by(&b, &[1, 2]);
        let (field, msg) = over_bounds(verify_update(&root(), &big, NOW));
        assert_eq!(field, "signed list");
        assert!(
            msg.contains("must be at most 1048576 bytes encoded"),
            "{msg}"
        );
        assert_eq!(over_bounds(verify_root(&big, None)).0, "signed list");
        assert_eq!(over_bounds(check_encoded_size(&big)).0, "signed list");
        assert_eq!(
            over_bounds(decode_signed(&big.encode_to_vec())).0,
            "signed list"
        );
        // Just within: the list is judged by its other rules.
        b.members[0].name = "x".repeat(MAX_LIST_BYTES - 4096);
        assert!(matches!(
            verify_update(&root(), &signed_by(&b, &[1, 2]), NOW),
            Ok(Update::Newer(_))
        ));
    }

    #[test]
    fn signatures_by_unlisted_keys_ignored() {
        let s = signed_by(&body(2, &[1, 2, 3], 2), &[1, 7, 8, 9]);
        assert!(matches!(
            verify_update(&root(), &s, NOW),
            Err(TrustError::BelowThreshold {
                needed: 2,
                got: 1,
                of: "current"
            })
        ));
    }

    #[test]
    fn invalid_signature_ignored() {
        let mut s = signed_by(&body(2, &[1, 2, 3], 2), &[1, 2]);
        s.signatures[1].signature[0] ^= 1;
        assert!(matches!(
            verify_update(&root(), &s, NOW),
            Err(TrustError::BelowThreshold { got: 1, .. })
        ));
        s.signatures[1].signature.truncate(10);
        assert!(matches!(
            verify_update(&root(), &s, NOW),
            Err(TrustError::BelowThreshold { got: 1, .. })
        ));
    }

    #[test]
    fn wrong_coalition_refused() {
        let mut b = body(2, &[1, 2, 3], 2);
        b.coalition_id = "other".into();
        let e = verify_update(&root(), &signed_by(&b, &[1, 2]), NOW).unwrap_err();
        assert!(
            matches!(e, TrustError::CoalitionMismatch { ref expected, ref got } if expected == "c1" && got == "other")
        );
    }

    #[test]
    fn key_rotation_done_right() {
        // Keys 1,2,3 → 4,5,6, threshold 2: two old and two new signatures.
        let b = body(2, &[4, 5, 6], 2);
        let l = match verify_update(&root(), &signed_by(&b, &[1, 3, 4, 6]), NOW).unwrap() {
            Update::Newer(l) => l,
            Update::Same => panic!(),
        };
        // From then on only the new keys count.
        let b3 = body(3, &[4, 5, 6], 2);
        assert!(matches!(
            verify_update(&l, &signed_by(&b3, &[1, 2, 3]), NOW),
            Err(TrustError::BelowThreshold {
                got: 0,
                of: "current",
                ..
            })
        ));
        assert!(matches!(
            verify_update(&l, &signed_by(&b3, &[5, 6]), NOW),
            Ok(Update::Newer(_))
        ));
    }

    #[test]
    fn key_rotation_signed_only_by_new_keys_refused() {
        let b = body(2, &[4, 5, 6], 2);
        assert!(matches!(
            verify_update(&root(), &signed_by(&b, &[4, 5, 6]), NOW),
            Err(TrustError::BelowThreshold {
                needed: 2,
                got: 0,
                of: "current"
            })
        ));
    }

    #[test]
    fn key_rotation_signed_only_by_old_keys_refused() {
        let b = body(2, &[1, 4, 5], 2);
        // Key 1 stays, so a signature by it counts on both sides, but only once.
        assert!(matches!(
            verify_update(&root(), &signed_by(&b, &[1, 2, 3]), NOW),
            Err(TrustError::BelowThreshold {
                needed: 2,
                got: 1,
                of: "new"
            })
        ));
        // Raising the threshold also needs the new threshold.
        let b = body(2, &[1, 2, 3], 3);
        assert!(matches!(
            verify_update(&root(), &signed_by(&b, &[1, 2]), NOW),
            Err(TrustError::BelowThreshold {
                needed: 3,
                got: 2,
                of: "new"
            })
        ));
        assert!(matches!(
            verify_update(&root(), &signed_by(&b, &[1, 2, 3]), NOW),
            Ok(Update::Newer(_))
        ));
    }

    #[test]
    fn relabelled_operator_key_is_not_a_rotation() {
        let mut b = body(2, &[1, 2, 3], 2);
        b.operator_keys[0].id = "renamed".into();
        assert!(matches!(
            verify_update(&root(), &signed_by(&b, &[1, 2]), NOW),
            Ok(Update::Newer(_))
        ));
    }

    #[test]
    fn corrupted_body_refused() {
        let s = signed_by(&body(2, &[1, 2, 3], 2), &[1, 2, 3]);
        for i in 0..s.body.len() {
            let mut bad = s.clone();
            bad.body[i] ^= 0x01;
            match verify_update(&root(), &bad, NOW) {
                Err(TrustError::BelowThreshold { got: 0, .. }) | Err(TrustError::Decode(_)) => {}
                // A flip in the version or coalition field may be caught first.
                Err(TrustError::Rollback { .. })
                | Err(TrustError::SameVersionDifferent { .. })
                | Err(TrustError::CoalitionMismatch { .. })
                | Err(TrustError::Expired { .. }) => {}
                other => panic!("byte {i}: {other:?}"),
            }
        }
        // Through the encoded form too: flip the last byte of the body.
        let mut bytes = s.encode_to_vec();
        let pos = bytes
            .windows(s.body.len())
            .position(|w| w == &s.body[..])
            .unwrap()
            + s.body.len()
            - 1;
        bytes[pos] ^= 0x01;
        match decode_signed(&bytes).and_then(|d| verify_update(&root(), &d, NOW)) {
            Err(TrustError::BelowThreshold { got: 0, .. }) | Err(TrustError::Decode(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_signed(&[0xff, 0xff, 0xff]),
            Err(TrustError::Decode(_))
        ));
    }

    #[test]
    fn update_checks_body() {
        let mut b = body(2, &[1, 2, 3], 2);
        b.members[1].tls_spki_sha256 = vec!["A".repeat(64)];
        let e = verify_update(&root(), &signed_by(&b, &[1, 2]), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid trust list: members[1].tls_spki_sha256[0]: must be 64 lowercase hex characters"
        );
    }

    fn field_of(b: &proto::TrustList) -> String {
        match check_body(b) {
            Err(TrustError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    type Edit = Box<dyn Fn(&mut proto::TrustList)>;

    #[test]
    fn check_body_rules() {
        check_body(&body(1, &[1, 2, 3], 2)).unwrap();
        let base = || body(1, &[1, 2, 3], 2);
        let cases: Vec<(&str, Edit)> = vec![
            ("threshold", Box::new(|b| b.threshold = 0)),
            ("threshold", Box::new(|b| b.threshold = 4)),
            (
                "operator_keys[2].public_key",
                Box::new(|b| b.operator_keys[2] = op(1)),
            ),
            (
                "operator_keys[0].public_key",
                Box::new(|b| {
                    b.operator_keys[0].public_key.pop();
                }),
            ),
            ("coalition_id", Box::new(|b| b.coalition_id.clear())),
            ("version", Box::new(|b| b.version = 0)),
            ("expires_at", Box::new(|b| b.expires_at = b.issued_at)),
            (
                "members[1].id",
                Box::new(|b| b.members[1].id = "bank-a".into()),
            ),
            (
                "members[0].id",
                Box::new(|b| b.members[0].id = "Bank".into()),
            ),
            ("members[0].id", Box::new(|b| b.members[0].id = "-x".into())),
            (
                "members[0].contact",
                Box::new(|b| b.members[0].contact = "desk\nline".into()),
            ),
            (
                "members[0].contact",
                Box::new(|b| b.members[0].contact = "x".repeat(129)),
            ),
            (
                "members[0].id",
                Box::new(|b| b.members[0].id = "a".repeat(65)),
            ),
            (
                "members[1].tls_spki_sha256[0]",
                Box::new(|b| b.members[1].tls_spki_sha256[0] = "a".repeat(64)),
            ),
            (
                "members[0].tls_spki_sha256[0]",
                Box::new(|b| b.members[0].tls_spki_sha256[0] = "a".repeat(63)),
            ),
            (
                "members[0].signing_keys[0].public_key",
                Box::new(|b| {
                    b.members[0].signing_keys.push(proto::LogSigningKey {
                        public_key: vec![1; 31],
                        retired: false,
                        last_seq: 0,
                        first_seq: 0,
                    })
                }),
            ),
            (
                "members[0].signing_keys[0].first_seq",
                Box::new(|b| {
                    b.members[0].signing_keys.push(proto::LogSigningKey {
                        public_key: vec![1; 32],
                        retired: true,
                        last_seq: 4,
                        first_seq: 6,
                    })
                }),
            ),
            ("members[0].kind", Box::new(|b| b.members[0].kind = 0)),
            ("members[0].kind", Box::new(|b| b.members[0].kind = 99)),
            ("members[0].status", Box::new(|b| b.members[0].status = 0)),
            (
                "members[0].capabilities[0]",
                Box::new(|b| b.members[0].capabilities[0] = 0),
            ),
            (
                "members[0].capabilities[1]",
                Box::new(|b| b.members[0].capabilities[1] = b.members[0].capabilities[0]),
            ),
            (
                "members[0].endpoint",
                Box::new(|b| b.members[0].endpoint = "nohost".into()),
            ),
            (
                "epochs[1].id",
                Box::new(|b| {
                    let e = b.epochs[0].clone();
                    b.epochs.push(e);
                }),
            ),
            (
                "epochs[0].valid_until",
                Box::new(|b| b.epochs[0].valid_until = b.epochs[0].valid_from),
            ),
            (
                "epochs[0].key_sha256",
                Box::new(|b| b.epochs[0].key_sha256 = "E".repeat(64)),
            ),
        ];
        for (want, edit) in cases {
            let mut b = base();
            edit(&mut b);
            assert_eq!(field_of(&b), want);
        }
    }

    #[test]
    fn unknown_capability_kept_and_not_granted() {
        let r = root();
        let mut b = body(2, &[1, 2, 3], 2);
        b.members[0].capabilities.push(99);
        suspend(&mut b.members[1], 7);
        b.members[1].capabilities.push(7);
        let s = signed_by(&b, &[1, 2]);
        let l = verify_root(&s, None).unwrap();
        let m = l.member("bank-a").unwrap();
        assert_eq!(
            m.capabilities,
            [
                PeerCapability::Contribute as i32,
                PeerCapability::Query as i32,
                99
            ]
        );
        assert!(TrustList::has_capability(m, PeerCapability::Contribute));
        assert!(TrustList::has_capability(m, PeerCapability::Query));
        assert!(!TrustList::has_capability(m, PeerCapability::Replicate));
        assert!(!TrustList::has_capability(m, PeerCapability::Unspecified));
        assert!(PeerCapability::try_from(99).is_err());
        match verify_update(&r, &s, NOW).unwrap() {
            Update::Newer(u) => {
                let m = u.member("bank-a").unwrap();
                assert!(m.capabilities.contains(&99));
                assert!(TrustList::has_capability(m, PeerCapability::Query));
                assert!(!TrustList::has_capability(m, PeerCapability::Replicate));
                let s = u.member("bank-b").unwrap();
                assert_eq!(s.suspended_after_seq, 7);
                assert!(!TrustList::is_active(s, NOW));
            }
            Update::Same => panic!("expected newer"),
        }
        let mut d = b.clone();
        d.members[0].capabilities.push(99);
        assert!(verify_root(&signed_by(&d, &[1, 2]), None).is_err());
    }

    #[test]
    fn active_status_and_sharing_basis() {
        let mut b = body(1, &[1, 2, 3], 2);
        b.members[0].sharing_basis_expires_at = NOW + 10;
        suspend(&mut b.members[1], 42);
        let l = verify_root(&signed_by(&b, &[1, 2]), None).unwrap();
        let a = "a".repeat(64);
        assert!(l.active_member_by_spki(&a, NOW).is_some());
        assert!(l.active_member_by_spki(&a, NOW + 10).is_none());
        let bb = "b".repeat(64);
        assert!(l.member_by_spki(&bb).is_some());
        assert!(l.active_member_by_spki(&bb, NOW).is_none());
        assert_eq!(l.member("bank-b").unwrap().suspended_after_seq, 42);
        let mut m = l.member("bank-b").unwrap().clone();
        reinstate(&mut m);
        assert!(TrustList::is_active(&m, NOW));
    }

    /// Version `v` of the chain tests, keys `ops`, threshold `t`, signed by `by`.
    fn step(v: u64, ops: &[u8], t: u32, by: &[u8]) -> SignedTrustList {
        signed_by(&body(v, ops, t), by)
    }

    #[test]
    fn a_chain_walks_through_a_rotation_and_a_threshold_change_to_the_newest_list() {
        // 1 (keys 1,2,3; 2 of them) → 2 (same keys) → 3 (keys 4,5,6) → 4 (3 of 4,5,6) → 6.
        let chain = vec![
            step(3, &[4, 5, 6], 2, &[1, 2, 4, 5]),
            step(4, &[4, 5, 6], 3, &[4, 5, 6]),
            step(6, &[4, 5, 6], 3, &[4, 5, 6]),
        ];
        let walked = verify_chain(&root(), &chain, NOW).unwrap();
        assert_eq!(
            walked.iter().map(|l| l.version()).collect::<Vec<_>>(),
            [3, 4, 6]
        );
        assert!(changes_keys(root().body(), walked[0].body()));
        assert!(changes_keys(walked[0].body(), walked[1].body()));
        assert!(!changes_keys(walked[1].body(), walked[2].body()));
        // Without the rotation the newest list does not verify: the walk
        // names the step, its version and the versions that may be missing.
        let e = verify_chain(&root(), &chain[2..], NOW).unwrap_err();
        assert!(matches!(
            e,
            ChainError::Step {
                index: 0,
                version: Some(6),
                after: 1,
                source: TrustError::BelowThreshold { of: "current", .. }
            }
        ));
        assert!(
            crate::telemetry::chain(&e).contains("versions 2 to 5 changed the operator keys"),
            "{}",
            crate::telemetry::chain(&e)
        );
    }

    #[test]
    fn a_chain_step_signed_below_the_old_threshold_refuses_the_whole_chain() {
        let chain = vec![
            // Only one old key signed the rotation.
            step(2, &[4, 5, 6], 2, &[1, 4, 5]),
            step(3, &[4, 5, 6], 2, &[4, 5]),
        ];
        assert!(matches!(
            verify_chain(&root(), &chain, NOW),
            Err(ChainError::Step {
                index: 0,
                version: Some(2),
                source: TrustError::BelowThreshold {
                    needed: 2,
                    got: 1,
                    of: "current"
                },
                ..
            })
        ));
        // A rotation not signed by its own new threshold.
        let chain = vec![
            step(2, &[4, 5, 6], 2, &[1, 2, 4]),
            step(3, &[4, 5, 6], 2, &[4, 5]),
        ];
        assert!(matches!(
            verify_chain(&root(), &chain, NOW),
            Err(ChainError::Step {
                index: 0,
                source: TrustError::BelowThreshold { of: "new", .. },
                ..
            })
        ));
    }

    #[test]
    fn a_forged_intermediate_list_refuses_the_chain_at_its_step() {
        // Step 2 signed by keys that are on no list in force: the forger's.
        let chain = vec![
            step(2, &[1, 2, 3], 2, &[1, 2]),
            step(3, &[7, 8, 9], 2, &[7, 8, 9]),
            step(4, &[7, 8, 9], 2, &[7, 8]),
        ];
        let e = verify_chain(&root(), &chain, NOW).unwrap_err();
        assert!(
            matches!(
                e,
                ChainError::Step {
                    index: 1,
                    version: Some(3),
                    after: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .starts_with("trust list chain step 1 (version 3) as an update of version 2"));
        // One flipped byte of an intermediate's body.
        let mut chain = vec![
            step(2, &[4, 5, 6], 2, &[1, 2, 4, 5]),
            step(3, &[4, 5, 6], 2, &[4, 5]),
        ];
        let last = chain[0].body.len() - 1;
        chain[0].body[last] ^= 1;
        assert!(matches!(
            verify_chain(&root(), &chain, NOW),
            Err(ChainError::Step { index: 0, .. })
        ));
    }

    #[test]
    fn a_chain_out_of_order_or_repeating_a_version_is_refused() {
        let chain = vec![
            step(3, &[4, 5, 6], 2, &[1, 2, 4, 5]),
            step(2, &[1, 2, 3], 2, &[1, 2]),
        ];
        assert!(matches!(
            verify_chain(&root(), &chain, NOW),
            Err(ChainError::Step {
                index: 1,
                source: TrustError::Rollback { have: 3, got: 2 },
                ..
            })
        ));
        let two = step(2, &[1, 2, 3], 2, &[1, 2]);
        assert!(matches!(
            verify_chain(&root(), &[two.clone(), two], NOW),
            Err(ChainError::Step {
                index: 1,
                source: TrustError::NotNewer { version: 2 },
                ..
            })
        ));
        // The list in force as the first step is no step either.
        assert!(matches!(
            verify_chain(&root(), &[root().signed().clone()], NOW),
            Err(ChainError::Step {
                index: 0,
                source: TrustError::NotNewer { version: 1 },
                ..
            })
        ));
    }

    #[test]
    fn only_the_final_list_of_a_chain_must_be_unexpired() {
        let mut old = body(2, &[4, 5, 6], 2);
        old.issued_at = NOW - 20 * DAY;
        old.expires_at = NOW - 10 * DAY;
        let chain = vec![
            signed_by(&old, &[1, 2, 4, 5]),
            step(3, &[4, 5, 6], 2, &[4, 5]),
        ];
        assert_eq!(verify_chain(&root(), &chain, NOW).unwrap().len(), 2);
        // The same expired list as the final step is refused.
        assert!(matches!(
            verify_chain(&root(), &chain[..1], NOW),
            Err(ChainError::Step {
                index: 0,
                source: TrustError::Expired { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_chain_longer_than_its_bound_or_empty_is_refused_before_any_check() {
        let one = step(2, &[1, 2, 3], 2, &[1, 2]);
        let long = vec![one; MAX_CHAIN_LISTS + 1];
        assert!(matches!(
            verify_chain(&root(), &long, NOW),
            Err(ChainError::TooLong { max: 65, got: 66 })
        ));
        assert!(matches!(
            verify_chain(&root(), &[], NOW),
            Err(ChainError::Empty)
        ));
        // An oversized step is refused at its step, before its signatures.
        let mut b = body(2, &[1, 2, 3], 2);
        b.members[0].name = "x".repeat(MAX_LIST_BYTES);
        assert!(matches!(
            verify_chain(&root(), &[signed_by(&b, &[1, 2])], NOW),
            Err(ChainError::Step {
                source: TrustError::OverBounds {
                    field: "signed list",
                    ..
                },
                ..
            })
        ));
    }
}
