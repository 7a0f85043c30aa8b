//! Offboarding end to end: a phone that is enrolled, signed in, streaming,
//! subscribed to push and holding a claim is removed with `tipwire mediator
//! remove`; then its cookie, CSRF token and device key are tried on every
//! route under `/api/v1/` (read from the route registrations in `src/`, so a
//! new route cannot be forgotten), its open stream must end at once, no push
//! may reach it, the next tip must not be sealed to it, and its claim must be
//! open again and escalating.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tipwire::clock::now_ms as unix_ms;
use tipwire::mediator::{AlertState, AlertStates, EscalationWorker, Stage};
use tipwire::outbound::push::PushWorker;

use crate::support::app::{TestApp, spawn_app_with};
use crate::support::phone::{
    Login, Phone, enrol, enrolled_phone, invite, login, next_tip_opens_for,
};
use crate::support::push::PushEndpoint;

const ORIGIN: &str = "https://localhost:8443";

fn tipwire(app: &TestApp, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tipwire"))
        .arg("--config")
        .arg(app.cli_config())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tipwire {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `(method, path)` registered under `/api/v1/`: each
/// `web::resource("/api/v1/…")` in `src/` with the methods of the
/// `.route(web::<method>())` calls that follow it.
fn api_routes() -> Vec<(reqwest::Method, String)> {
    fn sources(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = Vec::new();
    for text in files {
        let mut resources = text.split("web::resource(\"").skip(1);
        for chunk in resources.by_ref() {
            let Some((path, rest)) = chunk.split_once('"') else {
                continue;
            };
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for (call, method) in [
                ("web::get()", reqwest::Method::GET),
                ("web::post()", reqwest::Method::POST),
                ("web::put()", reqwest::Method::PUT),
                ("web::patch()", reqwest::Method::PATCH),
                ("web::delete()", reqwest::Method::DELETE),
            ] {
                if rest.contains(&format!(".route({call}")) {
                    routes.push((method, path.to_owned()));
                }
            }
        }
    }
    routes.sort_by(|a, b| (&a.1, a.0.as_str()).cmp(&(&b.1, b.0.as_str())));
    routes
}

/// Reads the stream's body until `needle` shows, or fails after `within`.
async fn read_until(
    response: &mut reqwest::Response,
    seen: &mut String,
    needle: &str,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => panic!("the stream closed before {needle:?}: {seen}"),
            Ok(Err(e)) => panic!("the stream failed before {needle:?}: {e}: {seen}"),
            Err(_) => panic!("no {needle:?} within {within:?}: {seen}"),
        }
    }
}

/// Opens `login`'s alert stream and reads it up to its `ready` event.
async fn open_stream(app: &TestApp, login: &Login) -> (reqwest::Response, String) {
    let mut stream = app
        .client
        .get(app.url("/api/v1/alerts/stream"))
        .header("Cookie", &login.cookie)
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        "event: ready",
        Duration::from_secs(10),
    )
    .await;
    (stream, seen)
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    login: &Login,
    body: &Value,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .header("Cookie", &login.cookie)
        .header("X-CSRF-Token", &login.csrf)
        .header("Origin", ORIGIN)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_removed_phone_is_refused_everywhere_its_stream_ends_and_its_claim_reopens() {
    let endpoint = PushEndpoint::start();
    let app = spawn_app_with(|s| {
        s.push.enabled = true;
        s.push.subject =
            Some(tipwire::config::VapidSubject::parse("mailto:ops@cvi.example.org").unwrap());
        s.push.endpoint_policy = tipwire::config::EndpointPolicy::DangerousAllowLoopbackHttp;
        s.push.poll_interval = std::time::Duration::from_secs(3600);
        // The longest allowed: only a revocation notice can end the stream
        // within the 10 s this test waits for it.
        s.mediator.stream_heartbeat = std::time::Duration::from_secs(60);
    })
    .await;
    let push = PushWorker::from_settings(
        &app.settings,
        app.store.clone(),
        std::sync::Arc::new(tipwire::crypto::Keyring::load(&app.settings.keys.dir).unwrap()),
        app.metrics.clone(),
        "w1".into(),
    )
    .unwrap();

    // Ana's phone: enrolled, signed in, push on, streaming, holding a claim.
    let (phone, device_id) = enrolled_phone(&app).await;
    let ana = login(&app, &phone, &device_id).await;
    let subscribed = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/devices/me/push",
        &ana,
        &json!({ "subscription": endpoint.subscription_json(Some("/ana")) }),
    )
    .await;
    assert_eq!(subscribed.status(), 204);
    let (mut stream, mut seen) = open_stream(&app, &ana).await;
    assert_eq!(stream.status(), 200);

    assert_eq!(
        app.post_tip("fight at the court", "south", "now")
            .await
            .status(),
        200
    );
    let alert = app.alerts().await.pop().unwrap();
    let tip_id = alert.entry.tip_id.clone();
    read_until(
        &mut stream,
        &mut seen,
        tip_id.as_str(),
        Duration::from_secs(10),
    )
    .await;
    let report = push.step(unix_ms()).await.unwrap();
    assert_eq!(report.delivered, 1, "push works before the removal");
    let claimed = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{tip_id}/claim"),
        &ana,
        &json!({}),
    )
    .await;
    assert_eq!(claimed.status(), 200);
    // And an invite for a second phone she has not used yet.
    let pending = invite(&app, &["south"], Duration::from_secs(900)).await;

    // The administrator finds her in the list, with her phone, and removes her.
    let list = tipwire(&app, &["mediator", "list"]);
    assert!(
        list.contains(&device_id),
        "the list shows her device: {list}"
    );
    let entry = list
        .lines()
        .find(|l| l.contains("Ana Mediator") && l.starts_with("m_"))
        .unwrap_or_else(|| panic!("{list}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let said = tipwire(&app, &["mediator", "remove", &entry]);
    assert!(
        said.contains(&device_id) && said.contains("1 session(s) ended"),
        "{said}"
    );

    // The open stream ends now, not at the next heartbeat, a minute away.
    read_until(
        &mut stream,
        &mut seen,
        "event: end",
        Duration::from_secs(10),
    )
    .await;
    assert!(seen.contains(r#"{"code":"session-expired"}"#), "{seen}");

    // Every route refuses the old cookie, CSRF token and device key.
    let challenge = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let body = json!({
        "invite": pending,
        "age_recipient": phone.recipient(),
        "signing_key": phone.spki(),
        "device_id": device_id,
        "challenge": challenge,
        "signature": phone.sign(&challenge),
        "on_duty": true,
        "outcome": "mediated",
        "text": "we are on our way",
        "subscription": endpoint.subscription_json(Some("/ana")),
        "email": "ana@example.org",
    });
    let routes = api_routes();
    assert!(
        routes.len() >= 18,
        "the route scan found too few: {routes:?}"
    );
    for (method, pattern) in &routes {
        // The VAPID public key is public: it carries no authority.
        if pattern == "/api/v1/push/key" {
            continue;
        }
        let path = pattern
            .replace("{tip_id}", tip_id.as_str())
            .replace("{thread}", &alert.entry.thread);
        assert!(
            !path.contains('{'),
            "a path parameter this test does not fill: {pattern}"
        );
        let response = call(&app, method.clone(), &path, &ana, &body).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(
            matches!(status, 401 | 403 | 404),
            "{method} {pattern} answered {status} to the removed phone: {text}"
        );
    }
    // The device key cannot sign in again either.
    let again = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/session/challenge",
        &ana,
        &json!({ "device_id": device_id }),
    )
    .await;
    assert_eq!(again.status(), 401);

    // Her claim is open again, and escalates to the supervisors at once.
    let state = AlertStates::new(app.store.clone(), 86_400)
        .get(&tip_id)
        .await
        .unwrap();
    assert_eq!(state.state, AlertState::Open);
    let fired = EscalationWorker::new(app.store.clone(), 86_400)
        .step(unix_ms())
        .await
        .unwrap();
    assert!(
        fired
            .iter()
            .any(|f| f.tip_id == tip_id && f.stage == Stage::Supervisors),
        "{fired:?}"
    );

    // The next tip is not sealed to her phone, and no push reaches it.
    assert!(!next_tip_opens_for(&app, &phone, "south", "after removal").await);
    push.step(unix_ms()).await.unwrap();
    let pushed: Vec<Value> = endpoint
        .received_now()
        .into_iter()
        .filter(|r| r["path"] == "/ana")
        .collect();
    assert_eq!(
        pushed.len(),
        1,
        "only the push from before the removal: {pushed:?}"
    );

    // Nothing of her is left: no entry, device, session or invite.
    let list = tipwire(&app, &["mediator", "list"]);
    assert!(
        !list.contains("Ana Mediator") && !list.contains(&device_id),
        "{list}"
    );
    let fresh = crate::support::phone::post_json(
        &app,
        "/api/v1/devices",
        &Phone::new().enrolment(&pending),
    )
    .await;
    assert_eq!(fresh.status(), 403, "her pending invite was cancelled");
}

#[tokio::test]
async fn an_open_stream_ends_when_its_session_can_no_longer_be_checked() {
    let mut redis = crate::support::private_redis::PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis.url = url;
        s.mediator.stream_heartbeat = std::time::Duration::from_secs(1);
    })
    .await;
    let (phone, device_id) = enrolled_phone(&app).await;
    let ana = login(&app, &phone, &device_id).await;
    let (mut stream, mut seen) = open_stream(&app, &ana).await;
    assert_eq!(stream.status(), 200);

    // Nobody can tell now whether the phone was revoked: the stream ends
    // (the app reconnects and is let back in once Redis answers again).
    redis.kill();
    read_until(
        &mut stream,
        &mut seen,
        "event: end",
        Duration::from_secs(10),
    )
    .await;
    assert!(seen.contains(r#"{"code":"store-unavailable"}"#), "{seen}");
}

/// The `data` of the `alert` event for `tip_id` in what a stream sent.
fn alert_event(seen: &str, tip_id: &str) -> Value {
    seen.split("\n\n")
        .filter(|block| block.contains("event: alert\n"))
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str::<Value>(data).unwrap())
        .find(|data| data["tip_id"] == tip_id)
        .unwrap_or_else(|| panic!("no alert event for {tip_id}: {seen}"))
}

#[tokio::test]
async fn a_phone_enrolled_after_a_tip_cannot_claim_it_be_handed_it_or_answer_it() {
    let app = crate::support::app::spawn_app().await;
    let (early_phone, early_id) = enrolled_phone(&app).await;
    let early = login(&app, &early_phone, &early_id).await;
    assert_eq!(
        app.post_tip("fight at the court", "south", "now")
            .await
            .status(),
        200
    );
    let alert = app.alerts().await.pop().unwrap();
    let tip_id = alert.entry.tip_id.as_str().to_owned();

    let (late_phone, late_id) = enrolled_phone(&app).await;
    let late = login(&app, &late_phone, &late_id).await;

    // Both see the alert; the app is told which phone can open it.
    for (who, can_open) in [(&early, true), (&late, false)] {
        let (_stream, seen) = open_stream(&app, who).await;
        let event = alert_event(&seen, &tip_id);
        assert_eq!(event["state"], "open");
        assert_eq!(event["can_open"], can_open, "{event}");
    }

    // The late phone's claim is refused and leaves the alert open (and
    // escalating); so is its reply to the tipster.
    let claim = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{tip_id}/claim"),
        &late,
        &json!({}),
    )
    .await;
    assert_eq!(claim.status(), 403);
    assert_eq!(
        crate::support::app::error_code(claim).await,
        "cannot-open-alert"
    );
    let state = AlertStates::new(app.store.clone(), 86_400)
        .get(&alert.entry.tip_id)
        .await
        .unwrap();
    assert_eq!((state.state, state.version), (AlertState::Open, 0));
    let reply = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/threads/{}/replies", alert.entry.thread),
        &late,
        &json!({ "text": "we are on our way" }),
    )
    .await;
    assert_eq!(
        crate::support::app::error_code(reply).await,
        "cannot-open-alert"
    );

    // A supervisor enrolled later still hands it on, but only to a phone
    // that can open it.
    let sup_phone = Phone::new();
    let code = crate::support::phone::api(&app)
        .invites
        .create("Sam Supervisor", &[], true, Duration::from_secs(900))
        .await
        .unwrap()
        .code
        .as_str()
        .to_owned();
    let sup_id = enrol(&app, &sup_phone, &code).await;
    let sup = login(&app, &sup_phone, &sup_id).await;
    let assignees: Value = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/alerts/{tip_id}/assignees"),
        &sup,
        &json!({}),
    )
    .await
    .json()
    .await
    .unwrap();
    let listed: Vec<&str> = assignees["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [early_id.as_str()], "{assignees}");
    let to_late = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{tip_id}/reassign"),
        &sup,
        &json!({ "device_id": late_id }),
    )
    .await;
    assert_eq!(
        crate::support::app::error_code(to_late).await,
        "invalid-assignee"
    );
    let to_early = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{tip_id}/reassign"),
        &sup,
        &json!({ "device_id": early_id }),
    )
    .await;
    assert_eq!(to_early.status(), 200);
    // The phone it was sealed to claims as before.
    let release = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{tip_id}/release"),
        &early,
        &json!({}),
    )
    .await;
    assert_eq!(release.status(), 200);
    let claim = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{tip_id}/claim"),
        &early,
        &json!({}),
    )
    .await;
    assert_eq!(claim.status(), 200);
}

