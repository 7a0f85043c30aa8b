//! No time finer than the minute at rest: a gateway with every channel on
//! (web, Twilio, Telnyx, SMTP) and push, nudges, escalation and the reply
//! relay at work writes to a private Redis with `appendonly yes` and
//! `appendfsync always`. Then the AOF directory (before and after
//! `BGREWRITEAOF`, whose base file is an RDB preamble holding what Redis kept
//! in memory) and every key (values, hash fields, scores, stream entries,
//! `XINFO STREAM … FULL` with its group, consumer and pending records, and
//! each key's expiry as an absolute time) are searched for any number that
//! is a unix time, in seconds or milliseconds, within two minutes of the
//! tips and not on a minute boundary. Decimal text (seconds, milliseconds,
//! microseconds, nanoseconds), hex text and binary integers (8-byte little-
//! and big-endian, 4-byte little-endian seconds, doubles in milliseconds or
//! seconds) are all read, since an RDB stores times in binary.

use std::time::{Duration, Instant};

use redis::Value;
use serde_json::json;
use tipwire::clock::now_ms as unix_ms;
use tipwire::mediator::EscalationWorker;

use crate::support::app::TestApp;
use crate::support::canary::{dump_redis, flatten};
use crate::support::email::{Sink, TIP_ADDRESS};
use crate::support::private_redis::PrivateRedis;
use crate::support::push::PushEndpoint;
use crate::support::push::{Mediator, call, mediator, subscribe, with_push, worker};
use crate::support::sms::{now, spawn_sms_app, telnyx_event, twilio_params};

const TWILIO_TIPSTER: &str = "+15557650001";
const TELNYX_TIPSTER: &str = "+15557650002";
const MAIL_TIPSTER: &str = "tipster-timing@example.net";
/// Ahead of the wall clock, so every deadline, retry and lease is due.
const LATER_MS: u64 = 15 * 60_000;

/// The times around the tips that must not be stored finer than the minute.
#[derive(Clone, Copy)]
struct Window {
    from_ms: u64,
    to_ms: u64,
}

impl Window {
    fn fine_ms(self, n: u64) -> bool {
        (self.from_ms..=self.to_ms).contains(&n) && !n.is_multiple_of(60_000)
    }

    fn fine_secs(self, n: u64) -> bool {
        (self.from_ms / 1000..=self.to_ms / 1000).contains(&n) && !n.is_multiple_of(60)
    }

    /// Microseconds or nanoseconds (Redis keeps some times in µs).
    fn fine_sub_ms(self, n: u64) -> bool {
        [1_000u64, 1_000_000].into_iter().any(|per_ms| {
            (self.from_ms.saturating_mul(per_ms)..=self.to_ms.saturating_mul(per_ms)).contains(&n)
                && !n.is_multiple_of(60_000 * per_ms)
        })
    }

    fn fine(self, n: u64) -> bool {
        self.fine_ms(n) || self.fine_secs(n) || self.fine_sub_ms(n)
    }
}

/// Maximal runs of 8 to 12 hex digits (a time in seconds or milliseconds
/// written in hex) that are fine times. Longer runs (random ids, hashes)
/// are not times.
fn hex_findings(bytes: &[u8], window: Window, what: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        let run = std::str::from_utf8(&bytes[start..i]).unwrap();
        if (8..=12).contains(&run.len())
            && let Ok(n) = u64::from_str_radix(run, 16)
            && (window.fine_ms(n) || window.fine_secs(n))
        {
            found.push(format!("{what}: hex {run} = {n}"));
        }
    }
    found
}

/// Numbers written as decimal text (maximal runs of digits) that are fine
/// times, with some context.
fn decimal_findings(bytes: &[u8], window: Window, what: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let run = &bytes[start..i];
        if run.len() > 20 {
            continue;
        }
        let Ok(n) = std::str::from_utf8(run).unwrap().parse::<u64>() else {
            continue;
        };
        if window.fine(n) {
            let context = &bytes[start.saturating_sub(80)..(i + 20).min(bytes.len())];
            found.push(format!(
                "{what}: {n} in …{}…",
                String::from_utf8_lossy(context).replace(['\r', '\n'], " ")
            ));
        }
    }
    found
}

