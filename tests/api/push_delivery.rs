//! Push delivery end to end: phones enrol and register their subscription
//! through the API, tips arrive through the web form, and the test drives
//! `PushWorker::step` with explicit times (nothing sleeps for a backoff).
//! tests/peers/push_endpoint.py is the push service and the phone: it
//! decrypts with http_ece and verifies VAPID, so what "delivered" means is
//! checked by an independent implementation.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tipwire::bus::WorkQueue;
use tipwire::bus::timing::coarse_due;
use tipwire::clock::now_ms as unix_ms;
use tipwire::crypto::Keyring;
use tipwire::domain::{Priority, TipId, Zone, ZoneChoice};
use tipwire::mediator::{AlertStates, EscalationPolicy, EscalationWorker, Escalations, Stage};
use tipwire::outbound::push::RECLAIM_IDLE;

use crate::support::app::{TestApp, error_code, logs, spawn_app, spawn_app_with};
use crate::support::canary::assert_nowhere;
use crate::support::email::Sink;
use crate::support::phone::set_duty;
use crate::support::push::PushEndpoint;
use crate::support::push::{call, mediator, subscribe, with_push, worker};

const RETENTION_SECS: u64 = 30 * 86_400;
const CANARY: &str = "CANARY-push-delivery-91c4: the crew from Elm meets at nine";

async fn push_app() -> TestApp {
    spawn_app_with(with_push).await
}

/// Posts a tip and returns its id.
async fn tip(app: &TestApp, zone: &str, urgency: &str) -> TipId {
    let response = app.post_tip(CANARY, zone, urgency).await;
    assert_eq!(response.status(), 200);
    app.alerts().await.last().unwrap().entry.tip_id.clone()
}

fn by_path<'a>(received: &'a [Value], path: &str) -> Vec<&'a Value> {
    received.iter().filter(|r| r["path"] == path).collect()
}

/// The decrypted payload of a request the endpoint logged, after checking
/// that it decrypted, carried valid VAPID and holds no tip text.
fn payload(request: &Value) -> Value {
    assert_eq!(request["decrypt_error"], Value::Null, "{request}");
    assert_eq!(request["vapid_ok"], true, "{request}");
    let plaintext = request["plaintext"].as_str().unwrap();
    assert!(
        !plaintext.contains("CANARY") && !plaintext.contains("Elm"),
        "{plaintext}"
    );
    serde_json::from_str(plaintext).unwrap()
}

