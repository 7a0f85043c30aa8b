//! Web Push fixtures: the independent receiver (tests/peers/push_endpoint.py,
//! http_ece and PyJWT), a gateway with push on, a logged-in mediator, API
//! calls with its session, and the delivery worker the tests drive.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tipwire::config::Settings;
use tipwire::crypto::Keyring;
use tipwire::domain::Zone;
use tipwire::mediator::DeviceId;
use tipwire::outbound::push::{EndpointPolicy, PushWorker, Subscription};

use crate::support::app::TestApp;
use crate::support::email::{peer, python};
use crate::support::phone::{Login, Phone, api, enrol, login};

/// The receiver, killed on drop.
pub struct PushEndpoint {
    pub subscription: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl PushEndpoint {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python())
            .arg(peer("push_endpoint.py"))
            .arg(dir.path().join("received.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut first, mut subscription) = (String::new(), String::new());
        out.read_line(&mut first).unwrap();
        assert!(
            first.starts_with("port "),
            "push_endpoint.py did not start: {first:?}"
        );
        out.read_line(&mut subscription).unwrap();
        Self {
            subscription: subscription.trim().to_owned(),
            dir,
            child,
        }
    }

    /// The browser's subscription JSON, optionally with another path.
    pub fn subscription_json(&self, path: Option<&str>) -> serde_json::Value {
        let mut json: serde_json::Value = serde_json::from_str(&self.subscription).unwrap();
        if let Some(path) = path {
            let mut endpoint = reqwest::Url::parse(json["endpoint"].as_str().unwrap()).unwrap();
            endpoint.set_path(path);
            json["endpoint"] = endpoint.as_str().into();
        }
        json
    }

    pub fn subscription(&self, path: Option<&str>) -> Subscription {
        Subscription::parse(
            &self.subscription_json(path).to_string(),
            EndpointPolicy::DangerousAllowLoopbackHttp,
        )
        .unwrap()
    }

    /// What the receiver logged so far, without waiting.
    pub fn received_now(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits for the receiver to have logged `n` requests.
    pub fn received(&self, n: usize) -> Vec<serde_json::Value> {
        let file = self.dir.path().join("received.jsonl");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "push_endpoint.py logged {} of {n} requests",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PushEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn with_push(s: &mut Settings) {
    s.push.enabled = true;
    s.push.subject =
        Some(tipwire::config::VapidSubject::parse("mailto:ops@cvi.example.org").unwrap());
    s.push.endpoint_policy = tipwire::config::EndpointPolicy::DangerousAllowLoopbackHttp;
    // The tests drive the worker; the gateway's own task never gets a turn.
    s.push.poll_interval = std::time::Duration::from_secs(3600);
    s.push.max_attempts = 3;
    s.push.backoff_base = std::time::Duration::from_secs(1);
}

pub struct Mediator {
    pub device_id: String,
    pub login: Login,
}

impl Mediator {
    pub fn id(&self) -> DeviceId {
        DeviceId::parse(&self.device_id).unwrap()
    }
}

/// Enrols a phone from a fresh invite and logs it in.
pub async fn mediator(app: &TestApp, zones: &[&str], supervisor: bool) -> Mediator {
    let zones: Vec<Zone> = zones.iter().map(|z| Zone::parse(z).unwrap()).collect();
    let code = api(app)
        .invites
        .create("Ana Mediator", &zones, supervisor, Duration::from_secs(900))
        .await
        .unwrap()
        .code
        .as_str()
        .to_owned();
    let phone = Phone::new();
    let device_id = enrol(app, &phone, &code).await;
    let login = login(app, &phone, &device_id).await;
    Mediator { device_id, login }
}

pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    who: Option<&Mediator>,
    csrf: bool,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(m) = who {
        request = request.header("Cookie", &m.login.cookie);
        if csrf {
            request = request.header("X-CSRF-Token", &m.login.csrf);
        }
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Registers the endpoint's subscription (at `path`) for `m`, as the app does.
pub async fn subscribe(app: &TestApp, m: &Mediator, endpoint: &PushEndpoint, path: &str) {
    let response = call(
        app,
        reqwest::Method::POST,
        "/api/v1/devices/me/push",
        Some(m),
        true,
        Some(json!({ "subscription": endpoint.subscription_json(Some(path)) })),
    )
    .await;
    assert_eq!(response.status(), 204);
}

pub fn worker(app: &TestApp, consumer: &str) -> PushWorker {
    PushWorker::from_settings(
        &app.settings,
        app.store.clone(),
        Arc::new(Keyring::load(&app.settings.keys.dir).unwrap()),
        app.metrics.clone(),
        consumer.into(),
    )
    .unwrap()
}
