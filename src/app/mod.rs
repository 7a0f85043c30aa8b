//! Composes the application: loads keys and certificate, connects the store,
//! builds each channel, registers routes, security headers and middleware, and
//! starts the background tasks. `Application::build` binds (port 0 allowed) and
//! exposes the port, so every test spawns its own gateway.

mod ops;
mod run;
mod smtp;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, web};

use crate::api::alerts::AlertsApi;
use crate::bus::{
    AlertProducer, Checked, DurabilityWatch, OPT_OUT_MARGIN_SECS, Store, StoreError,
    backfill_summaries, migrate_opt_outs, trim_older_than,
};
use crate::channels::email::{EmailChannel, SmtpListeners};
use crate::channels::sms::{SmsChannel, Threads};
use crate::channels::web::{self as web_channel, WebChannel};
use crate::config::{ConfigError, ServerMode, Settings};
use crate::crypto::{KeyError, Keyring};
use crate::error::AppError;
use crate::intake::Intake;
use crate::mediator::live::LiveFeed;
use crate::mediator::{EscalationPolicy, EscalationWorker, MediatorDirectory};
use crate::outbound::email::MailSender;
use crate::outbound::relay::RelayWorker;
use crate::privacy::ClientKeyer;
use crate::ratelimit::ChannelLimiter;
use crate::server::tls::{ReloadingCert, TlsError};
use crate::server::{BackgroundTasks, Drain};
use crate::telemetry::{self, Metrics};

use smtp::start_smtp;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("redis.url: {0}")]
    Store(#[from] StoreError),
    #[error(
        "server.host/server.port: cannot listen on {0}: {1}. Fix: choose a free port or stop the other process"
    )]
    Bind(String, std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    tasks: BackgroundTasks,
    store: Store,
    durability: Arc<DurabilityWatch>,
    cert: Option<Arc<ReloadingCert>>,
    relay: Arc<RelayWorker>,
    smtp: Option<Arc<SmtpListeners>>,
    metrics: Arc<Metrics>,
    drain: Drain,
    shutdown_timeout: Duration,
}

/// Gives alerts appended before the summary stream existed their summaries
/// (`bus::backfill_summaries`), so the app lists them; run at start and by
/// every retention step. Errors are logged and the next step tries again.
pub async fn summaries_step(store: &Store) {
    match backfill_summaries(store).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(alerts = n, "alert summaries rebuilt for older alerts"),
        Err(e) => tracing::warn!(error = %e, "alert summary rebuild failed; will retry"),
    }
}

