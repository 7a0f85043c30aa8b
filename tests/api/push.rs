//! Web Push against an independent receiver: tests/peers/push_endpoint.py
//! decrypts with http_ece (Mozilla's RFC 8188 library) and checks VAPID with
//! PyJWT, so the sender is held to the specs, not to itself.

use std::sync::Arc;
use std::time::Duration;

use tipwire::crypto::{Keyring, VapidKey, VapidSubject};
use tipwire::domain::{Priority, TipId, Zone, ZoneChoice};
use tipwire::outbound::push::{
    AlertNotice, EndpointPolicy, NoticeKind, PushClient, PushClientConfig, PushError, Subscription,
    Urgency,
};

use crate::support::push::PushEndpoint;

fn client(vapid: Arc<VapidKey>) -> PushClient {
    PushClient::new(
        vapid,
        PushClientConfig {
            subject: VapidSubject::parse("mailto:ops@cvi.example.org").unwrap(),
            timeout: Duration::from_secs(10),
            endpoint_policy: EndpointPolicy::DangerousAllowLoopbackHttp,
        },
    )
    .unwrap()
}

/// The VAPID key as the gateway gets it: from a keyring `keys init` made.
fn keyring_vapid() -> (tempfile::TempDir, Arc<VapidKey>) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    Keyring::init(&keys, &dir.path().join("escrow.identity")).unwrap();
    let vapid = Keyring::load(&keys).unwrap().vapid().unwrap();
    (dir, vapid)
}

#[tokio::test]
async fn a_push_decrypts_with_http_ece_carries_valid_vapid_and_no_tip_text() {
    let endpoint = PushEndpoint::start();
    let (_keys, vapid) = keyring_vapid();
    let client = client(vapid);

    // What the tip said stays sealed; the notice is built from ids only.
    let tip_text = "CANARY-push-7f3a: the Elm St crew is meeting at 9";
    let tip = TipId::random();
    let zone = ZoneChoice::Known(Zone::parse("north").unwrap());
    let notice = AlertNotice {
        kind: NoticeKind::Alert,
        tip_id: &tip,
        zone: &zone,
        urgency: Priority::Now.into(),
    }
    .to_json();

    client
        .send(&endpoint.subscription(None), &notice, 3600, Urgency::High)
        .await
        .unwrap();

    let got = endpoint.received(1);
    let got = &got[0];
    assert_eq!(got["decrypt_error"], serde_json::Value::Null, "{got}");
    let plaintext = got["plaintext"].as_str().unwrap();
    assert_eq!(plaintext.as_bytes(), notice.as_slice());
    assert!(!plaintext.contains("CANARY") && !plaintext.contains(tip_text));
    let fields: serde_json::Value = serde_json::from_str(plaintext).unwrap();
    assert_eq!(
        fields,
        serde_json::json!({"kind": "alert", "alert": tip.as_str(), "zone": "north", "urgency": "high"})
    );
    assert_eq!(got["vapid_ok"], true, "{got}");
    assert_eq!(got["ttl"], "3600");
    assert_eq!(got["urgency"], "high");
    assert_eq!(got["content_encoding"], "aes128gcm");
    assert_eq!(got["content_type"], "application/octet-stream");
}

#[tokio::test]
async fn a_payload_of_exactly_3993_bytes_reaches_the_receiver_intact() {
    let endpoint = PushEndpoint::start();
    let client = client(Arc::new(VapidKey::generate()));
    let payload = "z".repeat(tipwire::outbound::push::MAX_PLAINTEXT);
    client
        .send(
            &endpoint.subscription(None),
            payload.as_bytes(),
            0,
            Urgency::VeryLow,
        )
        .await
        .unwrap();
    let got = endpoint.received(1);
    assert_eq!(got[0]["plaintext"].as_str(), Some(payload.as_str()));
    assert_eq!(got[0]["urgency"], "very-low");
    assert_eq!(got[0]["ttl"], "0");
}

#[tokio::test]
async fn a_subscription_the_push_service_dropped_is_reported_gone() {
    let endpoint = PushEndpoint::start();
    let client = client(Arc::new(VapidKey::generate()));
    let gone = endpoint.subscription(Some("/push/expired/gone"));
    let err = client
        .send(&gone, b"{}", 60, Urgency::Normal)
        .await
        .unwrap_err();
    assert!(matches!(err, PushError::Gone { status: 410 }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(endpoint.received(1)[0]["vapid_ok"], true);
}

#[tokio::test]
async fn an_unreachable_push_service_is_a_transient_failure() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = PushEndpoint::start();
    let mut json: serde_json::Value = serde_json::from_str(&endpoint.subscription).unwrap();
    json["endpoint"] = format!("http://127.0.0.1:{port}/push/x").into();
    let sub = Subscription::parse(
        &json.to_string(),
        EndpointPolicy::DangerousAllowLoopbackHttp,
    )
    .unwrap();
    let err = client(Arc::new(VapidKey::generate()))
        .send(&sub, b"{}", 60, Urgency::Normal)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("127.0.0.1"));
}
