//! A local stand-in for the SMS providers' REST APIs (Twilio `Messages.json`
//! with HTTP Basic auth, Telnyx `/v2/messages` with a Bearer key, media
//! downloads), checking auth and fields as the providers document them, and
//! a gateway spawned with both providers pointed at it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;

use crate::support::app::{TestApp, form_body, serve_stand_in, spawn_app_with};

pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
pub const AUTH_TOKEN: &str = "twilio-test-auth-token-1";
pub const TELNYX_KEY: &str = "KEYtelnyx-test-api-key";
pub const PROGRAM_NUMBER: &str = "+15550001111";
/// A second program number: tests that use it add it to `sms.numbers`.
pub const ZONE_NUMBER: &str = "+15550003333";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub provider: &'static str,
    pub to: String,
    pub from: String,
    pub body: String,
}

#[derive(Default)]
pub struct StandInState {
    pub sent: Vec<Sent>,
    /// Answer this many sends with 500 before accepting.
    pub fail_next: usize,
    pub media: Vec<(String, &'static str, Vec<u8>)>,
    /// Holds one Twilio send in flight (see [`Hold`]).
    pub hold: Option<Hold>,
}

/// The Twilio send that arrives when `at` sends were accepted is held: the
/// stand-in signals `arrived` and answers only after `release`.
pub struct Hold {
    pub at: usize,
    pub arrived: Arc<tokio::sync::Notify>,
    pub release: Arc<tokio::sync::Notify>,
}

#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    pub state: Arc<Mutex<StandInState>>,
}

impl StandIn {
    pub fn sent(&self) -> Vec<Sent> {
        self.state.lock().unwrap().sent.clone()
    }

    pub fn serve_media(&self, name: &str, content_type: &'static str, bytes: Vec<u8>) -> String {
        self.state
            .lock()
            .unwrap()
            .media
            .push((name.to_owned(), content_type, bytes));
        format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/{name}",
            self.url
        )
    }
}

fn basic_ok(req: &HttpRequest) -> bool {
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str())
}

async fn twilio_messages(
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
    state: web::Data<Arc<Mutex<StandInState>>>,
) -> HttpResponse {
    if !basic_ok(&req) || path.into_inner() != ACCOUNT_SID {
        return HttpResponse::Unauthorized()
            .json(serde_json::json!({"code": 20003, "message": "Authenticate", "status": 401}));
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(to), Some(from), Some(body)) = (get("To"), get("From"), get("Body")) else {
        return HttpResponse::BadRequest().json(
            serde_json::json!({"code": 21604, "message": "missing parameter", "status": 400}),
        );
    };
    let hold = {
        let mut s = state.lock().unwrap();
        let due = s.hold.as_ref().is_some_and(|h| h.at == s.sent.len());
        if due { s.hold.take() } else { None }
    };
    if let Some(hold) = hold {
        hold.arrived.notify_one();
        hold.release.notified().await;
    }
    let mut s = state.lock().unwrap();
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return HttpResponse::InternalServerError().finish();
    }
    s.sent.push(Sent {
        provider: "twilio",
        to,
        from,
        body,
    });
    HttpResponse::Created()
        .json(serde_json::json!({"sid": format!("SM{:032}", s.sent.len()), "status": "queued"}))
}

async fn telnyx_messages(
    req: HttpRequest,
    json: web::Json<serde_json::Value>,
    state: web::Data<Arc<Mutex<StandInState>>>,
) -> HttpResponse {
    let bearer = format!("Bearer {TELNYX_KEY}");
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(bearer.as_str())
    {
        return HttpResponse::Unauthorized()
            .json(serde_json::json!({"errors": [{"code": "10009"}]}));
    }
    let field = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let (Some(to), Some(from), Some(body)) = (field("to"), field("from"), field("text")) else {
        return HttpResponse::UnprocessableEntity()
            .json(serde_json::json!({"errors": [{"code": "10005"}]}));
    };
    let mut s = state.lock().unwrap();
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return HttpResponse::ServiceUnavailable().finish();
    }
    s.sent.push(Sent {
        provider: "telnyx",
        to,
        from,
        body,
    });
    HttpResponse::Ok().json(serde_json::json!({"data": {"id": "40385f64-5717-4562-b3fc-2c963f66afa6", "record_type": "message"}}))
}

