//! Retention: alerts older than the configured number of days are trimmed,
//! on demand and by the gateway's own timer, and newer ones are kept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tipwire::bus::trim_older_than;

use crate::support::app::{spawn_app, spawn_app_with};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes an entry dated `secs` ago directly, as an old tip would be.
async fn old_entry(app: &crate::support::app::TestApp, age_secs: u64) {
    let mut conn = app.store.conn().await.unwrap();
    let id = format!("{}-0", (now() - age_secs) * 1000);
    let _: String = redis::cmd("XADD")
        .arg(app.store.keys().alerts())
        .arg(id)
        .arg("tip_id")
        .arg(tipwire::domain::TipId::random().as_str())
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn tips_past_retention_are_trimmed_and_newer_ones_kept() {
    let app = spawn_app().await;
    old_entry(&app, 40 * 86_400).await;
    assert_eq!(app.post_tip("fresh", "north", "now").await.status(), 200);
    // The old entry gets its summary (the gateway does this at start too).
    tipwire::bus::backfill_summaries(&app.store).await.unwrap();
    let removed = trim_older_than(&app.store, now() - 30 * 86_400)
        .await
        .unwrap();
    assert_eq!(removed, 2, "the old entry and its summary");
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        crate::support::app::open_tip(&alerts[0], &app.escrow)
            .unwrap()
            .text,
        "fresh"
    );
}

