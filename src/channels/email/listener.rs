//! The SMTP listeners of `tipwire serve`: the plain port (STARTTLS offered
//! with the gateway's certificate) and, optionally, the implicit-TLS port.
//! Connections beyond `email.max_connections` get 421 at once. On shutdown
//! the listeners stop accepting, idle sessions get 421, and a message being
//! stored finishes first. Peer addresses become salted keys for the rate
//! limits and are never logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::privacy::{ClientKey, ClientKeyer};
use crate::telemetry::Metrics;

use super::inbound::EmailChannel;
use super::session::{self, Policy};

/// Running SMTP listeners.
pub struct SmtpListeners {
    port: u16,
    tls_port: Option<u16>,
    cancel: CancellationToken,
    sessions: TaskTracker,
}

struct Shared {
    policy: Policy,
    /// Open connections per client key, so one address cannot take every slot.
    per_client: std::sync::Mutex<HashMap<ClientKey, usize>>,
    max_per_client: usize,
    channel: Arc<EmailChannel>,
    keyer: ClientKeyer,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    sessions: TaskTracker,
}

impl SmtpListeners {
    /// Binds the listeners (port 0 picks a free one) and starts accepting.
    #[allow(
        clippy::too_many_arguments,
        reason = "plain wiring, called from one place"
    )]
    pub async fn start(
        addr: SocketAddr,
        implicit_tls: Option<SocketAddr>,
        policy: Policy,
        max_connections: usize,
        max_per_client: usize,
        channel: Arc<EmailChannel>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let plain = TcpListener::bind(addr).await?;
        let port = plain.local_addr()?.port();
        let wrapped = match (implicit_tls, policy.tls.clone()) {
            (Some(addr), Some(acceptor)) => Some((TcpListener::bind(addr).await?, acceptor)),
            _ => None,
        };
        let tls_port = match &wrapped {
            Some((l, _)) => Some(l.local_addr()?.port()),
            None => None,
        };
        let cancel = CancellationToken::new();
        let sessions = TaskTracker::new();
        let shared = Arc::new(Shared {
            policy,
            per_client: std::sync::Mutex::new(HashMap::new()),
            max_per_client,
            channel,
            // SMTP peers are mail servers or clients connecting directly: no
            // proxy header exists to trust.
            keyer: ClientKeyer::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max_connections)),
            metrics,
            cancel: cancel.clone(),
            sessions: sessions.clone(),
        });
        tokio::spawn(accept_loop(plain, None, shared.clone()));
        if let Some((listener, acceptor)) = wrapped {
            tokio::spawn(accept_loop(listener, Some(acceptor), shared));
        }
        tracing::info!(port, tls_port, "smtp listening");
        Ok(Self {
            port,
            tls_port,
            cancel,
            sessions,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// Stops accepting, tells idle clients to come back later, and waits (up
    /// to `timeout`) for messages being stored.
    pub async fn stop(&self, timeout: Duration) {
        self.cancel.cancel();
        self.sessions.close();
        if tokio::time::timeout(timeout, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("smtp sessions still open at the shutdown timeout");
        }
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.cancel.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "smtp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let tls = tls.clone();
        shared
            .sessions
            .clone()
            .spawn(async move { connection(stream, peer, tls, shared).await });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    // On the implicit-TLS port a clear-text 421 would read as a broken
    // handshake; closing says the same to a client that retries.
    let plain = tls.is_none();
    let Ok(_slot) = shared.slots.clone().try_acquire_owned() else {
        if plain {
            let _ = stream
                .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
                .await;
        }
        shared
            .metrics
            .smtp_sessions
            .with_label_values(&["busy"])
            .inc();
        return;
    };
    let client = shared.keyer.key(Some(peer.ip()));
    let Some(_held) = ClientSlot::take(&shared, client) else {
        if plain {
            let _ = stream
                .write_all(b"421 4.7.0 Too many connections from your address, try again later\r\n")
                .await;
        }
        shared
            .metrics
            .smtp_sessions
            .with_label_values(&["busy"])
            .inc();
        return;
    };
    let s = &shared;
    let ended = match tls {
        None => session::serve(stream, false, client, &s.policy, &*s.channel, &s.cancel).await,
        Some(acceptor) => {
            match tokio::time::timeout(s.policy.limits.idle, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    session::serve(tls, true, client, &s.policy, &*s.channel, &s.cancel).await
                }
                _ => session::Ended::TlsHandshake,
            }
        }
    };
    shared
        .metrics
        .smtp_sessions
        .with_label_values(&[ended.as_str()])
        .inc();
}

/// One of a client's connections, given back when dropped.
struct ClientSlot<'a> {
    shared: &'a Shared,
    client: ClientKey,
}

impl<'a> ClientSlot<'a> {
    fn take(shared: &'a Shared, client: ClientKey) -> Option<Self> {
        let mut open = shared
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= shared.max_per_client {
            return None;
        }
        *count += 1;
        Some(Self { shared, client })
    }
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        let mut open = self
            .shared
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}