/// Binary integers and doubles at every offset that are fine times. An RDB
/// file's own creation time (the `ctime` aux field: when the rewrite ran,
/// not anything a tip did) is blanked first.
fn binary_findings(bytes: &[u8], window: Window, what: &str) -> Vec<String> {
    let mut bytes = bytes.to_vec();
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(5).position(|w| w == b"ctime") {
        let end = (at + pos + 5 + 5).min(bytes.len());
        bytes[at + pos + 5..end].fill(0);
        at = end;
    }
    let mut found = Vec::new();
    for (i, w) in bytes.windows(8).enumerate() {
        let eight: [u8; 8] = w.try_into().unwrap();
        let le = u64::from_le_bytes(eight);
        let be = u64::from_be_bytes(eight);
        let float = f64::from_le_bytes(eight);
        let as_int = (float.is_finite() && float.fract() == 0.0 && float > 0.0 && float < 1e15)
            .then_some(float as u64);
        for (kind, n) in [("le64", Some(le)), ("be64", Some(be)), ("f64", as_int)] {
            if let Some(n) = n
                && (window.fine_ms(n) || window.fine_sub_ms(n))
            {
                found.push(format!("{what}: {kind} {n} at byte {i}"));
            }
        }
        // Seconds as a double, with a fraction or off the minute (a score).
        let secs = window.from_ms as f64 / 1000.0..=window.to_ms as f64 / 1000.0;
        if secs.contains(&float) && (float.fract() != 0.0 || !(float as u64).is_multiple_of(60)) {
            found.push(format!("{what}: f64 seconds {float} at byte {i}"));
        }
    }
    for (i, w) in bytes.windows(4).enumerate() {
        let n = u64::from(u32::from_le_bytes(w.try_into().unwrap()));
        if window.fine_secs(n) {
            found.push(format!("{what}: le32 seconds {n} at byte {i}"));
        }
    }
    found
}

/// Every file Redis wrote (the AOF directory: manifest, base, increments).
fn scan_files(dir: &std::path::Path, window: Window, findings: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_files(&path, window, findings);
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        findings.extend(decimal_findings(&bytes, window, &name));
        findings.extend(hex_findings(&bytes, window, &name));
        findings.extend(binary_findings(&bytes, window, &name));
    }
}

/// Every key's value (`dump_redis`), every stream's `XINFO STREAM FULL`,
/// every key's expiry as an absolute time.
fn scan_keys(url: &str, window: Window, findings: &mut Vec<String>) {
    let mut out = dump_redis(url);
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    for key in keys {
        let at: i64 = redis::cmd("PEXPIRETIME")
            .arg(&key)
            .query(&mut conn)
            .unwrap();
        out.extend_from_slice(
            format!("\nexpiry of {}: {at}\n", String::from_utf8_lossy(&key)).as_bytes(),
        );
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
        if kind == "stream" {
            let full: Value = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&key)
                .arg("FULL")
                .query(&mut conn)
                .unwrap();
            out.extend_from_slice(b"XINFO FULL ");
            out.extend_from_slice(&key);
            out.push(b' ');
            flatten(&full, &mut out);
        }
    }
    findings.extend(decimal_findings(&out, window, "redis"));
    findings.extend(hex_findings(&out, window, "redis"));
}

