//! Outbound HTTP to hosts that someone outside named: Web Push endpoints
//! (written by a browser) and the hops an SMS provider's media redirect leads
//! to. Such a request must never reach the gateway's own host or network.
//!
//! Untrusted input: the host names and IP literals in those URLs. A check of
//! the URL text alone is not enough, because any name can resolve to
//! `127.0.0.1`, `10.0.0.7` or `169.254.169.254` (cloud metadata). So the
//! clients built here resolve names through [`GuardedResolver`], which drops
//! every address that is not public before reqwest sees it: the address
//! actually connected to is always one that was checked, with no gap between
//! check and connect. IP literals never reach a resolver, so
//! [`check_url`] is called on each hop before it is requested. Redirects are
//! never followed by these clients (callers that follow one check the next
//! hop themselves), and proxies from the environment are ignored, since a
//! proxy would resolve the name itself.
//!
//! Hosts the operator configured (an SMS provider's API base URL) are not
//! routed through here: the operator may legitimately point them at a private
//! egress gateway.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which destination addresses outbound requests may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Globally routable unicast addresses only.
    #[default]
    PublicOnly,
    /// Also loopback (`127.0.0.0/8`, `::1`), for tests and development
    /// against local stand-ins. Never in production: it lets an outsider aim
    /// the gateway's requests at services on its own host. Private and
    /// link-local ranges stay refused even here.
    DangerousAllowLoopback,
}

impl AddressPolicy {
    /// Whether a request may connect to `ip`.
    pub fn allows(self, ip: IpAddr) -> bool {
        is_public(ip) || (self == Self::DangerousAllowLoopback && canonical(ip).is_loopback())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    #[error("the destination has no host")]
    NoHost,
    #[error("the destination is not a public address")]
    NotPublic,
    #[error("the destination name did not resolve")]
    Unresolved,
}

/// The check for IP literals, which no resolver sees. Names pass here and are
/// checked when they resolve.
pub fn check_url(url: &Url, policy: AddressPolicy) -> Result<(), EgressError> {
    let host = url.host_str().ok_or(EgressError::NoHost)?;
    // The URL parser has already normalised IPv4 spellings such as
    // `2130706433` or `0x7f.1` to dotted quads.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return Ok(());
    };
    if policy.allows(ip) {
        Ok(())
    } else {
        Err(EgressError::NotPublic)
    }
}

