//! A mediator's phone as the app plays it: an age identity and a P-256
//! signing key, enrolment from an invite, login by signed challenge, and the
//! device API calls the tests make with it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use tipwire::crypto::IdentityKey;
use tipwire::domain::Zone;
use tipwire::mediator::devices::{DeviceApi, login_message};

use crate::support::app::{TestApp, open_tip};

/// A phone: its two key pairs, as the app would make them.
pub struct Phone {
    pub identity: IdentityKey,
    pub signing: SigningKey,
}

impl Phone {
    pub fn new() -> Self {
        Self {
            identity: IdentityKey::generate(),
            signing: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// `exportKey("spki", publicKey)`, base64url.
    pub fn spki(&self) -> String {
        URL_SAFE_NO_PAD.encode(
            self.signing
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes(),
        )
    }

    /// `sign({name: "ECDSA", hash: "SHA-256"}, key, context ‖ challenge)`:
    /// P1363 `r || s`, base64url.
    pub fn sign(&self, challenge_b64: &str) -> String {
        let challenge: [u8; 32] = URL_SAFE_NO_PAD
            .decode(challenge_b64)
            .unwrap()
            .try_into()
            .unwrap();
        let signature: Signature = self.signing.sign(&login_message(&challenge));
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    }

    pub fn enrolment(&self, code: &str) -> Value {
        json!({
            "invite": code,
            "age_recipient": self.recipient(),
            "signing_key": self.spki(),
            "device_name": "Test phone",
        })
    }
}

/// A logged-in session as the browser holds it.
pub struct Login {
    pub set_cookie: String,
    /// `name=value`, for the Cookie header.
    pub cookie: String,
    pub csrf: String,
}

pub fn api(app: &TestApp) -> DeviceApi {
    DeviceApi::from_settings(&app.settings, app.store.clone()).unwrap()
}

pub async fn invite(app: &TestApp, zones: &[&str], ttl: Duration) -> String {
    let zones: Vec<Zone> = zones.iter().map(|z| Zone::parse(z).unwrap()).collect();
    api(app)
        .invites
        .create("Ana Mediator", &zones, false, ttl)
        .await
        .unwrap()
        .code
        .as_str()
        .to_owned()
}

pub async fn post_json(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn enrol(app: &TestApp, phone: &Phone, code: &str) -> String {
    let response = post_json(app, "/api/v1/devices", &phone.enrolment(code)).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["device_id"].as_str().unwrap().to_owned()
}

/// A new phone enrolled from a fresh invite for `south`, and its device id.
pub async fn enrolled_phone(app: &TestApp) -> (Phone, String) {
    let phone = Phone::new();
    let code = invite(app, &["south"], Duration::from_secs(900)).await;
    let device_id = enrol(app, &phone, &code).await;
    (phone, device_id)
}

pub async fn challenge(app: &TestApp, device_id: &str) -> String {
    let response = post_json(
        app,
        "/api/v1/session/challenge",
        &json!({ "device_id": device_id }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 60);
    body["challenge"].as_str().unwrap().to_owned()
}

pub async fn try_login(
    app: &TestApp,
    device_id: &str,
    challenge: &str,
    signature: &str,
) -> reqwest::Response {
    post_json(
        app,
        "/api/v1/session",
        &json!({ "device_id": device_id, "challenge": challenge, "signature": signature }),
    )
    .await
}

pub async fn login(app: &TestApp, phone: &Phone, device_id: &str) -> Login {
    let c = challenge(app, device_id).await;
    let response = try_login(app, device_id, &c, &phone.sign(&c)).await;
    assert_eq!(response.status(), 200);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["device_id"], device_id);
    Login {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        set_cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    }
}

pub async fn set_duty(
    app: &TestApp,
    cookie: Option<&str>,
    csrf: Option<&str>,
    origin: Option<&str>,
    on_duty: bool,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/devices/me/duty"))
        .json(&json!({ "on_duty": on_duty }));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.unwrap()
}

/// Posts a tip for `zone` and returns whether `phone` can open it (and the
/// escrow key always can).
pub async fn next_tip_opens_for(app: &TestApp, phone: &Phone, zone: &str, text: &str) -> bool {
    let before = app.alerts().await.len();
    let response = app.post_tip(text, zone, "now").await;
    assert_eq!(response.status(), 200);
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), before + 1);
    let alert = alerts.last().unwrap();
    assert_eq!(open_tip(alert, &app.escrow).unwrap().text, text);
    match open_tip(alert, &phone.identity) {
        Some(doc) => {
            assert_eq!(doc.text, text);
            true
        }
        None => false,
    }
}
