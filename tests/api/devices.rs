//! Mediator devices over HTTPS: enrolment from an invite, login by signature,
//! sessions with CSRF protection, revocation, and the promise that the
//! gateway never holds a device's private keys. Each test plays the phone: it
//! makes an age identity and a P-256 signing key and sends only their public
//! halves, as the app does with WebCrypto.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tipwire::mediator::devices::Devices;
use tipwire::mediator::{DeviceId, MediatorDirectory};

use crate::support::app::{TestApp, error_code, spawn_app};
use crate::support::canary::{assert_nowhere, contains, dump_redis};
use crate::support::phone::{
    Phone, challenge, enrol, enrolled_phone, invite, login, next_tip_opens_for, post_json,
    set_duty, try_login,
};

async fn whoami(app: &TestApp, cookie: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/session"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn routing_version(app: &TestApp) -> u64 {
    let mut conn = app.store.conn().await.unwrap();
    let v: Option<u64> = redis::cmd("GET")
        .arg(app.store.keys().mediators_version())
        .query_async(&mut conn)
        .await
        .unwrap();
    v.unwrap_or(0)
}

#[tokio::test]
async fn a_device_enrolled_from_an_invite_opens_the_next_tip_for_its_zone() {
    let app = spawn_app().await;
    let phone = Phone::new();
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let version = routing_version(&app).await;

    let response = post_json(&app, "/api/v1/devices", &phone.enrolment(&code)).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "Ana Mediator");
    assert_eq!(body["zones"], json!(["south"]));
    assert_eq!(body["supervisor"], false);
    let device_id = body["device_id"].as_str().unwrap();
    assert!(DeviceId::parse(device_id).is_some());
    assert!(routing_version(&app).await > version);

    let directory = MediatorDirectory::new(app.store.clone())
        .list()
        .await
        .unwrap();
    assert!(directory.iter().any(|m| m.recipient == phone.recipient()));
    assert!(next_tip_opens_for(&app, &phone, "south", "fight brewing near the court").await);
    // Not a recipient of other zones.
    assert!(!next_tip_opens_for(&app, &phone, "north", "north side tip").await);
}

