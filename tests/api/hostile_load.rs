//! The memory ceiling under hostile load (issue 10, acceptance): a real
//! `tipwire serve` process is attacked on its HTTPS and SMTP listeners at
//! once, from many loopback addresses, with HTTP/2 stream floods, HTTP/1.1
//! pipelining floods that never read, idle and slowloris connections,
//! oversized bodies and slow SMTP sessions. Its peak resident memory must stay
//! under the ceiling stated in docs/architecture.md ("Connection limits and
//! the memory ceiling") and `/healthz` must keep answering. Every attacker is
//! bounded in count and bytes and the attack stops by itself.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::support::app::{delete_prefix, keys_and_certificate, require_redis, test_settings};
use crate::support::net::connect_from;
use crate::support::serve::{Serve, write_config};

/// The stated ceiling for the default limits (docs/architecture.md): the idle
/// process (about 30 MiB) plus 1,024 HTTPS connections at 400 KiB, as peak
/// resident memory of the whole process, in MiB.
const CEILING_MIB: u64 = 448;
/// What the process may grow by under this attack, per attacking connection
/// (HTTPS or SMTP), in KiB: well under the worst case of 400 KiB, since most
/// attackers are refused or idle.
const PER_CONNECTION_KIB: u64 = 256;
/// How long the attackers keep at it.
const ATTACK: Duration = Duration::from_secs(12);

/// Starts `tipwire serve` with the shipped defaults except ports, paths, one
/// worker (the smallest, most easily starved set-up) and email on.
async fn start(dir: &Path, settings: &tipwire::config::Settings) -> Serve {
    let config = dir.join("hostile.toml");
    write_config(
        &config,
        settings,
        r#"[email]
enabled = true
host = "127.0.0.1"
port = 0
addresses = ["tips@example.org"]
"#,
    );
    Serve::start("hostile", &config, &dir.join("hostile.log"), true).await
}

