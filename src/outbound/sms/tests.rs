use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::media::{MAX_REDIRECTS, UNKNOWN_CONTENT_TYPE, next_hop};
use super::*;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-token-s3cret";
const API_KEY: &str = "KEY0123-telnyx-s3cret";
const TO: &str = "+15551234567";
const FROM: &str = "+15557654321";
const BODY: &str = "Thanks. Café & co: 100% + safe?";

/// One request as the stand-in received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

type Respond = dyn Fn(&Seen) -> HttpResponse + Send + Sync;

/// A local HTTP server on 127.0.0.1:0 that records every request and
/// answers with `respond`.
struct StandIn {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    handle: ServerHandle,
}

impl StandIn {
    fn spawn(respond: impl Fn(&Seen) -> HttpResponse + Send + Sync + 'static) -> StandIn {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Respond> = Arc::new(respond);
        let (seen_in, respond_in) = (seen.clone(), respond.clone());
        let server = HttpServer::new(move || {
            let (seen, respond) = (seen_in.clone(), respond_in.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: Bytes| {
                let (seen, respond) = (seen.clone(), respond.clone());
                async move {
                    let header = |name| {
                        req.headers()
                            .get(name)
                            .map(|v| v.to_str().unwrap().to_owned())
                    };
                    let got = Seen {
                        method: req.method().to_string(),
                        path: req.uri().path().to_owned(),
                        authorization: header("authorization"),
                        content_type: header("content-type"),
                        body: body.to_vec(),
                    };
                    let answer = respond(&got);
                    seen.lock().unwrap().push(got);
                    answer
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        StandIn {
            base: format!("http://{addr}"),
            seen,
            handle,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // The stop command is sent when `stop` is called; awaiting it is
        // only needed to wait for completion.
        drop(self.handle.stop(false));
    }
}

fn basic(user: &str, pass: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {encoded}")
}

fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    // application/x-www-form-urlencoded is the query-string grammar.
    let query = std::str::from_utf8(body).unwrap();
    Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Twilio's Create a Message, checked the way the docs describe it.
fn twilio_messages(seen: &Seen) -> HttpResponse {
    let twilio_error = |status: u16, code: u32, message: &str| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(
            serde_json::json!({
                "code": code,
                "message": message,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                "status": status,
            }),
        )
    };
    if seen.method != "POST" || seen.path != format!("/2010-04-01/Accounts/{SID}/Messages.json") {
        return twilio_error(404, 20404, "The requested resource was not found");
    }
    if seen.authorization.as_deref() != Some(basic(SID, TOKEN).as_str()) {
        return twilio_error(401, 20003, "Authenticate");
    }
    if seen.content_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return twilio_error(400, 20001, "Unsupported content type");
    }
    let fields = form_fields(&seen.body);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    let has_sender = names.contains(&"From") ^ names.contains(&"MessagingServiceSid");
    if !names.contains(&"To") || !names.contains(&"Body") || !has_sender {
        return twilio_error(400, 21604, "A 'To' phone number is required.");
    }
    HttpResponse::Created().json(serde_json::json!({
        "sid": "SM0123456789abcdef0123456789abcdef",
        "account_sid": SID,
        "status": "queued",
        "to": TO,
        "body": BODY,
        "error_code": null,
    }))
}

/// Telnyx's Send a message, checked the way the docs describe it.
fn telnyx_messages(seen: &Seen) -> HttpResponse {
    let telnyx_error = |status: u16, code: &str, title: &str| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .json(serde_json::json!({"errors": [{"code": code, "title": title, "detail": title}]}))
    };
    if seen.method != "POST" || seen.path != "/v2/messages" {
        return telnyx_error(404, "10005", "Resource not found");
    }
    if seen.authorization.as_deref() != Some(format!("Bearer {API_KEY}").as_str()) {
        return telnyx_error(401, "10009", "Authentication failed");
    }
    if seen.content_type.as_deref() != Some("application/json") {
        return telnyx_error(400, "10015", "Bad request");
    }
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(&seen.body) else {
        return telnyx_error(400, "10015", "Bad request");
    };
    let known = ["from", "to", "text", "messaging_profile_id"];
    if !fields.keys().all(|k| known.contains(&k.as_str()))
        || !["from", "to", "text"]
            .iter()
            .all(|k| fields.get(*k).is_some_and(serde_json::Value::is_string))
    {
        return telnyx_error(422, "10004", "Missing required parameter");
    }
    HttpResponse::Ok().json(serde_json::json!({
        "data": {
            "record_type": "message",
            "direction": "outbound",
            "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
            "to": [{"phone_number": TO, "status": "queued"}],
            "text": BODY,
            "errors": [],
        }
    }))
}

fn twilio_client(base: &str) -> SmsClient {
    SmsClient::new(ProviderConfig::Twilio(TwilioConfig {
        base_url: base.to_owned(),
        account_sid: SID.to_owned(),
        auth_token: Zeroizing::new(TOKEN.to_owned()),
    }))
    .unwrap()
}

fn twilio_client_allowing_loopback_redirects(base: &str) -> SmsClient {
    SmsClient::with_redirect_policy(
        ProviderConfig::Twilio(TwilioConfig {
            base_url: base.to_owned(),
            account_sid: SID.to_owned(),
            auth_token: Zeroizing::new(TOKEN.to_owned()),
        }),
        AddressPolicy::DangerousAllowLoopback,
    )
    .unwrap()
}

fn telnyx_client(base: &str, media_base: &str, profile: Option<&str>) -> SmsClient {
    SmsClient::new(ProviderConfig::Telnyx(TelnyxConfig {
        base_url: base.to_owned(),
        api_key: Zeroizing::new(API_KEY.to_owned()),
        messaging_profile_id: profile.map(str::to_owned),
        media_base_url: media_base.to_owned(),
    }))
    .unwrap()
}

fn sms() -> OutboundSms<'static> {
    OutboundSms {
        to: TO,
        from: FROM,
        body: BODY,
    }
}

fn assert_no_personal_data(text: &str) {
    for secret in [TO, FROM, BODY, TOKEN, API_KEY, "Café"] {
        assert!(!text.contains(secret), "{text:?} leaks {secret:?}");
    }
}

fn media_path(message: &str, media: &str) -> String {
    format!("/2010-04-01/Accounts/{SID}/Messages/{message}/Media/{media}")
}

#[actix_web::test]
async fn twilio_send_posts_the_documented_form_with_basic_auth_and_returns_the_sid() {
    let twilio = StandIn::spawn(twilio_messages);
    let client = twilio_client(&twilio.base);

    let id = client.send(&sms()).await.unwrap();

    assert_eq!(id, "SM0123456789abcdef0123456789abcdef");
    let seen = twilio.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(basic(SID, TOKEN).as_str())
    );
    let fields = form_fields(&seen[0].body);
    let expected = [("To", TO), ("From", FROM), ("Body", BODY)];
    assert_eq!(
        fields,
        expected.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
    );
}

#[actix_web::test]
async fn twilio_send_names_a_messaging_service_sender_messaging_service_sid() {
    let twilio = StandIn::spawn(twilio_messages);
    let client = twilio_client(&twilio.base);
    let service = "MG0123456789abcdef0123456789abcdef";

    client
        .send(&OutboundSms {
            from: service,
            ..sms()
        })
        .await
        .unwrap();

    let fields = form_fields(&twilio.seen()[0].body);
    assert!(fields.contains(&("MessagingServiceSid".to_owned(), service.to_owned())));
    assert!(!fields.iter().any(|(k, _)| k == "From"));
}

#[actix_web::test]
async fn telnyx_send_posts_the_documented_json_with_bearer_auth_and_returns_the_data_id() {
    let telnyx = StandIn::spawn(telnyx_messages);
    let client = telnyx_client(&telnyx.base, &telnyx.base, Some("profile-1"));

    let id = client.send(&sms()).await.unwrap();

    assert_eq!(id, "40385f64-5717-4562-b3fc-2c963f66afa6");
    let seen = telnyx.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    let json: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "from": FROM, "to": TO, "text": BODY, "messaging_profile_id": "profile-1"
        })
    );
}

