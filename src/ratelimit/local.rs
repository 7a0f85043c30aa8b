//! The local limiters (governor, in memory, per replica) every rate limit is
//! built from: a bucket per key, a salted-hash variant for keys that must not
//! be kept in the clear, and one bucket for everyone. Each refusal carries its
//! [`Scope`] and how long until a cell is back ([`Limited`]).
//!
//! Untrusted input: the keys (client keys, pseudonyms, numbers, device ids);
//! they are only hashed and counted, never logged.

use std::hash::{BuildHasher, Hash};

use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use super::{Limited, Scope};
use crate::config::CheckedQuota;

/// A governor quota from a checked setting.
fn quota(q: CheckedQuota) -> Quota {
    // `count` cells replenish evenly over `period`; a full bucket allows a burst
    // of `count`. The period per cell is at least 1 ns, so with_period succeeds.
    let per_cell = (q.period / q.count.get()).max(std::time::Duration::from_nanos(1));
    Quota::with_period(per_cell)
        .unwrap_or_else(|| Quota::per_second(q.count))
        .allow_burst(q.count)
}

/// One bucket per key; a refusal is labelled `scope`.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    buckets: DefaultKeyedRateLimiter<K>,
    scope: Scope,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(quota_: CheckedQuota, scope: Scope) -> Self {
        Self {
            buckets: governor::RateLimiter::keyed(quota(quota_)),
            scope,
        }
    }

    /// Takes one cell from `key`'s bucket.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        self.buckets.check_key(key).map_err(|not_until| Limited {
            scope: self.scope,
            retry_after: not_until.wait_time_from(self.buckets.clock().now()),
        })
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded by
    /// recent keys; run periodically.
    pub fn forget_idle(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }

    /// Keys with a bucket now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// One bucket per key, keyed by the key's hash under a random per-process
/// salt: for pseudonyms and numbers, so the limiter holds none of them.
pub struct HashedLimiter {
    buckets: KeyedLimiter<u64>,
    salt: std::hash::RandomState,
}

impl HashedLimiter {
    pub fn new(quota_: CheckedQuota, scope: Scope) -> Self {
        Self {
            buckets: KeyedLimiter::new(quota_, scope),
            salt: std::hash::RandomState::new(),
        }
    }

    /// Takes one cell from the bucket of `key`'s salted hash.
    pub fn check(&self, key: impl Hash) -> Result<(), Limited> {
        self.buckets.check(&self.salt.hash_one(key))
    }

    /// See [`KeyedLimiter::forget_idle`].
    pub fn forget_idle(&self) {
        self.buckets.forget_idle();
    }
}

/// One bucket for everyone; a refusal is labelled `scope`.
pub struct GlobalLimiter {
    bucket: DefaultDirectRateLimiter,
    scope: Scope,
}

impl GlobalLimiter {
    pub fn new(quota_: CheckedQuota, scope: Scope) -> Self {
        Self {
            bucket: governor::RateLimiter::direct(quota(quota_)),
            scope,
        }
    }

    /// Takes one cell from the bucket.
    pub fn check(&self) -> Result<(), Limited> {
        self.bucket.check().map_err(|not_until| Limited {
            scope: self.scope,
            retry_after: not_until.wait_time_from(self.bucket.clock().now()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_keyed_limiter_refuses_a_key_past_its_quota_with_its_scope_and_a_wait() {
        let l = KeyedLimiter::new(CheckedQuota::per(2, 60), Scope::Client);
        l.check(&"a").unwrap();
        l.check(&"a").unwrap();
        let refused = l.check(&"a").unwrap_err();
        assert_eq!(refused.scope, Scope::Client);
        assert!(
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(30)
        );
        l.check(&"b").unwrap();
        assert_eq!(l.tracked(), 2);
    }

    #[test]
    fn a_hashed_limiter_counts_equal_keys_together() {
        let l = HashedLimiter::new(CheckedQuota::per(1, 60), Scope::Global);
        l.check(("p1_a", 7)).unwrap();
        assert_eq!(l.check(("p1_a", 7)).unwrap_err().scope, Scope::Global);
        l.check(("p1_a", 8)).unwrap();
    }

    #[test]
    fn a_global_limiter_is_one_bucket() {
        let l = GlobalLimiter::new(CheckedQuota::per(1, 60), Scope::Global);
        l.check().unwrap();
        assert_eq!(l.check().unwrap_err().scope, Scope::Global);
    }
}
