//! Retention: everything linked to a tip or a tipster that is older than the
//! configured period goes. The background task in `app` calls
//! [`trim_older_than`] on a timer with `now - retention.days`; `tipwire purge
//! --before` calls it with the operator's date; tests call it directly.
//!
//! What it removes (docs/architecture.md, "Redis keys", has every key kind):
//! entries of every stream whose ids are coarse times (`XTRIM MINID`, exact),
//! members of every schedule whose scores are due times, and, in the
//! per-thread histories and tip lists found by `SCAN`, what is older than the
//! cutoff. Keys that carry their own expiry (state hashes, indexes, reply
//! addresses, opt-out markers, dedupe markers) are not touched here: each
//! was written with `EXPIREAT` at most `retention.days` (plus the hour it is
//! rounded to) ahead. Stream entries and list items read back are untrusted:
//! only their ids are compared.

use redis::aio::ConnectionManager;

use super::names::{THREAD, THREAD_TIPS};
use super::scripts::TRIM_ID_LIST;
use super::{Keys, Store, StoreError};

/// Keys `SCAN` returns per call, at most.
const SCAN_COUNT: usize = 1000;

/// Every stream whose entry ids are coarse arrival times.
fn streams(keys: &Keys) -> [String; 9] {
    [
        keys.alerts().to_owned(),
        keys.alert_summaries(),
        keys.alert_summaries_backfill(),
        keys.alert_events(),
        keys.escalation_events(),
        keys.outbound(),
        keys.outbound_dead(),
        keys.push_out(),
        keys.push_dead(),
    ]
}

/// Every sorted set whose scores are due times (ms), each due after the tip
/// it belongs to arrived.
fn schedules(keys: &Keys) -> [String; 4] {
    [
        keys.escalations(),
        keys.outbound_retry(),
        keys.push_retry(),
        keys.push_nudges(),
    ]
}

/// Removes everything tip- or tipster-linked from before `cutoff_unix_secs`
/// that does not expire by itself; returns how many entries, members and
/// list items went.
pub async fn trim_older_than(store: &Store, cutoff_unix_secs: u64) -> Result<u64, StoreError> {
    let keys = store.keys();
    let cutoff_ms = cutoff_unix_secs.saturating_mul(1000);
    let mut conn = store.conn().await?;
    let mut pipe = redis::pipe();
    for stream in streams(keys) {
        pipe.cmd("XTRIM").arg(stream).arg("MINID").arg(cutoff_ms);
    }
    for schedule in schedules(keys) {
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(schedule)
            .arg("-inf")
            .arg(format!("({cutoff_ms}"));
    }
    let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
    let mut removed: u64 = counts.iter().sum();
    // Each page as it comes: a trim done twice removes nothing the second time.
    let histories = keys.pattern(THREAD);
    let mut scan = Scan::new(&histories, "stream");
    while let Some(page) = scan.next_page(&mut conn).await? {
        for history in page {
            let n: u64 = redis::cmd("XTRIM")
                .arg(&history)
                .arg("MINID")
                .arg(cutoff_ms)
                .query_async(&mut conn)
                .await?;
            removed += n;
        }
    }
    let trim_list = redis::Script::new(TRIM_ID_LIST);
    let lists = keys.pattern(THREAD_TIPS);
    let mut scan = Scan::new(&lists, "list");
    while let Some(page) = scan.next_page(&mut conn).await? {
        for list in page {
            let n: u64 = trim_list
                .key(&list)
                .arg(cutoff_ms)
                .invoke_async(&mut conn)
                .await?;
            removed += n;
        }
    }
    Ok(removed)
}

/// The keys of type `kind` matching `pattern`, one `SCAN` page at a time
/// (at most about [`SCAN_COUNT`] keys held at once, however many there
/// are): keys added meanwhile may be missed, and are newer than any cutoff;
/// a key may come twice, so what is done to each must be idempotent. The
/// type filter keeps a stray key of another type from failing every sweep.
pub(crate) struct Scan<'a> {
    pattern: &'a str,
    kind: &'a str,
    /// `None` once the whole keyspace was walked.
    cursor: Option<u64>,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(pattern: &'a str, kind: &'a str) -> Self {
        Self {
            pattern,
            kind,
            cursor: Some(0),
        }
    }

    /// The next page (possibly empty), or `None` when the walk is done.
    pub(crate) async fn next_page(
        &mut self,
        conn: &mut ConnectionManager,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let Some(cursor) = self.cursor else {
            return Ok(None);
        };
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(self.pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .arg("TYPE")
            .arg(self.kind)
            .query_async(conn)
            .await?;
        self.cursor = (next != 0).then_some(next);
        Ok(Some(page))
    }
}

/// Moves the opt-out set older versions kept (`<prefix>:opted-out`, never
/// trimmed) into per-pseudonym markers expiring at `expire_at` (unix
/// seconds), keeping any marker already there; returns how many moved.
pub async fn migrate_opt_outs(store: &Store, expire_at: u64) -> Result<u64, StoreError> {
    let keys = store.keys();
    let legacy = keys.legacy_opted_out();
    let mut conn = store.conn().await?;
    let mut moved = 0;
    loop {
        // Never empty while the set is not, unlike an SSCAN page.
        let members: Vec<String> = redis::cmd("SRANDMEMBER")
            .arg(&legacy)
            .arg(SCAN_COUNT)
            .query_async(&mut conn)
            .await?;
        if members.is_empty() {
            return Ok(moved);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for member in &members {
            pipe.cmd("SET")
                .arg(keys.opted_out(member))
                .arg(1)
                .arg("EXAT")
                .arg(expire_at)
                .arg("NX")
                .ignore();
        }
        pipe.cmd("SREM").arg(&legacy).arg(&members).ignore();
        let () = pipe.query_async(&mut conn).await?;
        moved += u64::try_from(members.len()).unwrap_or(u64::MAX);
    }
}
