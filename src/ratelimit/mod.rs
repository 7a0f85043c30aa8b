//! The one rate-limit facility: every channel, enrolment, login and the
//! HTTPS request budget take their limits from here and keep only their
//! policy (which key, which quota, in which order, which answer).
//!
//! - [`KeyedLimiter`] (a bucket per key), [`HashedLimiter`] (per key, kept
//!   as a salted hash) and [`GlobalLimiter`] (one bucket): governor, in
//!   memory, per replica; each has `check` and the keyed ones
//!   `forget_idle`, run every minute so memory is bounded by recent keys.
//! - [`ChannelLimiter`]: a channel's per-client and global buckets, with the
//!   onion-service rule ([`shared_by_everyone`]).
//! - [`Limited`]: which limit refused ([`Scope`]) and how long to wait, for
//!   `Retry-After`.
//! - [`ConcurrencyGate`]: concurrent connections per client and in all.
//!
//! Quotas come from configuration. Nothing here is shared through Redis.
//! Untrusted input: the keys (salted client keys, see `privacy::ClientKey`,
//! pseudonyms, numbers, device ids), never kept in the clear or logged.

mod connections;
mod local;

pub use connections::{ConcurrencyGate, Counted, Full, NETWORK_SHARE, Slot};
pub use local::{GlobalLimiter, HashedLimiter, KeyedLimiter};

use std::time::Duration;

use crate::config::CheckedQuota;
use crate::privacy::{ClientKey, ClientKeyer};

/// Which limit refused the request (a metric label, never an identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Client,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Global => "global",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub scope: Scope,
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds to wait, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }

    /// Whole seconds to wait, rounded down, plus one: always past the wait
    /// (the answer of the login challenge and the HTTPS request budget).
    pub fn retry_after_secs_past(&self) -> u64 {
        self.retry_after.as_secs().saturating_add(1)
    }
}

/// The limits of one channel: a bucket per client and one for the channel.
pub struct ChannelLimiter {
    per_client: KeyedLimiter<ClientKey>,
    global: GlobalLimiter,
}

/// Whether a request from `ip` cannot be told apart from everyone else's:
/// when `loopback_is_everyone` (an onion service) and it came from loopback.
/// Such a request has no per-client bucket (see
/// [`ChannelLimiter::check_client_from`]). An IPv4-mapped loopback address
/// (`::ffff:127.0.0.1`, from a dual-stack listener) is loopback too.
pub fn shared_by_everyone(ip: Option<std::net::IpAddr>, loopback_is_everyone: bool) -> bool {
    loopback_is_everyone && ip.is_some_and(|ip| ip.to_canonical().is_loopback())
}

impl ChannelLimiter {
    pub fn new(per_client: CheckedQuota, global: CheckedQuota) -> Self {
        Self {
            per_client: KeyedLimiter::new(per_client, Scope::Client),
            global: GlobalLimiter::new(global, Scope::Global),
        }
    }

    /// Takes one cell from the client's bucket and one from the channel's.
    pub fn check(&self, client: ClientKey) -> Result<(), Limited> {
        self.check_client(client)?;
        self.check_global()
    }

    /// Takes one cell from the client's bucket.
    fn check_client(&self, client: ClientKey) -> Result<(), Limited> {
        self.per_client.check(&client)
    }

    /// Takes a cell from the client's bucket only; from none when
    /// `loopback_is_everyone` (an onion service: every visitor arrives from
    /// loopback) and the request came from loopback, since one shared
    /// per-client bucket would let one person lock everyone out (see
    /// [`shared_by_everyone`]). For a channel that charges its own bucket
    /// with [`Self::check_global`] later, once the request proved well
    /// formed: charged up front, the channel's bucket would be spent by junk
    /// that is refused anyway, and an attacker with many addresses (an IPv6
    /// /48 holds 65,536 /64s) would silence every real client of the channel.
    pub fn check_client_from(
        &self,
        keyer: &ClientKeyer,
        ip: Option<std::net::IpAddr>,
        loopback_is_everyone: bool,
    ) -> Result<(), Limited> {
        if shared_by_everyone(ip, loopback_is_everyone) {
            return Ok(());
        }
        self.check_client(keyer.key(ip))
    }

    /// Takes one cell from the channel's bucket only.
    pub fn check_global(&self) -> Result<(), Limited> {
        self.global.check()
    }

    /// Forgets clients whose buckets are full again, so memory stays bounded
    /// by recent clients; run periodically.
    pub fn forget_idle(&self) {
        self.per_client.forget_idle();
    }

    pub fn tracked_clients(&self) -> usize {
        self.per_client.tracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::ClientKeyer;

    #[test]
    fn loopback_is_everyone_only_in_onion_mode_and_mapped_loopback_counts() {
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        for loopback in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(shared_by_everyone(ip(loopback), true), "{loopback}");
            assert!(!shared_by_everyone(ip(loopback), false), "{loopback}");
        }
        for other in ["192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1"] {
            assert!(!shared_by_everyone(ip(other), true), "{other}");
        }
        assert!(!shared_by_everyone(None, true));
    }

    #[test]
    fn the_client_after_its_quota_is_refused_and_others_are_not() {
        let limiter = ChannelLimiter::new(CheckedQuota::per(3, 3600), CheckedQuota::per(100, 60));
        let keyer = ClientKeyer::new(vec![]);
        let a = keyer.key(Some("1.1.1.1".parse().unwrap()));
        let b = keyer.key(Some("2.2.2.2".parse().unwrap()));
        for _ in 0..3 {
            limiter.check(a).unwrap();
        }
        let refused = limiter.check(a).unwrap_err();
        assert_eq!(refused.scope, Scope::Client);
        assert!(refused.retry_after_secs() >= 1 && refused.retry_after_secs() <= 1200);
        limiter.check(b).unwrap();
    }

    #[test]
    fn the_client_check_alone_leaves_the_channels_bucket_untouched() {
        let limiter = ChannelLimiter::new(CheckedQuota::per(2, 3600), CheckedQuota::per(1, 3600));
        let keyer = ClientKeyer::new(vec![]);
        for i in 0..5 {
            let ip = Some(format!("192.0.2.{i}").parse().unwrap());
            limiter.check_client_from(&keyer, ip, false).unwrap();
        }
        let ip = Some("192.0.2.0".parse().unwrap());
        limiter.check_client_from(&keyer, ip, false).unwrap();
        assert_eq!(
            limiter
                .check_client_from(&keyer, ip, false)
                .unwrap_err()
                .scope,
            Scope::Client
        );
        limiter.check_global().unwrap();
        assert_eq!(limiter.check_global().unwrap_err().scope, Scope::Global);
        let onion = Some("127.0.0.1".parse().unwrap());
        for _ in 0..3 {
            limiter.check_client_from(&keyer, onion, true).unwrap();
        }
    }

    #[test]
    fn the_global_limit_holds_across_clients() {
        let limiter = ChannelLimiter::new(CheckedQuota::per(10, 60), CheckedQuota::per(2, 60));
        let keyer = ClientKeyer::new(vec![]);
        limiter
            .check(keyer.key(Some("1.1.1.1".parse().unwrap())))
            .unwrap();
        limiter
            .check(keyer.key(Some("2.2.2.2".parse().unwrap())))
            .unwrap();
        let refused = limiter
            .check(keyer.key(Some("3.3.3.3".parse().unwrap())))
            .unwrap_err();
        assert_eq!(refused.scope, Scope::Global);
    }
}
