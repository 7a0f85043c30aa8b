//! The HTTPS port: who gets a TLS handshake, for how long, and which protocol
//! they then speak.
//!
//! actix-web's own TLS listener takes every accepted connection into a
//! handshake queue: thousands of connections that never send a byte kept a
//! real client's handshake waiting for 20 s (issue 10, item 14). Here the
//! gateway runs the handshake itself: a connection is admitted only while its
//! address (IPv6: its /64) is under its share of open connections and of
//! handshakes in progress, and while the totals allow; anything over a limit
//! is closed at once instead of queued, and a handshake has a deadline. The
//! established stream then goes to actix-http's dispatcher as HTTP/1.1, or as
//! HTTP/2 only when `server.http2` is on (see `config/default.toml` for why it
//! is off).
//!
//! Each address (IPv6: /64) also has a budget of requests
//! (`server.connections.requests_per_address`): a client pipelining requests
//! it never reads the answers to costs the one worker thread CPU for every
//! one of them, and would otherwise keep every other client waiting. A
//! request over the budget gets 429 and its connection is closed, which
//! throws away whatever it had pipelined behind it.
//!
//! In plaintext mode (`server.mode = "plaintext"`, loopback only, behind a
//! TLS-terminating proxy or as an onion service's target) the same gate
//! admits connections, without a handshake: every peer is then the proxy, so
//! a connection counts only in the total, and the read-ahead bound holds as
//! on the HTTPS port. Plaintext is HTTP/1.1 only, as before.
//!
//! Untrusted input: every byte a client sends until the handshake ends, and
//! its peer address, which is reduced to a salted key (`privacy::ClientKey`)
//! for counting and never logged.

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Protocol, Request, Response, body::MessageBody};
use actix_server::ServerBuilder;
use actix_service::{
    IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _, fn_factory, fn_service,
    map_config,
};
use actix_web::dev::AppConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use actix_web::body::EitherBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError as _, web};

use crate::config::CheckedQuota;
use crate::error::AppError;
use crate::privacy::ClientKeyer;
use crate::ratelimit::{ConcurrencyGate, Counted, KeyedLimiter, Limited, NETWORK_SHARE, Scope};
use crate::server::read_ahead::ReadAhead;

/// Room for a request head beyond the body limit in the read-ahead budget.
const READ_AHEAD_HEAD_ROOM: usize = 64 * 1024;
/// Time a handler has to start its answer once its request is in, in the
/// answer deadline (`read_ahead.rs`); longer than any handler's own deadline
/// (SMS media: at most `sms.media_deadline_ms`, 10 s).
const HANDLING_ROOM: Duration = Duration::from_secs(15);

/// An established connection, TLS or plain, as the dispatcher reads it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Stream for T {}
type Io = ReadAhead<Box<dyn Stream>>;

/// How the HTTP port admits connections.
pub struct Admission {
    connections: Arc<ConcurrencyGate>,
    handshakes: Arc<ConcurrencyGate>,
    keyer: ClientKeyer,
    /// `None` in plaintext mode.
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    /// Bytes a connection may send with nothing answered (`read_ahead.rs`).
    read_ahead: usize,
    /// How soon bytes read must be answered (`read_ahead.rs`).
    answer_deadline: Duration,
}

/// Timeouts of an established connection, as `HttpServer` took them.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub client_request: Duration,
    pub client_disconnect: Duration,
}

impl Admission {
    /// `tls` (`None` in plaintext mode) gets its ALPN list here:
    /// `http/1.1`, and `h2` first when `http2`.
    pub fn new(
        settings: &crate::config::Settings,
        tls: Option<rustls::ServerConfig>,
        keyer: ClientKeyer,
        timeouts: Timeouts,
    ) -> Self {
        let c = &settings.server.connections;
        let tls = tls.map(|mut tls| {
            tls.alpn_protocols = if settings.server.http2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            TlsAcceptor::from(Arc::new(tls))
        });
        Self {
            connections: ConcurrencyGate::new(c.max, c.max_per_address),
            handshakes: ConcurrencyGate::new(c.max_handshakes, c.max_handshakes_per_address),
            keyer,
            tls,
            handshake_timeout: c.handshake_timeout,
            // A whole request (head and largest body) must fit before the
            // answer: the body limit, plus room for a large head.
            read_ahead: settings
                .server
                .max_body_bytes
                .saturating_add(READ_AHEAD_HEAD_ROOM),
            // A head, its body and then the handler's own time.
            answer_deadline: timeouts
                .client_request
                .saturating_add(c.body_timeout)
                .saturating_add(HANDLING_ROOM),
        }
    }

