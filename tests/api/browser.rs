//! The mediator app in a real browser: Debian's Chromium, driven by
//! playwright-core (`tests/browser/enrol.mjs`), opens an invite link, makes
//! the device's keys, enrols, signs in, and signs in again after a reload (the
//! session cookie) and with the cookies gone (its stored key signs a new
//! challenge). Then the gateway seals the next web tip for the device's zone
//! to the device. The test cannot open that tip (the identity never leaves
//! the browser), so it checks that the directory routes the zone to the
//! device's recipient and that the envelope gained exactly one recipient
//! stanza. Missing Chromium, Node.js or playwright-core fails with
//! instructions; nothing here skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tipwire::crypto::RecipientKey;
use tipwire::domain::{Zone, ZoneChoice};
use tipwire::mediator::devices::{Devices, Invites};
use tipwire::mediator::{DeviceId, MediatorDirectory};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn on_path(command: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(command))
            .find(|p| p.is_file())
    })
}

/// Node.js, Chromium and playwright-core, or a failure that says how to get them.
fn browser_tools() -> (PathBuf, PathBuf) {
    const FIX: &str = "run scripts/test.sh (it installs Debian's chromium and nodejs and runs \
         `npm ci` in tests/browser), or install them and set TIPWIRE_TEST_CHROMIUM / TIPWIRE_TEST_NODE";
    let node = std::env::var_os("TIPWIRE_TEST_NODE")
        .map(PathBuf::from)
        .or_else(|| on_path("node"));
    let Some(node) = node.filter(|p| p.exists()) else {
        panic!("the browser tests need Node.js 20 or newer: {FIX}");
    };
    let chromium = std::env::var_os("TIPWIRE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "the browser tests need Chromium at {}: {FIX}",
        chromium.display()
    );
    let playwright = repo("tests/browser/node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "the browser tests need playwright-core in tests/browser/node_modules: {FIX}"
    );
    (node, chromium)
}

/// A gateway whose `mediator.public_base_url` is its own address: the app's
/// state-changing calls carry that `Origin`, and any other is refused. The
/// port is reserved first and released just before the gateway binds it (the
/// kernel does not hand a just-released port out again at once).
async fn spawn_app_for_browser() -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    spawn_app_with(|s| {
        s.server.port = port;
        s.mediator.public_base_url = format!("https://localhost:{port}");
    })
    .await
}

/// Runs `tests/browser/enrol.mjs` and returns its JSON result.
async fn enrol_in_browser(
    app: &TestApp,
    invite_link: &str,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let (node, chromium) = browser_tools();
    let tls = app.dir.path().join("tls");
    let trust = format!(
        "{}:{}",
        tls.join("ca.pem").display(),
        tls.join("cert.pem").display()
    );
    let shots = std::env::var_os("TIPWIRE_TEST_SCREENSHOTS");
    let mut command = tokio::process::Command::new(node);
    command
        .arg(repo("tests/browser/enrol.mjs"))
        .arg(&app.address)
        .arg(invite_link)
        .env("TIPWIRE_TEST_CHROMIUM", &chromium)
        .env("TIPWIRE_TRUST_PEMS", trust)
        .env("TIPWIRE_DEVICE_NAME", "Test phone")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command.envs(env.iter().copied());
    if let Some(dir) = shots {
        command.env("TIPWIRE_SCREENSHOT_DIR", dir);
    }
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .expect("the browser test ran for over 3 minutes")
        .expect("node could not be started");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let result: serde_json::Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "enrol.mjs printed no result ({}):\n{stdout}\n{stderr}",
                output.status
            )
        });
    eprintln!("enrol.mjs: {result}");
    assert!(
        output.status.success() && result["ok"] == true,
        "the browser enrolment failed: {result:#}\nstderr:\n{stderr}"
    );
    result
}

