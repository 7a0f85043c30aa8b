//! Bad input gets a precise status and code, and changes nothing.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::app::{TestApp, error_code, form_body, spawn_app};

async fn assert_refused(app: &TestApp, response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status, "expected {code}");
    assert_eq!(error_code(response).await, code);
    assert!(
        app.alerts().await.is_empty(),
        "{code}: the stream is unchanged"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let app = spawn_app().await;
    let big = "a".repeat(app.settings.server.max_body_bytes + 1);
    let r = app
        .post_raw(
            form_body(&[("text", &big), ("zone", "north"), ("urgency", "now")]).into_bytes(),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_refused(&app, r, 413, "body-too-large").await;
}

#[tokio::test]
async fn an_over_long_field_is_refused_with_422() {
    let app = spawn_app().await;
    let long = "b".repeat(app.settings.tips.max_text_chars + 1);
    let r = app.post_tip(&long, "north", "now").await;
    assert_refused(&app, r, 422, "field-too-long").await;
    let r = app.post_tip("fine", &"z".repeat(65), "now").await;
    assert_refused(&app, r, 422, "field-too-long").await;
}

#[tokio::test]
async fn a_wrong_content_type_is_refused_with_415() {
    let app = spawn_app().await;
    let r = app
        .post_raw(
            br#"{"text":"hi","zone":"north","urgency":"now"}"#.to_vec(),
            "application/json",
        )
        .await;
    assert_refused(&app, r, 415, "unsupported-content-type").await;
    let r = app
        .post_raw(
            b"text=hi&zone=north&urgency=now".to_vec(),
            "application/x-www-form-urlencoded; charset=latin1",
        )
        .await;
    assert_refused(&app, r, 415, "unsupported-content-type").await;
}

#[tokio::test]
async fn an_unknown_zone_is_refused_with_422() {
    let app = spawn_app().await;
    let r = app.post_tip("something", "atlantis", "now").await;
    assert_refused(&app, r, 422, "unknown-zone").await;
}

#[tokio::test]
async fn empty_and_blank_texts_are_refused_with_422() {
    let app = spawn_app().await;
    let r = app.post_tip("", "north", "now").await;
    assert_refused(&app, r, 422, "empty-text").await;
    let r = app.post_tip(" \r\n\t ", "north", "now").await;
    assert_refused(&app, r, 422, "empty-text").await;
}

#[tokio::test]
async fn missing_fields_and_unknown_urgencies_are_refused_with_422() {
    let app = spawn_app().await;
    let r = app
        .post_raw(
            b"text=hello&zone=north".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_refused(&app, r, 422, "missing-field").await;
    let r = app.post_tip("hello", "north", "yesterday").await;
    assert_refused(&app, r, 422, "invalid-urgency").await;
}

#[tokio::test]
async fn invalid_utf8_is_refused_with_400() {
    let app = spawn_app().await;
    let r = app
        .post_raw(
            b"text=%FF%FEbad&zone=north&urgency=now".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_refused(&app, r, 400, "invalid-utf8").await;
    let r = app
        .post_raw(
            b"text=raw\xffbyte&zone=north&urgency=now".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_refused(&app, r, 400, "invalid-utf8").await;
}

#[tokio::test]
async fn a_malformed_form_is_refused_with_400() {
    let app = spawn_app().await;
    let r = app
        .post_raw(
            b"text=cut%2&zone=north&urgency=now".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_refused(&app, r, 400, "malformed-body").await;
    let r = app
        .post_raw(
            b"text=a&text=b&zone=north&urgency=now".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_refused(&app, r, 400, "malformed-body").await;
}

/// A body shorter than its Content-Length, then the client stops sending.
#[tokio::test]
async fn a_truncated_body_is_refused_with_400() {
    let app = spawn_app().await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            app.ca_pem.as_bytes(),
        )
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let body = b"text=this+tip+is+cut+off";
    let head = format!(
        "POST /tips HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len() + 40
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    tls.shutdown().await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut response),
    )
    .await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("\"incomplete-body\""), "{response}");
    assert!(app.alerts().await.is_empty());
}

#[tokio::test]
async fn unknown_paths_and_methods_get_precise_codes() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/nope"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "not-found");
    let r = app
        .client
        .get(app.url("/tips"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "method-not-allowed");
}
