//! The mediator app's alert API over HTTPS: the live stream (SSE, read here
//! with a small parser over reqwest's chunks), sealed envelopes, claims seen
//! by other devices, resuming with `Last-Event-ID`, escalation from the serve
//! task, and replies that reach the tipster and the sealed thread history.
//! Each test plays phones enrolled and logged in as the app does.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tipwire::bus::StoredAlert;
use tipwire::bus::timing::coarse_due;
use tipwire::domain::{TipDocument, Zone};
use tipwire::mediator::devices::Devices;
use tipwire::mediator::{DeviceId, EscalationPolicy, Escalations, Stage};

use crate::support::app::{TestApp, error_code, spawn_app, spawn_app_with};
use crate::support::phone::{Login, Phone, api, enrol, invite, login};
use crate::support::sms::{PROGRAM_NUMBER, spawn_sms_app, twilio_params};

const TIPSTER: &str = "+15557654321";

/// An enrolled, logged-in phone.
struct Mediator {
    phone: Phone,
    device_id: String,
    login: Login,
}

async fn mediator(app: &TestApp, zones: &[&str]) -> Mediator {
    let phone = Phone::new();
    let code = invite(app, zones, Duration::from_secs(900)).await;
    let device_id = enrol(app, &phone, &code).await;
    let login = login(app, &phone, &device_id).await;
    Mediator {
        phone,
        device_id,
        login,
    }
}

async fn supervisor(app: &TestApp) -> Mediator {
    let phone = Phone::new();
    let code = api(app)
        .invites
        .create("Sam Supervisor", &[], true, Duration::from_secs(900))
        .await
        .unwrap()
        .code
        .as_str()
        .to_owned();
    let device_id = enrol(app, &phone, &code).await;
    let login = login(app, &phone, &device_id).await;
    Mediator {
        phone,
        device_id,
        login,
    }
}

impl Mediator {
    async fn get(&self, app: &TestApp, path: &str) -> reqwest::Response {
        app.client
            .get(app.url(path))
            .header("Cookie", &self.login.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A state-changing call as the app makes it: cookie, CSRF token, Origin.
    async fn post(&self, app: &TestApp, path: &str, body: Value) -> reqwest::Response {
        app.client
            .post(app.url(path))
            .header("Cookie", &self.login.cookie)
            .header("X-CSRF-Token", &self.login.csrf)
            .header("Origin", "https://localhost:8443")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn act(
        &self,
        app: &TestApp,
        tip_id: &str,
        action: &str,
        body: Value,
    ) -> reqwest::Response {
        self.post(app, &format!("/api/v1/alerts/{tip_id}/{action}"), body)
            .await
    }

    /// Opens the live stream (resuming after `last_event_id`) and reads it
    /// up to the `ready` event; returns the events before it too.
    async fn stream(&self, app: &TestApp, last_event_id: Option<&str>) -> (Sse, Vec<Event>) {
        let mut request = app
            .client
            .get(app.url("/api/v1/alerts/stream"))
            .header("Cookie", &self.login.cookie)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-accel-buffering"], "no");
        let mut sse = Sse {
            response,
            buf: Vec::new(),
            retry: None,
            comments: 0,
        };
        let mut before = Vec::new();
        loop {
            let e = sse.next(Duration::from_secs(5)).await.unwrap();
            if e.name == "ready" {
                assert_eq!(sse.retry, Some(2000));
                return (sse, before);
            }
            before.push(e);
        }
    }

    /// Opens a sealed envelope with this phone's age identity.
    fn open(&self, envelope: &[u8]) -> Vec<u8> {
        tipwire::crypto::open(envelope, std::slice::from_ref(&self.phone.identity)).unwrap()
    }
}

#[derive(Debug, Clone)]
struct Event {
    name: String,
    id: String,
    data: Value,
}

#[derive(Debug, PartialEq, Eq)]
enum Stop {
    TimedOut,
    Ended,
}

/// A minimal `text/event-stream` reader: blocks end at a blank line; `event`,
/// `id`, `data` and `retry` fields; `:` comments are counted and skipped.
struct Sse {
    response: reqwest::Response,
    buf: Vec<u8>,
    retry: Option<u64>,
    comments: usize,
}

impl Sse {
    async fn next(&mut self, within: Duration) -> Result<Event, Stop> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let block = String::from_utf8(block).unwrap();
                let (mut name, mut id, mut data) = (None, None, None);
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "event" => name = Some(value.to_owned()),
                        "id" => id = Some(value.to_owned()),
                        "data" => data = Some(serde_json::from_str(value).unwrap()),
                        "retry" => self.retry = Some(value.parse().unwrap()),
                        "" => {}
                        other => panic!("unexpected field {other:?} in {block:?}"),
                    }
                }
                if let Some(data) = data {
                    return Ok(Event {
                        name: name.unwrap_or_else(|| "message".into()),
                        id: id.expect("every event carries an id"),
                        data,
                    });
                }
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return Err(Stop::TimedOut),
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => return Err(Stop::Ended),
            }
        }
    }

    /// The next `alert` or `state` event, skipping heartbeats.
    async fn next_change(&mut self, within: Duration) -> Event {
        let e = self.next(within).await.expect("an event in time");
        assert!(e.name == "alert" || e.name == "state", "{e:?}");
        e
    }

    /// Asserts nothing but heartbeats arrives for `wait`.
    async fn quiet_for(&mut self, wait: Duration) {
        match self.next(wait).await {
            Err(Stop::TimedOut) => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }
}