#[actix_web::test]
async fn telnyx_send_leaves_out_messaging_profile_id_when_none_is_configured() {
    let telnyx = StandIn::spawn(telnyx_messages);
    let client = telnyx_client(&telnyx.base, &telnyx.base, None);

    client.send(&sms()).await.unwrap();

    let json: serde_json::Value = serde_json::from_slice(&telnyx.seen()[0].body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"from": FROM, "to": TO, "text": BODY})
    );
}

#[actix_web::test]
async fn server_errors_and_rate_limits_are_transient_for_both_providers() {
    for status in [500u16, 503, 429] {
        let provider = StandIn::spawn(move |_| {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .json(serde_json::json!({"code": 20429, "status": status}))
        });
        for client in [
            twilio_client(&provider.base),
            telnyx_client(&provider.base, &provider.base, None),
        ] {
            let err = client.send(&sms()).await.unwrap_err();
            assert!(
                matches!(&err, SendError::Transient(t) if t.contains(&status.to_string())),
                "{status} gave {err:?}"
            );
        }
    }
}

#[actix_web::test]
async fn a_twilio_bad_request_is_permanent_and_its_text_holds_only_status_and_code() {
    let twilio = StandIn::spawn(|_| {
        HttpResponse::BadRequest().json(serde_json::json!({
            "code": 21211,
            "message": format!("The 'To' number {TO} is not a valid phone number."),
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        }))
    });

    let err = twilio_client(&twilio.base).send(&sms()).await.unwrap_err();

    let SendError::Permanent(text) = &err else {
        panic!("expected permanent, got {err:?}");
    };
    assert_eq!(text, "twilio: HTTP 400, provider code 21211");
    assert_no_personal_data(&err.to_string());
    assert_no_personal_data(&format!("{err:?}"));
}

