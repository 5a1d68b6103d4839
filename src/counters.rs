//! The node's counters: what happened with each peer since the node
//! started, as typed events. Batches received by outcome and, when refused,
//! by reason; fork evidence received; pulls completed and replication
//! sessions ended by failure; requests of a member this node refused, and
//! its streams cut, by reason; what this node withheld from a peer's pull,
//! by reason; a peer's trust-list answers refused, by reason; prefix
//! queries answered; and, node-wide, what re-checking stored fork evidence
//! and batches against a new trust list did ([`Rechecks`]).
//!
//! One [`Counters`] is created per node (`crate::node::NodeState`) and
//! handed to whoever counts; readers take a [`Counters::snapshot`] (the
//! Admin API's Status today, metrics later). No other part of the node keeps
//! tallies of these events. Reasons are enums with stable snake_case names
//! ([`BatchRejection::name`] and the like) for whatever shows them. This
//! module depends on nothing else in the crate.

use std::collections::BTreeMap;

use parking_lot::Mutex;

/// Defines a fieldless enum of reasons with `ALL`, `COUNT`, a stable name
/// for each variant and `Display` showing that name.
macro_rules! reasons {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// How many variants there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The variant's stable name (snake_case), as Status shows it.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant with this name.
            pub fn from_name(name: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }

            fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

reasons! {
    /// What became of a batch received from a peer that was not refused.
    pub enum BatchOutcome {
        /// Verified and appended: it extended the origin's chain.
        Applied => "applied",
        /// This node already held it.
        Duplicate => "duplicate",
        /// Its predecessor is missing: it waits for a later pull.
        Gap => "gap",
        /// A different, validly signed batch at sequence numbers this node
        /// already holds: kept as fork evidence, the origin frozen.
        Fork => "fork",
    }
}

reasons! {
    /// Why a batch received from a peer was refused (and dropped).
    pub enum BatchRejection {
        /// The batch or its header does not decode.
        Decode => "decode",
        /// The entries do not match the signed header (count or root).
        Entries => "entries",
        /// The origin is not on the trust list.
        UnknownOrigin => "unknown_origin",
        /// The origin lacks the `contribute` capability.
        NotContributor => "not_contributor",
        /// No signing key of the origin allowed at these sequence numbers
        /// signed it.
        Signature => "signature",
        /// It ends past the last sequence number a suspension allows.
        PastSuspension => "past_suspension",
        /// It was made after the origin's sharing basis expired.
        PastSharingBasis => "past_sharing_basis",
        /// Entries purged in a batch younger than the retention period:
        /// stripped on the way.
        StrippedPurge => "stripped_purge",
        /// Numbered from 0, or no entries.
        Numbering => "numbering",
        /// A field of the header or of an entry lies outside the bounds
        /// honest nodes write (unknown op, tier or kind, a token not 32
        /// bytes long, a bad case reference, numbers that overflow, ...).
        InvalidField => "invalid_field",
        /// It does not extend this node's history of the origin (previous
        /// hash or numbering differs from this node's head).
        BrokenChain => "broken_chain",
        /// This node could not read its own head or batch of the origin.
        HeadRead => "head_read",
        /// This node could not store it.
        Store => "store",
        /// Stored, but the index could not take it.
        Index => "index",
        /// It differs from this node's batch at those sequence numbers, but
        /// the two are not fork evidence under the trust list in force.
        UnprovenFork => "unproven_fork",
        /// It encodes in more than peers take (`batch::MAX_RECEIVED_BYTES`):
        /// no honest node writes or sends such a batch.
        Oversized => "oversized",
        /// Its origin's log is set aside on this node (a stored batch that
        /// does not apply): it takes nothing until an operator acts.
        OriginSetAside => "origin_set_aside",
    }
}

reasons! {
    /// What became of fork evidence received from a peer that was not refused.
    pub enum EvidenceOutcome {
        /// Kept: the origin is frozen from its fork point.
        New => "new",
        /// This node already held evidence of that origin's fork.
        Known => "known",
    }
}

reasons! {
    /// Why fork evidence received from a peer was refused.
    pub enum EvidenceRejection {
        /// One of the two batches is missing.
        Incomplete => "incomplete",
        /// A batch does not decode.
        Decode => "decode",
        /// Not two different, overlapping batches of one origin.
        NotAFork => "not_a_fork",
        /// A batch does not verify under the trust list in force.
        Unverified => "unverified",
        /// A field of a batch lies outside the bounds honest nodes write
        /// ([`crate::batch::Batch::check_fields`]): never kept.
        InvalidField => "invalid_field",
        /// Valid, and the origin frozen, but the store could not keep it.
        Store => "store",
    }
}

reasons! {
    /// Why a replication session with a peer ended.
    pub enum SessionFailure {
        /// The peer could not be reached over pinned mutual TLS.
        Connect => "connect",
        /// The peer refused to open a Watch stream.
        WatchRefused => "watch_refused",
        /// The Watch stream broke or ended.
        WatchEnded => "watch_ended",
        /// The peer refused a Pull.
        PullRefused => "pull_refused",
        /// A Pull stream broke before its end.
        PullStream => "pull_stream",
        /// This node could not read or flush its store.
        Store => "store",
        /// The peer sent nothing within a deadline: a Pull stream silent
        /// for the idle deadline, or no answer to opening a stream.
        Stalled => "stalled",
        /// A pull from the peer brought batches or fork evidence refused
        /// for their own fault (not this node's store): the peer is cut off.
        InvalidBatches => "invalid_batches",
        /// Before contributions opened, the peer announced more of this
        /// node's own log than its pull then brought.
        Undelivered => "undelivered",
        /// The trust list in force no longer lets this node replicate with
        /// the peer (not an active member with `replicate`, its endpoint or
        /// TLS key changed, or the list expired): ended at once.
        Deauthorized => "deauthorized",
    }
}

reasons! {
    /// What this node left out of a peer's pull, and why.
    pub enum Withheld {
        /// A stored batch larger than peers take: it and the rest of its
        /// origin were not sent in that pull.
        OversizedBatch => "oversized_batch",
        /// Fork evidence larger than a peer decodes.
        OversizedEvidence => "oversized_evidence",
    }
}

reasons! {
    /// Why this node refused a member's request on its peer listener.
    pub enum RequestRefusal {
        /// No client certificate on the connection.
        NoCertificate => "no_certificate",
        /// The certificate is not an active member's.
        NotActiveMember => "not_active_member",
        /// This node's trust list has expired (only trust-list calls are served).
        ListExpired => "list_expired",
        /// The member lacks the capability the method needs.
        MissingCapability => "missing_capability",
        /// A prefix query with another prefix length than the query policy's.
        PrefixBits => "prefix_bits",
        /// A prefix query with no prefixes or too many.
        PrefixCount => "prefix_count",
        /// A prefix query with a prefix out of range.
        PrefixRange => "prefix_range",
        /// A prefix query for a prefix holding more indicators than one
        /// answer carries (the query policy needs more prefix bits).
        PrefixFull => "prefix_full",
        /// A prefix query over the query policy's limits (rate or daily quota).
        PrefixLimit => "prefix_limit",
        /// A trust list the member offered, refused.
        TrustList => "trust_list",
        /// A trust list the member offered over its bounds (size, operator
        /// keys, signatures): refused before any signature was checked.
        TrustListBounds => "trust_list_bounds",
        /// A trust list offered over the per-member publish rate.
        TrustListRate => "trust_list_rate",
        /// A connection refused at accept: the peer listener holds as many
        /// as it allows. Counted under [`UNLISTED`]: no member is known
        /// before the handshake.
        ConnectionLimit => "connection_limit",
        /// A connection refused at accept: as many handshakes as the peer
        /// listener allows are in flight. Counted under [`UNLISTED`].
        HandshakeLimit => "handshake_limit",
        /// A connection closed because its TLS handshake did not complete
        /// in time. Counted under [`UNLISTED`].
        HandshakeTimeout => "handshake_timeout",
        /// A Pull or Watch refused: the member already has as many of that
        /// kind open as one member may
        /// (`federation::send_batches::STREAMS_PER_MEMBER`).
        StreamLimit => "stream_limit",
        /// A per-epoch prefix query naming an epoch not valid now, or one
        /// twice.
        PrefixEpoch => "prefix_epoch",
        /// A prefix query not answered because this node could not record
        /// the daily quota it would take.
        QuotaUnrecorded => "quota_unrecorded",
        /// Feedback sent while this node's feedback is off.
        FeedbackOff => "feedback_off",
        /// Feedback with no items or too many.
        FeedbackItems => "feedback_items",
        /// A feedback item naming no add entry of this node's own log.
        FeedbackSeq => "feedback_seq",
        /// A feedback item dated out of range, or not a date.
        FeedbackDate => "feedback_date",
        /// A feedback item with an unknown outcome.
        FeedbackOutcome => "feedback_outcome",
        /// A feedback item with an unknown or repeated action.
        FeedbackActions => "feedback_actions",
        /// A feedback item with anonymous senders from a member that is not
        /// an operator, or more than the trust list has members.
        FeedbackAnonymous => "feedback_anonymous",
        /// Anonymous feedback sent to a node that relays none (not an
        /// operator with `feedback`, or its feedback off).
        FeedbackNoRelay => "feedback_no_relay",
        /// An anonymous feedback item naming no member's log it may go to
        /// (not on the list, the relay itself, or the sender's own).
        FeedbackOrigin => "feedback_origin",
        /// Feedback past a member's requests per second or items per day
        /// (`feedback::LIMIT`).
        FeedbackLimit => "feedback_limit",
    }
}

reasons! {
    /// Why this node refused a peer's answer to its GetTrustList (the
    /// chain of lists and the list it sent): nothing of it was applied.
    pub enum TrustAnswerRefusal {
        /// More lists than a chain may hold, or a list over its size.
        Bounds => "bounds",
        /// Lists out of version order, repeating one, or older than this
        /// node's list.
        Order => "order",
        /// A step of the chain breaks a rule of an update (signatures of
        /// the keys before it or of its own new keys, coalition, expiry of
        /// the final list, a body field).
        Step => "step",
    }
}

/// The key under which requests from a certificate that names no member of
/// the trust list are counted (so that strangers cannot grow the map), and
/// connections refused before their handshake named anyone.
pub const UNLISTED: &str = "(not on the list)";

/// The key under which an operator relaying anonymous feedback counts what
/// it refused of it: the relay keeps no sender identity, counters included.
pub const ANONYMOUS: &str = "(anonymous)";

/// Everything counted for one peer. Plain numbers: a snapshot's copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    batches: [u64; BatchOutcome::COUNT],
    rejected: [u64; BatchRejection::COUNT],
    evidence: [u64; EvidenceOutcome::COUNT],
    evidence_rejected: [u64; EvidenceRejection::COUNT],
    sessions_failed: [u64; SessionFailure::COUNT],
    refused: [u64; RequestRefusal::COUNT],
    withheld: [u64; Withheld::COUNT],
    cut: [u64; RequestRefusal::COUNT],
    trust_answers: [u64; TrustAnswerRefusal::COUNT],
    /// Pulls from this peer that ran to the end of their stream.
    pub pulls: u64,
    /// Prefix queries of this member answered.
    pub queries_answered: u64,
    /// Prefixes in those queries.
    pub prefixes_answered: u64,
}

