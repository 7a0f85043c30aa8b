//! Client network addresses, reduced to a salted 64-bit key held only in memory
//! for rate limiting. The peer address is trusted; `X-Forwarded-For` is untrusted
//! and believed only when the peer is a configured proxy. IPv6 clients are keyed
//! by their /64, since one household holds a whole /64.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};

use actix_web::http::header::HeaderValue;
use ipnet::IpNet;

/// A salted, non-reversible key for one client address. Never stored, never logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u64);

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(..)")
    }
}

pub struct ClientKeyer {
    // A SipHash key drawn at random for this process: keys differ per run and
    // per replica, so nothing derived from them can be joined across restarts.
    salt: std::hash::RandomState,
    trusted_proxies: Vec<IpNet>,
}

impl ClientKeyer {
    pub fn new(trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            salt: std::hash::RandomState::new(),
            trusted_proxies,
        }
    }

    /// Whether `ip` is one of the configured proxies.
    pub fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The address a request comes from, looking through trusted proxies only.
    /// `forwarded_for` holds every `X-Forwarded-For` line, in order.
    pub fn client_ip(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: &[&HeaderValue],
    ) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusted(peer) || forwarded_for.is_empty() {
            return Some(peer);
        }
        // A proxy may add its own header line instead of extending the
        // client's: every line counts, in order, or the client's line would
        // be read as the proxy's.
        let Ok(lines) = forwarded_for
            .iter()
            .map(|v| v.to_str())
            .collect::<Result<Vec<_>, _>>()
        else {
            return Some(peer);
        };
        let list = lines.join(",");
        // Walk from the nearest hop outwards; the first address that is not one
        // of our proxies is the client. Anything unparsable ends the walk: what
        // lies beyond it was written by the client and cannot be believed.
        let mut client = peer;
        for hop in list.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusted(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Some(client)
    }

    pub fn key(&self, ip: Option<IpAddr>) -> ClientKey {
        let canonical = match ip {
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(prefix64(v6)),
            },
            Some(other) => other,
            // Unix sockets and the like: one shared bucket.
            None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        ClientKey(self.salt.hash_one(canonical))
    }
}

impl ClientKeyer {
    /// The network an IPv6 client's /64 belongs to: its /48, which one site
    /// (or one free tunnel-broker account) holds whole. `None` for IPv4,
    /// whose address is already the client. Keys of this kind are counted
    /// apart from [`ClientKeyer::key`]'s.
    pub fn network(&self, ip: IpAddr) -> Option<ClientKey> {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let bits = u128::from(v6) & !((1u128 << 80) - 1);
                Some(ClientKey(self.salt.hash_one((48u8, bits))))
            }
            _ => None,
        }
    }
}

fn prefix64(ip: Ipv6Addr) -> Ipv6Addr {
    let bits = u128::from(ip) & !((1u128 << 64) - 1);
    Ipv6Addr::from(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let k = ClientKeyer::new(vec![]);
        let xff = HeaderValue::from_static("1.2.3.4");
        assert_eq!(
            k.client_ip(Some(ip("9.9.9.9")), &[&xff]),
            Some(ip("9.9.9.9"))
        );
    }

    #[test]
    fn forwarded_for_is_walked_through_trusted_proxies_only() {
        let k = ClientKeyer::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let xff = HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.7");
        assert_eq!(
            k.client_ip(Some(ip("10.0.0.1")), &[&xff]),
            Some(ip("1.2.3.4"))
        );
        let junk = HeaderValue::from_static("1.2.3.4, nonsense");
        assert_eq!(
            k.client_ip(Some(ip("10.0.0.1")), &[&junk]),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_client_line_before_the_proxys_own_line_is_not_taken_for_the_proxys() {
        let k = ClientKeyer::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let spoofed = HeaderValue::from_static("6.6.6.6");
        let added = HeaderValue::from_static("1.2.3.4");
        assert_eq!(
            k.client_ip(Some(ip("10.0.0.1")), &[&spoofed, &added]),
            Some(ip("1.2.3.4"))
        );
    }

    #[test]
    fn one_ipv6_slash_64_is_one_client() {
        let k = ClientKeyer::new(vec![]);
        assert_eq!(
            k.key(Some(ip("2001:db8:1:2:aaaa::1"))),
            k.key(Some(ip("2001:db8:1:2:bbbb::9")))
        );
        assert_ne!(
            k.key(Some(ip("2001:db8:1:2::1"))),
            k.key(Some(ip("2001:db8:1:3::1")))
        );
        assert_eq!(
            k.key(Some(ip("::ffff:1.2.3.4"))),
            k.key(Some(ip("1.2.3.4")))
        );
    }
}
