//! Starts the SMTP listeners from the email settings, with the gateway's
//! certificate for STARTTLS and implicit TLS. Reads only the operator's
//! configuration; the connections themselves are served by `channels::email`.

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use super::StartupError;
use crate::channels::email::session::{ByteBudget, Limits, Policy};
use crate::channels::email::{ConnectionLimits, EmailChannel, SmtpListeners};
use crate::config::{ConfigError, Settings};
use crate::domain::EmailAddress;
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
    let addresses = e
        .addresses
        .iter()
        .filter_map(|a| EmailAddress::parse(a).ok())
        .collect();
    let ip: std::net::IpAddr = e.host.parse().map_err(|_| ConfigError::Invalid {
        setting: "email.host",
        problem: format!("{:?} is not an IP address", e.host),
        fix: "use an address such as 0.0.0.0 or 127.0.0.1",
    })?;
    let policy = Policy {
        hostname: e.hostname.clone(),
        addresses,
        limits: Limits {
            max_message_bytes: e.max_message_bytes,
            max_recipients: e.max_recipients,
            max_line_bytes: e.max_line_bytes,
            max_commands: e.max_commands,
            idle: Duration::from_secs(e.idle_timeout_secs),
            session: Duration::from_secs(e.session_timeout_secs),
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