/// Writes `chunk` again and again until the attack ends or the gateway stops
/// reading or hangs up; never reads an answer.
async fn flood(mut io: impl AsyncWrite + Unpin, first: Vec<u8>, chunk: Vec<u8>, until: Instant) {
    let write = async {
        io.write_all(&first).await?;
        loop {
            io.write_all(&chunk).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout_at(until.into(), write).await;
}

fn tls_connector(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// HTTP/2: the preface, an empty SETTINGS frame, then `count` HEADERS frames
/// (`GET /` over https, END_STREAM | END_HEADERS) on new streams.
fn h2_stream_flood(count: u32) -> (Vec<u8>, Vec<u8>) {
    let mut first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    first.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut frames = Vec::new();
    for i in 0..count {
        let stream = 2 * i + 1;
        frames.extend_from_slice(&[0, 0, 3, 1, 0x05]);
        frames.extend_from_slice(&stream.to_be_bytes());
        frames.extend_from_slice(&[0x82, 0x87, 0x84]);
    }
    (first, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_under_the_stated_ceiling_while_every_listener_is_attacked_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path());
    require_redis(&settings.redis.url);
    let (_, cert) = keys_and_certificate(dir.path(), &settings);
    let gateway = start(dir.path(), &settings).await;
    let port = gateway.https;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let healthz = format!("https://localhost:{port}/healthz");
    assert_eq!(client.get(&healthz).send().await.unwrap().status(), 200);
    let before = gateway.memory_kib("VmRSS");

    let until = Instant::now() + ATTACK;
    // Attacking connections: HTTP/2 and pipelining floods (thin and fat), idle, slowloris,
    // oversized bodies, SMTP sessions.
    let held: u64 = 4 * 64 + 2 * 64 + 8 * 100 + 64 + 64 + 20 * 10;
    let mut attack = JoinSet::new();
    let both = tls_connector(&cert.ca_pem, &[b"h2", b"http/1.1"]);
    let h1 = tls_connector(&cert.ca_pem, &[b"http/1.1"]);
    // HTTP/2 stream floods and HTTP/1.1 pipelining floods that never read,
    // each from its own addresses, every address at its connection share.
    for (i, source) in (1..=4).map(|n| (n, format!("127.0.1.{n}"))) {
        for _ in 0..64 {
            let (tls, source) = (
                if i % 2 == 0 { both.clone() } else { h1.clone() },
                source.clone(),
            );
            attack.spawn(async move {
                let tcp = connect_from(&source, port).await;
                let Ok(io) = tls.connect("localhost".try_into().unwrap(), tcp).await else {
                    return;
                };
                let (first, chunk) = if i % 2 == 0 {
                    h2_stream_flood(20_000)
                } else {
                    (
                        Vec::new(),
                        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(2_000),
                    )
                };
                flood(io, first, chunk, until).await;
            });
        }
    }
    // Pipelined requests with fat heads (100 KB each), never read.
    for source in ["127.0.6.1", "127.0.6.2"] {
        for _ in 0..64 {
            let (tls, source) = (h1.clone(), source.to_owned());
            attack.spawn(async move {
                let tcp = connect_from(&source, port).await;
                let Ok(io) = tls.connect("localhost".try_into().unwrap(), tcp).await else {
                    return;
                };
                let fat = format!(
                    "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Fat: {}\r\n\r\n",
                    "f".repeat(100_000)
                );
                flood(io, Vec::new(), fat.repeat(20).into_bytes(), until).await;
            });
        }
    }
    // Idle TCP connections that never start a handshake.
    let mut idle = Vec::new();
    for n in 1..=8 {
        for _ in 0..100 {
            idle.push(connect_from(&format!("127.0.2.{n}"), port).await);
        }
    }
    // Slowloris: a request head that never ends, a byte at a time.
    for _ in 0..64 {
        let tls = h1.clone();
        attack.spawn(async move {
            let tcp = connect_from("127.0.3.1", port).await;
            let Ok(mut io) = tls.connect("localhost".try_into().unwrap(), tcp).await else {
                return;
            };
            let _ = io
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .await;
            while Instant::now() < until {
                if io.write_all(b"a").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    // Oversized bodies, declared and chunked, sent as fast as they are read.
    for n in 0..64 {
        let tls = h1.clone();
        attack.spawn(async move {
            let tcp = connect_from("127.0.4.1", port).await;
            let Ok(io) = tls.connect("localhost".try_into().unwrap(), tcp).await else {
                return;
            };
            let head = if n % 2 == 0 {
                "POST /tips HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 500000000\r\n\r\n"
            } else {
                "POST /webhooks/sms/twilio HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
            };
            let chunk = if n % 2 == 0 {
                vec![b'a'; 64 * 1024]
            } else {
                let mut c = b"10000\r\n".to_vec();
                c.extend_from_slice(&[b'a'; 0x10000]);
                c.extend_from_slice(b"\r\n");
                c
            };
            flood(io, head.as_bytes().to_vec(), chunk, until).await;
        });
    }
    // Slow SMTP sessions: into DATA, then a line now and then.
    let smtp = gateway.smtp.unwrap();
    for n in 1..=20 {
        for _ in 0..10 {
            let source = format!("127.0.5.{n}");
            attack.spawn(async move {
                let mut io = connect_from(&source, smtp).await;
                let mut greeting = [0u8; 512];
                let _ = io.read(&mut greeting).await;
                let _ = io
                    .write_all(
                        b"EHLO attacker.example\r\nMAIL FROM:<a@attacker.example>\r\nRCPT TO:<tips@example.org>\r\nDATA\r\n",
                    )
                    .await;
                while Instant::now() < until {
                    if io.write_all(b"a slow line of a message that never ends\r\n").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
    }

    // A real client from another address keeps being served throughout. It
    // runs on a thread of its own, so the attackers' busy tasks in this
    // process cannot delay it, and reads each whole answer.
    let probe = {
        let probe_tls = h1.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut answers = Vec::new();
                while Instant::now() < until {
                    let asked = Instant::now();
                    answers.push((healthz_once(&probe_tls, port).await, asked.elapsed()));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                answers
            })
        })
    };
    let answers = tokio::task::spawn_blocking(move || probe.join().unwrap())
        .await
        .unwrap();
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
    assert!(
        answers
            .iter()
            .all(|(status, _)| status.as_deref() == Some("HTTP/1.1 200 OK")),
        "{answers:?}"
    );
    let peak = gateway.memory_kib("VmHWM");
    attack.abort_all();
    while attack.join_next().await.is_some() {}
    drop(idle);
    assert_eq!(client.get(&healthz).send().await.unwrap().status(), 200);

    println!(
        "hostile load: RSS {} MiB before, peak {} MiB over {held} attacking connections \
         ({} KiB each); /healthz answered {} times, slowest {slowest:?}",
        before / 1024,
        peak / 1024,
        peak.saturating_sub(before) / held,
        answers.len()
    );
    assert!(
        peak / 1024 < CEILING_MIB,
        "peak RSS {} MiB over the stated {CEILING_MIB} MiB",
        peak / 1024
    );
    assert!(
        peak.saturating_sub(before) / held < PER_CONNECTION_KIB,
        "more than {PER_CONNECTION_KIB} KiB per attacking connection"
    );
    assert!(!answers.is_empty());
    drop(gateway);
    delete_prefix(&settings.redis.url, &settings.redis.key_prefix);
}

/// One `GET /healthz` over a fresh TLS connection from 127.0.0.1; the status
/// line of the whole answer, or `None` when none came.
async fn healthz_once(tls: &tokio_rustls::TlsConnector, port: u16) -> Option<String> {
    let exchange = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut io = tls.connect("localhost".try_into().ok()?, tcp).await.ok()?;
        io.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        // The answer ends with the body `ok\n`; the close may come later.
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.ends_with(b"\r\n\r\nok\n") {
            let n = io.read(&mut buf).await.ok()?;
            answer.extend_from_slice(buf.get(..n)?);
            if n == 0 || answer.len() > 64 * 1024 {
                return None;
            }
        }
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .map(str::to_owned)
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .ok()
        .flatten()
}