#[tokio::test]
async fn without_a_valid_invite_every_enrolment_gets_the_same_answer() {
    let app = crate::support::app::spawn_app().await;
    let (enrolled, _) = enrolled_phone(&app).await;
    let made_up = "abcdefghijklmnopqrstuvwxyz";
    let used = invite(&app, &["south"], Duration::from_secs(900)).await;
    enrol(&app, &Phone::new(), &used).await;

    // An enrolled key, a malformed key, a private key: without a valid
    // invite nobody learns anything about them, or about who is enrolled.
    let mut malformed = Phone::new().enrolment(made_up);
    malformed["age_recipient"] = "age1notakey".into();
    let mut private = Phone::new().enrolment(&used);
    private["age_recipient"] = enrolled.identity.to_secret_string().as_str().into();
    for body in [
        enrolled.enrolment(made_up),
        enrolled.enrolment(&used),
        enrolled.enrolment("not a code"),
        malformed,
        private,
    ] {
        let response = crate::support::phone::post_json(&app, "/api/v1/devices", &body).await;
        assert_eq!(response.status(), 403, "{body}");
        assert_eq!(
            crate::support::app::error_code(response).await,
            "invite-invalid",
            "{body}"
        );
    }
    // With a valid invite the holder is told what to fix.
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let taken =
        crate::support::phone::post_json(&app, "/api/v1/devices", &enrolled.enrolment(&code)).await;
    assert_eq!(
        crate::support::app::error_code(taken).await,
        "recipient-already-enrolled"
    );
    enrol(&app, &Phone::new(), &code).await;
}