#[tokio::test]
async fn the_gateway_trims_by_itself_on_its_timer() {
    let app = spawn_app_with(|s| {
        s.retention.period = std::time::Duration::from_secs(86_400);
        s.sms.reply_address_days = 1;
        s.email.reply_address_days = 1;
        s.retention.sweep_interval = std::time::Duration::from_secs(1);
    })
    .await;
    old_entry(&app, 2 * 86_400).await;
    let mut conn = app.store.conn().await.unwrap();
    let mut len: u64 = 1;
    for _ in 0..50 {
        len = redis::cmd("XLEN")
            .arg(app.store.keys().alerts())
            .query_async(&mut conn)
            .await
            .unwrap();
        if len == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(len, 0, "the retention task removed the two-day-old entry");
}

/// Adds an entry with the id `<ms>-<seq>` and `fields` to `stream`.
async fn entry_at(
    app: &crate::support::app::TestApp,
    stream: &str,
    ms: u64,
    fields: &[(&str, &str)],
) {
    let mut conn = app.store.conn().await.unwrap();
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg(format!("{ms}-*"));
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    let _: String = cmd.query_async(&mut conn).await.unwrap();
}

#[tokio::test]
async fn the_retention_step_trims_every_tip_linked_stream_schedule_history_and_list() {
    let app = spawn_app().await;
    let keys = app.store.keys();
    let old_ms = (now() - 40 * 86_400) / 60 * 60_000;
    let new_ms = now() / 60 * 60_000;
    let thread = crate::support::app::random_hex(32);
    let summaries = format!("{}:alert-summaries", keys.prefix());
    let streams = [
        keys.alerts().to_owned(),
        keys.alert_events(),
        keys.escalation_events(),
        keys.outbound(),
        keys.outbound_dead(),
        keys.push_out(),
        keys.push_dead(),
        keys.thread(&thread),
        summaries,
    ];
    for stream in &streams {
        for ms in [old_ms, new_ms] {
            entry_at(&app, stream, ms, &[("thread", &thread), ("tip_id", "x")]).await;
        }
    }
    let schedules = [
        keys.escalations(),
        keys.outbound_retry(),
        keys.push_retry(),
        keys.push_nudges(),
    ];
    let mut conn = app.store.conn().await.unwrap();
    for schedule in &schedules {
        let _: () = redis::cmd("ZADD")
            .arg(schedule)
            .arg(old_ms)
            .arg("old")
            .arg(new_ms + 60_000)
            .arg("new")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let list = keys.thread_tips(&thread);
    let _: () = redis::cmd("RPUSH")
        .arg(&list)
        .arg(format!("{old_ms}-0"))
        .arg(format!("{new_ms}-0"))
        .query_async(&mut conn)
        .await
        .unwrap();

    trim_older_than(&app.store, now() - 30 * 86_400)
        .await
        .unwrap();

    for stream in &streams {
        let ids: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        let ids: Vec<String> = ids.ids.into_iter().map(|e| e.id).collect();
        assert_eq!(ids, [format!("{new_ms}-0")], "{stream}");
    }
    for schedule in &schedules {
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(schedule)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(members, ["new"], "{schedule}");
    }
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg(&list)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(items, [format!("{new_ms}-0")]);
}

/// Thousands of thread histories and tip lists, more than several `SCAN`
/// pages: the step trims each page as it comes (never holding every key),
/// misses none and counts each old item once.
#[tokio::test]
async fn the_retention_step_trims_histories_and_lists_across_many_scan_pages() {
    const THREADS: usize = 2_500;
    let app = spawn_app().await;
    let keys = app.store.keys();
    let old_ms = (now() - 40 * 86_400) / 60 * 60_000;
    let new_ms = now() / 60 * 60_000;
    let threads: Vec<String> = (0..THREADS)
        .map(|_| crate::support::app::random_hex(32))
        .collect();
    let mut conn = app.store.conn().await.unwrap();
    let mut pipe = redis::pipe();
    for thread in &threads {
        for ms in [old_ms, new_ms] {
            pipe.cmd("XADD")
                .arg(keys.thread(thread))
                .arg(format!("{ms}-0"))
                .arg("kind")
                .arg("reply")
                .ignore();
        }
        pipe.cmd("RPUSH")
            .arg(keys.thread_tips(thread))
            .arg(format!("{old_ms}-0"))
            .arg(format!("{new_ms}-0"))
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();

    let removed = trim_older_than(&app.store, now() - 30 * 86_400)
        .await
        .unwrap();
    assert_eq!(removed, 2 * u64::try_from(THREADS).unwrap());
    let mut pipe = redis::pipe();
    for thread in &threads {
        pipe.cmd("XLEN").arg(keys.thread(thread));
        pipe.cmd("LLEN").arg(keys.thread_tips(thread));
    }
    let lengths: Vec<u64> = pipe.query_async(&mut conn).await.unwrap();
    assert!(lengths.iter().all(|&n| n == 1), "one new item left in each");
    // Once more: nothing old is left to remove.
    assert_eq!(
        trim_older_than(&app.store, now() - 30 * 86_400)
            .await
            .unwrap(),
        0
    );
}

/// Every key the gateway wrote for a tipster's texts (a tip, a STOP, a START,
/// a STOP again) either expires by itself within the retention (plus the
/// hours the expiry is rounded to) or is a stream or schedule the retention
/// step trims; and an opt-out outlives the reply address it protects.
#[tokio::test]
async fn every_key_a_tipster_leaves_expires_within_the_retention_and_an_opt_out_outlives_the_address()
 {
    use crate::support::sms::{spawn_sms_app, twilio_params};
    let (app, _stand_in) = spawn_sms_app(|s| {
        s.retention.period = std::time::Duration::from_secs(10 * 86_400);
        s.sms.reply_address_days = 10;
        s.email.reply_address_days = 10;
    })
    .await;
    let tipster = "+15557650000";
    for (body, sid) in [
        ("a tip", "SM1"),
        ("STOP", "SM2"),
        ("START", "SM3"),
        ("STOP", "SM4"),
    ] {
        assert_eq!(
            app.twilio(&twilio_params(tipster, body, sid))
                .await
                .status(),
            200
        );
    }
    let thread = app.alerts().await[0].entry.thread.clone();
    let keys = app.store.keys();
    let trimmed = [
        keys.alerts().to_owned(),
        format!("{}:alert-summaries", keys.prefix()),
        keys.alert_events(),
        keys.escalation_events(),
        keys.outbound(),
        keys.outbound_dead(),
        keys.push_out(),
        keys.push_dead(),
        keys.escalations(),
        keys.outbound_retry(),
        keys.push_retry(),
        keys.push_nudges(),
    ];
    // Not the tipster's: the directory the test enrolled a mediator into.
    let directory = [
        keys.mediators().to_owned(),
        keys.mediators_version().to_owned(),
    ];
    let mut conn = app.store.conn().await.unwrap();
    let all: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", keys.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let limit = now() + 10 * 86_400 + 3 * 3600;
    let mut opt_outs = Vec::new();
    for key in &all {
        if trimmed.contains(key) || directory.contains(key) {
            continue;
        }
        let at: i64 = redis::cmd("EXPIRETIME")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(at > 0, "{key} never expires");
        let at = u64::try_from(at).unwrap();
        assert!(
            at <= limit,
            "{key} expires {} s past the retention",
            at - limit
        );
        if key.contains(":opted-out") {
            assert_eq!(at % 3600, 0, "{key}: a whole hour, nothing finer");
            opt_outs.push(at);
        }
    }
    let address: i64 = redis::cmd("EXPIRETIME")
        .arg(keys.reply_to(&thread))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(opt_outs.len(), 1, "one opt-out marker for the STOP");
    assert!(opt_outs[0] > u64::try_from(address).unwrap());
}

#[tokio::test]
async fn the_retention_step_moves_the_old_opt_out_set_into_markers_that_expire_on_the_hour() {
    let app = spawn_app().await;
    let keys = app.store.keys();
    let mut conn = app.store.conn().await.unwrap();
    let legacy = keys.legacy_opted_out();
    let _: () = redis::cmd("SADD")
        .arg(&legacy)
        .arg(&["pseudonym-a", "pseudonym-b"])
        .query_async(&mut conn)
        .await
        .unwrap();

    tipwire::app::retention_step(&app.store, Duration::from_secs(10 * 86_400)).await;

    let exists: bool = redis::cmd("EXISTS")
        .arg(&legacy)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "the set is gone");
    for p in ["pseudonym-a", "pseudonym-b"] {
        let at: i64 = redis::cmd("EXPIRETIME")
            .arg(keys.opted_out(p))
            .query_async(&mut conn)
            .await
            .unwrap();
        let at = u64::try_from(at).unwrap();
        assert_eq!(at % 3600, 0);
        assert!(at > now() + 10 * 86_400 && at <= now() + 10 * 86_400 + 3 * 3600);
    }
}