#[actix_web::test]
async fn a_telnyx_validation_error_is_permanent_and_carries_the_telnyx_code() {
    let telnyx = StandIn::spawn(|_| {
        HttpResponse::BadRequest().json(serde_json::json!({
            "errors": [{"code": "40310", "title": "Invalid 'to' address", "detail": TO}]
        }))
    });

    let err = telnyx_client(&telnyx.base, &telnyx.base, None)
        .send(&sms())
        .await
        .unwrap_err();

    assert!(
        matches!(&err, SendError::Permanent(t) if t == "telnyx: HTTP 400, provider code 40310"),
        "{err:?}"
    );
}

#[actix_web::test]
async fn wrong_credentials_are_refused_by_the_stand_in_and_are_permanent() {
    let twilio = StandIn::spawn(twilio_messages);
    let client = SmsClient::new(ProviderConfig::Twilio(TwilioConfig {
        base_url: twilio.base.clone(),
        account_sid: SID.to_owned(),
        auth_token: Zeroizing::new("wrong".to_owned()),
    }))
    .unwrap();

    let err = client.send(&sms()).await.unwrap_err();

    assert!(
        matches!(&err, SendError::Permanent(t) if t == "twilio: HTTP 401, provider code 20003"),
        "{err:?}"
    );
}

#[actix_web::test]
async fn a_success_answer_without_an_id_is_permanent() {
    let provider = StandIn::spawn(|_| {
        HttpResponse::Created().json(serde_json::json!({"status": "queued", "to": TO}))
    });

    for client in [
        twilio_client(&provider.base),
        telnyx_client(&provider.base, &provider.base, None),
    ] {
        let err = client.send(&sms()).await.unwrap_err();
        assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
        assert_no_personal_data(&err.to_string());
    }
}

#[actix_web::test]
async fn an_unreachable_provider_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = twilio_client(&format!("http://127.0.0.1:{port}"));

    let err = client.send(&sms()).await.unwrap_err();

    assert!(
        matches!(&err, SendError::Transient(t) if t == "twilio: connection failed"),
        "{err:?}"
    );
}

#[actix_web::test]
async fn twilio_media_is_fetched_with_basic_auth_through_its_redirect_without_forwarding_credentials()
 {
    let storage = StandIn::spawn(|_| {
        HttpResponse::Ok()
            .content_type("image/jpeg")
            .body(&b"\xff\xd8jpeg bytes"[..])
    });
    let storage_url = format!("{}/storage/object-1", storage.base);
    let twilio = StandIn::spawn(move |seen| {
        if seen.authorization.as_deref() != Some(basic(SID, TOKEN).as_str()) {
            return HttpResponse::Unauthorized().finish();
        }
        HttpResponse::TemporaryRedirect()
            .insert_header(("location", storage_url.clone()))
            .finish()
    });
    let client = twilio_client_allowing_loopback_redirects(&twilio.base);
    let url = format!("{}{}", twilio.base, media_path("MM123", "ME456"));

    let (content_type, bytes) = client.fetch_media(&url, 1024).await.unwrap();

    assert_eq!(content_type, "image/jpeg");
    assert_eq!(bytes, b"\xff\xd8jpeg bytes");
    assert_eq!(twilio.seen().len(), 1);
    let fetched = storage.seen();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].path, "/storage/object-1");
    assert_eq!(fetched[0].authorization, None);
}

