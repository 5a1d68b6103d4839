//! Conversions between protobuf messages and domain types, in one place.

use prost_types::Timestamp;

use crate::{
    alerts::log::AlertEvent,
    contribution::{Item, ItemOutcome, ItemStatus},
    counters::{
        BatchOutcome, BatchRejection, EvidenceOutcome, EvidenceRejection, RequestRefusal,
        SessionFailure, Snapshot, TrustAnswerRefusal, Withheld,
    },
    flood::Quarantine,
    ident::{Kind, Reason},
    index::{Indicator, Tier},
    node::NodeStatus,
    proto,
    report::outcomes::{CaseRow, Cell, Figures, KindRow, Point, Scope},
    screening::Outcome,
};

/// An alert event as the wire has it (the alert log keeps the same form on
/// disk, so the conversion is the log's own).
pub(crate) fn alert_event(e: &AlertEvent) -> proto::AlertEvent {
    e.to_proto()
}

/// A protobuf kind; unspecified or unknown values are the `kind` reason.
pub(crate) fn kind(k: i32) -> Result<Kind, Reason> {
    u8::try_from(k)
        .ok()
        .and_then(Kind::from_code)
        .ok_or(Reason::Kind)
}

pub(crate) fn kind_to_proto(k: Kind) -> i32 {
    k.code() as i32
}

/// A raw identifier as the API carries it.
pub(crate) fn identifier_of(kind: Kind, value: &str) -> proto::Identifier {
    proto::Identifier {
        kind: kind_to_proto(kind),
        value: value.to_string(),
    }
}

/// A protobuf tier; unspecified means confirmed.
pub(crate) fn tier(t: i32) -> Option<Tier> {
    if t == 0 {
        Some(Tier::Confirmed)
    } else {
        Tier::from_code(t)
    }
}

pub(crate) fn timestamp(secs: i64) -> Timestamp {
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

/// Unix seconds of a timestamp (rounded up, so "in the future" stays true;
/// `i64::MAX` with nanoseconds stays `i64::MAX` rather than overflowing).
pub(crate) fn secs(t: &Timestamp) -> i64 {
    t.seconds.saturating_add(i64::from(t.nanos > 0))
}

pub(crate) fn hit(i: &Indicator) -> proto::Hit {
    proto::Hit {
        origin: i.origin.to_string(),
        kind: kind_to_proto(i.kind),
        tier: i.tier as i32,
        case_ref: i.case_ref.to_string(),
        created_at: Some(timestamp(i.created)),
        valid_until: i.valid_until.map(timestamp),
        epoch: i.epoch,
        seq: i.seq,
        quarantined: false,
    }
}

pub(crate) fn quarantined(q: &Quarantine) -> proto::QuarantinedIndicator {
    proto::QuarantinedIndicator {
        origin: q.about.origin.to_string(),
        seq: q.about.seq,
        kind: kind_to_proto(q.kind),
        case_ref: q.case_ref.clone(),
        since: Some(timestamp(q.since)),
        hits: q.hits,
        watch_entries: q.watch_entries,
        reason: q.reason.as_str().to_string(),
    }
}

pub(crate) fn indicator(i: &Indicator) -> proto::Indicator {
    proto::Indicator {
        token: i.token.0.to_vec(),
        kind: kind_to_proto(i.kind),
        epoch: i.epoch,
        tier: i.tier as i32,
        case_ref: i.case_ref.to_string(),
        created_at: Some(timestamp(i.created)),
        valid_until: i.valid_until.map(timestamp),
        seq: i.seq,
    }
}

pub(crate) fn match_result(o: &Outcome) -> proto::MatchResult {
    match o {
        Outcome::NoMatch => proto::MatchResult {
            status: proto::MatchStatus::NoMatch as i32,
            ..Default::default()
        },
        Outcome::Match(hits) => proto::MatchResult {
            status: proto::MatchStatus::Match as i32,
            hits: hits.iter().map(hit).collect(),
            invalid_reason: String::new(),
        },
        Outcome::Invalid(reason) => proto::MatchResult {
            status: proto::MatchStatus::Invalid as i32,
            hits: Vec::new(),
            invalid_reason: reason.to_string(),
        },
    }
}

pub(crate) fn match_response(outcomes: &[Outcome]) -> proto::MatchResponse {
    proto::MatchResponse {
        results: outcomes.iter().map(match_result).collect(),
    }
}

pub(crate) fn item_result(o: &ItemOutcome) -> proto::ItemResult {
    let status = match o.status {
        ItemStatus::Stored => proto::ItemStatus::Stored,
        ItemStatus::AlreadyPresent => proto::ItemStatus::AlreadyPresent,
        ItemStatus::Invalid => proto::ItemStatus::Invalid,
        ItemStatus::Retracted => proto::ItemStatus::Retracted,
        ItemStatus::Extended => proto::ItemStatus::Extended,
        ItemStatus::NotFound => proto::ItemStatus::NotFound,
    };
    proto::ItemResult {
        status: status as i32,
        token: o.token.map(|t| t.0.to_vec()).unwrap_or_default(),
        epoch: o.epoch,
        invalid_reason: o.reason.to_string(),
    }
}

/// A contribution item; an item with neither variant set is `format`-invalid.
pub(crate) fn contribution_item(i: &proto::ContributionItem) -> Item<'_> {
    match &i.item {
        Some(proto::contribution_item::Item::Identifier(id)) => identifier(id),
        Some(proto::contribution_item::Item::Token(t)) => token_item(t),
        None => Item::Raw {
            kind: Err(Reason::Format),
            value: "",
        },
    }
}