/// Whether a request failed because the guard refused its destination (as
/// opposed to a network failure worth retrying).
pub fn refused(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<EgressError>().is_some() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A reqwest client builder for requests to outside-named hosts: names
/// resolve through [`GuardedResolver`], no redirect is followed, no proxy is
/// used. Callers add their timeouts and headers.
pub fn client_builder(policy: AddressPolicy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// A resolver that answers only with addresses the policy allows, and fails
/// when none is left.
pub struct GuardedResolver {
    policy: AddressPolicy,
    lookup: Lookup,
}

impl GuardedResolver {
    /// Resolves with the system resolver (`getaddrinfo` on the blocking pool).
    pub fn new(policy: AddressPolicy) -> Self {
        Self {
            policy,
            lookup: Arc::new(|name| {
                Box::pin(async move {
                    tokio::net::lookup_host((name.as_str(), 0))
                        .await
                        .map(Iterator::collect)
                })
            }),
        }
    }

    /// Resolves from a fixed table instead of the system's, so tests can make
    /// a name point anywhere without touching `/etc/hosts`.
    pub fn with_table(policy: AddressPolicy, table: Vec<(String, Vec<IpAddr>)>) -> Self {
        let table = Arc::new(table);
        Self {
            policy,
            lookup: Arc::new(move |name| {
                let found = table
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                    .map(|(_, ips)| ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect());
                Box::pin(async move {
                    found.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
                })
            }),
        }
    }

    /// The allowed addresses `name` resolves to.
    pub async fn resolve_checked(&self, name: &str) -> Result<Vec<SocketAddr>, EgressError> {
        let all = (self.lookup)(name.to_owned())
            .await
            .map_err(|_| EgressError::Unresolved)?;
        let allowed: Vec<SocketAddr> = all
            .into_iter()
            .filter(|a| self.policy.allows(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(EgressError::NotPublic);
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = Self {
            policy: self.policy,
            lookup: self.lookup.clone(),
        };
        Box::pin(async move {
            let addrs = this.resolve_checked(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Globally routable unicast, by the IANA special-purpose registries (RFC
/// 6890 and successors). Written out because `IpAddr::is_global` is unstable.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                  // "this network"
        || a == 10                            // private
        || a == 127                           // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)             // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)     // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)     // documentation
        || (a == 192 && b == 88 && c == 99)   // 6to4 relay anycast
        || (a == 192 && b == 168)             // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)  // documentation
        || (a == 203 && b == 0 && c == 113)   // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let [s0, s1, ..] = s;
    let embedded_v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s0 == 0x0064 && s1 == 0xff9b && s[2..6] == [0; 4] {
        // Well-known NAT64 prefix 64:ff9b::/96 (RFC 6052): judged by the
        // IPv4 address inside. The rest of 64:ff9b::/32 is refused below.
        let [.., hi, lo] = s;
        return is_public_v4(embedded_v4(hi, lo));
    }
    if s0 == 0x2002 {
        // 6to4: the IPv4 address is in the second and third segments.
        let [_, hi, lo, ..] = s;
        return is_public_v4(embedded_v4(hi, lo));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || s0 == 0 // ::/96 IPv4-compatible and the rest of ::/16
        || (s0 == 0x0100 && s1 == 0 && s[2] == 0 && s[3] == 0) // discard-only
        || (s0 == 0x2001 && s1 < 0x0200) // IETF protocol assignments (Teredo, ORCHID…)
        || (s0 == 0x2001 && s1 == 0x0db8) // documentation
        || (s0 == 0x0064 && s1 == 0xff9b) // local-use NAT64 64:ff9b:1::/48 (RFC 8215) and the rest
        || (s0 & 0xfff0) == 0x3ff0 // documentation 3fff::/20 (RFC 9637)
        || s0 == 0x5f00 // SRv6 SIDs (RFC 9602)
        || (s0 & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s0 & 0xffc0) == 0xfe80 // link-local
        || (s0 & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s0 & 0xff00) == 0xff00) // multicast
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const NOT_PUBLIC: &[&str] = &[
        "0.0.0.0",
        "10.0.0.7",
        "100.64.1.1",
        "127.0.0.1",
        "127.8.9.10",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.168.1.1",
        "198.18.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::",
        "2001:db8::1",
        "2001::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        // Local-use NAT64 (RFC 8215): where the IPv4 address sits depends on
        // the local translator's prefix length, so none inside is trusted.
        "64:ff9b:1:a00:1::808:808",
        "64:ff9b:1::808:808",
        "64:ff9b::1:0:808:808",
        // Documentation (RFC 9637) and SRv6 SIDs (RFC 9602).
        "3fff::1",
        "5f00::1",
    ];
    const PUBLIC: &[&str] = &[
        "1.1.1.1",
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "192.0.3.1",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
        "64:ff9b::808:808",
        "::ffff:8.8.8.8",
    ];

    #[test]
    fn private_loopback_link_local_and_special_ranges_are_not_public() {
        for s in NOT_PUBLIC {
            assert!(!is_public(ip(s)), "{s}");
            assert!(!AddressPolicy::PublicOnly.allows(ip(s)), "{s}");
        }
        for s in PUBLIC {
            assert!(is_public(ip(s)), "{s}");
        }
    }

    #[test]
    fn the_dangerous_policy_adds_loopback_and_nothing_else() {
        let dangerous = AddressPolicy::DangerousAllowLoopback;
        for s in ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"] {
            assert!(dangerous.allows(ip(s)), "{s}");
        }
        for s in [
            "10.0.0.7",
            "169.254.169.254",
            "fc00::1",
            "fe80::1",
            "192.168.1.1",
        ] {
            assert!(!dangerous.allows(ip(s)), "{s}");
        }
        assert_eq!(AddressPolicy::default(), AddressPolicy::PublicOnly);
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_non_public_address_is_refused_by_default() {
        let table = vec![
            ("loop.example.net".to_owned(), vec![ip("127.0.0.1")]),
            ("private.example.net".to_owned(), vec![ip("10.0.0.7")]),
            (
                "metadata.example.net".to_owned(),
                vec![ip("169.254.169.254")],
            ),
            ("v6loop.example.net".to_owned(), vec![ip("::1")]),
            ("ula.example.net".to_owned(), vec![ip("fc00::7")]),
            (
                "mixed.example.net".to_owned(),
                vec![ip("10.0.0.7"), ip("1.1.1.1")],
            ),
            ("push.example.net".to_owned(), vec![ip("2606:4700::1111")]),
        ];
        let guard = GuardedResolver::with_table(AddressPolicy::PublicOnly, table.clone());
        for name in [
            "loop.example.net",
            "private.example.net",
            "metadata.example.net",
            "v6loop.example.net",
            "ula.example.net",
        ] {
            assert_eq!(
                guard.resolve_checked(name).await,
                Err(EgressError::NotPublic),
                "{name}"
            );
        }
        // Only the public address of a mixed answer is ever connected to.
        let mixed = guard.resolve_checked("mixed.example.net").await.unwrap();
        assert_eq!(mixed, vec![SocketAddr::new(ip("1.1.1.1"), 0)]);
        assert!(guard.resolve_checked("push.example.net").await.is_ok());
        assert_eq!(
            guard.resolve_checked("unknown.example.net").await,
            Err(EgressError::Unresolved)
        );

        let dangerous = GuardedResolver::with_table(AddressPolicy::DangerousAllowLoopback, table);
        assert!(dangerous.resolve_checked("loop.example.net").await.is_ok());
        assert!(
            dangerous
                .resolve_checked("v6loop.example.net")
                .await
                .is_ok()
        );
        assert_eq!(
            dangerous.resolve_checked("private.example.net").await,
            Err(EgressError::NotPublic)
        );
    }

    #[tokio::test]
    async fn the_system_resolver_answer_for_localhost_is_refused_by_default() {
        let guard = GuardedResolver::new(AddressPolicy::PublicOnly);
        assert_eq!(
            guard.resolve_checked("localhost").await,
            Err(EgressError::NotPublic)
        );
        let dangerous = GuardedResolver::new(AddressPolicy::DangerousAllowLoopback);
        assert!(dangerous.resolve_checked("localhost").await.is_ok());
    }

    #[test]
    fn ip_literals_are_checked_in_the_url() {
        let check = |u: &str, p| check_url(&Url::parse(u).unwrap(), p);
        for u in [
            "https://127.0.0.1/x",
            "https://10.0.0.7/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fc00::1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
        ] {
            assert_eq!(
                check(u, AddressPolicy::PublicOnly),
                Err(EgressError::NotPublic),
                "{u}"
            );
        }
        assert!(check("https://1.1.1.1/x", AddressPolicy::PublicOnly).is_ok());
        assert!(check("https://push.example.net/x", AddressPolicy::PublicOnly).is_ok());
        assert!(
            check(
                "http://127.0.0.1:8080/x",
                AddressPolicy::DangerousAllowLoopback
            )
            .is_ok()
        );
        assert_eq!(
            check("http://10.0.0.7/x", AddressPolicy::DangerousAllowLoopback),
            Err(EgressError::NotPublic)
        );
    }

    /// A client from `client_builder` never opens a connection to a refused
    /// address: a listener on loopback sees nothing.
    #[tokio::test]
    async fn a_guarded_client_never_connects_to_a_name_that_resolves_to_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = client_builder(AddressPolicy::PublicOnly)
            .dns_resolver(Arc::new(GuardedResolver::with_table(
                AddressPolicy::PublicOnly,
                vec![("push.example.net".to_owned(), vec![ip("127.0.0.1")])],
            )))
            .build()
            .unwrap();
        let err = client
            .get(format!("http://push.example.net:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(refused(&err), "{err:?}");
        // Had reqwest connected, the kernel would hold the connection in the
        // listener's backlog by the time `send` failed.
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the refused address was connected to: {accepted:?}"
        );
    }
}
