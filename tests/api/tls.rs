//! TLS: protocol versions and suites served, certificate hot reload (a broken
//! renewal keeps the old one), and the plaintext mode on loopback.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tipwire::config::ServerMode;
use tipwire::server::tls::DevCert;

use crate::support::app::{TestApp, spawn_app, spawn_app_with};

fn roots(pems: &[&str]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    roots
}

/// Handshakes with the given versions; returns the negotiated version, suite and leaf.
async fn handshake(
    app: &TestApp,
    roots: rustls::RootCertStore,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (
    rustls::ProtocolVersion,
    rustls::SupportedCipherSuite,
    CertificateDer<'static>,
) {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    (
        conn.protocol_version().unwrap(),
        conn.negotiated_cipher_suite().unwrap(),
        conn.peer_certificates().unwrap()[0].clone().into_owned(),
    )
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_served_with_forward_secret_suites_only() {
    let app = spawn_app().await;
    let (v13, _, _) = handshake(&app, roots(&[&app.ca_pem]), &[&rustls::version::TLS13]).await;
    assert_eq!(v13, rustls::ProtocolVersion::TLSv1_3);
    let (v12, suite, _) = handshake(&app, roots(&[&app.ca_pem]), &[&rustls::version::TLS12]).await;
    assert_eq!(v12, rustls::ProtocolVersion::TLSv1_2);
    assert!(
        format!("{:?}", suite.suite()).starts_with("TLS_ECDHE_"),
        "{:?}",
        suite.suite()
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let app = spawn_app_with(|s| s.tls.reload_interval = std::time::Duration::from_secs(1)).await;
    let (_, _, before) = handshake(&app, roots(&[&app.ca_pem]), &[&rustls::version::TLS13]).await;

    let renewed = DevCert::generate(&["localhost"]).unwrap();
    let tls_dir = app.dir.path().join("tls");
    // Write beside, then rename: how certbot and friends replace files.
    std::fs::write(tls_dir.join("cert.new"), &renewed.cert_pem).unwrap();
    std::fs::write(tls_dir.join("key.new"), &renewed.key_pem).unwrap();
    std::fs::rename(tls_dir.join("key.new"), tls_dir.join("key.pem")).unwrap();
    std::fs::rename(tls_dir.join("cert.new"), tls_dir.join("cert.pem")).unwrap();

    let expected = CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes()).unwrap();
    let mut served = before.clone();
    for _ in 0..60 {
        let (_, _, leaf) = handshake(
            &app,
            roots(&[&app.ca_pem, &renewed.ca_pem]),
            &[&rustls::version::TLS13],
        )
        .await;
        served = leaf;
        if served == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(served, before);
    assert_eq!(
        served, expected,
        "the new certificate is served by the running gateway"
    );
}

#[tokio::test]
async fn a_broken_renewal_keeps_the_old_certificate_in_service() {
    let app = spawn_app().await;
    let cert = app.cert.clone().unwrap();
    std::fs::write(app.dir.path().join("tls/cert.pem"), "not a certificate").unwrap();
    assert!(cert.reload_if_changed().is_err());
    let (_, _, leaf) = handshake(&app, roots(&[&app.ca_pem]), &[&rustls::version::TLS13]).await;
    assert!(!leaf.is_empty());
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn plaintext_mode_serves_http_on_loopback() {
    let app = spawn_app_with(|s| s.server.mode = ServerMode::Plaintext).await;
    assert!(app.address.starts_with("http://"));
    let response = app.post_tip("via the onion service", "north", "now").await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.alerts().await.len(), 1);
}
