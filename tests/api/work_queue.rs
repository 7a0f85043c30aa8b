//! The minute-lease work queue (`bus::queue`) against the real Redis: two
//! `WorkQueue`s on separate connections stand for two gateway replicas, and
//! time is passed in, so nothing sleeps.

use tipwire::bus::timing::{MINUTE_MS, coarse_due};
use tipwire::bus::{Retries, Store, TimerSet, WorkQueue};

use crate::support::app::{delete_prefix, require_redis, test_settings};
use crate::support::private_redis::PrivateRedis;

const GROUP: &str = "qtest";
const LEASE_MS: u64 = 60_000;
/// A minute boundary plus a little: the lease ends at a whole minute.
const T0: u64 = 1_700_000_040_000 + 7_345;

struct Queues {
    settings: tipwire::config::Settings,
    _dir: tempfile::TempDir,
}

impl Queues {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(dir.path());
        require_redis(&settings.redis.url);
        Self {
            settings,
            _dir: dir,
        }
    }

    fn stream(&self) -> String {
        format!("{}:qtest-stream", self.settings.redis.key_prefix)
    }

    /// A replica's view of the queue: its own connection and consumer name.
    fn replica(&self, consumer: &str) -> WorkQueue {
        let store = Store::new(&self.settings.redis).unwrap();
        WorkQueue::new(store, &self.stream(), GROUP, consumer, LEASE_MS)
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(self.settings.redis.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The answer of a counting command (`ZCARD`, `HLEN`, `XLEN`) on `key`.
    fn count(&self, cmd: &str, key: &str) -> usize {
        redis::cmd(cmd).arg(key).query(&mut self.redis()).unwrap()
    }

    /// Appends an entry with an id at `minute_ms` (Redis picks the sequence).
    fn add(&self, minute_ms: u64, n: usize) -> String {
        redis::cmd("XADD")
            .arg(self.stream())
            .arg(format!("{minute_ms}-*"))
            .arg("n")
            .arg(n)
            .query(&mut self.redis())
            .unwrap()
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        delete_prefix(&self.settings.redis.url, &self.settings.redis.key_prefix);
    }
}

async fn take(q: &WorkQueue, now_ms: u64, count: usize) -> Vec<String> {
    q.take(now_ms, count, "0-0")
        .await
        .unwrap()
        .ids
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test]
async fn two_replicas_never_take_the_same_entry_while_its_lease_runs() {
    let qs = Queues::new();
    let (a, b) = (qs.replica("a"), qs.replica("b"));
    let minute = T0 - T0 % MINUTE_MS;
    let ids: Vec<String> = (0..5).map(|n| qs.add(minute, n)).collect();

    let first = take(&a, T0, 2).await;
    let second = take(&b, T0, 2).await;
    let third = take(&a, T0 + 1_000, 2).await;
    assert_eq!(first, ids[..2]);
    assert_eq!(second, ids[2..4]);
    assert_eq!(third, ids[4..]);
    // Until a lease ends, nobody gets anything again.
    let lease_end = coarse_due(T0, LEASE_MS);
    assert!(take(&b, lease_end - 1, 10).await.is_empty());
    assert!(take(&a, lease_end - 1, 10).await.is_empty());
}

#[tokio::test]
async fn a_crashed_workers_entry_is_taken_over_once_at_its_lease_end_and_the_old_worker_loses_it() {
    let qs = Queues::new();
    let (a, b, c) = (qs.replica("a"), qs.replica("b"), qs.replica("c"));
    let id = qs.add(T0 - T0 % MINUTE_MS, 0);
    assert_eq!(take(&a, T0, 16).await, [id.as_str()]);
    // `a` dies (or sent and died before its acknowledgement: the documented
    // duplicate). At the lease's end exactly one other replica gets it.
    let end = coarse_due(T0, LEASE_MS);
    assert_eq!(end % MINUTE_MS, 0, "lease ends are minute boundaries");
    assert_eq!(take(&b, end, 16).await, [id.as_str()]);
    assert!(take(&c, end, 16).await.is_empty(), "taken over once");
    // The old worker, coming back, may not send it.
    assert!(!a.own(&id, end).await.unwrap());
    assert!(b.own(&id, end).await.unwrap());
    b.finish(&id, None).await.unwrap();
    assert!(take(&c, end + 10 * MINUTE_MS, 16).await.is_empty());
    let len = qs.count("XLEN", &qs.stream());
    assert_eq!(len, 0, "a finished entry is deleted");
}

#[tokio::test]
async fn owning_an_entry_at_the_time_of_its_send_keeps_it_from_other_replicas_for_a_lease() {
    let qs = Queues::new();
    let (a, b) = (qs.replica("a"), qs.replica("b"));
    let id = qs.add(T0 - T0 % MINUTE_MS, 0);
    assert_eq!(take(&a, T0, 16).await, [id.as_str()]);
    // Earlier sends took three minutes; the send of this one starts now.
    let send_at = T0 + 3 * MINUTE_MS;
    assert!(a.own(&id, send_at).await.unwrap());
    // However long the send takes up to a lease, nobody takes it over.
    assert!(take(&b, send_at + LEASE_MS - 1, 16).await.is_empty());
    assert_eq!(
        take(&b, coarse_due(send_at, LEASE_MS), 16).await,
        [id.as_str()]
    );
}

#[tokio::test]
async fn entries_appended_after_the_cursor_in_the_same_minute_or_after_deletions_are_not_skipped() {
    let qs = Queues::new();
    let (a, b) = (qs.replica("a"), qs.replica("b"));
    let minute = T0 - T0 % MINUTE_MS;
    let first = qs.add(minute, 0);
    assert_eq!(take(&a, T0, 16).await, [first.as_str()]);
    a.finish(&first, None).await.unwrap();
    // Same minute, the stream now empty: the id continues after the cursor.
    let second = qs.add(minute, 1);
    assert!(second > first);
    assert_eq!(take(&b, T0, 16).await, [second.as_str()]);
    // An entry deleted while leased (trimmed, dead-lettered elsewhere) is
    // forgotten at its lease end, not handed out forever.
    let _: usize = redis::cmd("XDEL")
        .arg(qs.stream())
        .arg(&second)
        .query(&mut qs.redis())
        .unwrap();
    let end = coarse_due(T0, LEASE_MS);
    assert!(take(&a, end, 16).await.is_empty());
    let leases = qs.count("ZCARD", a.leases());
    let owners = qs.count("HLEN", a.owners());
    assert_eq!((leases, owners), (0, 0));
}

#[tokio::test]
async fn an_older_consumer_group_is_migrated_once_with_its_pending_entries_retried_and_none_lost() {
    let qs = Queues::new();
    let mut conn = qs.redis();
    let minute = T0 - T0 % MINUTE_MS;
    let ids: Vec<String> = (0..3).map(|n| qs.add(minute, n)).collect();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(qs.stream())
        .arg(GROUP)
        .arg("0")
        .query(&mut conn)
        .unwrap();
    // The old worker read two entries and acknowledged the first.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("old")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg(qs.stream())
        .arg(">")
        .query(&mut conn)
        .unwrap();
    let _: usize = redis::cmd("XACK")
        .arg(qs.stream())
        .arg(GROUP)
        .arg(&ids[0])
        .query(&mut conn)
        .unwrap();

    // Two replicas upgrade at once: both migrate; the second finds nothing.
    let (a, b) = (qs.replica("a"), qs.replica("b"));
    a.migrate().await.unwrap();
    b.migrate().await.unwrap();
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(qs.stream())
        .query(&mut conn)
        .unwrap();
    assert!(groups.is_empty(), "the group and its times are destroyed");
    // The pending one is retried, the unread one is new; the acknowledged
    // one is not sent again; each is handed out once.
    let mut got = take(&a, T0, 16).await;
    got.extend(take(&b, T0, 16).await);
    got.sort();
    assert_eq!(got, ids[1..]);
}

/// Another gateway replica's relay worker on the same Redis.
fn relay_replica(
    app: &crate::support::app::TestApp,
    consumer: &str,
) -> tipwire::outbound::relay::RelayWorker {
    tipwire::outbound::relay::RelayWorker::new(
        Store::new(&app.settings.redis).unwrap(),
        std::sync::Arc::new(tipwire::crypto::Keyring::load(&app.settings.keys.dir).unwrap()),
        tipwire::outbound::sms::provider_clients(&app.settings).unwrap(),
        None,
        consumer.into(),
        app.settings.relay.max_attempts,
        u64::try_from(app.settings.relay.backoff_base.as_millis()).unwrap_or(u64::MAX),
        app.metrics.clone(),
        app.settings.retention.period,
    )
}

#[tokio::test]
async fn a_relay_send_late_in_a_round_keeps_its_lease_so_another_replica_does_not_send_it_too() {
    use std::sync::Arc;
    use tokio::sync::Notify;

    use crate::support::sms::{Hold, spawn_sms_app, twilio_params};

    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let r = app
        .twilio(&twilio_params(
            "+15557650031",
            "hello",
            "SM7300000000000000000000000000000c",
        ))
        .await;
    assert_eq!(r.status(), 200);
    let thread = tipwire::domain::ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();
    app.queue_reply(&thread, "first", tipwire::outbound::relay::Kind::Reply)
        .await;
    app.queue_reply(&thread, "second", tipwire::outbound::relay::Kind::Reply)
        .await;
    // The second send is held in flight until the test releases it.
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    stand_in.state.lock().unwrap().hold = Some(Hold {
        at: 1,
        arrived: arrived.clone(),
        release: release.clone(),
    });
    // Both are taken in one round at t0; the first send takes three minutes
    // (the clock reads three minutes later once it is done), so the second
    // starts after the lease the round took it with has ended.
    let t0 = tipwire::clock::now_ms();
    let sent = stand_in.clone();
    let clock = move || t0 + 3 * MINUTE_MS * u64::from(!sent.sent().is_empty());
    let a = app.relay.clone();
    let round = tokio::spawn(async move { a.step_with(&clock).await.unwrap() });
    arrived.notified().await;

    // Meanwhile another replica's round, three minutes after t0.
    let other = relay_replica(&app, "other-replica")
        .step_at(t0 + 3 * MINUTE_MS)
        .await
        .unwrap();
    release.notify_one();
    let report = round.await.unwrap();
    assert_eq!(other.sent, 0, "a send in flight is not taken over");
    assert_eq!(report.sent, 2);
    let bodies: Vec<String> = stand_in.sent().into_iter().map(|s| s.body).collect();
    assert_eq!(bodies, ["first", "second"], "each reply sent once");
}

#[tokio::test]
async fn a_worker_whose_lease_was_taken_over_does_not_schedule_a_retry_of_the_new_holders_entry() {
    let qs = Queues::new();
    let (a, b) = (qs.replica("a"), qs.replica("b"));
    let schedule = format!("{}:qtest-retry", qs.settings.redis.key_prefix);
    let id = qs.add(T0 - T0 % MINUTE_MS, 0);
    assert_eq!(take(&a, T0, 16).await, [id.as_str()]);
    let end = coarse_due(T0, LEASE_MS);
    assert_eq!(take(&b, end, 16).await, [id.as_str()]);
    // `a`'s send failed for now, after `b` took the entry over (and may be
    // sending it): `a` leaves it to `b`.
    a.finish(&id, Some((&schedule, "again".into(), end + MINUTE_MS)))
        .await
        .unwrap();
    let scheduled = qs.count("ZCARD", &schedule);
    assert_eq!(scheduled, 0, "no second copy scheduled");
    assert!(b.own(&id, end).await.unwrap(), "b still holds it");
    // The holder's own retry is scheduled and ends the entry.
    b.finish(&id, Some((&schedule, "again".into(), end + MINUTE_MS)))
        .await
        .unwrap();
    let scheduled = qs.count("ZCARD", &schedule);
    assert_eq!(scheduled, 1);
    assert!(!b.own(&id, end).await.unwrap());
}

#[tokio::test]
async fn a_timer_set_hands_each_due_member_to_one_taker_only() {
    let qs = Queues::new();
    let timers = TimerSet::new(format!("{}:qtest-timers", qs.settings.redis.key_prefix));
    let (one, two) = (
        Store::new(&qs.settings.redis).unwrap(),
        Store::new(&qs.settings.redis).unwrap(),
    );
    let due = coarse_due(T0, LEASE_MS);
    assert!(timers.schedule(&one, "a", due).await.unwrap());
    assert!(timers.schedule(&one, "b", due + MINUTE_MS).await.unwrap());
    assert!(
        !timers
            .schedule(&two, "a", due + 5 * MINUTE_MS)
            .await
            .unwrap(),
        "scheduled once, at the first due time"
    );
    let (mut c1, mut c2) = (one.conn().await.unwrap(), two.conn().await.unwrap());
    assert!(
        timers
            .take_due(&mut c1, due - 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(timers.due(&mut c1, due, 10).await.unwrap(), ["a"]);
    assert_eq!(timers.take_due(&mut c1, due, 10).await.unwrap(), ["a"]);
    assert!(timers.take_due(&mut c2, due, 10).await.unwrap().is_empty());
    assert_eq!(timers.cancel(&mut c2, &["b".to_owned()]).await.unwrap(), 1);
    assert_eq!(qs.count("ZCARD", timers.key()), 0);
}

#[tokio::test]
async fn a_retry_comes_back_into_the_stream_with_its_fields_in_order_when_due() {
    let qs = Queues::new();
    let a = qs.replica("a");
    let prefix = &qs.settings.redis.key_prefix;
    let (schedule, dead) = (
        format!("{prefix}:qtest-retry"),
        format!("{prefix}:qtest-dead"),
    );
    let retries = Retries::new(schedule.as_str(), dead.as_str(), &["n", "attempts"]);
    let id = qs.add(T0 - T0 % MINUTE_MS, 0);
    assert_eq!(take(&a, T0, 16).await, [id.as_str()]);
    let due = coarse_due(T0, LEASE_MS);
    retries
        .finish(&a, &id, Some((r#"{"attempts":1,"n":7}"#.to_owned(), due)))
        .await
        .unwrap();
    assert_eq!(qs.count("XLEN", &qs.stream()), 0);
    assert_eq!(retries.promote(&a, due - 1).await.unwrap(), 0);
    assert_eq!(retries.promote(&a, due).await.unwrap(), 1);
    assert_eq!(qs.count("ZCARD", &schedule), 0);
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(qs.stream())
        .arg("-")
        .arg("+")
        .query(&mut qs.redis())
        .unwrap();
    assert_eq!(entries.len(), 1);
    let (again, fields) = entries.first().unwrap();
    assert_eq!(fields, &["n", "7", "attempts", "1"]);
    assert!(again.starts_with(&format!("{}-", due - due % MINUTE_MS)));
    // The next failure is the last: a dead letter, the entry gone.
    assert_eq!(take(&a, due, 16).await, [again.as_str()]);
    retries
        .dead_letter(&a, again, due, &["reason".to_owned(), "test".to_owned()])
        .await
        .unwrap();
    assert_eq!(qs.count("XLEN", &qs.stream()), 0);
    assert_eq!(qs.count("XLEN", &dead), 1);
}

#[tokio::test]
async fn due_retries_stay_scheduled_while_redis_is_full_and_an_unreadable_one_goes_after_the_appends()
 {
    // A private Redis, so filling it disturbs nobody.
    let redis = PrivateRedis::start_with(&["--maxmemory-policy", "noeviction"]);
    let mut qs = Queues::new();
    qs.settings.redis.url = redis.url();
    let a = qs.replica("a");
    let prefix = &qs.settings.redis.key_prefix;
    let (schedule, dead) = (
        format!("{prefix}:qtest-retry"),
        format!("{prefix}:qtest-dead"),
    );
    let retries = Retries::new(schedule.as_str(), dead.as_str(), &["n", "attempts"]);
    let due = coarse_due(T0, LEASE_MS);
    let mut conn = qs.redis();
    for member in [
        r#"{"attempts":1,"n":1}"#,
        "not json",
        r#"{"attempts":1,"n":2}"#,
    ] {
        let _: () = redis::cmd("ZADD")
            .arg(&schedule)
            .arg(due)
            .arg(member)
            .query(&mut conn)
            .unwrap();
    }

    // At maxmemory the first append is refused, so nothing changed: the
    // appends are the script's first writes.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query(&mut conn)
        .unwrap();
    assert!(retries.promote(&a, due).await.is_err());
    assert_eq!(qs.count("ZCARD", &schedule), 3);
    assert_eq!(qs.count("XLEN", &qs.stream()), 0);

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query(&mut conn)
        .unwrap();
    assert_eq!(retries.promote(&a, due).await.unwrap(), 2);
    assert_eq!(
        qs.count("ZCARD", &schedule),
        0,
        "the unreadable one is gone too"
    );
    assert_eq!(qs.count("XLEN", &qs.stream()), 2);
}
