//! Email test peers: a gateway with its SMTP listener on, lettre as one client,
//! Python's smtplib as a second, independent one, a raw socket for broken
//! clients, and aiosmtpd (a real SMTP server, with STARTTLS) standing in for
//! the program's outbound relay.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::app::{TestApp, spawn_app_with};

pub const TIP_ADDRESS: &str = "tips@tips.example.org";

/// A gateway that receives mail for TIP_ADDRESS, STARTTLS and implicit TLS on.
pub async fn spawn_email_app(tweak: impl FnOnce(&mut tipwire::config::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.email.enabled = true;
        s.email.addresses = vec![tipwire::domain::EmailAddress::parse(TIP_ADDRESS).unwrap()];
        s.email.host = std::net::Ipv4Addr::LOCALHOST.into();
        s.email.port = 0;
        s.email.hostname = "mx.tips.example.org".into();
        s.email.implicit_tls = true;
        s.email.implicit_tls_port = 0;
        s.rate_limits.email.per_client.count = std::num::NonZeroU32::new(10_000).unwrap();
        s.rate_limits.email.per_address.count = std::num::NonZeroU32::new(10_000).unwrap();
        s.rate_limits.email.global.count = std::num::NonZeroU32::new(10_000).unwrap();
        s.relay.backoff_base = std::time::Duration::from_millis(1);
        // Tests drive the relay's step themselves.
        s.relay.poll_interval = std::time::Duration::from_millis(3_600_000);
        tweak(s);
    })
    .await
}

impl TestApp {
    pub fn smtp_port(&self) -> u16 {
        self.smtp.expect("email is on").0
    }

    /// lettre over STARTTLS (or implicit TLS), trusting the test certificate.
    pub fn lettre(&self, implicit: bool) -> AsyncSmtpTransport<Tokio1Executor> {
        match implicit {
            false => lettre_to(self.smtp_port(), &self.ca_pem, false),
            true => lettre_to(self.smtp.unwrap().1.unwrap(), &self.ca_pem, true),
        }
    }

    /// Sends a built message with lettre; returns the server's final reply.
    pub async fn send_with_lettre(&self, message: &lettre::Message) -> Result<String, String> {
        self.lettre(false)
            .send(message.clone())
            .await
            .map(|r| format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" ")))
            .map_err(|e| e.to_string())
    }

    /// Sends raw message bytes with Python's smtplib over STARTTLS (in its
    /// own process; the gateway keeps running on this test's runtime).
    pub async fn send_with_smtplib(
        &self,
        mail_from: &str,
        rcpt_to: &str,
        message: &[u8],
    ) -> String {
        let ca = self.dir.path().join("tls/ca-for-python.pem");
        std::fs::write(&ca, &self.ca_pem).unwrap();
        let mut child = tokio::process::Command::new(python())
            .arg(peer("smtp_send.py"))
            .args(["localhost", &self.smtp_port().to_string()])
            .arg(&ca)
            .args([mail_from, rcpt_to])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(message).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "smtp_send.py failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Opens a plain connection and reads the greeting.
    pub async fn raw_smtp(&self) -> RawSmtp {
        let stream = TcpStream::connect(("127.0.0.1", self.smtp_port()))
            .await
            .unwrap();
        let mut raw = RawSmtp {
            stream: tokio::io::BufReader::new(stream),
        };
        assert!(raw.reply().await.starts_with("220 "));
        raw
    }
}

/// lettre to an SMTP port on localhost over STARTTLS (or implicit TLS),
/// trusting `ca_pem`.
pub fn lettre_to(port: u16, ca_pem: &str, implicit: bool) -> AsyncSmtpTransport<Tokio1Executor> {
    let params = TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build_rustls()
        .unwrap();
    let tls = match implicit {
        false => Tls::Required(params),
        true => Tls::Wrapper(params),
    };
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

/// A client that says exactly what the test tells it to.
pub struct RawSmtp {
    stream: tokio::io::BufReader<TcpStream>,
}

impl RawSmtp {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    /// Reads one (possibly multi-line) reply; empty when the server closed.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(20), self.stream.read_line(&mut line))
                    .await
                    .expect("a reply within 20 s")
                    .unwrap_or(0);
            if read == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    /// Sends a command and returns the reply code.
    pub async fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        code(&self.reply().await)
    }

    /// EHLO, MAIL, RCPT and DATA, each expected to succeed.
    pub async fn begin(&mut self, from: &str) {
        assert_eq!(self.command("EHLO client.example").await, "250");
        assert_eq!(self.command(&format!("MAIL FROM:<{from}>")).await, "250");
        assert_eq!(
            self.command(&format!("RCPT TO:<{TIP_ADDRESS}>")).await,
            "250"
        );
        assert_eq!(self.command("DATA").await, "354");
    }
}

pub fn code(reply: &str) -> String {
    reply.lines().last().unwrap_or("").chars().take(3).collect()
}

/// The Python interpreter with the test peers installed (scripts/test.sh
/// makes it); fails with instructions when it is missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("TIPWIRE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".dev/test-python/bin/python")
        });
    assert!(
        path.exists(),
        "the integration tests need Python with the peers of tests/peers/requirements.txt \
         at {}: run scripts/test.sh (it makes it), or set TIPWIRE_TEST_PYTHON",
        path.display()
    );
    path
}

pub fn peer(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// aiosmtpd standing in for the outbound relay, STARTTLS required.
pub struct Sink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    child: Child,
}

impl Sink {
    /// `fail_first`: how many messages get a 451 before the sink accepts.
    pub fn start(fail_first: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = tipwire::server::tls::DevCert::generate(&["localhost", "127.0.0.1"]).unwrap();
        let tls = dir.path().join("tls");
        cert.write(&tls).unwrap();
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).unwrap();
        let mut child = Command::new(python())
            .arg(peer("smtp_sink.py"))
            .arg(&out)
            .arg(tls.join("cert.pem"))
            .arg(tls.join("key.pem"))
            .arg(fail_first.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py did not start: {first:?}"));
        Self {
            port,
            dir,
            ca_pem: cert.ca_pem,
            child,
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    /// Messages received so far: (envelope lines, message bytes).
    pub fn received(&self) -> Vec<(String, Vec<u8>)> {
        let mail = self.dir.path().join("mail");
        let mut out = Vec::new();
        for n in 1.. {
            let eml = mail.join(format!("{n}.eml"));
            if !eml.exists() {
                break;
            }
            let env = std::fs::read_to_string(mail.join(format!("{n}.env"))).unwrap();
            out.push((env, std::fs::read(eml).unwrap()));
        }
        out
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