pub(crate) fn identifier(id: &proto::Identifier) -> Item<'_> {
    Item::Raw {
        kind: kind(id.kind),
        value: &id.value,
    }
}

pub(crate) fn token_item(t: &proto::PrecomputedToken) -> Item<'_> {
    Item::Token {
        kind: kind(t.kind),
        token: &t.token,
        epoch: t.epoch,
    }
}

/// The node's status report as `cix.v1.StatusResponse`.
pub(crate) fn status(s: NodeStatus) -> proto::StatusResponse {
    let trust = s.trust.as_ref();
    proto::StatusResponse {
        queries_served: s
            .queries_served
            .into_iter()
            .map(|(member, c)| proto::QueryStats {
                member,
                requests: c.requests,
                prefixes: c.prefixes,
                refused: c.refused,
            })
            .collect(),
        member_requests_limited: s.client_requests_limited,
        index_pending: s.index_pending,
        peers: s
            .peers
            .into_iter()
            .map(|p| proto::PeerStatus {
                member: p.member,
                connected: p.connected,
                origins: p
                    .origins
                    .into_iter()
                    .map(|o| proto::OriginLag {
                        origin: o.origin,
                        peer_last_seq: o.peer_last_seq,
                        lag: o.lag,
                    })
                    .collect(),
                last_pull: (p.last_pull_unix > 0).then(|| timestamp(p.last_pull_unix)),
                last_error: p.last_error,
                last_failure: p
                    .last_failure
                    .map(|f| f.name().to_string())
                    .unwrap_or_default(),
                failures_in_a_row: p.failures_in_a_row,
                next_attempt: (p.next_attempt_unix > 0).then(|| timestamp(p.next_attempt_unix)),
            })
            .collect(),
        forks: s
            .forks
            .iter()
            .filter(|f| f.lifted_because.is_none())
            .map(fork_status)
            .collect(),
        forks_lifted: s
            .forks
            .iter()
            .filter(|f| f.lifted_because.is_some())
            .map(fork_status)
            .collect(),
        fork_evidence_lifted: s.rechecks.forks_lifted,
        batches_dropped_unverified: s.rechecks.batches_dropped,
        batches_resigned: s.rechecks.batches_resigned,
        watchlist_enabled: s.watchlist.is_some(),
        watch_entries: s.watchlist.as_ref().map_or(0, |w| w.entries),
        watch_entries_lacking_newest_epoch: s
            .watchlist
            .as_ref()
            .map_or(0, |w| w.lacking_newest_epoch),
        watch_newest_valid_epoch: s.watchlist.as_ref().map_or(0, |w| w.newest_valid_epoch),
        alerts_newest: s.alerts_newest,
        alerts_oldest: s.alerts_oldest,
        webhook_pending: s.webhook.pending,
        webhook_delivered: s.webhook.delivered,
        webhook_failures: s.webhook.failures,
        webhook_last_error: s.webhook.last_error.clone(),
        alerts_open: s.alerts.open,
        alerts_raised: s.alerts.raised,
        alerts_updated: s.alerts.updated,
        alerts_withdrawn: s.alerts.withdrawn,
        alert_work_pending: s.alerts.pending,
        alert_engine_busy_ms: s.alerts.busy_ms,
        alert_scans: s.alerts.scans,
        dispositions_recorded: s.dispositions.recorded,
        dispositions_confirmed: s.dispositions.confirmed,
        dispositions_false_positive: s.dispositions.false_positive,
        alerts_settled: s.dispositions.settled,
        alerts_not_raised: s.dispositions.not_raised,
        dispositions_feedback_failed: s.dispositions.feedback_failed,
        indicators_quarantined: s.flood.quarantined,
        quarantines_total: s.flood.quarantines,
        quarantines_lifted: s.flood.lifted,
        flood_alerts_paused: s.flood.alerts_paused,
        flood_feedback_sent: s.flood.feedback_sent,
        flood_counts_flushed_at: s.flood.flushed_at,
        feedback_queued: s.feedback.queued,
        feedback_delivered: s.feedback.delivered,
        feedback_refused: s.feedback.refused,
        feedback_pending: s.feedback.pending,
        feedback_received: s.feedback.received,
        feedback_received_refused: s.feedback.received_refused,
        feedback_flagged_for_review: s.feedback.flagged_for_review,
        feedback_relay_received: s.feedback.relay_received,
        feedback_relay_forwarded: s.feedback.relay_forwarded,
        feedback_relay_pending: s.feedback.relay_pending,
        set_aside: s
            .set_aside
            .into_iter()
            .map(|a| proto::SetAsideStatus {
                origin: a.origin,
                first_seq: a.first_seq,
                rule: a.rule,
                fork_evidence: a.evidence,
            })
            .collect(),
        own_log_ready: s.own_log_ready,
        trust_version: trust.map(|t| t.version).unwrap_or(0),
        trust_expires_at: trust.map(|t| timestamp(t.expires_at)),
        trust_members: trust.map(|t| t.members).unwrap_or(0),
        warnings: trust.and_then(|t| t.warning.clone()).into_iter().collect(),
        peer_connections: trust.map(|t| t.connections).unwrap_or(0),
        node_id: s.node_id,
        version: s.version.to_string(),
        uptime_seconds: s.uptime_seconds,
        indicators: s.by_kind.iter().map(|(_, c)| c).sum(),
        by_kind: s
            .by_kind
            .iter()
            .map(|(k, c)| proto::KindCount {
                kind: kind_to_proto(*k),
                count: *c,
            })
            .collect(),
        origins: s
            .origins
            .into_iter()
            .map(|o| proto::OriginStatus {
                origin: o.origin,
                indicators: o.indicators,
                last_seq: o.last_seq,
            })
            .collect(),
        epochs: s
            .epochs
            .into_iter()
            .map(|e| proto::EpochStatus {
                id: e.id,
                valid_from: Some(timestamp(e.valid_from)),
                valid_until: Some(timestamp(e.valid_until)),
                key_fingerprint: e.fingerprint,
                valid_now: e.valid_now,
            })
            .collect(),
        store_bytes: s.store_bytes,
        started_at: Some(timestamp(s.started_unix)),
        batches: s.batches,
        peer_counters: peer_counters(&s.counters),
    }
}