#[tokio::test]
async fn enrolment_attempts_are_rate_limited_per_client_before_the_invite_is_read() {
    let app = spawn_app_with(|s| {
        s.rate_limits.enrolment.per_client.count = std::num::NonZeroU32::new(3).unwrap();
        s.rate_limits.enrolment.per_client.period = std::time::Duration::from_secs(3_600);
    })
    .await;
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    for _ in 0..3 {
        let guess = crate::support::phone::post_json(
            &app,
            "/api/v1/devices",
            &Phone::new().enrolment("abcdefghijklmnopqrstuvwxyz"),
        )
        .await;
        assert_eq!(guess.status(), 403);
    }
    // The fourth attempt is refused unread, even with the right code, which
    // stays usable.
    let limited =
        crate::support::phone::post_json(&app, "/api/v1/devices", &Phone::new().enrolment(&code))
            .await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().get("retry-after").is_some());
    assert_eq!(
        crate::support::app::error_code(limited).await,
        "rate-limited"
    );
    assert!(
        tipwire::mediator::devices::Devices::new(app.store.clone())
            .list()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn nothing_of_a_device_is_stored_once_it_is_revoked() {
    use tipwire::mediator::devices::set_if_enrolled;
    let app = crate::support::app::spawn_app().await;
    let (_, device_id) = enrolled_phone(&app).await;
    let id = tipwire::mediator::DeviceId::parse(&device_id).unwrap();
    let key = app.store.keys().push_sub(&device_id);
    assert!(set_if_enrolled(&app.store, &id, &key, b"{}").await.unwrap());
    tipwire::mediator::offboarding::Offboarding::new(app.store.clone(), Default::default(), 86_400)
        .revoke_device(&id)
        .await
        .unwrap();
    // A push subscription or nudge contact posted by a request that passed
    // its session check just before the revocation leaves nothing behind.
    assert!(!set_if_enrolled(&app.store, &id, &key, b"{}").await.unwrap());
    let mut conn = app.store.conn().await.unwrap();
    let left: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!left);
}