fn rewrite_aof(url: &str) {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let before: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut conn)
        .unwrap();
    let rewrites = |info: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix("aof_rewrites:"))
            .map(|v| v.trim().parse::<u64>().unwrap())
    };
    let _: String = redis::cmd("BGREWRITEAOF").query(&mut conn).unwrap();
    let started = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut conn)
            .unwrap();
        let done = info.contains("aof_rewrite_in_progress:0")
            && info.contains("aof_rewrite_scheduled:0")
            && (rewrites(&info) > rewrites(&before) || rewrites(&info).is_none());
        if done && info.contains("aof_last_bgrewrite_status:ok") {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{info}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A state-changing call as the app makes it; returns the status.
async fn act(app: &TestApp, m: &Mediator, path: &str, body: serde_json::Value) -> u16 {
    call(app, reqwest::Method::POST, path, Some(m), true, Some(body))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn no_time_finer_than_the_minute_reaches_redis_or_its_aof_after_tips_on_every_channel() {
    let redis = PrivateRedis::start_with(&["--appendfsync", "always"]);
    // The mail relay refuses its first message (451): a reply is retried.
    let sink = Sink::start(1);
    let ca_file = sink.ca_file();
    let url = redis.url();
    let (app, stand_in) = spawn_sms_app(|s| {
        s.redis.url = url.clone();
        with_push(s);
        s.push.nudge_delay = Some(std::time::Duration::from_secs(60));
        // Every tip urgent: each one escalates and nudges.
        s.sms.default_priority = tipwire::domain::Priority::Now;
        s.email.default_priority = tipwire::domain::Priority::Now;
        s.email.enabled = true;
        s.email.addresses = vec![tipwire::domain::EmailAddress::parse(TIP_ADDRESS).unwrap()];
        s.email.host = std::net::Ipv4Addr::LOCALHOST.into();
        s.email.port = 0;
        s.email.hostname = "mx.tips.example.org".into();
        s.rate_limits.email.per_client.count = std::num::NonZeroU32::new(10_000).unwrap();
        s.rate_limits.email.per_address.count = std::num::NonZeroU32::new(10_000).unwrap();
        s.rate_limits.email.global.count = std::num::NonZeroU32::new(10_000).unwrap();
        let out = &mut s.email.outbound;
        out.enabled = true;
        out.relay_host = "localhost".into();
        out.relay_port = sink.port;
        out.ca_file = ca_file;
        out.nudge_from = tipwire::domain::EmailAddress::parse("alerts@tips.example.org").ok();
    })
    .await;
    let endpoint = PushEndpoint::start();
    let north = mediator(&app, &["north"], false).await;
    subscribe(&app, &north, &endpoint, "/push/north").await;
    // The supervisor's push service fails twice first: a push is retried.
    let sup = mediator(&app, &[], true).await;
    subscribe(&app, &sup, &endpoint, "/push/sup/flaky").await;
    let nudges = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/devices/me/nudges",
        Some(&north),
        true,
        Some(json!({"email": "north-nudge@program.example"})),
    )
    .await;
    assert_eq!(nudges.status(), 200);

    let t0 = unix_ms();
    // A tip on every channel, all urgent where the channel lets the tipster say.
    // With an Idempotency-Key, so its replay marker is scanned too.
    let web = app
        .client
        .post(app.url("/tips"))
        .header("Accept", "application/json")
        .header("Idempotency-Key", "timing-canary-idempotency-key")
        .form(&[
            ("text", "They meet at the court at nine"),
            ("zone", "north"),
            ("urgency", "now"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(web.status(), 200);
    let twilio = app
        .twilio(&twilio_params(
            TWILIO_TIPSTER,
            "Trouble on Elm tonight",
            "SM7100000000000000000000000000000a",
        ))
        .await;
    assert_eq!(twilio.status(), 200);
    let telnyx = app
        .telnyx(
            &telnyx_event(
                TELNYX_TIPSTER,
                "Someone has a gun at the store",
                "tx-timing-1",
            ),
            now(),
        )
        .await;
    assert!(telnyx.status().is_success(), "{}", telnyx.status());
    let mail = lettre::Message::builder()
        .from(MAIL_TIPSTER.parse().unwrap())
        .to(TIP_ADDRESS.parse().unwrap())
        .subject("Fight after school")
        .body("Two crews, the park, after school.".to_owned())
        .unwrap();
    assert!(
        app.send_with_lettre(&mail)
            .await
            .unwrap()
            .starts_with("250")
    );
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 4, "one tip per channel");

    // The workers' steps: push fan-out and delivery (one retried), the
    // relay (the Telnyx answer queued at tip time), a claim, a reply to the
    // mail tipster (retried once), nudges, escalation and its pushes.
    let pusher = worker(&app, "w1");
    let first = pusher.step(unix_ms()).await.unwrap();
    assert!(first.delivered > 0 && first.retried > 0, "{first:?}");
    app.relay.step().await.unwrap();
    assert!(!stand_in.sent().is_empty(), "the Telnyx answer went out");
    let web_tip = alerts.iter().find(|a| a.entry.channel == "web").unwrap();
    let claimed = act(
        &app,
        &north,
        &format!("/api/v1/alerts/{}/claim", web_tip.entry.tip_id),
        json!({}),
    )
    .await;
    assert_eq!(claimed, 200);
    let mail_tip = alerts.iter().find(|a| a.entry.channel == "email").unwrap();
    let replied = act(
        &app,
        &north,
        &format!("/api/v1/threads/{}/replies", mail_tip.entry.thread),
        json!({"text": "We hear you. Someone is on the way."}),
    )
    .await;
    assert_eq!(replied, 202);
    assert_eq!(app.relay.step().await.unwrap().retried, 1);
    let later = unix_ms() + LATER_MS;
    assert_eq!(app.relay.step_at(later).await.unwrap().sent, 1);
    let fired = EscalationWorker::new(app.store.clone(), app.settings.retention.period.as_secs())
        .step(later)
        .await
        .unwrap();
    assert!(!fired.is_empty(), "unclaimed urgent tips escalate");
    let after = pusher.step(later).await.unwrap();
    assert!(after.nudged > 0 && after.events > 0, "{after:?}");
    let t1 = unix_ms();

    let window = Window {
        from_ms: t0 - 120_000,
        to_ms: t1 + 120_000,
    };
    let mut findings = Vec::new();
    scan_keys(&url, window, &mut findings);
    scan_files(redis.dir(), window, &mut findings);
    rewrite_aof(&url);
    scan_files(redis.dir(), window, &mut findings);
    assert!(
        findings.is_empty(),
        "times finer than the minute near the tips ({t0}..{t1}):\n{}",
        findings.join("\n")
    );
}

#[tokio::test]
async fn a_relay_consumer_group_left_by_an_older_tipwire_is_taken_over_and_destroyed() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let r = app
        .twilio(&twilio_params(
            TWILIO_TIPSTER,
            "hello",
            "SM7200000000000000000000000000000b",
        ))
        .await;
    assert_eq!(r.status(), 200);
    let thread = tipwire::domain::ThreadId::parse(&app.alerts().await[0].entry.thread).unwrap();
    let mut conn = app.store.conn().await.unwrap();
    let outbound = app.store.keys().outbound();

    // An older gateway's group: one message read and never acknowledged (its
    // worker died), one queued after it.
    app.queue_reply(
        &thread,
        "read by the old worker",
        tipwire::outbound::relay::Kind::Reply,
    )
    .await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&outbound)
        .arg("relay")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("relay")
        .arg("old-gateway")
        .arg("STREAMS")
        .arg(&outbound)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(read.keys[0].ids.len(), 1);
    app.queue_reply(
        &thread,
        "queued after it",
        tipwire::outbound::relay::Kind::Reply,
    )
    .await;

    assert_eq!(app.relay.step().await.unwrap().sent, 2);
    let groups: Vec<Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&outbound)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(groups.is_empty(), "the old group and its times are gone");
    assert_eq!(
        app.relay.step().await.unwrap().sent,
        0,
        "nothing sent twice"
    );
    let mut bodies: Vec<String> = stand_in.sent().into_iter().map(|s| s.body).collect();
    bodies.sort();
    assert_eq!(bodies, ["queued after it", "read by the old worker"]);
}