/// The retention task's single step: everything tip- or tipster-linked
/// older than `keep` goes (`bus::trim_older_than`), and opt-outs still in
/// the set older versions kept become markers that expire like new ones;
/// before that, alerts older than the summary stream get their summaries
/// (`bus::backfill_summaries`). Errors are logged and the next step tries again.
pub async fn retention_step(store: &Store, keep: Duration) {
    // First, so what it copies is trimmed with the rest.
    summaries_step(store).await;
    let cutoff = crate::clock::now_secs().saturating_sub(keep.as_secs());
    match trim_older_than(store, cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "retention trimmed old tips"),
        Err(e) => tracing::warn!(error = %e, "retention trim failed; will retry"),
    }
    let expire_at = crate::outbound::relay::threads::coarse_expiry(keep.as_secs())
        .saturating_add(OPT_OUT_MARGIN_SECS);
    match migrate_opt_outs(store, expire_at).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(moved = n, "opt-outs moved to expiring markers"),
        Err(e) => tracing::warn!(error = %e, "opt-out migration failed; will retry"),
    }
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.validate()?;
        let zones = settings.zones.clone();
        let web_limits = settings.rate_limits.web;
        let keyring = Arc::new(Keyring::load(&settings.keys.dir)?);
        let metrics = Arc::new(Metrics::new()?);
        let store = Store::new(&settings.redis)?;
        // Redis may be down at start-up: the gateway still starts, reports
        // not-ready, and connects once Redis is back. A Redis that answers
        // but could lose acknowledged tips is refused outright.
        let durability = Arc::new(DurabilityWatch::new(
            store.clone(),
            settings.redis.durability,
        ));
        match durability.step().await {
            Ok(Checked::Refused(e)) => return Err(StartupError::Config(e)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "redis is not reachable yet; /readyz fails until it is");
            }
        }

        let intake = Intake::new(
            keyring.clone(),
            MediatorDirectory::new(store.clone()),
            AlertProducer::new(store.clone(), settings.retention.period),
            EscalationPolicy::from_settings(&settings.escalation),
            metrics.clone(),
        );
        let web = web::Data::new(WebChannel::new(
            intake.clone(),
            ChannelLimiter::new(web_limits.per_client, web_limits.global),
            ClientKeyer::new(settings.server.trusted_proxies.clone()),
            zones,
            settings.tips.max_text_chars,
            settings.server.max_body_bytes,
            settings.server.loopback_is_everyone(),
        ));
        let sms = web::Data::new(SmsChannel::from_settings(
            &settings,
            intake.clone(),
            store.clone(),
            keyring.clone(),
            metrics.clone(),
        )?);
        let email = if settings.email.enabled {
            Some(Arc::new(EmailChannel::from_settings(
                &settings,
                intake.clone(),
                Threads::new(store.clone(), keyring.clone(), settings.retention.period),
                keyring.clone(),
                metrics.clone(),
            )?))
        } else {
            None
        };
        let mail = if settings.email.outbound.enabled {
            Some(MailSender::from_settings(&settings.email.outbound)?)
        } else {
            None
        };
        let relay = Arc::new(RelayWorker::new(
            store.clone(),
            keyring.clone(),
            crate::outbound::sms::provider_clients(&settings)?,
            mail,
            format!(
                "gw-{}",
                crate::domain::TipId::random()
                    .as_str()
                    .get(..12)
                    .unwrap_or_default()
            ),
            settings.relay.max_attempts,
            u64::try_from(settings.relay.backoff_base.as_millis()).unwrap_or(u64::MAX),
            metrics.clone(),
            settings.retention.period,
        ));
        let metrics_data = web::Data::from(metrics.clone());
        let drain = Drain::default();
        let drain_data = web::Data::new(drain.clone());
        let store_data = web::Data::new(store.clone());
        let durability_data = web::Data::from(durability.clone());
        let access = web::Data::new(ops::MetricsAccess(
            settings.server.metrics_allow.clone(),
            settings.server.metrics_by_minute,
        ));
        let devices = web::Data::new(crate::mediator::devices::DeviceApi::from_settings(
            &settings,
            store.clone(),
        )?);

        // Per-address request budgets hold on the HTTPS port; in plaintext
        // mode every request comes through a proxy or onion service.
        let budget = web::Data::new(crate::server::https::RequestBudget::new(
            settings.server.connections.requests_per_address,
            ClientKeyer::new(settings.server.trusted_proxies.clone()),
        ));
        let budget_on = settings.server.mode == ServerMode::Tls;
        let body_deadline = web::Data::new(crate::server::body_deadline::BodyDeadline(
            settings.server.connections.body_timeout,
        ));

        let mut tasks = BackgroundTasks::default();
        metrics.publish();
        {
            let metrics = metrics.clone();
            tasks.every_minute("metrics-publish", move || {
                metrics.publish();
                std::future::ready(())
            });
        }
        {
            // Redis can be reconfigured or replaced while the gateway runs.
            let durability = durability.clone();
            tasks.every_minute("redis-durability", move || {
                let durability = durability.clone();
                async move {
                    if let Err(e) = durability.step().await {
                        tracing::warn!(error = %e, "redis durability not checked; will retry");
                    }
                }
            });
        }
        let live = Arc::new(LiveFeed::new(store.clone()));
        {
            let live = live.clone();
            tasks.spawn("live-alerts", move |stop| live.run(stop));
        }
        let alerts_api = web::Data::new(AlertsApi::new(
            &settings,
            store.clone(),
            keyring.clone(),
            live,
        ));
        {
            let worker = Arc::new(EscalationWorker::new(
                store.clone(),
                settings.retention.period.as_secs(),
            ));
            tasks.every("escalation", settings.escalation.poll_interval, move || {
                let worker = worker.clone();
                async move {
                    if let Err(e) = worker.step(crate::clock::now_ms()).await {
                        tracing::warn!(error = %e, "escalation step failed; will retry");
                    }
                }
            });
        }
        let push = web::Data::new(crate::api::push::PushApi::from_settings(
            &settings,
            store.clone(),
            keyring.clone(),
        ));
        crate::outbound::push::start(
            &settings,
            store.clone(),
            keyring.clone(),
            metrics.clone(),
            &mut tasks,
        )?;
        {
            let store = store.clone();
            let keep = settings.retention.period;
            tasks.every("retention", settings.retention.sweep_interval, move || {
                let store = store.clone();
                async move { retention_step(&store, keep).await }
            });
        }
        {
            // After an upgrade the app lists older alerts at once, not
            // only after the first sweep.
            let store = store.clone();
            tasks.spawn("summaries", move |_| async move {
                summaries_step(&store).await;
            });
        }
        {
            let web = web.clone();
            let sms = sms.clone();
            let email = email.clone();
            let budget = budget.clone();
            let devices = devices.clone();
            tasks.every("limiter-cleanup", Duration::from_secs(60), move || {
                let web = web.clone();
                let sms = sms.clone();
                let email = email.clone();
                let budget = budget.clone();
                let devices = devices.clone();
                async move {
                    budget.forget_idle();
                    web.limiter.forget_idle();
                    sms.limiter.forget_idle();
                    devices.enrolment_limiter.forget_idle();
                    if let Some(email) = email {
                        email.limiter.forget_idle();
                    }
                }
            });
        }
        if settings.sms.twilio.enabled
            || settings.sms.telnyx.enabled
            || settings.email.outbound.enabled
        {
            let relay = relay.clone();
            tasks.every("reply-relay", settings.relay.poll_interval, move || {
                let relay = relay.clone();
                async move {
                    if let Err(e) = relay.step().await {
                        tracing::warn!(error = %e, "reply relay step failed; will retry");
                    }
                }
            });
        }

        let cert = match settings.server.mode {
            ServerMode::Tls => Some(Arc::new(ReloadingCert::load(
                &settings.tls.cert_path,
                &settings.tls.key_path,
            )?)),
            ServerMode::Plaintext => None,
        };
        let smtp = match email {
            Some(channel) => Some(Arc::new(
                start_smtp(&settings, cert.clone(), channel, metrics.clone()).await?,
            )),
            None => None,
        };

        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&addr).map_err(|e| StartupError::Bind(addr.clone(), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| StartupError::Bind(addr.clone(), e))?
            .port();

        // Routes set their own smaller JSON limits; anything else stays
        // under the body limit, not actix's 2 MB default.
        let json_limit = settings.server.max_body_bytes;
        let app = move || {
            App::new()
                .app_data(web.clone())
                .app_data(sms.clone())
                .app_data(metrics_data.clone())
                .app_data(store_data.clone())
                .app_data(durability_data.clone())
                .app_data(access.clone())
                .app_data(drain_data.clone())
                .app_data(devices.clone())
                .app_data(push.clone())
                .app_data(budget.clone())
                .app_data(body_deadline.clone())
                .app_data(web::FormConfig::default().error_handler(|e, _| AppError::from(e).into()))
                .app_data(
                    web::JsonConfig::default()
                        .limit(json_limit)
                        .error_handler(|e, _| AppError::from(e).into()),
                )
                .app_data(
                    web::QueryConfig::default().error_handler(|e, _| AppError::from(e).into()),
                )
                .app_data(web::PathConfig::default().error_handler(|e, _| AppError::from(e).into()))
                .wrap(from_fn(crate::server::body_deadline::middleware))
                .wrap(from_fn(crate::server::drain::middleware))
                .wrap(from_fn(telemetry::error_pages))
                .wrap(crate::server::security_headers())
                .wrap(from_fn(telemetry::access_log))
                .wrap(Condition::new(
                    budget_on,
                    from_fn(crate::server::https::request_budget),
                ))
                .configure(web_channel::routes)
                .configure(crate::channels::sms::routes)
                .configure(ops::routes)
                .configure(crate::api::devices::routes)
                .configure(|cfg| crate::api::alerts::routes(cfg, alerts_api.clone()))
                .configure(crate::api::push::routes)
                .configure(crate::api::app_assets::routes)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(AppError::NotFound)
                }))
        };
        let timeouts = crate::server::https::Timeouts {
            client_request: Duration::from_secs(10),
            client_disconnect: Duration::from_secs(2),
        };

        if settings.push.endpoint_policy
            == crate::outbound::push::EndpointPolicy::DangerousAllowLoopbackHttp
        {
            tracing::warn!(
                "push.dangerous_allow_loopback_http_endpoints is on: push subscriptions may aim \
                 the gateway's requests at this host; for tests only"
            );
        }
        if settings.server.http2 && cert.is_some() {
            tracing::warn!(
                "server.http2 is on: one HTTP/2 connection can hold unbounded memory \
                 (streams and responses queued for a client that never reads); \
                 serve it only behind a proxy that bounds HTTP/2"
            );
        }
        // Both modes go through the same admission gate (`https.rs`); in
        // plaintext mode there is no handshake and every peer is the proxy.
        let tls = match &cert {
            Some(cert) => Some(crate::server::tls::server_config(cert.clone())?),
            None => None,
        };
        let admission = Arc::new(crate::server::https::Admission::new(
            &settings,
            tls,
            ClientKeyer::new(settings.server.trusted_proxies.clone()),
            timeouts,
        ));
        let c = &settings.server.connections;
        let mut builder = actix_server::Server::build()
            .shutdown_timeout(settings.server.shutdown_timeout.as_secs())
            // The admission gates refuse excess connections at once;
            // the worker's own cap must never be what queues them.
            .max_concurrent_connections(c.max.saturating_add(1))
            .disable_signals();
        if settings.server.workers > 0 {
            builder = builder.workers(settings.server.workers);
        }
        let builder = crate::server::https::listen(builder, listener, admission, timeouts, app)
            .map_err(|e| StartupError::Bind(addr.clone(), e))?;
        if let Some(cert) = &cert {
            let watched = cert.clone();
            tasks.every("tls-reload", settings.tls.reload_interval, move || {
                let watched = watched.clone();
                async move {
                    match watched.reload_if_changed() {
                        Ok(true) => tracing::info!("tls certificate reloaded"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "new tls certificate refused; keeping the old one"),
                    }
                }
            });
        }
        let server = builder.run();
        tracing::info!(port, mode = ?settings.server.mode, "tipwire listening");
        Ok(Self {
            port,
            server,
            tasks,
            store,
            durability,
            cert,
            relay,
            smtp,
            metrics,
            drain,
            shutdown_timeout: settings.server.shutdown_timeout,
        })
    }
}