/// A claim or handover whose request passed its session check just before
/// the device was removed reaches Redis after the removal handed the
/// device's claims back: it must not make the gone device the alert's holder
/// (escalation only runs while an alert is unclaimed).
#[tokio::test]
async fn a_claim_or_handover_landing_after_a_removal_does_not_hold_the_alert() {
    use tipwire::domain::TipId;
    use tipwire::mediator::{ClaimError, DeviceId};
    let app = crate::support::app::spawn_app().await;
    let (_, gone_id) = enrolled_phone(&app).await;
    let supervisor = Phone::new();
    let supervisor_id = enrol(
        &app,
        &supervisor,
        crate::support::phone::api(&app)
            .invites
            .create("Sam Supervisor", &[], true, Duration::from_secs(900))
            .await
            .unwrap()
            .code
            .as_str(),
    )
    .await;
    let gone_id = DeviceId::parse(&gone_id).unwrap();
    let supervisor_id = DeviceId::parse(&supervisor_id).unwrap();
    tipwire::mediator::offboarding::Offboarding::new(app.store.clone(), Default::default(), 86_400)
        .revoke_device(&gone_id)
        .await
        .unwrap();
    let states = AlertStates::new(app.store.clone(), 86_400);
    let tip = TipId::random();
    assert!(matches!(
        states.claim(&tip, &gone_id).await,
        Err(ClaimError::Unenrolled)
    ));
    assert!(matches!(
        states.reassign(&tip, &supervisor_id, true, &gone_id).await,
        Err(ClaimError::AssigneeGone)
    ));
    // A supervisor removed mid-request hands nothing either.
    assert!(matches!(
        states.reassign(&tip, &gone_id, true, &supervisor_id).await,
        Err(ClaimError::Unenrolled)
    ));
    assert_eq!(states.get(&tip).await.unwrap().state, AlertState::Open);
}