/// The node's counters as Status shows them: one entry per peer, each
/// reason under its stable name, zero counts left out.
pub(crate) fn peer_counters(snapshot: &Snapshot) -> Vec<proto::PeerCounters> {
    fn reasons<R: Copy>(
        all: &[R],
        name: impl Fn(R) -> &'static str,
        count: impl Fn(R) -> u64,
    ) -> Vec<proto::ReasonCount> {
        all.iter()
            .map(|r| proto::ReasonCount {
                reason: name(*r).to_string(),
                count: count(*r),
            })
            .filter(|r| r.count > 0)
            .collect()
    }
    snapshot
        .peers
        .iter()
        .map(|(member, c)| proto::PeerCounters {
            member: member.clone(),
            batches: reasons(BatchOutcome::ALL, BatchOutcome::name, |o| c.batches(o)),
            batches_rejected: reasons(BatchRejection::ALL, BatchRejection::name, |r| c.rejected(r)),
            fork_evidence: reasons(EvidenceOutcome::ALL, EvidenceOutcome::name, |o| {
                c.evidence(o)
            }),
            fork_evidence_rejected: reasons(EvidenceRejection::ALL, EvidenceRejection::name, |r| {
                c.evidence_rejected(r)
            }),
            pulls: c.pulls,
            sessions_failed: reasons(SessionFailure::ALL, SessionFailure::name, |f| {
                c.sessions_failed(f)
            }),
            requests_refused: reasons(RequestRefusal::ALL, RequestRefusal::name, |r| c.refused(r)),
            withheld: reasons(Withheld::ALL, Withheld::name, |w| c.withheld(w)),
            streams_cut: reasons(RequestRefusal::ALL, RequestRefusal::name, |r| {
                c.streams_cut(r)
            }),
            queries_answered: c.queries_answered,
            prefixes_answered: c.prefixes_answered,
            trust_answers_refused: reasons(
                TrustAnswerRefusal::ALL,
                TrustAnswerRefusal::name,
                |r| c.trust_answers_refused(r),
            ),
        })
        .collect()
}