fn redis(app: &TestApp) -> redis::Connection {
    redis::Client::open(app.settings.redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap()
}

fn pushes(app: &TestApp, outcome: &str) -> u64 {
    app.metrics.pushes.with_label_values(&[outcome]).get()
}

#[tokio::test]
async fn a_new_tip_is_pushed_once_to_the_on_duty_devices_of_its_zone_without_tip_text() {
    let app = push_app().await;
    let endpoint = PushEndpoint::start();
    let north = mediator(&app, &["north"], false).await;
    let resting = mediator(&app, &["north"], false).await;
    let south = mediator(&app, &["south"], false).await;
    subscribe(&app, &north, &endpoint, "/push/north").await;
    subscribe(&app, &resting, &endpoint, "/push/resting").await;
    subscribe(&app, &south, &endpoint, "/push/south").await;
    let off = set_duty(
        &app,
        Some(&resting.login.cookie),
        Some(&resting.login.csrf),
        None,
        false,
    )
    .await;
    assert_eq!(off.status(), 200);
    let worker = worker(&app, "w1");

    let tip_id = tip(&app, "north", "now").await;
    let report = worker.step(unix_ms()).await.unwrap();
    assert_eq!((report.events, report.queued, report.delivered), (1, 1, 1));

    let received = endpoint.received(1);
    assert_eq!(received.len(), 1, "{received:?}");
    let got = &received[0];
    assert_eq!(got["path"], "/push/north");
    assert_eq!(got["urgency"], "high");
    assert_eq!(got["content_encoding"], "aes128gcm");
    assert_eq!(
        payload(got),
        json!({"kind": "alert", "alert": tip_id.as_str(), "zone": "north", "urgency": "high"})
    );
    let ttl: u32 = got["ttl"].as_str().unwrap().parse().unwrap();
    assert!(ttl > 3000 && ttl <= 3600, "{ttl}");

    // Nothing is pushed twice, and the off-duty phone never hears.
    let again = worker.step(unix_ms()).await.unwrap();
    assert_eq!((again.events, again.delivered), (0, 0));
    assert_eq!(endpoint.received_now().len(), 1);
    assert_eq!(pushes(&app, "delivered"), 1);

    // "Not sure" reaches every on-duty device, still not the resting one.
    let unsure = tip(&app, "unsure", "fyi").await;
    let report = worker.step(unix_ms()).await.unwrap();
    assert_eq!(report.delivered, 2);
    let received = endpoint.received(3);
    assert_eq!(received.len(), 3);
    assert!(by_path(&received, "/push/resting").is_empty());
    for path in ["/push/north", "/push/south"] {
        let last = *by_path(&received, path).last().unwrap();
        assert_eq!(
            payload(last),
            json!({"kind": "alert", "alert": unsure.as_str(), "zone": "unsure", "urgency": "low"})
        );
        assert_eq!(last["urgency"], "low");
    }
}

#[tokio::test]
async fn a_subscription_the_push_service_calls_gone_is_deleted_after_one_attempt() {
    let app = push_app().await;
    let endpoint = PushEndpoint::start();
    let m = mediator(&app, &["north"], false).await;
    subscribe(&app, &m, &endpoint, "/push/old/gone").await;
    let key = app.store.keys().push_sub(&m.device_id);
    let mut conn = redis(&app);
    assert!(
        redis::cmd("EXISTS")
            .arg(&key)
            .query::<bool>(&mut conn)
            .unwrap()
    );
    let worker = worker(&app, "w1");

    tip(&app, "north", "today").await;
    let t0 = unix_ms();
    let report = worker.step(t0).await.unwrap();
    assert_eq!((report.gone, report.retried, report.dead), (1, 0, 0));
    assert_eq!(endpoint.received(1)[0]["status"], 410);
    assert!(
        !redis::cmd("EXISTS")
            .arg(&key)
            .query::<bool>(&mut conn)
            .unwrap()
    );
    assert_eq!(pushes(&app, "gone"), 1);

    // No retry is scheduled, and the next tip finds no subscription.
    tip(&app, "north", "today").await;
    let later = worker.step(t0 + 600_000).await.unwrap();
    assert_eq!((later.events, later.queued), (1, 0));
    assert_eq!(endpoint.received_now().len(), 1);
}

#[tokio::test]
async fn a_push_service_error_is_retried_with_backoff_and_then_delivered() {
    let app = push_app().await;
    let endpoint = PushEndpoint::start();
    let m = mediator(&app, &["north"], false).await;
    // The endpoint answers 503 twice, then 201.
    subscribe(&app, &m, &endpoint, "/push/phone/flaky").await;
    let worker = worker(&app, "w1");
    let tip_id = tip(&app, "north", "now").await;

    let t0 = unix_ms();
    assert_eq!(worker.step(t0).await.unwrap().retried, 1);
    // Backoff: 1 s after the first failure, 2 s after the second, each on
    // the next minute boundary that far from the failure's minute.
    let first = coarse_due(t0, 1_000);
    assert_eq!(first % 60_000, 0);
    assert_eq!(worker.step(first - 1).await.unwrap(), Default::default());
    assert_eq!(worker.step(first).await.unwrap().retried, 1);
    let second = coarse_due(first, 2_000);
    assert_eq!(worker.step(second - 1).await.unwrap(), Default::default());
    let last = worker.step(second).await.unwrap();
    assert_eq!((last.delivered, last.dead), (1, 0));

    let received = endpoint.received(3);
    let statuses: Vec<_> = received.iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses, [503, 503, 201]);
    for r in &received {
        assert_eq!(payload(r)["alert"], tip_id.as_str());
    }
    assert_eq!(pushes(&app, "retry"), 2);
    assert_eq!(pushes(&app, "delivered"), 1);
    let mut conn = redis(&app);
    let scheduled: u64 = redis::cmd("ZCARD")
        .arg(app.store.keys().push_retry())
        .query(&mut conn)
        .unwrap();
    assert_eq!(scheduled, 0);
}