impl PeerCounts {
    /// Batches received from the peer with this outcome.
    pub fn batches(&self, o: BatchOutcome) -> u64 {
        self.batches[o.index()]
    }

    /// Batches received from the peer refused for this reason.
    pub fn rejected(&self, r: BatchRejection) -> u64 {
        self.rejected[r.index()]
    }

    /// Batches received from the peer refused for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Fork evidence received from the peer with this outcome.
    pub fn evidence(&self, o: EvidenceOutcome) -> u64 {
        self.evidence[o.index()]
    }

    /// Fork evidence received from the peer refused for this reason.
    pub fn evidence_rejected(&self, r: EvidenceRejection) -> u64 {
        self.evidence_rejected[r.index()]
    }

    /// Replication sessions with the peer that ended for this reason.
    pub fn sessions_failed(&self, f: SessionFailure) -> u64 {
        self.sessions_failed[f.index()]
    }

    /// Requests of the member this node refused for this reason.
    pub fn refused(&self, r: RequestRefusal) -> u64 {
        self.refused[r.index()]
    }

    /// What this node left out of the peer's pulls, for this reason.
    pub fn withheld(&self, w: Withheld) -> u64 {
        self.withheld[w.index()]
    }

    /// Streams of the member (Pull, Watch) this node's peer listener ended
    /// because the member lost the right to them, for this reason.
    pub fn streams_cut(&self, r: RequestRefusal) -> u64 {
        self.cut[r.index()]
    }