fn fork_status(f: &crate::federation::forks::ForkState) -> proto::ForkStatus {
    proto::ForkStatus {
        origin: f.origin.clone(),
        frozen_from_seq: f.fork_point,
        lifted_because: f.lifted_because.clone().unwrap_or_default(),
    }
}

fn cell(c: Cell) -> proto::Cell {
    proto::Cell {
        suppressed: c.is_none(),
        value: c.unwrap_or(0),
    }
}

fn cell_of(c: Option<&proto::Cell>) -> Cell {
    c.filter(|c| !c.suppressed).map(|c| c.value)
}

fn kind_figures(r: &KindRow) -> proto::KindFigures {
    proto::KindFigures {
        kind: r.kind.clone(),
        cells: r.cells.iter().map(|c| cell(*c)).collect(),
        median_hours_to_first_hit: r.median_hours_to_first_hit,
    }
}

fn kind_row(r: &proto::KindFigures) -> KindRow {
    KindRow {
        kind: r.kind.clone(),
        cells: r.cells.iter().map(|c| cell_of(Some(c))).collect(),
        median_hours_to_first_hit: r.median_hours_to_first_hit,
    }
}

/// The outcome figures as the wire carries them.
pub(crate) fn figures(f: &Figures) -> proto::OutcomesReport {
    proto::OutcomesReport {
        node_id: f.node.clone(),
        scope: match f.scope {
            Scope::Node => proto::FiguresScope::Node,
            Scope::Origin => proto::FiguresScope::Origin,
            Scope::Operator => proto::FiguresScope::Operator,
        } as i32,
        from: f.from.clone(),
        to: f.to.clone(),
        suppressed_below: f.suppressed_below,
        kinds: f.kinds.iter().map(kind_figures).collect(),
        total: Some(kind_figures(&f.total)),
        cases: f
            .cases
            .iter()
            .map(|c| proto::CaseFigures {
                case_ref: c.case.clone(),
                cells: c.cells.iter().map(|v| cell(*v)).collect(),
            })
            .collect(),
        series: f
            .series
            .iter()
            .map(|p| proto::SeriesPoint {
                from: p.from.clone(),
                indicators: Some(cell(p.indicators)),
                confirmed: Some(cell(p.confirmed)),
                false_positive: Some(cell(p.false_positive)),
            })
            .collect(),
    }
}

/// The outcome figures a node sent, for rendering. A missing cell reads as
/// suppressed.
pub(crate) fn figures_of(r: &proto::OutcomesReport) -> Figures {
    Figures {
        node: r.node_id.clone(),
        scope: match proto::FiguresScope::try_from(r.scope) {
            Ok(proto::FiguresScope::Origin) => Scope::Origin,
            Ok(proto::FiguresScope::Operator) => Scope::Operator,
            _ => Scope::Node,
        },
        from: r.from.clone(),
        to: r.to.clone(),
        suppressed_below: r.suppressed_below,
        kinds: r.kinds.iter().map(kind_row).collect(),
        total: r.total.as_ref().map(kind_row).unwrap_or(KindRow {
            kind: "all".into(),
            cells: Vec::new(),
            median_hours_to_first_hit: None,
        }),
        cases: r
            .cases
            .iter()
            .map(|c| CaseRow {
                case: c.case_ref.clone(),
                cells: c.cells.iter().map(|v| cell_of(Some(v))).collect(),
            })
            .collect(),
        series: r
            .series
            .iter()
            .map(|p| Point {
                from: p.from.clone(),
                indicators: cell_of(p.indicators.as_ref()),
                confirmed: cell_of(p.confirmed.as_ref()),
                false_positive: cell_of(p.false_positive.as_ref()),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_rounds_up_without_overflowing() {
        let t = |seconds, nanos| Timestamp { seconds, nanos };
        assert_eq!(secs(&t(10, 0)), 10);
        assert_eq!(secs(&t(10, 1)), 11);
        assert_eq!(secs(&t(i64::MAX, 0)), i64::MAX);
        assert_eq!(secs(&t(i64::MAX, 1)), i64::MAX);
    }
}
