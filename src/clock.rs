//! The wall clock as Unix time, in whole seconds or milliseconds: the one
//! place the crate turns a `SystemTime` into a number. A time before 1970
//! (a clock set wrong) reads as 0 and one past `u64::MAX` ms saturates, so
//! nothing here panics. Rounding to the minute or hour (the coarse times
//! tipwire stores) is the caller's: see `bus::timing`.
//!
//! Untrusted input: none (only the system clock).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds of `t`.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix milliseconds of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_read_as_unix_seconds_and_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_059_999);
        assert_eq!(unix_secs(t), 1_700_000_059);
        assert_eq!(unix_ms(t), 1_700_000_059_999);
    }

    #[test]
    fn a_time_before_1970_reads_as_zero() {
        let t = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(unix_secs(t), 0);
        assert_eq!(unix_ms(t), 0);
    }

    #[test]
    fn a_time_past_u64_milliseconds_saturates() {
        if let Some(t) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 999)) {
            assert_eq!(unix_ms(t), u64::MAX);
        }
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_secs() > 1_577_836_800);
        assert!(now_ms() / 1000 >= now_secs().saturating_sub(1));
    }
}