    /// Answers of the peer to this node's GetTrustList refused, for this
    /// reason.
    pub fn trust_answers_refused(&self, r: TrustAnswerRefusal) -> u64 {
        self.trust_answers[r.index()]
    }

    /// The counts in `self` that were not yet in `earlier` (a copy of the
    /// same peer's counts taken before).
    pub fn since(&self, earlier: &PeerCounts) -> PeerCounts {
        fn sub<const N: usize>(a: &[u64; N], b: &[u64; N]) -> [u64; N] {
            std::array::from_fn(|i| a[i].saturating_sub(b[i]))
        }
        PeerCounts {
            batches: sub(&self.batches, &earlier.batches),
            rejected: sub(&self.rejected, &earlier.rejected),
            evidence: sub(&self.evidence, &earlier.evidence),
            evidence_rejected: sub(&self.evidence_rejected, &earlier.evidence_rejected),
            sessions_failed: sub(&self.sessions_failed, &earlier.sessions_failed),
            refused: sub(&self.refused, &earlier.refused),
            withheld: sub(&self.withheld, &earlier.withheld),
            cut: sub(&self.cut, &earlier.cut),
            trust_answers: sub(&self.trust_answers, &earlier.trust_answers),
            pulls: self.pulls.saturating_sub(earlier.pulls),
            queries_answered: self
                .queries_answered
                .saturating_sub(earlier.queries_answered),
            prefixes_answered: self
                .prefixes_answered
                .saturating_sub(earlier.prefixes_answered),
        }
    }
}

