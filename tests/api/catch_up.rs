//! Catching up on the alert stream reads routing fields, never envelopes: a
//! reconnect storm of phones over a stream of multi-megabyte tips costs Redis
//! (and the gateway) a few kilobytes per phone; so does a reply to a thread. Measured on a private Redis,
//! whose `total_net_output_bytes` counts exactly what the gateway read.

use std::time::Duration;

use tipwire::bus::{AlertEntry, AlertProducer, Appended};
use tipwire::domain::TipId;

use crate::support::app::{TestApp, spawn_app_with};
use crate::support::phone::{Login, Phone, enrol, invite, login};
use crate::support::private_redis::PrivateRedis;

/// Tips in the stream, each with an envelope this large.
const BIG_TIPS: usize = 6;
const ENVELOPE_BYTES: usize = 3 << 20;
/// Phones reconnecting at once, each fresh and each resuming from the start.
const PHONES: usize = 4;
/// What one catch-up may cost in Redis reads: routing fields of a handful
/// of entries, states, the stream ends. One envelope would be 12 times this.
const PER_CATCH_UP: u64 = 256 << 10;
/// The largest thread view answer a thread of these tips may take.
const THREAD_VIEW_BYTES: usize = 64 << 10;

async fn output_bytes(app: &TestApp) -> u64 {
    let mut conn = app.store.conn().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Opens the live stream (resuming after `last_event_id`), reads up to the
/// `ready` event, and returns the tip ids of the `alert` events before it.
async fn catch_up(app: &TestApp, login: &Login, last_event_id: Option<&str>) -> Vec<String> {
    let mut request = app
        .client
        .get(app.url("/api/v1/alerts/stream"))
        .header("Cookie", &login.cookie);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    while !text.contains("event: ready\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the backlog arrives")
            .unwrap()
            .expect("the stream stays open until ready");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text.split("\n\n")
        .filter(|block| block.starts_with("event: alert\n"))
        .map(|block| {
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            v["tip_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_reconnect_storm_over_large_tips_reads_no_envelopes_and_the_app_still_opens_them() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis.url = url).await;
    let phone = Phone::new();
    let code = invite(&app, &["north"], Duration::from_secs(900)).await;
    let device_id = enrol(&app, &phone, &code).await;
    let login = login(&app, &phone, &device_id).await;

    // One real tip, sealed to the phone, and large ones after it.
    assert_eq!(
        app.post_tip("a real tip", "north", "now").await.status(),
        200
    );
    let real = app.alerts().await.pop().unwrap();
    let producer = AlertProducer::new(app.store.clone(), Duration::from_secs(86_400));
    let mut conn = app.store.conn().await.unwrap();
    let version: Option<u64> = redis::cmd("GET")
        .arg(app.store.keys().mediators_version())
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut big = Vec::new();
    for i in 0..BIG_TIPS {
        let entry = AlertEntry {
            envelope: vec![u8::try_from(i).unwrap(); ENVELOPE_BYTES],
            tip_id: TipId::random(),
            ..real.entry.clone()
        };
        let (appended, _) = producer
            .append(&entry, version.unwrap_or(0), None, &[])
            .await
            .unwrap();
        assert!(matches!(appended, Appended::Stored(_)), "{appended:?}");
        big.push(entry.tip_id.to_string());
    }
    let mut expected = vec![real.entry.tip_id.to_string()];
    expected.extend(big.iter().cloned());

    let before = output_bytes(&app).await;
    let storm = (0..PHONES).flat_map(|_| [None, Some("0-0|0-0")]);
    let lists =
        futures_util::future::join_all(storm.map(|resume| catch_up(&app, &login, resume))).await;
    let read = output_bytes(&app).await - before;
    for list in &lists {
        assert_eq!(list, &expected, "every catch-up lists every alert");
    }
    let catch_ups = u64::try_from(lists.len()).unwrap();
    assert!(
        read < catch_ups * PER_CATCH_UP,
        "{catch_ups} catch-ups read {read} bytes from Redis; {} envelope bytes are in the stream",
        BIG_TIPS * ENVELOPE_BYTES
    );

    // A reply to the thread reads its tips' zones, not their envelopes (a
    // web thread has no reply channel: refused, after that read).
    let before = output_bytes(&app).await;
    let reply = app
        .client
        .post(app.url(&format!("/api/v1/threads/{}/replies", real.entry.thread)))
        .header("Cookie", &login.cookie)
        .header("X-CSRF-Token", &login.csrf)
        .header("Origin", "https://localhost:8443")
        .json(&serde_json::json!({ "text": "on our way" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 409);
    let read = output_bytes(&app).await - before;
    assert!(read < PER_CATCH_UP, "a reply read {read} bytes from Redis");

    // The app opens an alert by fetching its one envelope.
    let get = |tip: &str| {
        app.client
            .get(app.url(&format!("/api/v1/alerts/{tip}/envelope")))
            .header("Cookie", &login.cookie)
            .send()
    };
    let envelope = get(real.entry.tip_id.as_str()).await.unwrap();
    assert_eq!(envelope.status(), 200);
    let opened = tipwire::crypto::open(
        &envelope.bytes().await.unwrap(),
        std::slice::from_ref(&phone.identity),
    )
    .unwrap();
    assert!(String::from_utf8(opened).unwrap().contains("a real tip"));
    let large = get(&big[0]).await.unwrap();
    assert_eq!(large.status(), 200);
    assert_eq!(large.bytes().await.unwrap().len(), ENVELOPE_BYTES);
}

/// Alerts appended before `<prefix>:alert-summaries` existed (an upgrade) get
/// their summaries from the retention step, so the app lists them again;
/// the step reads the alerts a page at a time and can run any number of times.
#[tokio::test]
async fn alerts_from_before_the_summaries_are_backfilled_and_listed_again() {
    let app = spawn_app_with(|_| {}).await;
    let phone = Phone::new();
    let code = invite(&app, &["north"], Duration::from_secs(900)).await;
    let device_id = enrol(&app, &phone, &code).await;
    let login = login(&app, &phone, &device_id).await;
    let mut old = Vec::new();
    for i in 0..5 {
        let text = format!("tip {i} from before the upgrade");
        assert_eq!(app.post_tip(&text, "north", "now").await.status(), 200);
        old.push(app.alerts().await.pop().unwrap().entry.tip_id.to_string());
    }
    // As an older version left it: alerts, and no summaries at all.
    let mut conn = app.store.conn().await.unwrap();
    let () = redis::cmd("DEL")
        .arg(app.store.keys().alert_summaries())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(catch_up(&app, &login, None).await.is_empty());
    // The upgraded gateway's first tip has a summary; the older ones none.
    assert_eq!(
        app.post_tip("after the upgrade", "north", "now")
            .await
            .status(),
        200
    );
    let new = app.alerts().await.pop().unwrap().entry.tip_id.to_string();
    assert_eq!(catch_up(&app, &login, None).await, vec![new.clone()]);

    let mut expected = old.clone();
    expected.push(new);
    for _ in 0..2 {
        tipwire::app::retention_step(&app.store, Duration::from_secs(86_400)).await;
        assert_eq!(catch_up(&app, &login, None).await, expected);
    }
    let len: u64 = redis::cmd("XLEN")
        .arg(app.store.keys().alert_summaries())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 6, "each alert has one summary");
    let summary: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(app.store.keys().alert_summaries())
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let fields: Vec<&str> = summary[0].1.iter().map(|(f, _)| f.as_str()).collect();
    for secret in ["envelope", "pseudonym", "key_version"] {
        assert!(!fields.contains(&secret), "{fields:?}");
    }
}

/// Opening a thread of many large tips answers their routing fields and
/// whether this phone can open each, never their envelopes: a small JSON
/// body, a small Redis read; the app then fetches each tip's envelope alone.
#[tokio::test]
async fn a_thread_of_large_tips_answers_without_envelopes_and_the_app_still_opens_each() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis.url = url).await;
    let phone = Phone::new();
    let code = invite(&app, &["north"], Duration::from_secs(900)).await;
    let device_id = enrol(&app, &phone, &code).await;
    let first = login(&app, &phone, &device_id).await;
    assert_eq!(
        app.post_tip("a real tip", "north", "now").await.status(),
        200
    );
    let real = app.alerts().await.pop().unwrap();
    let producer = AlertProducer::new(app.store.clone(), Duration::from_secs(86_400));
    let mut conn = app.store.conn().await.unwrap();
    let version: Option<u64> = redis::cmd("GET")
        .arg(app.store.keys().mediators_version())
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut big = Vec::new();
    for i in 0..BIG_TIPS {
        // The same thread, sealed to the same phone.
        let entry = AlertEntry {
            envelope: vec![u8::try_from(i).unwrap(); ENVELOPE_BYTES],
            tip_id: TipId::random(),
            ..real.entry.clone()
        };
        let (appended, _) = producer
            .append(&entry, version.unwrap_or(0), None, &[])
            .await
            .unwrap();
        assert!(matches!(appended, Appended::Stored(_)), "{appended:?}");
        big.push(entry.tip_id.to_string());
    }
    // A phone enrolled after the tips sees them (its zone) but cannot open them.
    let late = Phone::new();
    let code = invite(&app, &["north"], Duration::from_secs(900)).await;
    let late_id = enrol(&app, &late, &code).await;
    let late_login = login(&app, &late, &late_id).await;

    let view = |login: &Login| {
        app.client
            .get(app.url(&format!("/api/v1/threads/{}", real.entry.thread)))
            .header("Cookie", &login.cookie)
            .send()
    };
    let before = output_bytes(&app).await;
    let answer = view(&first).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.bytes().await.unwrap();
    let read = output_bytes(&app).await - before;
    assert!(
        body.len() < THREAD_VIEW_BYTES,
        "the thread view is {} bytes",
        body.len()
    );
    assert!(
        read < PER_CATCH_UP,
        "the thread view read {read} bytes from Redis"
    );
    let items = |body: &[u8]| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["items"].as_array().unwrap().clone()
    };
    let shown = items(&body);
    let mut expected = vec![real.entry.tip_id.to_string()];
    expected.extend(big.iter().cloned());
    let listed: Vec<&str> = shown
        .iter()
        .map(|i| i["tip_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected, "oldest first");
    for item in &shown {
        assert_eq!(item["kind"], "tip");
        assert!(item.get("envelope").is_none(), "{item}");
        assert_eq!(item["can_open"], true, "{item}");
    }
    let late_view = view(&late_login).await.unwrap();
    assert_eq!(late_view.status(), 200);
    for item in items(&late_view.bytes().await.unwrap()) {
        assert_eq!(item["can_open"], false, "{item}");
    }

    // What the app does for each tip shown: fetch its envelope, open it.
    for (n, tip) in expected.iter().enumerate() {
        let envelope = app
            .client
            .get(app.url(&format!("/api/v1/alerts/{tip}/envelope")))
            .header("Cookie", &first.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(envelope.status(), 200);
        let bytes = envelope.bytes().await.unwrap();
        if n == 0 {
            let opened =
                tipwire::crypto::open(&bytes, std::slice::from_ref(&phone.identity)).unwrap();
            assert!(String::from_utf8(opened).unwrap().contains("a real tip"));
        } else {
            assert_eq!(bytes.len(), ENVELOPE_BYTES);
        }
    }
}