#[tokio::test]
async fn a_push_that_fails_max_attempts_times_is_dead_lettered_without_its_endpoint() {
    let app = push_app().await;
    let endpoint = PushEndpoint::start();
    let m = mediator(&app, &["north"], false).await;
    // A port nothing listens on: every attempt is a network error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sub = endpoint.subscription_json(None);
    sub["endpoint"] = format!("http://127.0.0.1:{port}/push/unreachable").into();
    let response = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/devices/me/push",
        Some(&m),
        true,
        Some(json!({ "subscription": sub })),
    )
    .await;
    assert_eq!(response.status(), 204);
    let worker = worker(&app, "w1");
    let tip_id = tip(&app, "north", "now").await;

    let t0 = unix_ms();
    assert_eq!(worker.step(t0).await.unwrap().retried, 1);
    let first = coarse_due(t0, 1_000);
    assert_eq!(worker.step(first).await.unwrap().retried, 1);
    let second = coarse_due(first, 2_000);
    let last = worker.step(second).await.unwrap();
    assert_eq!((last.dead, last.retried, last.delivered), (1, 0, 0));

    let mut conn = redis(&app);
    let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(app.store.keys().push_dead())
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    assert_eq!(dead.ids.len(), 1);
    let fields: HashMap<String, String> = dead.ids[0]
        .map
        .iter()
        .map(|(k, v)| (k.clone(), redis::from_redis_value(v).unwrap()))
        .collect();
    assert_eq!(fields["device"], m.device_id);
    assert_eq!(fields["tip_id"], tip_id.as_str());
    assert_eq!(fields["reason"], "max-attempts");
    assert_eq!(fields["attempts"], "3");
    assert_eq!(fields["kind"], "alert");
    for value in fields.values() {
        assert!(
            !value.contains("127.0.0.1") && !value.contains("push/"),
            "{value}"
        );
    }
    // Nothing left to do: the job is out of the stream and the schedule.
    let after = worker.step(second + 60_000).await.unwrap();
    assert_eq!(after, Default::default());
    let pending: u64 = redis::cmd("XLEN")
        .arg(app.store.keys().push_out())
        .query(&mut conn)
        .unwrap();
    assert_eq!(pending, 0);
    assert_eq!(pushes(&app, "dead"), 1);
}

#[tokio::test]
async fn an_event_a_crashed_worker_read_is_taken_over_and_pushed_exactly_once() {
    let app = push_app().await;
    let endpoint = PushEndpoint::start();
    let m = mediator(&app, &["north"], false).await;
    subscribe(&app, &m, &endpoint, "/push/phone").await;
    let crashed = worker(&app, "crashed");
    let tip_id = tip(&app, "north", "now").await;

    // The crashed worker took the alert and died before fanning it out.
    let lease = u64::try_from(RECLAIM_IDLE.as_millis()).unwrap();
    let taken_at = unix_ms();
    let taken = WorkQueue::new(
        app.store.clone(),
        app.store.keys().alerts(),
        "push",
        "crashed",
        lease,
    )
    .take(taken_at, 10, "0-0")
    .await
    .unwrap();
    assert_eq!(taken.ids.len(), 1);
    // Its lease ends on a minute boundary: no finer time is stored.
    let lease_end = coarse_due(taken_at, lease);

    let survivor = worker(&app, "survivor");
    // Not leased long enough yet: left to its owner.
    assert_eq!(survivor.step(unix_ms()).await.unwrap().events, 0);
    assert_eq!(survivor.step(lease_end - 1).await.unwrap().events, 0);
    let report = survivor.step(lease_end).await.unwrap();
    assert_eq!((report.events, report.delivered), (1, 1));
    // The crashed worker comes back: its read is no longer its own.
    let back = crashed.step(lease_end).await.unwrap();
    assert_eq!(back, Default::default());
    let much_later = coarse_due(lease_end, 2 * lease);
    assert_eq!(survivor.step(much_later).await.unwrap(), Default::default());

    let received = endpoint.received_now();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(payload(&received[0])["alert"], tip_id.as_str());
}