/// The counters of one node, per peer (member id, or [`UNLISTED`]), and
/// the node's re-checks.
#[derive(Debug, Default)]
pub struct Counters {
    peers: Mutex<BTreeMap<String, PeerCounts>>,
    /// Outcomes of re-checking stored fork evidence and batches against a
    /// new trust list, node-wide (no peer sent them just now).
    rechecks: Mutex<Rechecks>,
}

/// What re-checking stored fork evidence and batches against the trust
/// list in force did, since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rechecks {
    /// Fork evidence lifted: it no longer verifies.
    pub forks_lifted: u64,
    /// Stored batches of other origins dropped after a key rotation: their
    /// signatures no longer verify (pulled again, signed anew).
    pub batches_dropped: u64,
    /// Batches of the node's own log signed again with its key.
    pub batches_resigned: u64,
}

/// A copy of every peer's counts at one moment, sorted by peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Each peer counted (member id, or [`UNLISTED`]) and its counts,
    /// sorted by peer.
    pub peers: Vec<(String, PeerCounts)>,
}

impl Snapshot {
    /// The counts of `peer` (all zero if nothing was counted for it).
    pub fn peer(&self, peer: &str) -> PeerCounts {
        self.peers
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }
}

impl Counters {
    /// No peer counted yet.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Counts fork evidence lifted.
    pub fn fork_lifted(&self) {
        self.rechecks.lock().forks_lifted += 1;
    }

    /// Counts stored batches dropped (`dropped`) and signed again
    /// (`resigned`) after a key rotation.
    pub fn batches_rechecked(&self, dropped: u64, resigned: u64) {
        let mut r = self.rechecks.lock();
        r.batches_dropped += dropped;
        r.batches_resigned += resigned;
    }

    /// What re-checks did since the node started.
    pub fn rechecks(&self) -> Rechecks {
        *self.rechecks.lock()
    }

    fn count(&self, peer: &str, f: impl FnOnce(&mut PeerCounts)) {
        let mut peers = self.peers.lock();
        match peers.get_mut(peer) {
            Some(c) => f(c),
            None => f(peers.entry(peer.to_string()).or_default()),
        }
    }

    /// A batch from `peer` that was not refused.
    pub fn batch(&self, peer: &str, o: BatchOutcome) {
        self.count(peer, |c| c.batches[o.index()] += 1);
    }

    /// A batch from `peer` refused for `r`.
    pub fn batch_rejected(&self, peer: &str, r: BatchRejection) {
        self.count(peer, |c| c.rejected[r.index()] += 1);
    }

    /// Fork evidence from `peer` that was not refused.
    pub fn evidence(&self, peer: &str, o: EvidenceOutcome) {
        self.count(peer, |c| c.evidence[o.index()] += 1);
    }

    /// Fork evidence from `peer` refused for `r`.
    pub fn evidence_rejected(&self, peer: &str, r: EvidenceRejection) {
        self.count(peer, |c| c.evidence_rejected[r.index()] += 1);
    }

    /// A pull from `peer` that ran to the end of its stream.
    pub fn pull_completed(&self, peer: &str) {
        self.count(peer, |c| c.pulls += 1);
    }

    /// A replication session with `peer` that ended for `f`.
    pub fn session_failed(&self, peer: &str, f: SessionFailure) {
        self.count(peer, |c| c.sessions_failed[f.index()] += 1);
    }

    /// A request of `peer` refused for `r`.
    pub fn request_refused(&self, peer: &str, r: RequestRefusal) {
        self.count(peer, |c| c.refused[r.index()] += 1);
    }

    /// Something left out of a pull of `peer`, for `w`.
    pub fn withheld(&self, peer: &str, w: Withheld) {
        self.count(peer, |c| c.withheld[w.index()] += 1);
    }

