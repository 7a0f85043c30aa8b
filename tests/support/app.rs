//! Spawns a real gateway (TLS on port 0) against the real Redis, each test with
//! its own key prefix, keys and certificate, so tests run in parallel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use reqwest::redirect::Policy;
use tipwire::app::Application;
use tipwire::bus::{AlertReader, Store, StoredAlert};
use tipwire::config::{Durability, ServerMode, Settings};
use tipwire::crypto::{IdentityKey, Keyring};
use tipwire::mediator::{MediatorDirectory, NewMediator};
use tipwire::server::tls::DevCert;

/// Everything the gateways in this test binary logged, for canary scans.
pub static LOGS: LazyLock<Mutex<Vec<u8>>> = LazyLock::new(|| Mutex::new(Vec::new()));

struct Capture;
impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static TRACING: LazyLock<()> = LazyLock::new(|| {
    // The shipped default level, and everything tipwire's own code says.
    tipwire::telemetry::init("info,tipwire=trace", || Capture).unwrap();
});

pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

pub fn redis_url() -> String {
    std::env::var("TIPWIRE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Fails (never skips) with instructions when Redis is not there.
pub fn require_redis(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let ok = client
        .get_connection_with_timeout(std::time::Duration::from_secs(2))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok();
    assert!(
        ok,
        "tests need a Redis server at {url}: run scripts/test.sh (it starts one), \
         or start redis-server, or set TIPWIRE_TEST_REDIS_URL"
    );
}

/// Serves a stand-in peer (a provider's API or media server, a push service)
/// over plain HTTP on a loopback port, one worker, for the rest of the test;
/// returns its base URL. `routes` is applied to every worker's `App`.
pub fn serve_stand_in(
    routes: impl Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(routes.clone()))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

pub fn random_hex(n: usize) -> String {
    let id = tipwire::domain::TipId::random();
    id.as_str()[..n].to_owned()
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub dir: tempfile::TempDir,
    pub escrow: IdentityKey,
    /// Enrolled for zone "north" at spawn.
    pub mediator: IdentityKey,
    pub store: Store,
    pub ca_pem: String,
    pub handle: actix_web::dev::ServerHandle,
    pub cert: Option<std::sync::Arc<tipwire::server::tls::ReloadingCert>>,
    pub relay: std::sync::Arc<tipwire::outbound::relay::RelayWorker>,
    pub metrics: std::sync::Arc<tipwire::telemetry::Metrics>,
    /// Graceful stop, as SIGTERM does it.
    pub drain: tipwire::server::Drain,
    /// The SMTP port and implicit-TLS port, when email is on.
    pub smtp: Option<(u16, Option<u16>)>,
    /// The Redis durability check, whose step tests run.
    pub durability: std::sync::Arc<tipwire::bus::DurabilityWatch>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Settings for a test: defaults, fresh keys and certificate in a temp dir.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::load(None).unwrap();
    s.server.host = std::net::Ipv4Addr::LOCALHOST.into();
    s.server.port = 0;
    s.server.workers = 1;
    s.server.shutdown_timeout = std::time::Duration::from_secs(2);
    s.tls.cert_path = dir.join("tls/cert.pem");
    s.tls.key_path = dir.join("tls/key.pem");
    s.keys.dir = dir.join("keys");
    s.redis.url = redis_url();
    s.redis.key_prefix = format!("tipwire-test-{}", random_hex(12));
    // The shared test Redis keeps nothing on disk (every test's keys are
    // thrown away); tests/api/durability.rs proves the default refuses it.
    s.redis.durability = Durability::DangerousNoPersistence;
    s.rate_limits.web.per_client.count = std::num::NonZeroU32::new(10_000).unwrap();
    s.rate_limits.web.global.count = std::num::NonZeroU32::new(10_000).unwrap();
    // Tests read counters right after acting (tests/api/pages.rs checks the
    // minute snapshot).
    s.server.metrics_by_minute = false;
    s
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    try_spawn_app_with(tweak).await.unwrap()
}

/// As [`spawn_app_with`], for tests of refusals at start-up.
pub async fn try_spawn_app_with(
    tweak: impl FnOnce(&mut Settings),
) -> Result<TestApp, tipwire::app::StartupError> {
    LazyLock::force(&TRACING);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    tweak(&mut settings);
    if settings.server.mode == ServerMode::Plaintext || !settings.server.trusted_proxies.is_empty()
    {
        // Requests then come through loopback as a proxy would send them, and
        // the gateway refuses to serve /metrics to proxied addresses; tests
        // read the metrics through `TestApp::metrics` instead.
        settings.server.metrics_allow.clear();
    }
    require_redis(&settings.redis.url);

    let (escrow, cert) = keys_and_certificate(dir.path(), &settings);

    let store = Store::new(&settings.redis).unwrap();
    let mediator = if redis_reachable(&settings.redis.url) {
        add_mediator(&store, "Test mediator", &["north"], false).await
    } else {
        IdentityKey::generate()
    };

    let app = Application::build(settings.clone()).await?;
    let port = app.port();
    let durability = app.durability();
    let handle = app.handle();
    let cert_handle = app.certificate();
    let relay = app.relay();
    let metrics = app.metrics();
    let drain = app.drain().0;
    let smtp = app.smtp_ports();
    tokio::spawn(app.run_until_stopped());

    let scheme = match settings.server.mode {
        ServerMode::Tls => "https",
        ServerMode::Plaintext => "http",
    };
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap())
        .redirect(Policy::none())
        .build()
        .unwrap();
    Ok(TestApp {
        address: format!("{scheme}://localhost:{port}"),
        port,
        client,
        settings,
        dir,
        escrow,
        mediator,
        store,
        ca_pem: cert.ca_pem,
        handle,
        cert: cert_handle,
        relay,
        metrics,
        drain,
        smtp,
        durability,
    })
}

/// Makes the keys (`keys init`, the escrow identity in
/// `dir/escrow.identity`) and the TLS certificate (`dir/tls`) that
/// `settings` name; returns the escrow identity and the certificate.
pub fn keys_and_certificate(dir: &Path, settings: &Settings) -> (IdentityKey, DevCert) {
    Keyring::init(&settings.keys.dir, &dir.join("escrow.identity")).unwrap();
    let escrow =
        IdentityKey::parse_file(&std::fs::read_to_string(dir.join("escrow.identity")).unwrap())
            .pop()
            .unwrap();
    let cert = DevCert::generate(&["localhost", "127.0.0.1"]).unwrap();
    cert.write(&dir.join("tls")).unwrap();
    (escrow, cert)
}

/// Opens the age file `file` with the reference `age` tool and the identity
/// file `identity`; returns the plaintext.
pub fn age_cli_open(identity: &Path, file: &Path) -> Vec<u8> {
    let age = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .expect("the reference `age` tool is installed (scripts/test.sh installs Debian's package `age`)");
    assert!(
        age.status.success(),
        "{}",
        String::from_utf8_lossy(&age.stderr)
    );
    age.stdout
}

fn redis_reachable(url: &str) -> bool {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_millis(500)))
        .is_ok()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Posts the tip form as a program would (JSON answers).
    pub async fn post_tip(&self, text: &str, zone: &str, urgency: &str) -> reqwest::Response {
        let body = form_body(&[("text", text), ("zone", zone), ("urgency", urgency)]);
        self.post_raw(body.into_bytes(), "application/x-www-form-urlencoded")
            .await
    }

    pub async fn post_raw(&self, body: Vec<u8>, content_type: &str) -> reqwest::Response {
        self.client
            .post(self.url("/tips"))
            .header("Content-Type", content_type)
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// GETs `path` and returns the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn alerts(&self) -> Vec<StoredAlert> {
        let reader = AlertReader::new(self.store.clone());
        // After a Redis restart the first command on an old connection fails
        // once while the connection manager reconnects.
        for _ in 0..20 {
            if let Ok(alerts) = reader.range_since(0, 10_000).await {
                return alerts;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        reader.range_since(0, 10_000).await.unwrap()
    }

    /// A config file for running the CLI binary against this app's Redis and keys.
    pub fn cli_config(&self) -> PathBuf {
        let path = self.dir.path().join("cli.toml");
        let zones: String = self
            .settings
            .zones
            .iter()
            .map(|(zone, name)| format!("[[zones]]\nid = \"{zone}\"\nname = \"{name}\"\n"))
            .collect();
        std::fs::write(
            &path,
            format!(
                "[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n[keys]\ndir = \"{}\"\n{zones}",
                self.settings.redis.url,
                self.settings.redis.key_prefix,
                self.settings.keys.dir.display()
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        delete_prefix(&self.settings.redis.url, &self.settings.redis.key_prefix);
    }
}

/// Adds a mediator with a new identity to the directory (a supervisor sees
/// every zone) and returns the identity.
pub async fn add_mediator(
    store: &Store,
    name: &str,
    zones: &[&str],
    supervisor: bool,
) -> IdentityKey {
    let identity = IdentityKey::generate();
    MediatorDirectory::new(store.clone())
        .add(
            NewMediator {
                name: name.into(),
                zones: zones
                    .iter()
                    .map(|z| tipwire::domain::Zone::parse(z).unwrap())
                    .collect(),
                supervisor,
                recipient: identity.to_public(),
            },
            0,
        )
        .await
        .unwrap();
    identity
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Opens an entry's envelope and returns the sealed document.
pub fn open_tip(
    alert: &StoredAlert,
    identity: &IdentityKey,
) -> Option<tipwire::domain::TipDocument> {
    let plain =
        tipwire::crypto::open(&alert.entry.envelope, std::slice::from_ref(identity)).ok()?;
    Some(serde_json::from_slice(&plain).unwrap())
}

pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

/// Deletes every key under `prefix` (what a test's gateways wrote), ignoring
/// errors: it runs from `Drop`, after the test's own assertions.
pub fn delete_prefix(url: &str, prefix: &str) {
    if let Ok(mut conn) = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_millis(500)))
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query(&mut conn)
            .unwrap_or_default();
        for key in keys {
            let _: Result<(), _> = redis::cmd("DEL").arg(key).query(&mut conn);
        }
    }
}

/// The same gateway restarted on a rotated pseudonym key (what `tipwire keys
/// rotate pseudonym` and a restart do), sharing the test's Redis prefix.
pub async fn restart_with_rotated_pseudonym_key(app: &mut TestApp) {
    use tipwire::crypto::{KeyKind, Keyring};
    Keyring::rotate(
        &app.settings.keys.dir,
        KeyKind::Pseudonym,
        &app.dir.path().join("escrow-after-rotation.identity"),
    )
    .unwrap();
    let restarted = tipwire::app::Application::build(app.settings.clone())
        .await
        .unwrap();
    app.port = restarted.port();
    app.address = format!("https://localhost:{}", app.port);
    tokio::spawn(restarted.run_until_stopped());
}