#[tokio::test]
async fn a_job_whose_worker_died_mid_send_is_sent_again_at_least_once_with_the_same_payload() {
    let app = push_app().await;
    let endpoint = PushEndpoint::start();
    let m = mediator(&app, &["north"], false).await;
    // The endpoint takes 1.5 s to answer.
    subscribe(&app, &m, &endpoint, "/push/phone/slow").await;
    let dying = worker(&app, "dying");
    let tip_id = tip(&app, "north", "now").await;

    // The worker is stopped while the push service holds the request: the
    // message went out, the acknowledgement never happened.
    let t0 = unix_ms();
    let stopped = tokio::time::timeout(Duration::from_millis(600), dying.step(t0)).await;
    assert!(stopped.is_err());
    endpoint.received(1);

    let survivor = worker(&app, "survivor");
    // Still leased to the dying worker until a minute boundary.
    let lease_end = coarse_due(t0, u64::try_from(RECLAIM_IDLE.as_millis()).unwrap());
    assert_eq!(survivor.step(unix_ms()).await.unwrap(), Default::default());
    let report = survivor.step(lease_end).await.unwrap();
    assert_eq!((report.events, report.delivered), (0, 1));
    assert_eq!(survivor.step(lease_end).await.unwrap(), Default::default());

    // At least once: the phone got the same notice twice; the app shows it
    // once, tagged by alert id.
    let received = endpoint.received(2);
    assert_eq!(received.len(), 2);
    assert_eq!(payload(&received[0]), payload(&received[1]));
    assert_eq!(payload(&received[1])["alert"], tip_id.as_str());
}

#[tokio::test]
async fn escalation_stage_1_is_pushed_only_to_on_duty_supervisors() {
    let app = push_app().await;
    let endpoint = PushEndpoint::start();
    let north = mediator(&app, &["north"], false).await;
    let supervisor = mediator(&app, &[], true).await;
    let resting = mediator(&app, &[], true).await;
    subscribe(&app, &north, &endpoint, "/push/north").await;
    subscribe(&app, &supervisor, &endpoint, "/push/supervisor").await;
    subscribe(&app, &resting, &endpoint, "/push/resting").await;
    let off = set_duty(
        &app,
        Some(&resting.login.cookie),
        Some(&resting.login.csrf),
        None,
        false,
    )
    .await;
    assert_eq!(off.status(), 200);
    let worker = worker(&app, "w1");

    let t0 = unix_ms();
    let tip_id = tip(&app, "north", "today").await;
    // The new alert: the zone's mediator and the supervisor on duty.
    assert_eq!(worker.step(t0).await.unwrap().delivered, 2);

    let zone = ZoneChoice::Known(Zone::parse("north").unwrap());
    Escalations::new(
        app.store.clone(),
        EscalationPolicy::default(),
        RETENTION_SECS,
    )
    .schedule(&tip_id, Priority::Today, &zone, t0)
    .await
    .unwrap();
    let at = EscalationPolicy::default().deadlines(Priority::Today, t0)[0].1;
    let fired = EscalationWorker::new(app.store.clone(), RETENTION_SECS)
        .step(at)
        .await
        .unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].stage, Stage::Supervisors);

    let report = worker.step(at).await.unwrap();
    assert_eq!((report.events, report.delivered), (1, 1));
    let received = endpoint.received(3);
    assert_eq!(received.len(), 3);
    let escalations: Vec<_> = received
        .iter()
        .filter(|r| payload(r)["kind"] == "escalation")
        .collect();
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0]["path"], "/push/supervisor");
    assert_eq!(
        payload(escalations[0]),
        json!({"kind": "escalation", "alert": tip_id.as_str(), "zone": "north", "urgency": "normal"})
    );
    assert!(by_path(&received, "/push/resting").is_empty());
}

