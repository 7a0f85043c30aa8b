//! Timer sets: every deadline tipwire keeps in Redis (escalation stages,
//! fallback nudges, the relay's and push delivery's retries) is one sorted
//! set, member → due time in unix milliseconds, always a whole minute
//! ([`super::timing::coarse_due`]), so no score tells a moment finer than the
//! minute. Each deadline keeps its own key (named in [`super::names`]).
//!
//! The mechanics live in Lua ([`TIMER_FNS`], to be put in front of any
//! script that uses them): `timer_schedule(timers, due, member)` adds a
//! member unless it is already there, `timer_advance` adds it or moves it
//! earlier, `timer_take(timers, member, now)` removes one member if it is
//! due and says whether this call removed it (so across any number of
//! replicas only one script acts on it), and `timer_take_due(timers, now,
//! n)` removes and returns up to `n` due members. A script that needs other
//! keys per member (an alert's state hash) lists candidates with
//! [`TimerSet::due`] first and takes each with `timer_take`.
//!
//! Untrusted: members read back are strings another process may have
//! written; callers parse them and drop ([`TimerSet::cancel`]) foreign ones.

use redis::aio::ConnectionManager;

use super::scripts::{TIMER_FNS, TIMER_TAKE};
use super::{Store, StoreError};

/// One deadline sorted set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerSet {
    key: String,
}

fn take_script() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(&with_timers(TIMER_TAKE)))
}

/// `body` with the timer functions in front of it.
pub fn with_timers(body: &str) -> String {
    format!("{TIMER_FNS}{body}")
}

impl TimerSet {
    /// The timer set stored under `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into() }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Schedules `member` at `due` (a minute boundary) unless it is already
    /// scheduled; true if it was added.
    pub async fn schedule(
        &self,
        store: &Store,
        member: &str,
        due: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = store.conn().await?;
        let added: usize = redis::cmd("ZADD")
            .arg(&self.key)
            .arg("NX")
            .arg(due)
            .arg(member)
            .query_async(&mut conn)
            .await?;
        Ok(added == 1)
    }

    /// Up to `count` members due at `now_ms`, earliest first, left in place:
    /// candidates for a script that takes each with `timer_take`.
    pub async fn due(
        &self,
        conn: &mut ConnectionManager,
        now_ms: u64,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(&self.key)
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(conn)
            .await?)
    }

    /// Removes and returns up to `count` members due at `now_ms`, in one
    /// script: each is returned to one caller only.
    pub async fn take_due(
        &self,
        conn: &mut ConnectionManager,
        now_ms: u64,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(take_script()
            .key(&self.key)
            .arg(now_ms)
            .arg(count)
            .invoke_async(conn)
            .await?)
    }

    /// Removes `members` (ones tipwire did not write); returns how many were
    /// there.
    pub async fn cancel(
        &self,
        conn: &mut ConnectionManager,
        members: &[String],
    ) -> Result<usize, StoreError> {
        if members.is_empty() {
            return Ok(0);
        }
        Ok(redis::cmd("ZREM")
            .arg(&self.key)
            .arg(members)
            .query_async(conn)
            .await?)
    }
}