async fn media(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<Arc<Mutex<StandInState>>>,
) -> HttpResponse {
    if !basic_ok(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    let name = path.into_inner().1;
    let s = state.lock().unwrap();
    match s.media.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, bytes)) => HttpResponse::Ok().content_type(*ct).body(bytes.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}

pub fn start_stand_in() -> StandIn {
    let state = Arc::new(Mutex::new(StandInState::default()));
    let data = web::Data::new(state.clone());
    let url = serve_stand_in(move |app| {
        app.app_data(data.clone())
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                web::post().to(twilio_messages),
            )
            .route(
                "/2010-04-01/Accounts/{sid}/Messages/MM1/Media/{name}",
                web::get().to(media),
            )
            .route("/v2/messages", web::post().to(telnyx_messages));
    });
    StandIn { url, state }
}

/// Writes the providers' secrets (Twilio's auth token, Telnyx's API key) as
/// 0600 files in `dir`, as the gateway requires; returns their paths.
pub fn write_provider_secrets(dir: &Path) -> (PathBuf, PathBuf) {
    let write_secret = |name: &str, value: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, value).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    (
        write_secret("twilio-token", AUTH_TOKEN),
        write_secret("telnyx-key", TELNYX_KEY),
    )
}

pub fn telnyx_signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

/// A gateway with both providers pointed at a fresh stand-in.
pub async fn spawn_sms_app(
    tweak: impl FnOnce(&mut tipwire::config::Settings),
) -> (TestApp, StandIn) {
    let stand_in = start_stand_in();
    let secrets = tempfile::tempdir().unwrap();
    let (token_file, telnyx_file) = write_provider_secrets(secrets.path());
    let url = stand_in.url.clone();
    let public_key = STANDARD.encode(telnyx_signing_key().verifying_key().as_bytes());
    let app = spawn_app_with(|s| {
        s.sms.public_base_url = "https://tips.example.org".into();
        s.sms.numbers = vec![tipwire::domain::PhoneNumber::parse(PROGRAM_NUMBER).unwrap()];
        s.sms.twilio.enabled = true;
        s.sms.twilio.account_sid = ACCOUNT_SID.into();
        s.sms.twilio.auth_token_files = vec![token_file];
        s.sms.twilio.api_base_url = url.clone();
        s.sms.telnyx.enabled = true;
        s.sms.telnyx.public_key = tipwire::config::TelnyxPublicKey::from_base64(&public_key);
        s.sms.telnyx.api_key_file = telnyx_file;
        s.sms.telnyx.api_base_url = url.clone();
        s.sms.telnyx.media_base_url = url;
        s.rate_limits.sms.per_client.count = std::num::NonZeroU32::new(10_000).unwrap();
        s.rate_limits.sms.global.count = std::num::NonZeroU32::new(10_000).unwrap();
        s.relay.backoff_base = std::time::Duration::from_millis(1);
        // Tests drive the relay's step themselves.
        s.relay.poll_interval = std::time::Duration::from_millis(3_600_000);
        tweak(s);
    })
    .await;
    std::mem::forget(secrets);
    (app, stand_in)
}

/// Twilio's signature: base64(HMAC-SHA1(token, url + each sorted key + value)).
pub use crate::support::twilio::signature as twilio_signature;

pub fn twilio_params<'a>(from: &'a str, body: &'a str, sid: &'a str) -> Vec<(&'a str, &'a str)> {
    twilio_params_to(from, PROGRAM_NUMBER, body, sid)
}