#[tokio::test]
async fn push_routes_need_a_session_and_csrf_and_refuse_a_bad_subscription() {
    let app = push_app().await;
    let endpoint = PushEndpoint::start();
    let m = mediator(&app, &["north"], false).await;
    let path = "/api/v1/devices/me/push";
    let good = json!({ "subscription": endpoint.subscription_json(None) });

    let key = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/push/key",
        None,
        false,
        None,
    )
    .await;
    assert_eq!(key.status(), 200);
    let body: Value = key.json().await.unwrap();
    let vapid = Keyring::load(&app.settings.keys.dir)
        .unwrap()
        .vapid()
        .unwrap();
    assert_eq!(body["public_key"], vapid.public_key_base64url());

    let anonymous = call(
        &app,
        reqwest::Method::POST,
        path,
        None,
        true,
        Some(good.clone()),
    )
    .await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(error_code(anonymous).await, "session-required");
    let no_csrf = call(
        &app,
        reqwest::Method::POST,
        path,
        Some(&m),
        false,
        Some(good.clone()),
    )
    .await;
    assert_eq!(no_csrf.status(), 403);
    assert_eq!(error_code(no_csrf).await, "csrf-failed");

    let mut ftp = endpoint.subscription_json(None);
    ftp["endpoint"] = "ftp://push.example.net/x".into();
    let mut short_auth = endpoint.subscription_json(None);
    short_auth["keys"]["auth"] = "AAAA".into();
    for bad in [
        json!({"subscription": ftp}),
        json!({"subscription": short_auth}),
        json!({"subscription": "x"}),
    ] {
        let response = call(&app, reqwest::Method::POST, path, Some(&m), true, Some(bad)).await;
        assert_eq!(response.status(), 422);
        assert_eq!(error_code(response).await, "invalid-push-subscription");
    }
    let key = app.store.keys().push_sub(&m.device_id);
    let mut conn = redis(&app);
    assert!(
        !redis::cmd("EXISTS")
            .arg(&key)
            .query::<bool>(&mut conn)
            .unwrap()
    );

    let ok = call(
        &app,
        reqwest::Method::POST,
        path,
        Some(&m),
        true,
        Some(good),
    )
    .await;
    assert_eq!(ok.status(), 204);
    let stored: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored["endpoint"],
        endpoint.subscription_json(None)["endpoint"]
    );

    // The endpoint names the phone to its push service: never logged.
    let url = stored["endpoint"].as_str().unwrap();
    assert!(!logs().contains(url.rsplit('/').next().unwrap()));

    let gone = call(&app, reqwest::Method::DELETE, path, Some(&m), true, None).await;
    assert_eq!(gone.status(), 204);
    assert!(
        !redis::cmd("EXISTS")
            .arg(&key)
            .query::<bool>(&mut conn)
            .unwrap()
    );

    // Nudges: parsed, and refused for a channel this gateway cannot send on.
    let nudges = "/api/v1/devices/me/nudges";
    let bad = call(
        &app,
        reqwest::Method::POST,
        nudges,
        Some(&m),
        true,
        Some(json!({"sms": "555-1234"})),
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert_eq!(error_code(bad).await, "invalid-nudge-contact");
    let off = call(
        &app,
        reqwest::Method::POST,
        nudges,
        Some(&m),
        true,
        Some(json!({"email": "dee-nudge-7b1e@program.example"})),
    )
    .await;
    assert_eq!(off.status(), 422);
    assert_eq!(error_code(off).await, "nudge-channel-unavailable");
}

