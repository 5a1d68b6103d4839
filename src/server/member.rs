//! The member listener: the bank's own systems (clients) reach Screening,
//! Contribution, Admin, Quarantine and Alerts over TLS 1.3 with client certificates that chain
//! to the member's client CA; every request is authorized by the grants in
//! the config ([`crate::auth::clients`]). Health and reflection need only
//! an authenticated certificate.

use std::{sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{service::interceptor::InterceptedService, transport::Server};

use super::{ServeTask, ServerError};
use crate::{
    api::{
        admin::AdminService,
        alerts::AlertsService,
        contribution::ContributionService,
        dispositions::{DispositionsService, ReportsService},
        figures::FiguresService,
        outcomes::OutcomesService,
        quarantine::QuarantineService,
        screening::ScreeningService,
        watchlist::WatchlistService,
        wire::screening_server::ScreeningServer,
    },
    auth::clients::{Authenticated, ClientCapability, Grants, Require},
    config::Config,
    contribution::Contributions,
    federation::{ask_prefix::Remote, receive_batches::Replication},
    node::NodeState,
    proto::{
        admin_server::AdminServer, alerts_server::AlertsServer,
        contribution_server::ContributionServer, dispositions_server::DispositionsServer,
        figures_server::FiguresServer, outcomes_server::OutcomesServer,
        quarantine_server::QuarantineServer, reports_server::ReportsServer,
        watchlist_server::WatchlistServer,
    },
    screening::Engine,
    tls,
};

/// What the member listener serves beyond the node state.
pub(super) struct MemberServices {
    pub engine: Engine,
    pub contributions: Arc<Contributions>,
    pub remote: Option<Arc<Remote>>,
    pub replication: Option<Arc<Replication>>,
}

/// Serves the member listener on `listener` until `stop`.
pub(super) async fn serve(
    config: &Config,
    state: &Arc<NodeState>,
    listener: TcpListener,
    services: MemberServices,
    health: &tonic_health::server::HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    stop: &CancellationToken,
) -> Result<ServeTask, ServerError> {
    let member_tls = tls::member_server_config(
        &config.member.cert,
        &config.member.key,
        &config.member.client_ca,
    )?;
    let grants = Grants::new(config.member.clients.clone());
    let max_items = config.limits.max_batch_items;
    let max_bytes = config.limits.max_message_bytes;
    let watchlist = WatchlistServer::new(WatchlistService::new(
        state.clone(),
        services.engine.clone(),
        max_items,
    ))
    .max_decoding_message_size(max_bytes)
    .max_encoding_message_size(usize::MAX);
    let screening = ScreeningServer::new(ScreeningService::new(
        services.engine,
        max_items,
        state.match_limits.clone(),
        services.remote,
        state.clock.clone(),
        state.flood.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .max_encoding_message_size(usize::MAX);
    let contribution = ContributionServer::new(ContributionService::new(
        services.contributions,
        max_items,
        state.clock.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .max_encoding_message_size(usize::MAX);
    let admin = AdminServer::new(AdminService::new(state.clone(), services.replication));
    let outcomes = OutcomesServer::new(OutcomesService::new(state.clone()));
    let quarantine = QuarantineServer::new(QuarantineService::new(state.clone()));
    let alerts = AlertsServer::new(AlertsService::new(state.alert_log.clone(), stop.clone()));
    let figures = FiguresServer::new(FiguresService::new(state.clone()));
    let dispositions = DispositionsServer::new(DispositionsService::new(state.clone()));
    let reports = ReportsServer::new(ReportsService::new(state.clone()));
    health
        .set_serving::<ContributionServer<ContributionService>>()
        .await;
    let incoming = ReceiverStream::new(tls::accept_loop(
        listener,
        member_tls,
        tls::Connections::default(),
        tls::AcceptLimits::MEMBER,
        None,
    ));
    let router = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(InterceptedService::new(
            screening,
            Require::new(&grants, ClientCapability::Screen),
        ))
        .add_service(InterceptedService::new(
            contribution,
            Require::new(&grants, ClientCapability::Contribute),
        ))
        .add_service(InterceptedService::new(
            watchlist,
            Require::new(&grants, ClientCapability::Watchlist),
        ))
        .add_service(InterceptedService::new(
            admin,
            Require::new(&grants, ClientCapability::Admin),
        ))
        .add_service(InterceptedService::new(
            outcomes,
            Require::new(&grants, ClientCapability::Contribute),
        ))
        .add_service(InterceptedService::new(
            quarantine,
            Require::new(&grants, ClientCapability::Admin),
        ))
        .add_service(InterceptedService::new(
            alerts,
            Require::new(&grants, ClientCapability::Watchlist),
        ))
        .add_service(InterceptedService::new(
            figures,
            Require::new(&grants, ClientCapability::Admin),
        ))
        .add_service(InterceptedService::new(
            dispositions,
            Require::new(&grants, ClientCapability::Disposition),
        ))
        .add_service(InterceptedService::new(
            reports,
            Require::new(&grants, ClientCapability::Admin),
        ))
        .add_service(InterceptedService::new(health_service, Authenticated))
        .add_service(InterceptedService::new(reflection(), Authenticated))
        .add_service(InterceptedService::new(reflection_v1alpha(), Authenticated));
    Ok(tokio::spawn(router.serve_with_incoming_shutdown(
        incoming,
        stop.clone().cancelled_owned(),
    )))
}

/// The descriptors reflection answers from: the node's services and health.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

fn reflection() -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    reflection_builder()
        .build_v1()
        .expect("descriptor set compiled by build.rs is valid")
}

/// Reflection v1alpha, for clients that speak only it (Python's
/// `grpcio-reflection`, older grpcurl).
fn reflection_v1alpha() -> tonic_reflection::server::v1alpha::ServerReflectionServer<
    impl tonic_reflection::server::v1alpha::ServerReflection,
> {
    reflection_builder()
        .build_v1alpha()
        .expect("descriptor set compiled by build.rs is valid")
}
