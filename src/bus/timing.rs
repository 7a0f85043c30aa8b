//! Coarse times for everything tipwire schedules in Redis. A deadline, a
//! retry or a lease derived from the moment a tip arrived or was delivered
//! would tell that moment to the millisecond (sorted-set scores, the AOF), so
//! every such time is a whole minute computed from the minute of "now" alone:
//! it tells nothing finer than the minute the tip's `received` field already
//! tells. Nothing here is untrusted.

/// One minute in milliseconds: the finest time tipwire stores.
pub const MINUTE_MS: u64 = 60_000;

/// `ms` rounded down to the minute.
pub fn minute_floor(ms: u64) -> u64 {
    ms - ms % MINUTE_MS
}

/// `ms` rounded up to the minute.
pub fn minute_ceil(ms: u64) -> u64 {
    match ms % MINUTE_MS {
        0 => ms,
        r => ms.saturating_add(MINUTE_MS - r),
    }
}

/// When something that should happen `wait_ms` after `now_ms` is due: a
/// minute boundary computed from `now_ms`'s minute only, so it says nothing
/// finer about `now_ms`. Never earlier than `now_ms + wait_ms`; later by less
/// than a minute when `wait_ms` is whole minutes, by less than two otherwise.
pub fn coarse_due(now_ms: u64, wait_ms: u64) -> u64 {
    minute_ceil(
        minute_floor(now_ms)
            .saturating_add(MINUTE_MS)
            .saturating_add(wait_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_040_000; // a minute boundary

    #[test]
    fn due_times_are_minute_boundaries_that_depend_only_on_the_minute_of_now() {
        assert_eq!(coarse_due(T0, 120_000), T0 + 180_000);
        assert_eq!(coarse_due(T0 + 59_999, 120_000), T0 + 180_000);
        assert_eq!(coarse_due(T0 + 1, 2_000), T0 + 120_000);
        assert_eq!(minute_ceil(T0), T0);
        assert_eq!(minute_ceil(T0 + 1), T0 + MINUTE_MS);
        assert_eq!(minute_floor(T0 + 59_999), T0);
    }

    proptest! {
        #[test]
        fn a_coarse_due_time_is_never_early_and_at_most_two_minutes_late(
            now in 0u64..4_000_000_000_000,
            wait in 0u64..100_000_000,
        ) {
            let due = coarse_due(now, wait);
            prop_assert_eq!(due % MINUTE_MS, 0);
            prop_assert!(due >= now + wait);
            let late = due - (now + wait);
            prop_assert!(late < 2 * MINUTE_MS);
            if wait % MINUTE_MS == 0 {
                prop_assert!(late <= MINUTE_MS);
            }
            prop_assert_eq!(due, coarse_due(minute_floor(now), wait));
        }
    }
}