/// Issue 10 item 6: a redirect off the provider's origin to this host,
/// by IP literal or by a name that resolves here, is never followed.
#[actix_web::test]
async fn a_media_redirect_to_a_loopback_name_or_address_is_not_followed() {
    let storage = StandIn::spawn(|_| HttpResponse::Ok().body("secret"));
    let port = storage.base.rsplit(':').next().unwrap().to_owned();
    for target in [
        format!("http://localhost:{port}/internal"),
        format!("http://127.0.0.1:{port}/internal"),
        format!("http://[::ffff:127.0.0.1]:{port}/internal"),
    ] {
        let twilio = StandIn::spawn(move |_| {
            HttpResponse::Found()
                .insert_header(("location", target.clone()))
                .finish()
        });
        let client = twilio_client(&twilio.base);
        let url = format!("{}{}", twilio.base, media_path("MM123", "ME456"));

        let err = client.fetch_media(&url, 1024).await.unwrap_err();

        assert!(matches!(err, MediaError::NotPublic), "{err:?}");
        assert_eq!(twilio.seen().len(), 1);
    }
    assert!(storage.seen().is_empty(), "the loopback target was reached");
}

#[actix_web::test]
async fn telnyx_media_is_fetched_with_a_plain_get() {
    let media = StandIn::spawn(|_| HttpResponse::Ok().content_type("image/png").body("png"));
    let client = telnyx_client("https://api.telnyx.example", &media.base, None);

    let (content_type, bytes) = client
        .fetch_media(&format!("{}/abc123/image.png", media.base), 1024)
        .await
        .unwrap();

    assert_eq!(
        (content_type.as_str(), bytes.as_slice()),
        ("image/png", &b"png"[..])
    );
    let seen = media.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].authorization, None);
}

#[actix_web::test]
async fn media_declaring_more_than_max_bytes_is_refused() {
    let media = StandIn::spawn(|_| HttpResponse::Ok().body(vec![0u8; 2048]));
    let client = telnyx_client("https://api.telnyx.example", &media.base, None);

    let err = client
        .fetch_media(&format!("{}/big", media.base), 2047)
        .await
        .unwrap_err();

    assert!(matches!(err, MediaError::TooLarge), "{err:?}");
}

#[actix_web::test]
async fn media_of_exactly_max_bytes_is_accepted() {
    let media = StandIn::spawn(|_| HttpResponse::Ok().body(vec![7u8; 2048]));
    let client = telnyx_client("https://api.telnyx.example", &media.base, None);

    let (content_type, bytes) = client
        .fetch_media(&format!("{}/exact", media.base), 2048)
        .await
        .unwrap();

    assert_eq!(content_type, UNKNOWN_CONTENT_TYPE);
    assert_eq!(bytes.len(), 2048);
}

#[actix_web::test]
async fn endless_media_without_a_length_is_cut_off_at_max_bytes() {
    // Never ends: only stopping early can finish this test before the
    // 15 s timeout, and the error would then be Network, not TooLarge.
    let media = StandIn::spawn(|_| {
        let chunk = Bytes::from_static(&[1u8; 1024]);
        let endless = futures_util::stream::repeat(chunk).map(Ok::<_, std::convert::Infallible>);
        HttpResponse::Ok().streaming(endless)
    });
    let client = telnyx_client("https://api.telnyx.example", &media.base, None);

    let err = client
        .fetch_media(&format!("{}/endless", media.base), 10_000)
        .await
        .unwrap_err();

    assert!(matches!(err, MediaError::TooLarge), "{err:?}");
}

#[actix_web::test]
async fn media_urls_off_the_provider_media_origin_are_refused_before_any_request() {
    let twilio = StandIn::spawn(|_| HttpResponse::Ok().body("x"));
    let other = StandIn::spawn(|_| HttpResponse::Ok().body("x"));
    let client = twilio_client(&twilio.base);
    let path = media_path("MM123", "ME456");
    let host_port = twilio.base.trim_start_matches("http://");

    for url in [
        format!("{}{path}", other.base),
        format!("https://{host_port}{path}"),
        format!("http://user:pass@{host_port}{path}"),
        format!(
            "http://localhost:{}{path}",
            host_port.rsplit(':').next().unwrap()
        ),
        format!("{}/2010-04-01/Accounts/{SID}/Messages.json", twilio.base),
        format!("{}{}", twilio.base, media_path("MM123", "ME456/extra")),
        format!("{}{}", twilio.base, media_path("..", "ME456")),
        "file:///etc/passwd".to_owned(),
        "not a url".to_owned(),
    ] {
        let err = client.fetch_media(&url, 1024).await.unwrap_err();
        assert!(matches!(err, MediaError::ForeignUrl), "{url}: {err:?}");
    }

    let telnyx = telnyx_client(&twilio.base, &other.base, None);
    let err = telnyx
        .fetch_media(&format!("{}/media/1", twilio.base), 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::ForeignUrl), "{err:?}");

    assert!(twilio.seen().is_empty());
    assert!(other.seen().is_empty());
}