/// The recipient stanzas (`-> X25519 …`) in an age v1 header.
fn x25519_stanzas(envelope: &[u8]) -> usize {
    let end = envelope
        .windows(5)
        .position(|w| w == b"\n--- ")
        .expect("an age header ends with its MAC line");
    envelope[..end]
        .split(|&b| b == b'\n')
        .filter(|line| line.starts_with(b"-> X25519 "))
        .count()
}

/// Posts a web tip and returns how many X25519 recipients its envelope has.
async fn seal_count(app: &TestApp, zone: &str) -> usize {
    let before = app.alerts().await.len();
    let response = app.post_tip("browser test tip", zone, "today").await;
    assert_eq!(response.status(), 200);
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), before + 1);
    let entry = &alerts.last().unwrap().entry;
    assert_eq!(entry.zone, zone);
    x25519_stanzas(&entry.envelope)
}

#[tokio::test]
async fn a_phone_enrols_in_chromium_signs_in_with_its_stored_keys_and_receives_its_zones_tips() {
    browser_tools();
    let app = spawn_app_for_browser().await;
    let north = Zone::parse("north").unwrap();
    let north_before = seal_count(&app, "north").await;
    let south_before = seal_count(&app, "south").await;

    let invites = Invites::new(
        app.store.clone(),
        &app.settings.mediator.public_base_url,
        Duration::from_secs(900),
    );
    let invite = invites
        .create(
            "Ana Test",
            std::slice::from_ref(&north),
            false,
            Duration::from_secs(900),
        )
        .await
        .unwrap();
    assert_eq!(
        invite.link,
        format!("{}/m/#invite={}", app.address, invite.code.as_str())
    );

    let result = enrol_in_browser(&app, &invite.link, &[]).await;

    // The page came with the app's own policy, and nothing on it broke it.
    assert_eq!(
        result["page_csp"],
        tipwire::mediator::app_assets::APP_CONTENT_SECURITY_POLICY
    );
    assert_eq!(
        result["csp_violations"],
        serde_json::json!([]),
        "{result:#}"
    );
    assert_eq!(result["page_errors"], serde_json::json!([]), "{result:#}");
    // Enrolment, then the three ways in: a fresh signature right after
    // enrolling, the session cookie after a reload, a new signature with the
    // cookies gone.
    assert_eq!(result["invite_prefilled"], true);
    assert_eq!(result["name"], "Ana Test");
    assert_eq!(result["role"], "Mediator");
    assert_eq!(result["zones"], serde_json::json!(["north"]));
    assert_eq!(result["login_after_enrol"], "signature");
    assert_eq!(result["login_after_reload"], "session");
    assert_eq!(result["login_without_cookie"], "signature");
    assert_eq!(result["same_device_after_reload"], true);
    assert_eq!(result["same_device_without_cookie"], true);
    assert_eq!(result["invite_left_in_url"], false);
    assert_eq!(result["duty_off_after_reload"], true);
    // The alert list says what it is and shows nothing made up.
    assert_eq!(result["alert_items"], 0);
    assert!(
        result["alerts_status"]
            .as_str()
            .unwrap()
            .contains("once the gateway's alert service is connected")
    );
    // Keys: the signing key is a non-extractable CryptoKey; the age identity
    // too (Chromium has WebCrypto X25519), never a string.
    let stored = &result["stored"];
    assert_eq!(stored["device_id"], result["device_id"]);
    assert_eq!(
        stored["signing"],
        serde_json::json!({"crypto_key": true, "algorithm": "ECDSA", "extractable": false, "type": "private"})
    );
    assert_eq!(
        stored["age"],
        serde_json::json!({"crypto_key": true, "algorithm": "X25519", "extractable": false, "type": "private"})
    );
    assert_eq!(result["age_key"], "webcrypto-x25519");
    assert!(
        result["details"]
            .as_str()
            .unwrap()
            .contains("tip key: WebCrypto X25519, cannot be exported")
    );
    // The service worker runs, and shows a push as a notification with the
    // zone and urgency only.
    let scope = result["service_worker"].as_str().unwrap();
    assert_eq!(scope, format!("{}/m/", app.address), "{result:#}");
    assert_eq!(
        result["notifications"],
        serde_json::json!([{
            "title": "Urgent conflict alert",
            "body": "Zone: north · Urgent\nOpen the app to read it.",
            "tag": "a_browser_test",
            "data": {"alert": "a_browser_test"},
        }])
    );

    // The gateway's record: public keys only, the invite's grant, duty back on.
    let device_id = DeviceId::parse(result["device_id"].as_str().unwrap()).unwrap();
    let record = Devices::new(app.store.clone())
        .get(&device_id)
        .await
        .unwrap()
        .expect("the enrolled device has a record");
    assert_eq!(record.name, "Ana Test");
    assert_eq!(record.device_name.as_deref(), Some("Test phone"));
    assert_eq!(record.zones, ["north"]);
    assert!(!record.supervisor);
    assert!(record.on_duty);
    assert_eq!(record.recipient, stored["recipient"].as_str().unwrap());

    // The device is a recipient of its zone, and of nothing else.
    let recipient = RecipientKey::parse(&record.recipient).unwrap();
    let directory = MediatorDirectory::new(app.store.clone());
    assert!(
        directory
            .recipients_for(&ZoneChoice::Known(north))
            .await
            .unwrap()
            .contains(&recipient)
    );
    assert!(
        !directory
            .recipients_for(&ZoneChoice::Known(Zone::parse("south").unwrap()))
            .await
            .unwrap()
            .contains(&recipient)
    );
    // The next tips: one more recipient for north, none for south.
    assert_eq!(seal_count(&app, "north").await, north_before + 1);
    assert_eq!(seal_count(&app, "south").await, south_before);
}

