//! The SMTP listeners of `tipwire serve`: the plain port (STARTTLS offered
//! with the gateway's certificate) and, optionally, the implicit-TLS port.
//! Connections beyond `email.max_connections`, beyond
//! `max_connections_per_address` from one address (IPv6: /64) or beyond
//! `max_connections_per_network` from one network (IPv4 /24, IPv6 /48, so
//! that one allocation cannot take every slot) get 421 at once. On shutdown
//! the listeners stop accepting, idle sessions get 421, and a message being
//! stored finishes first. Peer addresses become salted keys for the rate
//! limits and are never logged.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// How many connections are served at once: in all, per address and per
/// network.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub total: usize,
    pub per_address: usize,
    pub per_network: usize,
}

/// Open connections per salted key, so one source cannot take every slot.
struct OpenCounts {
    open: std::sync::Mutex<HashMap<ClientKey, usize>>,
    max: usize,
}

struct Shared {
    policy: Policy,
    per_address: OpenCounts,
    per_network: OpenCounts,
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
        limits: ConnectionLimits,
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
            per_address: OpenCounts::new(limits.per_address),
            per_network: OpenCounts::new(limits.per_network),
            channel,
            // SMTP peers are mail servers or clients connecting directly: no
            // proxy header exists to trust.
            keyer: ClientKeyer::new(Vec::new()),
            slots: Arc::new(Semaphore::new(limits.total)),
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
    let network = shared.keyer.key(Some(network_of(peer.ip())));
    let held = match ClientSlot::take(&shared.per_address, client) {
        None => Err(&b"421 4.7.0 Too many connections from your address, try again later\r\n"[..]),
        Some(address) => match ClientSlot::take(&shared.per_network, network) {
            None => {
                Err(&b"421 4.7.0 Too many connections from your network, try again later\r\n"[..])
            }
            Some(network) => Ok((address, network)),
        },
    };
    let _held = match held {
        Ok(held) => held,
        Err(refusal) => {
            if plain {
                let _ = stream.write_all(refusal).await;
            }
            shared
                .metrics
                .smtp_sessions
                .with_label_values(&["busy"])
                .inc();
            return;
        }
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

/// The network a peer belongs to for the per-network limit: its IPv4 /24 or
/// IPv6 /48 (an IPv4-mapped IPv6 address counts as IPv4).
fn network_of(ip: IpAddr) -> IpAddr {
    let v4 = |v4: Ipv4Addr| {
        let [a, b, c, _] = v4.octets();
        IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
    };
    match ip {
        IpAddr::V4(addr) => v4(addr),
        IpAddr::V6(addr) => match addr.to_ipv4_mapped() {
            Some(mapped) => v4(mapped),
            None => {
                let [a, b, c, ..] = addr.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
            }
        },
    }
}

impl OpenCounts {
    fn new(max: usize) -> Self {
        Self {
            open: std::sync::Mutex::new(HashMap::new()),
            max,
        }
    }
}

/// One of a source's connections, given back when dropped.
struct ClientSlot<'a> {
    counts: &'a OpenCounts,
    client: ClientKey,
}

impl<'a> ClientSlot<'a> {
    fn take(counts: &'a OpenCounts, client: ClientKey) -> Option<Self> {
        let mut open = counts
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= counts.max {
            return None;
        }
        *count += 1;
        Some(Self { counts, client })
    }
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_ipv4_slash_24_and_ipv6_slash_48() {
        let net = |s: &str| network_of(s.parse().unwrap());
        assert_eq!(net("203.0.113.77"), net("203.0.113.1"));
        assert_ne!(net("203.0.113.77"), net("203.0.114.77"));
        assert_eq!(net("2001:db8:1::1"), net("2001:db8:1:ffff:1:2:3:4"));
        assert_ne!(net("2001:db8:1::1"), net("2001:db8:2::1"));
        assert_eq!(net("::ffff:203.0.113.9"), net("203.0.113.200"));
    }

    #[test]
    fn a_source_gets_its_share_and_its_slots_back() {
        let counts = OpenCounts::new(2);
        let keyer = ClientKeyer::new(Vec::new());
        let a = keyer.key(Some(network_of("2001:db8:1:2::1".parse().unwrap())));
        let b = keyer.key(Some(network_of("2001:db8:1:3::1".parse().unwrap())));
        assert_eq!(a, b, "two /64s of one /48 are one network");
        let first = ClientSlot::take(&counts, a);
        let second = ClientSlot::take(&counts, b);
        assert!(first.is_some() && second.is_some());
        assert!(ClientSlot::take(&counts, a).is_none());
        drop(first);
        assert!(ClientSlot::take(&counts, a).is_some());
    }
}