#[actix_web::test]
async fn a_media_error_status_is_reported_as_http() {
    let twilio = StandIn::spawn(|_| HttpResponse::NotFound().finish());
    let client = twilio_client(&twilio.base);
    let url = format!("{}{}", twilio.base, media_path("MM123", "ME456"));

    let err = client.fetch_media(&url, 1024).await.unwrap_err();

    assert!(matches!(err, MediaError::Http(404)), "{err:?}");
}

#[actix_web::test]
async fn a_redirect_loop_ends_as_a_network_error() {
    let media = StandIn::spawn(|_| {
        HttpResponse::Found()
            .insert_header(("location", "/again"))
            .finish()
    });
    let client = telnyx_client("https://api.telnyx.example", &media.base, None);

    let err = client
        .fetch_media(&format!("{}/start", media.base), 1024)
        .await
        .unwrap_err();

    assert!(matches!(err, MediaError::Network(_)), "{err:?}");
    assert_eq!(media.seen().len(), MAX_REDIRECTS + 1);
}

#[test]
fn a_redirect_may_not_downgrade_to_http_or_carry_credentials() {
    let current = Url::parse("https://api.twilio.com/2010-04-01/x").unwrap();

    let hop = |location| next_hop(&current, Some(location));

    assert!(matches!(
        hop("http://s3.example/o"),
        Some(Err(MediaError::ForeignUrl))
    ));
    assert!(matches!(
        hop("https://u:p@s3.example/o"),
        Some(Err(MediaError::ForeignUrl))
    ));
    assert!(matches!(
        hop("ftp://s3.example/o"),
        Some(Err(MediaError::ForeignUrl))
    ));
    assert_eq!(
        hop("https://s3.example/o").unwrap().unwrap().as_str(),
        "https://s3.example/o"
    );
    assert_eq!(
        hop("/relative").unwrap().unwrap().as_str(),
        "https://api.twilio.com/relative"
    );
    assert!(next_hop(&current, None).is_none());
}

#[test]
fn debug_output_of_configs_and_client_hides_the_secrets() {
    let twilio = TwilioConfig {
        base_url: "https://api.twilio.com".to_owned(),
        account_sid: SID.to_owned(),
        auth_token: Zeroizing::new(TOKEN.to_owned()),
    };
    let telnyx = TelnyxConfig {
        base_url: "https://api.telnyx.com".to_owned(),
        api_key: Zeroizing::new(API_KEY.to_owned()),
        messaging_profile_id: None,
        media_base_url: "https://media.telnyx.example".to_owned(),
    };

    let shown = format!(
        "{:?} {:?} {:?}",
        ProviderConfig::Twilio(twilio),
        telnyx,
        twilio_client("https://api.twilio.com")
    );

    assert!(
        !shown.contains(TOKEN) && !shown.contains(API_KEY),
        "{shown}"
    );
    assert!(shown.contains("[redacted]"));
}

#[test]
fn new_refuses_plain_http_to_a_host_that_is_not_loopback() {
    let err = SmsClient::new(ProviderConfig::Twilio(TwilioConfig {
        base_url: "http://api.twilio.com".to_owned(),
        account_sid: SID.to_owned(),
        auth_token: Zeroizing::new(TOKEN.to_owned()),
    }))
    .unwrap_err();

    assert!(
        matches!(&err, SendError::Permanent(t) if t.contains("https")),
        "{err:?}"
    );
}

#[test]
fn new_refuses_an_account_sid_that_could_reshape_the_path() {
    let err = SmsClient::new(ProviderConfig::Twilio(TwilioConfig {
        base_url: "https://api.twilio.com".to_owned(),
        account_sid: "AC1/../../x".to_owned(),
        auth_token: Zeroizing::new(TOKEN.to_owned()),
    }))
    .unwrap_err();

    assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
}

#[test]
fn new_refuses_an_api_key_that_cannot_be_a_header_and_does_not_echo_it() {
    let err = SmsClient::new(ProviderConfig::Telnyx(TelnyxConfig {
        base_url: "https://api.telnyx.com".to_owned(),
        api_key: Zeroizing::new("key with\nnewline".to_owned()),
        messaging_profile_id: None,
        media_base_url: "https://media.telnyx.example".to_owned(),
    }))
    .unwrap_err();

    assert!(!err.to_string().contains("newline"), "{err}");
}

#[test]
fn the_twilio_endpoint_keeps_a_base_path_prefix() {
    let client = twilio_client("http://127.0.0.1:9/prefix/");
    let Provider::Twilio { messages_url, .. } = &client.provider else {
        panic!("not twilio");
    };
    assert_eq!(
        messages_url.as_str(),
        format!("http://127.0.0.1:9/prefix/2010-04-01/Accounts/{SID}/Messages.json")
    );
}