    /// Serves one accepted connection to its end, or closes it at once when a
    /// limit is full or the handshake fails or overruns its deadline.
    async fn serve<S>(&self, tcp: TcpStream, http: &S)
    where
        S: Service<(Io, Protocol, Option<SocketAddr>), Response = ()>,
    {
        let peer = tcp.peer_addr().ok();
        // A trusted proxy speaks for many clients: it counts only in the
        // totals, as does every peer in plaintext mode (the proxy or onion
        // service in front).
        let client = peer
            .map(|p| p.ip())
            .filter(|ip| self.tls.is_some() && !self.keyer.trusted(*ip))
            .map(|ip| Counted::peer(&self.keyer, ip))
            .unwrap_or_default();
        let Ok(_open) = self.connections.enter(client) else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let (stream, protocol): (Box<dyn Stream>, _) = match &self.tls {
            None => (Box::new(tcp), Protocol::Http1),
            Some(acceptor) => {
                let Ok(_handshaking) = self.handshakes.enter(client) else {
                    return;
                };
                let Ok(Ok(tls)) =
                    tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let protocol = match tls.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Protocol::Http2,
                    _ => Protocol::Http1,
                };
                (Box::new(tls), protocol)
            }
        };
        // The dispatcher's errors are a client's broken or slow requests;
        // actix logs them itself at debug level.
        let io = ReadAhead::new(stream, self.read_ahead, self.answer_deadline);
        let _ = http.call((io, protocol, peer)).await;
    }
}

/// Adds the HTTP(S) listener to `builder`, serving the app `factory` makes.
pub fn listen<F, I, S, B>(
    builder: ServerBuilder,
    listener: TcpListener,
    admission: Arc<Admission>,
    timeouts: Timeouts,
    factory: F,
) -> std::io::Result<ServerBuilder>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let local = listener.local_addr()?;
    let secure = admission.tls.is_some();
    let shutdown = builder.graceful_shutdown_signal();
    builder.listen("tipwire-http", listener, move || {
        let shutdown = shutdown.clone();
        let app = factory()
            .into_factory()
            .map_err(|e| e.into().error_response());
        let mut http = HttpService::build()
            .graceful_shutdown_signal(move || {
                let signal = shutdown.clone();
                async move { signal.notified().await }
            })
            .client_request_timeout(timeouts.client_request)
            .client_disconnect_timeout(timeouts.client_disconnect)
            .local_addr(local);
        if secure {
            http = http.secure();
        }
        let http = http.finish(map_config(app, move |()| {
            AppConfig::__priv_test_new(secure, local.to_string(), local)
        }));
        let admission = admission.clone();
        fn_factory(move || {
            let made = http.new_service(());
            let admission = admission.clone();
            async move {
                let http = Rc::new(made.await?);
                Ok::<_, ()>(fn_service(move |tcp: TcpStream| {
                    let (http, admission) = (http.clone(), admission.clone());
                    async move {
                        admission.serve(tcp, &*http).await;
                        Ok::<(), ()>(())
                    }
                }))
            }
        })
    })
}

/// Requests per client address on the HTTPS port, and per IPv6 /48
/// ([`NETWORK_SHARE`] addresses' worth).
pub struct RequestBudget {
    limiter: KeyedLimiter<crate::privacy::ClientKey>,
    networks: KeyedLimiter<crate::privacy::ClientKey>,
    keyer: ClientKeyer,
}

impl RequestBudget {
    pub fn new(per_address: CheckedQuota, keyer: ClientKeyer) -> Self {
        let share = u32::try_from(NETWORK_SHARE).unwrap_or(u32::MAX);
        let per_network = CheckedQuota {
            count: per_address.count.saturating_mul(
                std::num::NonZeroU32::new(share).unwrap_or(std::num::NonZeroU32::MIN),
            ),
            period: per_address.period,
        };
        Self {
            limiter: KeyedLimiter::new(per_address, Scope::Client),
            networks: KeyedLimiter::new(per_network, Scope::Client),
            keyer,
        }
    }

    /// Spends one request of `ip`'s budget; over it, how long until the next.
    fn spend(&self, ip: std::net::IpAddr) -> Result<(), Limited> {
        if let Some(network) = self.keyer.network(ip) {
            self.networks.check(&network)?;
        }
        self.limiter.check(&self.keyer.key(Some(ip)))
    }

    /// Forgets addresses whose budgets are full again; run periodically.
    pub fn forget_idle(&self) {
        for limiter in [&self.limiter, &self.networks] {
            limiter.forget_idle();
        }
    }
}

/// Spends one request of the peer's budget (a trusted proxy has none: it
/// speaks for many clients); over budget, 429 and the connection closes.
pub async fn request_budget(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let over = req
        .app_data::<web::Data<RequestBudget>>()
        .and_then(|budget| {
            let ip = req.peer_addr()?.ip();
            if budget.keyer.trusted(ip) {
                return None;
            }
            budget.spend(ip).err()
        });
    let Some(limited) = over else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let mut response = AppError::RateLimited {
        retry_after_secs: limited.retry_after_secs_past(),
    }
    .error_response();
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(req.into_response(response).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10 review: an IPv6 /48's addresses share a request budget of
    /// [`NETWORK_SHARE`] addresses' worth.
    #[test]
    fn one_ipv6_48_has_a_request_budget_of_its_own() {
        let budget = RequestBudget::new(
            CheckedQuota {
                count: std::num::NonZeroU32::new(2).unwrap(),
                period: Duration::from_secs(3600),
            },
            ClientKeyer::new(Vec::new()),
        );
        let spent = (0..40)
            .filter(|n| {
                let ip = format!("2001:db8:7:{n:x}::1").parse().unwrap();
                budget.spend(ip).is_ok()
            })
            .count();
        assert_eq!(spent, 2 * NETWORK_SHARE);
        assert!(budget.spend("2001:db8:8::1".parse().unwrap()).is_ok());
        assert!(budget.spend("203.0.113.7".parse().unwrap()).is_ok());
    }
}
