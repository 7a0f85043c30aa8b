//! SMS rate limits: per pseudonym (one tipster) and per program number called,
//! checked before any media is fetched or anything sealed, so a junk flood from
//! one number costs a hash and a counter. A limited tipster gets one polite
//! notice per window, not one per message.

use std::hash::BuildHasher;
use std::num::NonZeroU32;

use governor::DefaultKeyedRateLimiter;
use governor::clock::{Clock, DefaultClock};

use crate::config::CheckedQuota;
use crate::ratelimit::{Limited, Scope, quota};

pub struct SmsLimiter {
    per_sender: DefaultKeyedRateLimiter<u64>,
    per_number: DefaultKeyedRateLimiter<u64>,
    notices: DefaultKeyedRateLimiter<u64>,
    salt: std::hash::RandomState,
    clock: DefaultClock,
}

impl SmsLimiter {
    pub fn new(per_sender: CheckedQuota, per_number: CheckedQuota) -> Self {
        let one_per_window = CheckedQuota {
            count: NonZeroU32::MIN,
            period: per_sender.period,
        };
        Self {
            per_sender: governor::RateLimiter::keyed(quota(per_sender)),
            per_number: governor::RateLimiter::keyed(quota(per_number)),
            notices: governor::RateLimiter::keyed(quota(one_per_window)),
            salt: std::hash::RandomState::new(),
            clock: DefaultClock::default(),
        }
    }

    pub fn check(&self, pseudonym: &str, number_called: &str) -> Result<(), Limited> {
        let sender = self.salt.hash_one(pseudonym);
        self.per_sender.check_key(&sender).map_err(|n| Limited {
            scope: Scope::Client,
            retry_after: n.wait_time_from(self.clock.now()),
        })?;
        self.per_number
            .check_key(&self.salt.hash_one(number_called))
            .map_err(|n| Limited {
                scope: Scope::Global,
                retry_after: n.wait_time_from(self.clock.now()),
            })
    }

    /// Whether this limited sender should be told (once per window).
    pub fn notice_due(&self, pseudonym: &str) -> bool {
        self.notices
            .check_key(&self.salt.hash_one(pseudonym))
            .is_ok()
    }

    pub fn forget_idle(&self) {
        for l in [&self.per_sender, &self.per_number, &self.notices] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn q(count: u32, secs: u64) -> CheckedQuota {
        CheckedQuota {
            count: NonZeroU32::new(count).unwrap(),
            period: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_limited_sender_is_told_once_per_window() {
        let l = SmsLimiter::new(q(2, 3600), q(100, 60));
        l.check("p1_a", "+15550000000").unwrap();
        l.check("p1_a", "+15550000000").unwrap();
        assert!(l.check("p1_a", "+15550000000").is_err());
        assert!(l.notice_due("p1_a"));
        assert!(!l.notice_due("p1_a"));
        l.check("p1_b", "+15550000000").unwrap();
    }
}