    /// A stream of `peer` ended because it lost the right to it, for `r`.
    pub fn stream_cut(&self, peer: &str, r: RequestRefusal) {
        self.count(peer, |c| c.cut[r.index()] += 1);
    }

    /// An answer of `peer` to this node's GetTrustList refused, for `r`.
    pub fn trust_answer_refused(&self, peer: &str, r: TrustAnswerRefusal) {
        self.count(peer, |c| c.trust_answers[r.index()] += 1);
    }

    /// A prefix query of `peer` answered, with `prefixes` prefixes.
    pub fn query_answered(&self, peer: &str, prefixes: u64) {
        self.count(peer, |c| {
            c.queries_answered += 1;
            c.prefixes_answered += prefixes;
        });
    }

    /// The counts of one peer now.
    pub fn peer(&self, peer: &str) -> PeerCounts {
        self.peers.lock().get(peer).cloned().unwrap_or_default()
    }

    /// Every peer's counts now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            peers: self
                .peers
                .lock()
                .iter()
                .map(|(p, c)| (p.clone(), c.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_kept_per_peer_and_reason() {
        let c = Counters::new();
        c.batch("bank-b", BatchOutcome::Applied);
        c.batch("bank-b", BatchOutcome::Applied);
        c.batch_rejected("bank-b", BatchRejection::Signature);
        c.batch_rejected("relay-x", BatchRejection::Entries);
        c.request_refused(UNLISTED, RequestRefusal::NotActiveMember);
        c.query_answered("asker-c", 3);
        c.query_answered("asker-c", 2);
        c.pull_completed("bank-b");
        let before = c.peer("bank-b");
        c.batch("bank-b", BatchOutcome::Duplicate);
        c.session_failed("bank-b", SessionFailure::Connect);

        let s = c.snapshot();
        let names: Vec<&str> = s.peers.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, [UNLISTED, "asker-c", "bank-b", "relay-x"]);
        let b = s.peer("bank-b");
        assert_eq!(b.batches(BatchOutcome::Applied), 2);
        assert_eq!(b.batches(BatchOutcome::Duplicate), 1);
        assert_eq!(b.rejected(BatchRejection::Signature), 1);
        assert_eq!(b.rejected(BatchRejection::Entries), 0);
        assert_eq!(b.rejected_total(), 1);
        assert_eq!(b.pulls, 1);
        assert_eq!(b.sessions_failed(SessionFailure::Connect), 1);
        let d = b.since(&before);
        assert_eq!(d.batches(BatchOutcome::Duplicate), 1);
        assert_eq!(d.batches(BatchOutcome::Applied), 0);
        assert_eq!((d.pulls, d.rejected_total()), (0, 0));
        assert_eq!(s.peer("relay-x").rejected(BatchRejection::Entries), 1);
        assert_eq!(s.peer(UNLISTED).refused(RequestRefusal::NotActiveMember), 1);
        let q = s.peer("asker-c");
        assert_eq!((q.queries_answered, q.prefixes_answered), (2, 5));
        assert_eq!(s.peer("nobody"), PeerCounts::default());
    }

    #[test]
    fn reason_names_are_distinct_and_round_trip() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            name: fn(T) -> &'static str,
            from: fn(&str) -> Option<T>,
        ) {
            let mut names: Vec<&str> = all.iter().map(|r| name(*r)).collect();
            for r in all {
                assert_eq!(from(name(*r)), Some(*r));
            }
            names.sort();
            names.dedup();
            assert_eq!(names.len(), all.len());
        }
        check(
            BatchOutcome::ALL,
            BatchOutcome::name,
            BatchOutcome::from_name,
        );
        check(
            BatchRejection::ALL,
            BatchRejection::name,
            BatchRejection::from_name,
        );
        check(
            EvidenceOutcome::ALL,
            EvidenceOutcome::name,
            EvidenceOutcome::from_name,
        );
        check(
            EvidenceRejection::ALL,
            EvidenceRejection::name,
            EvidenceRejection::from_name,
        );
        check(
            SessionFailure::ALL,
            SessionFailure::name,
            SessionFailure::from_name,
        );
        check(
            RequestRefusal::ALL,
            RequestRefusal::name,
            RequestRefusal::from_name,
        );
        check(Withheld::ALL, Withheld::name, Withheld::from_name);
        check(
            TrustAnswerRefusal::ALL,
            TrustAnswerRefusal::name,
            TrustAnswerRefusal::from_name,
        );
        assert_eq!(BatchRejection::from_name("no such reason"), None);
        assert_eq!(BatchRejection::StrippedPurge.to_string(), "stripped_purge");
    }
}
