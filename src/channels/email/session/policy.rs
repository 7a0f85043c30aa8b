//! What every SMTP connection shares: the tip addresses, the per-connection
//! limits, TLS, and the byte budget all sessions' message buffers are paid
//! from. Untrusted: the recipient addresses checked by `accepts`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::EmailAddress;

/// DATA is refused (452) when the shared budget has less than this left: not
/// even one read's worth.
pub(super) const MIN_BUFFER: usize = 8 * 1024;

/// The limits of one connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_line_bytes: usize,
    pub max_commands: usize,
    pub idle: Duration,
    pub session: Duration,
    /// Bytes per second a client must average once the grace period (the
    /// idle time) of waiting for it is used up.
    pub min_data_rate: u64,
}

/// The bytes all sessions together may hold in message buffers. A session
/// pays for its buffer as it grows and is paid back when its message has
/// been handled.
#[derive(Clone)]
pub struct ByteBudget(Arc<Semaphore>);

impl ByteBudget {
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    pub fn available(&self) -> usize {
        self.0.available_permits()
    }

    /// `bytes` more, or `None` when the budget cannot cover them now.
    pub(super) fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        self.0.clone().try_acquire_many_owned(bytes).ok()
    }
}

/// What every connection shares.
pub struct Policy {
    pub hostname: String,
    /// The tip addresses, compared case-insensitively.
    pub addresses: Vec<EmailAddress>,
    pub limits: Limits,
    /// Offered as STARTTLS on plain connections.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub require_tls: bool,
    /// Shared by every session of the listener.
    pub buffers: ByteBudget,
}

impl Policy {
    /// A tip address, or one with a `+tag` (a thread token, checked by the
    /// channel), kept as written.
    pub(super) fn accepts(&self, rcpt: &str) -> Option<EmailAddress> {
        let rcpt = EmailAddress::parse(rcpt).ok()?;
        let canonical = rcpt.canonical();
        let (local, domain) = canonical.rsplit_once('@')?;
        let base = local.split_once('+').map_or(local, |(base, _)| base);
        let base = format!("{base}@{domain}");
        self.addresses
            .iter()
            .any(|a| a.canonical() == base)
            .then_some(rcpt)
    }
}
