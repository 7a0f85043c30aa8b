//! Starts the SMTP listeners from the email settings, with the gateway's
//! certificate for STARTTLS and implicit TLS. Reads only the operator's
//! configuration; the connections themselves are served by `channels::email`.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::StartupError;
use crate::channels::email::session::{ByteBudget, Limits, Policy};
use crate::channels::email::{ConnectionLimits, EmailChannel, SmtpListeners};
use crate::config::Settings;
use crate::server::tls::ReloadingCert;
use crate::telemetry::Metrics;

/// Starts the SMTP listeners, offering STARTTLS (and implicit TLS) with the
/// gateway's own certificate.
pub(super) async fn start_smtp(
    settings: &Settings,
    cert: Option<Arc<ReloadingCert>>,
    channel: Arc<EmailChannel>,
    metrics: Arc<Metrics>,
) -> Result<SmtpListeners, StartupError> {
    let e = &settings.email;
    let tls = match cert {
        Some(cert) if e.starttls || e.implicit_tls => Some(TlsAcceptor::from(Arc::new(
            crate::server::tls::server_config(cert)?,
        ))),
        _ => None,
    };
    let ip = e.host;
    let policy = Policy {
        hostname: e.hostname.clone(),
        addresses: e.addresses.clone(),
        limits: Limits {
            max_message_bytes: e.max_message_bytes,
            max_recipients: e.max_recipients,
            max_line_bytes: e.max_line_bytes,
            max_commands: e.max_commands,
            idle: e.idle_timeout,
            session: e.session_timeout,
            min_data_rate: e.min_data_rate_bytes,
        },
        tls: if e.starttls || e.implicit_tls {
            tls
        } else {
            None
        },
        require_tls: e.require_tls,
        buffers: ByteBudget::new(e.max_buffered_bytes),
    };
    let plain = std::net::SocketAddr::new(ip, e.port);
    let wrapped = e
        .implicit_tls
        .then(|| std::net::SocketAddr::new(ip, e.implicit_tls_port));
    SmtpListeners::start(
        plain,
        wrapped,
        policy,
        ConnectionLimits {
            total: e.max_connections,
            per_address: e.max_connections_per_address,
            per_network: e.max_connections_per_network,
        },
        channel,
        metrics,
    )
    .await
    .map_err(|err| StartupError::Bind(plain.to_string(), err))
}