#[tokio::test]
async fn push_routes_answer_push_disabled_while_push_is_off() {
    let app = spawn_app().await;
    let m = mediator(&app, &["north"], false).await;
    let key = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/push/key",
        None,
        false,
        None,
    )
    .await;
    assert_eq!(key.status(), 404);
    assert_eq!(error_code(key).await, "push-disabled");
    let endpoint = PushEndpoint::start();
    let body = json!({ "subscription": endpoint.subscription_json(None) });
    let sub = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/devices/me/push",
        Some(&m),
        true,
        Some(body),
    )
    .await;
    assert_eq!(sub.status(), 404);
    assert_eq!(error_code(sub).await, "push-disabled");
}

#[tokio::test]
async fn an_urgent_alert_nobody_claimed_nudges_opted_in_mediators_once_by_email_without_tip_text() {
    let sink = Sink::start(0);
    let app = spawn_app_with(|s| {
        with_push(s);
        s.push.nudge_delay = Some(std::time::Duration::from_secs(60));
        let out = &mut s.email.outbound;
        out.enabled = true;
        out.relay_host = "localhost".into();
        out.relay_port = sink.port;
        out.ca_file = sink.ca_file();
        out.nudge_from = tipwire::domain::EmailAddress::parse("alerts@tips.example.org").ok();
    })
    .await;
    let endpoint = PushEndpoint::start();
    let m = mediator(&app, &["north"], false).await;
    subscribe(&app, &m, &endpoint, "/push/phone").await;
    let nudges = "/api/v1/devices/me/nudges";
    let set = call(
        &app,
        reqwest::Method::POST,
        nudges,
        Some(&m),
        true,
        Some(json!({"email": "dee-nudge-7b1e@program.example"})),
    )
    .await;
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        json!({"email": true, "sms": false})
    );
    // Kept sealed to the relay key.
    let mut conn = redis(&app);
    let sealed: Vec<u8> = redis::cmd("GET")
        .arg(app.store.keys().nudge_to(&m.device_id))
        .query(&mut conn)
        .unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1"));
    assert!(!sealed.windows(3).any(|w| w == b"dee"));
    let worker = worker(&app, "w1");

    let tip_id = tip(&app, "north", "now").await;
    let t0 = unix_ms();
    let first = worker.step(t0).await.unwrap();
    assert_eq!((first.delivered, first.nudged), (1, 0));
    // Due on a minute boundary at least a minute after the push.
    let due = coarse_due(t0, 60_000);
    assert_eq!(worker.step(t0 + 30_000).await.unwrap().nudged, 0);
    assert_eq!(worker.step(due - 1).await.unwrap().nudged, 0);
    assert_eq!(worker.step(due).await.unwrap().nudged, 1);
    assert_eq!(worker.step(due + 300_000).await.unwrap().nudged, 0);

    let mail = sink.received();
    assert_eq!(mail.len(), 1);
    let (envelope, raw) = &mail[0];
    assert!(envelope.contains("dee-nudge-7b1e@program.example"));
    let raw = String::from_utf8(raw.clone()).unwrap();
    assert!(raw.contains("A new urgent alert for zone North side. Open tipwire."));
    assert!(!raw.contains("CANARY") && !raw.contains(tip_id.as_str()));
    assert_eq!(
        app.metrics
            .nudges
            .with_label_values(&["email", "sent"])
            .get(),
        1
    );

    // Claimed in time: no nudge. Not urgent: none scheduled.
    let claimed = tip(&app, "north", "now").await;
    let t1 = unix_ms();
    worker.step(t1).await.unwrap();
    AlertStates::new(app.store.clone(), RETENTION_SECS)
        .claim(&claimed, &m.id())
        .await
        .unwrap();
    tip(&app, "north", "today").await;
    worker.step(t1).await.unwrap();
    assert_eq!(worker.step(coarse_due(t1, 60_000)).await.unwrap().nudged, 0);
    assert_eq!(sink.received().len(), 1);
    let left: u64 = redis::cmd("ZCARD")
        .arg(app.store.keys().push_nudges())
        .query(&mut conn)
        .unwrap();
    assert_eq!(left, 0);
    // The mediator's address is nowhere in clear, and neither is the tip.
    assert_nowhere(&app, &["dee-nudge-7b1e", CANARY]);
}