#[tokio::test]
async fn the_app_is_served_under_its_own_policy_and_the_bare_path_redirects() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/m")).send().await.unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], "/m/");

    let response = app.client.get(app.url("/m/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp: Vec<_> = response
        .headers()
        .get_all("content-security-policy")
        .iter()
        .collect();
    assert_eq!(
        csp,
        [tipwire::mediator::app_assets::APP_CONTENT_SECURITY_POLICY]
    );
    // The gateway's other security headers still apply.
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    assert_eq!(response.headers()["cache-control"], "no-cache");

    // Everywhere else keeps the gateway's own policy.
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(
        response.headers()["content-security-policy"],
        tipwire::app::CONTENT_SECURITY_POLICY
    );
    let response = app
        .client
        .get(app.url("/m/missing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_browser_without_webcrypto_x25519_keeps_an_age_identity_string_and_still_enrols() {
    browser_tools();
    let app = spawn_app_for_browser().await;
    let north = Zone::parse("north").unwrap();
    let north_before = seal_count(&app, "north").await;
    let invite = Invites::new(
        app.store.clone(),
        &app.settings.mediator.public_base_url,
        Duration::from_secs(900),
    )
    .create(
        "Ben Test",
        std::slice::from_ref(&north),
        false,
        Duration::from_secs(900),
    )
    .await
    .unwrap();

    let result =
        enrol_in_browser(&app, &invite.link, &[("TIPWIRE_NO_WEBCRYPTO_X25519", "1")]).await;

    assert_eq!(result["age_key"], "age-identity-string");
    assert_eq!(
        result["stored"]["age"],
        serde_json::json!({"crypto_key": false, "string_prefix": "AGE-SECRET-KEY-"})
    );
    // The signing key is WebCrypto P-256 in every browser: still not exportable.
    assert_eq!(result["stored"]["signing"]["extractable"], false);
    // The app says where the tip key is.
    assert!(
        result["details"]
            .as_str()
            .unwrap()
            .contains("this browser has no WebCrypto X25519"),
        "{result:#}"
    );
    assert_eq!(result["login_without_cookie"], "signature");
    let device_id = DeviceId::parse(result["device_id"].as_str().unwrap()).unwrap();
    let record = Devices::new(app.store.clone())
        .get(&device_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.recipient,
        result["stored"]["recipient"].as_str().unwrap()
    );
    assert_eq!(seal_count(&app, "north").await, north_before + 1);
}