/// Posts a web tip and returns its stream entry.
async fn web_tip(app: &TestApp, text: &str, zone: &str, urgency: &str) -> StoredAlert {
    let before = app.alerts().await.len();
    let response = app.post_tip(text, zone, urgency).await;
    assert_eq!(response.status(), 200);
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), before + 1);
    alerts.last().unwrap().clone()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn tip_document(plain: &[u8]) -> TipDocument {
    serde_json::from_slice(plain).unwrap()
}

#[tokio::test]
async fn a_tip_for_the_devices_zone_reaches_its_open_stream_and_its_envelope_opens_only_there() {
    let app = spawn_app().await;
    let ana = mediator(&app, &["south"]).await;
    let bo = mediator(&app, &["east"]).await;
    let (mut ana_stream, backlog) = ana.stream(&app, None).await;
    assert!(backlog.is_empty(), "{backlog:?}");
    let (mut bo_stream, _) = bo.stream(&app, None).await;

    let text = "Two crews on Maple & 3rd say they'll settle it tonight";
    let posted = Instant::now();
    let tip = web_tip(&app, text, "south", "now").await;
    let e = ana_stream.next_change(Duration::from_secs(2)).await;
    assert!(posted.elapsed() < Duration::from_secs(2));
    assert_eq!(e.name, "alert");
    let tip_id = tip.entry.tip_id.to_string();
    assert_eq!(
        e.data,
        json!({
            "tip_id": tip_id,
            "zone": "south",
            "priority": "now",
            "channel": "web",
            "received": tip.entry.received,
            "thread": tip.entry.thread,
            "state": "open",
            "outcome": null,
            "claimed_by_me": false,
            "version": 0,
            "can_open": true,
        })
    );
    assert!(e.id.starts_with(&format!("{}|", tip.id)), "{}", e.id);

    let envelope = ana
        .get(&app, &format!("/api/v1/alerts/{tip_id}/envelope"))
        .await;
    assert_eq!(envelope.status(), 200);
    assert_eq!(
        envelope.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(envelope.headers()["cache-control"], "no-store");
    let bytes = envelope.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), tip.entry.envelope.as_slice());
    let doc = tip_document(&ana.open(&bytes));
    assert_eq!(doc.text, text);
    assert_eq!(doc.tip_id, tip_id);

    // Another zone: never on the stream, and no envelope.
    let theirs = bo
        .get(&app, &format!("/api/v1/alerts/{tip_id}/envelope"))
        .await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(error_code(theirs).await, "not-found");
    assert!(tipwire::crypto::open(&bytes, std::slice::from_ref(&bo.phone.identity)).is_err());
    let east = web_tip(&app, "east side tip", "east", "today").await;
    let first = bo_stream.next_change(Duration::from_secs(2)).await;
    assert_eq!(first.data["tip_id"], east.entry.tip_id.as_str());
    // Ana's stream did not get the east tip either.
    ana_stream.quiet_for(Duration::from_millis(300)).await;

    // Unknown or malformed ids are 404 too; no session is 401.
    for path in [
        format!(
            "/api/v1/alerts/{}/envelope",
            tipwire::domain::TipId::random()
        ),
        "/api/v1/alerts/not-a-tip/envelope".to_owned(),
    ] {
        assert_eq!(ana.get(&app, &path).await.status(), 404, "{path}");
    }
    let anonymous = app
        .client
        .get(app.url("/api/v1/alerts/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(error_code(anonymous).await, "session-required");
}

#[tokio::test]
async fn a_claim_reaches_the_other_device_of_the_zone_and_a_second_claim_gets_409() {
    let app = spawn_app().await;
    let ana = mediator(&app, &["south"]).await;
    let cy = mediator(&app, &["south"]).await;
    let (mut ana_stream, _) = ana.stream(&app, None).await;
    let (mut cy_stream, _) = cy.stream(&app, None).await;
    let tip = web_tip(&app, "a fight is brewing at the court", "south", "now").await;
    let tip_id = tip.entry.tip_id.to_string();
    assert_eq!(
        cy_stream.next_change(Duration::from_secs(2)).await.name,
        "alert"
    );
    assert_eq!(
        ana_stream.next_change(Duration::from_secs(2)).await.name,
        "alert"
    );

    // Without the CSRF token nothing changes.
    let forged = app
        .client
        .post(app.url(&format!("/api/v1/alerts/{tip_id}/claim")))
        .header("Cookie", &ana.login.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(error_code(forged).await, "csrf-failed");

    let claimed = ana.act(&app, &tip_id, "claim", json!({})).await;
    let claimed_at = Instant::now();
    assert_eq!(claimed.status(), 200);
    assert_eq!(claimed.headers()["cache-control"], "no-store");
    assert_eq!(
        claimed.json::<Value>().await.unwrap(),
        json!({"tip_id": tip_id, "state": "claimed", "outcome": null, "claimed_by_me": true, "version": 1})
    );
    let seen = cy_stream.next_change(Duration::from_secs(1)).await;
    assert!(claimed_at.elapsed() < Duration::from_secs(1));
    assert_eq!(seen.name, "state");
    assert_eq!(
        seen.data,
        json!({"tip_id": tip_id, "state": "claimed", "outcome": null, "by_me": false, "claimed_by_me": false, "version": 1})
    );
    let own = ana_stream.next_change(Duration::from_secs(1)).await;
    assert_eq!(
        (own.data["by_me"].clone(), own.data["claimed_by_me"].clone()),
        (json!(true), json!(true))
    );

    let second = cy.act(&app, &tip_id, "claim", json!({})).await;
    assert_eq!(second.status(), 409);
    assert_eq!(error_code(second).await, "alert-claimed");
    let not_theirs = cy.act(&app, &tip_id, "release", json!({})).await;
    assert_eq!(not_theirs.status(), 403);
    assert_eq!(error_code(not_theirs).await, "not-claimant");
    let not_sup = cy
        .act(
            &app,
            &tip_id,
            "reassign",
            json!({"device_id": cy.device_id}),
        )
        .await;
    assert_eq!(not_sup.status(), 403);
    assert_eq!(error_code(not_sup).await, "not-supervisor");
    let bad_outcome = ana
        .act(&app, &tip_id, "resolve", json!({"outcome": "arrested"}))
        .await;
    assert_eq!(bad_outcome.status(), 422);
    assert_eq!(error_code(bad_outcome).await, "unknown-outcome");

    // A supervisor hands it to Cy, who resolves it.
    let sam = supervisor(&app).await;
    let moved = sam
        .act(
            &app,
            &tip_id,
            "reassign",
            json!({"device_id": cy.device_id}),
        )
        .await;
    assert_eq!(moved.status(), 200);
    assert_eq!(moved.json::<Value>().await.unwrap()["version"], 2);
    let outsider = mediator(&app, &["east"]).await;
    let refused = sam
        .act(
            &app,
            &tip_id,
            "reassign",
            json!({"device_id": outsider.device_id}),
        )
        .await;
    assert_eq!(error_code(refused).await, "invalid-assignee");
    let to_cy = cy_stream.next_change(Duration::from_secs(1)).await;
    assert_eq!(
        (
            to_cy.data["claimed_by_me"].clone(),
            to_cy.data["by_me"].clone()
        ),
        (json!(true), json!(false))
    );
    let done = cy
        .act(&app, &tip_id, "resolve", json!({"outcome": "mediated"}))
        .await;
    assert_eq!(done.status(), 200);
    assert_eq!(done.json::<Value>().await.unwrap()["state"], "resolved");
    let after = ana.act(&app, &tip_id, "claim", json!({})).await;
    assert_eq!(after.status(), 409);
    assert_eq!(error_code(after).await, "alert-resolved");
    // Ana saw the hand-over and the end, in order.
    let handed = ana_stream.next_change(Duration::from_secs(1)).await;
    assert_eq!(
        (
            handed.data["version"].clone(),
            handed.data["claimed_by_me"].clone()
        ),
        (json!(2), json!(false))
    );
    let resolved = ana_stream.next_change(Duration::from_secs(1)).await;
    assert_eq!(
        resolved.data,
        json!({"tip_id": tip_id, "state": "resolved", "outcome": "mediated", "by_me": false, "claimed_by_me": false, "version": 3})
    );

    // An alert of another zone is not there to claim.
    let east = web_tip(&app, "east", "east", "now").await;
    let hidden = ana
        .act(&app, east.entry.tip_id.as_str(), "claim", json!({}))
        .await;
    assert_eq!(hidden.status(), 404);
}

/// The device ids a supervisor is offered for `tip_id`, sorted; each entry
/// holds exactly an id and display names.
async fn offered(app: &TestApp, sup: &Mediator, tip_id: &str) -> Vec<String> {
    let response = sup
        .get(app, &format!("/api/v1/alerts/{tip_id}/assignees"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tip_id"], tip_id);
    let mut ids: Vec<String> = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let mut fields: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
            fields.sort_unstable();
            assert_eq!(
                fields,
                ["device_id", "device_name", "name", "on_duty"],
                "{d}"
            );
            d["device_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_supervisor_is_offered_the_devices_that_can_open_an_alert_and_a_mediator_is_refused() {
    let app = spawn_app().await;
    let ana = mediator(&app, &["south"]).await;
    let cy = mediator(&app, &["south"]).await;
    let bo = mediator(&app, &["east"]).await;
    let sam = supervisor(&app).await;
    let tip = web_tip(&app, "a fight is brewing at the court", "south", "now").await;
    let tip_id = tip.entry.tip_id.to_string();
    let path = format!("/api/v1/alerts/{tip_id}/assignees");

    // Whoever can open it: the zone's mediators and the supervisor, not east.
    // Names, no keys.
    assert_eq!(
        offered(&app, &sam, &tip_id).await,
        sorted(&[&ana.device_id, &cy.device_id, &sam.device_id])
    );
    let body: Value = sam.get(&app, &path).await.json().await.unwrap();
    let entry = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == ana.device_id.as_str())
        .unwrap();
    assert_eq!(
        entry,
        &json!({"device_id": ana.device_id, "name": "Ana Mediator", "device_name": "Test phone", "on_duty": true})
    );

    // Claimed by Ana: she is not offered; what is offered goes through.
    assert_eq!(
        ana.act(&app, &tip_id, "claim", json!({})).await.status(),
        200
    );
    assert_eq!(
        offered(&app, &sam, &tip_id).await,
        sorted(&[&cy.device_id, &sam.device_id])
    );
    let moved = sam
        .act(
            &app,
            &tip_id,
            "reassign",
            json!({"device_id": cy.device_id}),
        )
        .await;
    assert_eq!(moved.status(), 200);
    assert_eq!(
        offered(&app, &sam, &tip_id).await,
        sorted(&[&ana.device_id, &sam.device_id])
    );
    // A revoked device is offered no more.
    Devices::new(app.store.clone())
        .revoke(&DeviceId::parse(&ana.device_id).unwrap())
        .await
        .unwrap();
    assert_eq!(
        offered(&app, &sam, &tip_id).await,
        sorted(&[&sam.device_id])
    );
    // An "unsure" tip can be opened by every device.
    let unsure = web_tip(&app, "somewhere in town", "unsure", "now").await;
    assert_eq!(
        offered(&app, &sam, unsure.entry.tip_id.as_str()).await,
        sorted(&[&cy.device_id, &bo.device_id, &sam.device_id])
    );

    // A mediator may not ask: 403 for an alert it sees, 404 for one it does
    // not; unknown alerts are 404, no session is 401, other methods 405.
    let refused = cy.get(&app, &path).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(error_code(refused).await, "not-supervisor");
    let hidden = bo.get(&app, &path).await;
    assert_eq!(hidden.status(), 404);
    assert_eq!(error_code(hidden).await, "not-found");
    let unknown = sam
        .get(
            &app,
            &format!(
                "/api/v1/alerts/{}/assignees",
                tipwire::domain::TipId::random()
            ),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let anonymous = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let posted = sam.post(&app, &path, json!({})).await;
    assert_eq!(posted.status(), 405);
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_replays_exactly_what_was_missed_then_continues_live() {
    let app = spawn_app().await;
    let ana = mediator(&app, &["south"]).await;
    let cy = mediator(&app, &["south"]).await;

    // A fresh connect sends what is there, oldest first, with current state.
    let older = web_tip(&app, "older", "south", "today").await;
    let claimed = web_tip(&app, "claimed one", "south", "now").await;
    web_tip(&app, "not ours", "north", "now").await;
    assert_eq!(
        ana.act(&app, claimed.entry.tip_id.as_str(), "claim", json!({}))
            .await
            .status(),
        200
    );
    let (mut stream, backlog) = ana.stream(&app, None).await;
    let listed: Vec<(String, Value, Value)> = backlog
        .iter()
        .map(|e| {
            assert_eq!(e.name, "alert");
            (
                e.data["tip_id"].as_str().unwrap().to_owned(),
                e.data["state"].clone(),
                e.data["claimed_by_me"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (older.entry.tip_id.to_string(), json!("open"), json!(false)),
            (
                claimed.entry.tip_id.to_string(),
                json!("claimed"),
                json!(true)
            ),
        ]
    );

    let first = web_tip(&app, "first", "south", "now").await;
    let seen = stream.next_change(Duration::from_secs(2)).await;
    assert_eq!(seen.data["tip_id"], first.entry.tip_id.as_str());
    let last_id = seen.id.clone();
    drop(stream);

    // Missed while away: a new alert of the zone, one of another zone, and
    // Cy's claim of the first.
    let missed = web_tip(&app, "missed", "south", "now").await;
    web_tip(&app, "elsewhere", "north", "now").await;
    assert_eq!(
        cy.act(&app, first.entry.tip_id.as_str(), "claim", json!({}))
            .await
            .status(),
        200
    );

    let (mut resumed, replayed) = ana.stream(&app, Some(&last_id)).await;
    let replayed: Vec<(String, String, Value)> = replayed
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.data["tip_id"].as_str().unwrap().to_owned(),
                e.data["state"].clone(),
            )
        })
        .collect();
    assert_eq!(
        replayed,
        [
            (
                "alert".to_owned(),
                missed.entry.tip_id.to_string(),
                json!("open")
            ),
            (
                "state".to_owned(),
                first.entry.tip_id.to_string(),
                json!("claimed")
            ),
        ],
        "exactly the missed events, in order"
    );

    // Then live, without repeating any of it.
    let next = web_tip(&app, "after the resume", "south", "now").await;
    let live = resumed.next_change(Duration::from_secs(2)).await;
    assert_eq!(live.data["tip_id"], next.entry.tip_id.as_str());
    resumed.quiet_for(Duration::from_millis(300)).await;

    // A cursor that does not parse starts fresh.
    let (_, fresh) = ana.stream(&app, Some("garbage")).await;
    assert_eq!(fresh.len(), 5);
}

#[tokio::test]
async fn a_revoked_devices_stream_ends_at_the_next_heartbeat() {
    let app = spawn_app_with(|s| s.mediator.stream_heartbeat = Duration::from_secs(1)).await;
    let ana = mediator(&app, &["south"]).await;
    let (mut stream, _) = ana.stream(&app, None).await;
    // A heartbeat passes and the stream stays.
    stream.quiet_for(Duration::from_millis(1_500)).await;
    assert!(stream.comments >= 1);

    Devices::new(app.store.clone())
        .revoke(&DeviceId::parse(&ana.device_id).unwrap())
        .await
        .unwrap();
    let end = stream.next(Duration::from_secs(3)).await.unwrap();
    assert_eq!(end.name, "end");
    assert_eq!(end.data["code"], "session-expired");
    assert_eq!(
        stream.next(Duration::from_secs(2)).await.unwrap_err(),
        Stop::Ended
    );
    let again = ana.get(&app, "/api/v1/alerts/stream").await;
    assert_eq!(again.status(), 401);
}

#[tokio::test]
async fn on_shutdown_an_open_stream_ends_at_once_with_shutting_down() {
    let app = spawn_app_with(|s| s.mediator.stream_heartbeat = Duration::from_secs(60)).await;
    let ana = mediator(&app, &["south"]).await;
    let (mut stream, _) = ana.stream(&app, None).await;
    let (drain, handle) = (app.drain.clone(), app.handle.clone());
    let started = std::time::Instant::now();
    tokio::spawn(async move { drain.stop(handle, Duration::from_secs(20)).await });
    // Not at the next heartbeat (a minute away), and not at the shutdown
    // timeout: the app is told at once and reconnects elsewhere or later.
    let end = stream.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(end.name, "end");
    assert_eq!(end.data["code"], "shutting-down");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stream.next(Duration::from_secs(2)).await.unwrap_err(),
        Stop::Ended
    );
}

#[tokio::test]
async fn an_unclaimed_urgent_tip_escalates_once_from_the_serve_task_and_a_claimed_one_never() {
    let app = spawn_app_with(|s| {
        s.escalation.now.supervisors_after = std::time::Duration::from_secs(1);
        s.escalation.now.everyone_after = std::time::Duration::from_secs(3_600);
        s.escalation.poll_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let ana = mediator(&app, &["south"]).await;
    let since = unix_ms();
    let unclaimed = web_tip(&app, "nobody takes this", "south", "now").await;
    let claimed = web_tip(&app, "ana takes this", "south", "now").await;
    let until = unix_ms();

    // Scheduled by the append itself: both stages are there at once, with
    // the state the worker reads.
    let mut conn = app.store.conn().await.unwrap();
    let keys = app.store.keys();
    for tip in [&unclaimed, &claimed] {
        let member = format!("{}:1", tip.entry.tip_id);
        let due: Option<u64> = redis::cmd("ZSCORE")
            .arg(keys.escalations())
            .arg(&member)
            .query_async(&mut conn)
            .await
            .unwrap();
        let due = due.unwrap_or_else(|| panic!("{member} scheduled"));
        // On a minute boundary (no finer time is stored), never early.
        assert!(
            since + 1_000 <= due && due <= coarse_due(until, 1_000) && due.is_multiple_of(60_000),
            "{due}"
        );
        let (zone, priority, state): (String, String, String) = redis::cmd("HMGET")
            .arg(keys.alert_state(&tip.entry.tip_id))
            .arg(&["zone", "priority", "state"])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            (zone.as_str(), priority.as_str(), state.as_str()),
            ("south", "now", "open")
        );
        // State and index expire with the entry: its minute plus the
        // retention, nothing finer.
        let expected = tip.entry.received + app.settings.retention.period.as_secs();
        for key in [
            keys.alert_state(&tip.entry.tip_id),
            keys.alert_index(&tip.entry.tip_id),
            keys.thread_tips(&tip.entry.thread),
        ] {
            let at: u64 = redis::cmd("EXPIRETIME")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(at, expected, "{key}");
        }
    }
    assert_eq!(
        ana.act(&app, claimed.entry.tip_id.as_str(), "claim", json!({}))
            .await
            .status(),
        200
    );

    let escalations = Escalations::new(
        app.store.clone(),
        EscalationPolicy::default(),
        app.settings.retention.period.as_secs(),
    );
    // Wait for the wall clock to pass the minute boundary it is due at.
    let due = coarse_due(until, 1_000);
    tokio::time::sleep(Duration::from_millis(due.saturating_sub(unix_ms()))).await;
    let started = Instant::now();
    let fired = loop {
        let fired = escalations.events_after("0-0", 100).await.unwrap();
        if !fired.is_empty() || started.elapsed() > Duration::from_secs(5) {
            break fired;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].tip_id, unclaimed.entry.tip_id);
    assert_eq!(fired[0].stage, Stage::Supervisors);
    assert_eq!(
        fired[0].zone,
        tipwire::domain::ZoneChoice::Known(Zone::parse("south").unwrap())
    );
    // Several more polls: nothing fires twice, the claimed tip never fires.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(escalations.events_after("0-0", 100).await.unwrap().len(), 1);
    let mut left: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys.escalations())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    left.sort();
    let mut waiting = vec![
        format!("{}:2", unclaimed.entry.tip_id),
        format!("{}:2", claimed.entry.tip_id),
    ];
    waiting.sort();
    assert_eq!(left, waiting, "only the second stages wait");
}

#[tokio::test]
async fn a_reply_reaches_the_tipster_by_sms_and_the_thread_shows_it_sealed_to_the_team() {
    let (app, stand_in) = spawn_sms_app(|_| {}).await;
    let ana = mediator(&app, &["south"]).await;
    let bo = mediator(&app, &["east"]).await;
    let text = "They said they'll meet at the park at 9";
    let r = app
        .twilio(&twilio_params(
            TIPSTER,
            text,
            "SM51111111111111111111111111111111",
        ))
        .await;
    assert_eq!(r.status(), 200);
    let tip = app.alerts().await.pop().unwrap();
    assert_eq!(tip.entry.zone, "unsure");
    let thread = tip.entry.thread.clone();
    let path = format!("/api/v1/threads/{thread}/replies");

    let empty = ana.post(&app, &path, json!({"text": "   "})).await;
    assert_eq!(empty.status(), 422);
    assert_eq!(error_code(empty).await, "invalid-reply-text");
    let too_long = ana
        .post(&app, &path, json!({"text": "x".repeat(1601)}))
        .await;
    assert_eq!(error_code(too_long).await, "invalid-reply-text");

    let reply = "We hear you. Someone from the team is heading there now.";
    let posted = ana.post(&app, &path, json!({"text": reply})).await;
    assert_eq!(posted.status(), 202);
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(posted["thread"], thread.as_str());

    let report = app.relay.step().await.unwrap();
    assert_eq!(report.sent, 1);
    let sent = stand_in.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (
            sent[0].to.as_str(),
            sent[0].from.as_str(),
            sent[0].body.as_str()
        ),
        (TIPSTER, PROGRAM_NUMBER, reply),
        "only the text, from the program's number"
    );

    // The thread: the tip, then the reply, each sealed; the phone opens both.
    // "Unsure" tips go to every device, so Bo (east) sees this thread too.
    for reader in [&ana, &bo] {
        let view = reader.get(&app, &format!("/api/v1/threads/{thread}")).await;
        assert_eq!(view.status(), 200);
        assert_eq!(view.headers()["cache-control"], "no-store");
        let view: Value = view.json().await.unwrap();
        let items = view["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{view}");
        assert_eq!(items[0]["kind"], "tip");
        assert_eq!(items[0]["tip_id"], tip.entry.tip_id.as_str());
        assert_eq!(items[1]["kind"], "reply");
        assert_eq!(items[1]["id"], posted["id"]);
        let envelope = |i: usize| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(items[i]["envelope"].as_str().unwrap())
                .unwrap()
        };
        // A tip item carries no envelope: the phone fetches it on its own.
        assert!(items[0].get("envelope").is_none(), "{view}");
        assert_eq!(items[0]["can_open"], true);
        let sealed_tip = reader
            .get(
                &app,
                &format!("/api/v1/alerts/{}/envelope", tip.entry.tip_id),
            )
            .await;
        assert_eq!(sealed_tip.status(), 200);
        let sealed_tip = sealed_tip.bytes().await.unwrap();
        assert_eq!(tip_document(&reader.open(&sealed_tip)).text, text);
        let sealed_reply: Value = serde_json::from_slice(&reader.open(&envelope(1))).unwrap();
        assert_eq!(sealed_reply["text"], reply);
        assert_eq!(sealed_reply["thread"], thread.as_str());
        // The escrow key opens the team's history too.
        assert!(tipwire::crypto::open(&envelope(1), std::slice::from_ref(&app.escrow)).is_ok());
    }
    // Nothing in Redis holds the reply in clear.
    let dump = crate::support::canary::dump_redis(&app.settings.redis.url);
    assert!(!crate::support::canary::contains(&dump, reply));

    // A web tip has no way back; another zone's thread is not there at all.
    let web = web_tip(&app, "south web tip", "south", "now").await;
    let web_path = format!("/api/v1/threads/{}/replies", web.entry.thread);
    let refused = ana.post(&app, &web_path, json!({"text": "hello"})).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(error_code(refused).await, "no-reply-channel");
    let hidden = bo.post(&app, &web_path, json!({"text": "hello"})).await;
    assert_eq!(hidden.status(), 404);
    let hidden_view = bo
        .get(&app, &format!("/api/v1/threads/{}", web.entry.thread))
        .await;
    assert_eq!(hidden_view.status(), 404);
    assert_eq!(
        app.relay.step().await.unwrap().sent,
        0,
        "nothing else queued"
    );
}