#[tokio::test]
async fn an_invite_enrols_once_and_a_second_redemption_gets_invite_invalid() {
    let app = spawn_app().await;
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    enrol(&app, &Phone::new(), &code).await;
    let again = post_json(&app, "/api/v1/devices", &Phone::new().enrolment(&code)).await;
    assert_eq!(again.status(), 403);
    assert_eq!(error_code(again).await, "invite-invalid");

    // Two phones racing with one fresh code: exactly one is enrolled.
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let (a, b) = (Phone::new(), Phone::new());
    let (ea, eb) = (a.enrolment(&code), b.enrolment(&code));
    let (ra, rb) = tokio::join!(
        post_json(&app, "/api/v1/devices", &ea),
        post_json(&app, "/api/v1/devices", &eb),
    );
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 403]);
    assert_eq!(
        Devices::new(app.store.clone()).list().await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn an_expired_invite_gets_invite_invalid() {
    let app = spawn_app().await;
    let code = invite(&app, &["south"], Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let response = post_json(&app, "/api/v1/devices", &Phone::new().enrolment(&code)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "invite-invalid");
    let made_up = post_json(
        &app,
        "/api/v1/devices",
        &Phone::new().enrolment("abcdefghijklmnopqrstuvwxyz"),
    )
    .await;
    assert_eq!(error_code(made_up).await, "invite-invalid");
}

#[tokio::test]
async fn an_enrolment_with_a_malformed_key_gets_422_and_changes_nothing() {
    let app = spawn_app().await;
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let version = routing_version(&app).await;
    let directory = MediatorDirectory::new(app.store.clone())
        .list()
        .await
        .unwrap();
    let phone = Phone::new();
    let raw_point = URL_SAFE_NO_PAD.encode(
        phone
            .signing
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes(),
    );

    let cases = [
        (
            json!({"invite": code, "age_recipient": "age1notakey", "signing_key": phone.spki()}),
            "invalid-age-recipient",
        ),
        (
            json!({"invite": code, "age_recipient": phone.identity.to_secret_string().as_str(), "signing_key": phone.spki()}),
            "invalid-age-recipient",
        ),
        (
            json!({"invite": code, "age_recipient": phone.recipient(), "signing_key": "AAAA"}),
            "invalid-signing-key",
        ),
        (
            json!({"invite": code, "age_recipient": phone.recipient(), "signing_key": raw_point}),
            "invalid-signing-key",
        ),
        (
            json!({"invite": code, "age_recipient": phone.recipient(), "signing_key": phone.spki(), "device_name": "x".repeat(65)}),
            "invalid-device-name",
        ),
    ];
    for (body, code_expected) in cases {
        let response = post_json(&app, "/api/v1/devices", &body).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(error_code(response).await, code_expected, "{body}");
    }
    let not_json = app
        .client
        .post(app.url("/api/v1/devices"))
        .header("Content-Type", "text/plain")
        .body(phone.enrolment(&code).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    let missing = post_json(&app, "/api/v1/devices", &json!({"invite": code})).await;
    assert_eq!(missing.status(), 400);

    assert_eq!(routing_version(&app).await, version);
    assert_eq!(
        MediatorDirectory::new(app.store.clone())
            .list()
            .await
            .unwrap(),
        directory
    );
    assert!(
        Devices::new(app.store.clone())
            .list()
            .await
            .unwrap()
            .is_empty()
    );
    // The invite was not used up.
    enrol(&app, &phone, &code).await;
}

#[tokio::test]
async fn an_already_enrolled_recipient_is_refused_and_the_invite_stays_usable() {
    let app = spawn_app().await;
    let (phone, _) = enrolled_phone(&app).await;
    let code = invite(&app, &["south"], Duration::from_secs(900)).await;
    let response = post_json(&app, "/api/v1/devices", &phone.enrolment(&code)).await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "recipient-already-enrolled");
    enrol(&app, &Phone::new(), &code).await;
}

#[tokio::test]
async fn login_with_a_valid_signature_sets_a_host_only_httponly_secure_strict_cookie() {
    let app = spawn_app().await;
    let phone = Phone::new();
    let device_id = enrol(
        &app,
        &phone,
        &invite(&app, &["south", "east"], Duration::from_secs(900)).await,
    )
    .await;
    let session = login(&app, &phone, &device_id).await;
    let cookie = &session.set_cookie;
    assert!(cookie.starts_with("__Host-tipwire_session="), "{cookie}");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute} missing: {cookie}"
        );
    }
    assert!(!cookie.contains("Domain"));

    let me = whoami(&app, &session.cookie).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers().get("cache-control").unwrap(), "no-store");
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["device_id"], device_id.as_str());
    assert_eq!(me["name"], "Ana Mediator");
    assert_eq!(me["device_name"], "Test phone");
    assert_eq!(me["zones"], json!(["east", "south"]));
    assert_eq!(me["supervisor"], false);
    assert_eq!(me["on_duty"], true);
    assert_eq!(me["csrf_token"], session.csrf.as_str());

    let none = app
        .client
        .get(app.url("/api/v1/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(error_code(none).await, "session-required");
    let forged = whoami(
        &app,
        "__Host-tipwire_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await;
    assert_eq!(forged.status(), 401);
    assert_eq!(error_code(forged).await, "session-expired");
}

#[tokio::test]
async fn a_wrong_signature_or_a_replayed_challenge_is_refused() {
    let app = spawn_app().await;
    let (phone, device_id) = enrolled_phone(&app).await;

    // Signed by another key: refused, and the challenge is used up.
    let c = challenge(&app, &device_id).await;
    let wrong = try_login(&app, &device_id, &c, &Phone::new().sign(&c)).await;
    assert_eq!(wrong.status(), 403);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_eq!(error_code(wrong).await, "signature-invalid");
    let after_wrong = try_login(&app, &device_id, &c, &phone.sign(&c)).await;
    assert_eq!(error_code(after_wrong).await, "challenge-invalid");

    // A good login's challenge and signature, replayed.
    let c = challenge(&app, &device_id).await;
    let signature = phone.sign(&c);
    assert_eq!(
        try_login(&app, &device_id, &c, &signature).await.status(),
        200
    );
    let replay = try_login(&app, &device_id, &c, &signature).await;
    assert_eq!(replay.status(), 401);
    assert_eq!(error_code(replay).await, "challenge-invalid");

    // A challenge made up by the client, or issued to another device.
    let made_up = URL_SAFE_NO_PAD.encode([5u8; 32]);
    let response = try_login(&app, &device_id, &made_up, &phone.sign(&made_up)).await;
    assert_eq!(error_code(response).await, "challenge-invalid");
    let (_, other_id) = enrolled_phone(&app).await;
    let theirs = challenge(&app, &other_id).await;
    let response = try_login(&app, &device_id, &theirs, &phone.sign(&theirs)).await;
    assert_eq!(error_code(response).await, "challenge-invalid");

    let unknown = post_json(
        &app,
        "/api/v1/session/challenge",
        &json!({ "device_id": "d_000000000000000000000000" }),
    )
    .await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(error_code(unknown).await, "unknown-device");
}

#[tokio::test]
async fn a_state_changing_call_needs_the_csrf_header_and_the_apps_origin() {
    let app = spawn_app().await;
    let (phone, device_id) = enrolled_phone(&app).await;
    let session = login(&app, &phone, &device_id).await;
    let cookie = Some(session.cookie.as_str());

    let missing = set_duty(&app, cookie, None, None, false).await;
    assert_eq!(missing.status(), 403);
    assert_eq!(error_code(missing).await, "csrf-failed");
    let wrong = set_duty(&app, cookie, Some("not-the-token"), None, false).await;
    assert_eq!(error_code(wrong).await, "csrf-failed");
    let foreign = set_duty(
        &app,
        cookie,
        Some(&session.csrf),
        Some("https://evil.example"),
        false,
    )
    .await;
    assert_eq!(foreign.status(), 403);
    assert_eq!(error_code(foreign).await, "origin-mismatch");
    let no_session = set_duty(&app, None, Some(&session.csrf), None, false).await;
    assert_eq!(no_session.status(), 401);
    assert_eq!(error_code(no_session).await, "session-required");
    let me: Value = whoami(&app, &session.cookie).await.json().await.unwrap();
    assert_eq!(me["on_duty"], true, "refused calls changed nothing");

    let ok = set_duty(
        &app,
        cookie,
        Some(&session.csrf),
        Some("https://localhost:8443"),
        false,
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap()["on_duty"], false);
    let me: Value = whoami(&app, &session.cookie).await.json().await.unwrap();
    assert_eq!(me["on_duty"], false);

    // A login from a page of another site is refused too.
    let c = challenge(&app, &device_id).await;
    let cross = app
        .client
        .post(app.url("/api/v1/session"))
        .header("Origin", "https://evil.example")
        .json(&json!({ "device_id": device_id, "challenge": c, "signature": phone.sign(&c) }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(cross).await, "origin-mismatch");
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let app = spawn_app().await;
    let (phone, device_id) = enrolled_phone(&app).await;
    let session = login(&app, &phone, &device_id).await;
    let other = login(&app, &phone, &device_id).await;
    let without_csrf = app
        .client
        .post(app.url("/api/v1/session/logout"))
        .header("Cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(without_csrf).await, "csrf-failed");
    let out = app
        .client
        .post(app.url("/api/v1/session/logout"))
        .header("Cookie", &session.cookie)
        .header("X-CSRF-Token", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let cleared = out.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cleared.starts_with("__Host-tipwire_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = whoami(&app, &session.cookie).await;
    assert_eq!(after.status(), 401);
    assert_eq!(error_code(after).await, "session-expired");
    // Only that session ended.
    assert_eq!(whoami(&app, &other.cookie).await.status(), 200);
}

#[tokio::test]
async fn after_revoke_the_old_cookie_gets_401_and_the_next_tip_is_not_sealed_to_the_device() {
    let app = spawn_app().await;
    let (phone, device_id) = enrolled_phone(&app).await;
    let first = login(&app, &phone, &device_id).await;
    let second = login(&app, &phone, &device_id).await;
    assert!(next_tip_opens_for(&app, &phone, "south", "before revoke").await);
    let version = routing_version(&app).await;

    let revoked = Devices::new(app.store.clone())
        .revoke(&DeviceId::parse(&device_id).unwrap())
        .await
        .unwrap();
    assert_eq!(revoked.sessions_ended, 2);
    assert!(routing_version(&app).await > version);

    for session in [&first, &second] {
        let response = whoami(&app, &session.cookie).await;
        assert_eq!(response.status(), 401);
        assert_eq!(error_code(response).await, "session-expired");
        let duty = set_duty(&app, Some(&session.cookie), Some(&session.csrf), None, true).await;
        assert_eq!(duty.status(), 401);
    }
    let again = post_json(
        &app,
        "/api/v1/session/challenge",
        &json!({ "device_id": device_id }),
    )
    .await;
    assert_eq!(error_code(again).await, "unknown-device");
    assert!(!next_tip_opens_for(&app, &phone, "south", "after revoke").await);

    // Nothing of the device is left in Redis but the tips sealed to it before.
    let mut conn = app.store.conn().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*{device_id}*", app.settings.redis.key_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let sessions: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:session:*", app.settings.redis.key_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(sessions.is_empty(), "{sessions:?}");
}

#[tokio::test]
async fn the_gateway_never_holds_a_devices_private_keys() {
    let app = spawn_app().await;
    let (phone, device_id) = enrolled_phone(&app).await;
    let session = login(&app, &phone, &device_id).await;
    assert_eq!(
        set_duty(
            &app,
            Some(&session.cookie),
            Some(&session.csrf),
            None,
            false
        )
        .await
        .status(),
        200
    );
    assert!(next_tip_opens_for(&app, &phone, "south", "canary run tip").await);

    let identity = phone.identity.to_secret_string();
    let scalar = phone.signing.to_bytes();
    let scalar_hex = hex::encode(scalar);
    let scalar_b64url = URL_SAFE_NO_PAD.encode(scalar);
    let scalar_b64 = STANDARD.encode(scalar);
    let identity_lower = identity.to_lowercase();
    assert_nowhere(
        &app,
        &[
            identity.as_str(),
            &identity_lower,
            &scalar_hex,
            &scalar_hex.to_uppercase(),
            &scalar_b64url,
            &scalar_b64,
            // The session token is a bearer secret too: only its hash is kept.
            session.cookie.split_once('=').unwrap().1,
        ],
    );
    // The raw scalar bytes, too.
    let redis = dump_redis(&app.settings.redis.url);
    assert!(!redis.windows(scalar.len()).any(|w| w == scalar.as_slice()));
    // The scan does see what the gateway was given: the public halves.
    let stored = String::from_utf8_lossy(&redis);
    assert!(contains(&redis, &phone.recipient()), "scan sees nothing");
    assert!(stored.contains(&device_id));
}

mod cli {
    use std::process::Command;

    use super::*;

    fn tipwire(app: &TestApp, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_tipwire"))
            .arg("--config")
            .arg(app.cli_config())
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[tokio::test]
    async fn mediator_invite_prints_a_link_code_and_qr_code_and_revoke_ends_the_device() {
        let app = spawn_app().await;
        let (ok, out, err) = tipwire(
            &app,
            &[
                "mediator",
                "invite",
                "--name",
                "Ana Mediator",
                "--zones",
                "south,east",
            ],
        );
        assert!(ok, "{err}");
        let line = |prefix: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {out}"))
                .trim()
                .to_owned()
        };
        let link = line("link:");
        let code = line("code:");
        let _expires = line("expires:");
        assert!(
            link.starts_with("https://localhost:8443/m/#invite="),
            "{link}"
        );
        assert_eq!(link.rsplit('=').next().unwrap(), code.replace('-', ""));
        assert!(out.contains('▀') || out.contains('▄'), "no QR code: {out}");

        // Typed as printed, in groups.
        let phone = Phone::new();
        let device_id = enrol(&app, &phone, &code).await;
        let session = login(&app, &phone, &device_id).await;

        let (ok, listing, err) = tipwire(&app, &["mediator", "devices"]);
        assert!(ok, "{err}");
        let row = listing
            .lines()
            .find(|l| l.starts_with(&device_id))
            .unwrap_or_else(|| panic!("{listing}"));
        assert!(row.contains("Ana Mediator") && row.contains("east,south") && row.contains("yes"));

        let (ok, said, err) = tipwire(&app, &["mediator", "revoke", &device_id]);
        assert!(ok, "{err}");
        assert!(said.contains("1 session(s) ended"), "{said}");
        assert_eq!(whoami(&app, &session.cookie).await.status(), 401);
        assert!(!next_tip_opens_for(&app, &phone, "south", "after cli revoke").await);

        let (ok, _, err) = tipwire(&app, &["mediator", "revoke", &device_id]);
        assert!(!ok);
        assert!(err.contains("no enrolled device"), "{err}");
        let (ok, _, err) = tipwire(
            &app,
            &["mediator", "invite", "--name", "Bo", "--zones", "nowhere"],
        );
        assert!(!ok);
        assert!(err.contains("not a configured zone"), "{err}");
    }
}