/// The revocation notice is the last write of a device's revocation; when it
/// cannot be written (Redis refusing it for a moment) the removal must still
/// hand the person's claims back: running `remove` again finds nobody left to
/// remove, so a claim not reopened now would silence escalation for good.
#[tokio::test]
async fn a_removal_whose_notice_cannot_be_written_still_reopens_the_claims() {
    use tipwire::domain::TipId;
    use tipwire::mediator::DeviceId;
    let app = crate::support::app::spawn_app().await;
    let (_, id) = enrolled_phone(&app).await;
    let id = DeviceId::parse(&id).unwrap();
    let states = AlertStates::new(app.store.clone(), 86_400);
    let tip = TipId::random();
    states.claim(&tip, &id).await.unwrap();
    // The notice's XADD fails (WRONGTYPE) as a write to an unavailable Redis would.
    let mut conn = app.store.conn().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(app.store.keys().revocations())
        .arg("not a stream")
        .query_async(&mut conn)
        .await
        .unwrap();
    let done = tipwire::mediator::offboarding::Offboarding::new(
        app.store.clone(),
        Default::default(),
        86_400,
    )
    .remove_person(id.as_str())
    .await
    .unwrap();
    assert_eq!(done.claims_reopened, 1);
    assert_eq!(states.get(&tip).await.unwrap().state, AlertState::Open);
}

/// An offboarding that failed after the device's revocation (Redis gone
/// before its claims were handed back) is finished by running `revoke` on
/// the device again: the device is gone, but its claims still reopen.
#[tokio::test]
async fn revoking_an_already_revoked_device_again_hands_its_claims_back() {
    use tipwire::domain::TipId;
    use tipwire::mediator::DeviceId;
    use tipwire::mediator::devices::Devices;
    use tipwire::mediator::offboarding::{OffboardError, Offboarding};
    let app = crate::support::app::spawn_app().await;
    let (_, id) = enrolled_phone(&app).await;
    let id = DeviceId::parse(&id).unwrap();
    let states = AlertStates::new(app.store.clone(), 86_400);
    let tip = TipId::random();
    states.claim(&tip, &id).await.unwrap();
    // The first run stopped after the revocation itself.
    Devices::new(app.store.clone()).revoke(&id).await.unwrap();
    let offboarding = Offboarding::new(app.store.clone(), Default::default(), 86_400);
    let done = offboarding.revoke_device(&id).await.unwrap();
    assert_eq!(done.claims_reopened, 1);
    assert_eq!(states.get(&tip).await.unwrap().state, AlertState::Open);
    // With nothing left of it, the device is reported unknown.
    assert!(matches!(
        offboarding.revoke_device(&id).await,
        Err(OffboardError::NotFound(_))
    ));
}