/// Twilio's parameters for a text to the program number `to`.
pub fn twilio_params_to<'a>(
    from: &'a str,
    to: &'a str,
    body: &'a str,
    sid: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("Body", body),
        ("From", from),
        ("FromCity", "SPRINGFIELD"),
        ("FromState", "IL"),
        ("FromZip", "62701"),
        ("MessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("To", to),
    ]
}

impl TestApp {
    /// Queues a message to the tipster of `thread`, as `tipwire reply` does.
    pub async fn queue_reply(
        &self,
        thread: &tipwire::domain::ThreadId,
        text: &str,
        kind: tipwire::outbound::relay::Kind,
    ) -> String {
        let ring = tipwire::crypto::Keyring::load(&self.settings.keys.dir).unwrap();
        tipwire::outbound::relay::enqueue(&self.store, &ring, thread, text, kind)
            .await
            .unwrap()
    }

    /// Posts a Twilio webhook signed as Twilio would sign it.
    pub async fn twilio(&self, params: &[(&str, &str)]) -> reqwest::Response {
        let signature = twilio_signature(
            AUTH_TOKEN,
            "https://tips.example.org/webhooks/sms/twilio",
            params,
        );
        self.twilio_signed(params, &signature).await
    }

    pub async fn twilio_signed(
        &self,
        params: &[(&str, &str)],
        signature: &str,
    ) -> reqwest::Response {
        post_twilio(&self.client, &self.address, params, signature)
            .await
            .unwrap()
    }

    /// Posts a Telnyx webhook signed with the test key at `timestamp`.
    pub async fn telnyx(&self, body: &[u8], timestamp: u64) -> reqwest::Response {
        self.telnyx_signed_by(&telnyx_signing_key(), body, timestamp)
            .await
    }
}

/// Posts a Twilio webhook with `signature` to the gateway at `base`
/// (`https://localhost:port`).
pub async fn post_twilio(
    client: &reqwest::Client,
    base: &str,
    params: &[(&str, &str)],
    signature: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/webhooks/sms/twilio"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(form_body(params))
        .send()
        .await
}

/// Posts a Telnyx webhook signed by `key` at `timestamp` to the gateway at
/// `base`.
pub async fn post_telnyx(
    client: &reqwest::Client,
    base: &str,
    key: &SigningKey,
    body: &[u8],
    timestamp: u64,
) -> reqwest::Result<reqwest::Response> {
    let signature = crate::support::telnyx::signature(key, &timestamp.to_string(), body);
    client
        .post(format!("{base}/webhooks/sms/telnyx"))
        .header("Content-Type", "application/json")
        .header("telnyx-timestamp", timestamp.to_string())
        .header("telnyx-signature-ed25519", signature)
        .body(body.to_vec())
        .send()
        .await
}

pub fn telnyx_event(from: &str, text: &str, id: &str) -> Vec<u8> {
    telnyx_event_to(from, PROGRAM_NUMBER, text, id)
}

/// A `message.received` event for a text to the program number `to`.
pub fn telnyx_event_to(from: &str, to: &str, text: &str, id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "data": {
            "event_type": "message.received",
            "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
            "occurred_at": "2026-11-26T14:00:00.000+00:00",
            "payload": {
                "direction": "inbound",
                "id": id,
                "from": { "phone_number": from, "carrier": "T-Mobile USA", "line_type": "long_code" },
                "to": [{ "phone_number": to, "status": "webhook_delivered" }],
                "text": text,
                "media": [],
                "messaging_profile_id": "740572b6-099c-44a1-89b9-6c92163bc68d",
                "record_type": "message"
            },
            "record_type": "event"
        },
        "meta": { "attempt": 1, "delivered_to": "https://tips.example.org/webhooks/sms/telnyx" }
    }))
    .unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TestApp {
    /// Posts a Telnyx webhook signed by `key`: with any key but the test key,
    /// a well-formed forgery.
    pub async fn telnyx_signed_by(
        &self,
        key: &SigningKey,
        body: &[u8],
        timestamp: u64,
    ) -> reqwest::Response {
        post_telnyx(&self.client, &self.address, key, body, timestamp)
            .await
            .unwrap()
    }
}
