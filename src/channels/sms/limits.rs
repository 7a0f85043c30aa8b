//! SMS rate limits: per pseudonym (one tipster) and per program number called,
//! checked before any media is fetched or anything sealed, so a junk flood from
//! one number costs a hash and a counter. A limited tipster gets one polite
//! notice per window, not one per message.

use std::num::NonZeroU32;

use crate::config::CheckedQuota;
use crate::ratelimit::{HashedLimiter, Limited, Scope};

pub struct SmsLimiter {
    per_sender: HashedLimiter,
    /// Labelled global: the program number is the channel's bucket.
    per_number: HashedLimiter,
    notices: HashedLimiter,
}

impl SmsLimiter {
    pub fn new(per_sender: CheckedQuota, per_number: CheckedQuota) -> Self {
        let one_per_window = CheckedQuota {
            count: NonZeroU32::MIN,
            period: per_sender.period,
        };
        Self {
            per_sender: HashedLimiter::new(per_sender, Scope::Client),
            per_number: HashedLimiter::new(per_number, Scope::Global),
            notices: HashedLimiter::new(one_per_window, Scope::Client),
        }
    }

    /// The sender's limit first, then the number's: a flooding sender does
    /// not spend the number's bucket.
    pub fn check(&self, pseudonym: &str, number_called: &str) -> Result<(), Limited> {
        self.per_sender.check(pseudonym)?;
        self.per_number.check(number_called)
    }

    /// Whether this limited sender should be told (once per window).
    pub fn notice_due(&self, pseudonym: &str) -> bool {
        self.notices.check(pseudonym).is_ok()
    }

    pub fn forget_idle(&self) {
        for l in [&self.per_sender, &self.per_number, &self.notices] {
            l.forget_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_sender_is_told_once_per_window() {
        let l = SmsLimiter::new(CheckedQuota::per(2, 3600), CheckedQuota::per(100, 60));
        l.check("p1_a", "+15550000000").unwrap();
        l.check("p1_a", "+15550000000").unwrap();
        assert!(l.check("p1_a", "+15550000000").is_err());
        assert!(l.notice_due("p1_a"));
        assert!(!l.notice_due("p1_a"));
        l.check("p1_b", "+15550000000").unwrap();
    }
}
