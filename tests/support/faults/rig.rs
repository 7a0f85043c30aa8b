//! One fault-injection set-up: a private Redis with AOF `always`, the SMS
//! providers' stand-in, keys, a certificate and a `tipwire serve` child with
//! every channel on (web, Twilio, Telnyx, SMTP) that can be killed and
//! started again on the same Redis, keys and config.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tipwire::bus::Store;
use tipwire::config::{Durability, Settings};
use tipwire::crypto::IdentityKey;

use crate::support::app::{keys_and_certificate, test_settings};
use crate::support::email::TIP_ADDRESS;
use crate::support::private_redis::PrivateRedis;
use crate::support::serve::{Serve, write_config};
use crate::support::sms::{
    ACCOUNT_SID, PROGRAM_NUMBER, StandIn, start_stand_in, telnyx_signing_key,
    write_provider_secrets,
};

/// Where the gateway listens now: a restarted gateway gets new ports, and
/// the clients of a running flood read these before each request.
#[derive(Default)]
pub struct Ports {
    https: AtomicU16,
    smtp: AtomicU16,
}

impl Ports {
    pub fn https(&self) -> u16 {
        self.https.load(Ordering::SeqCst)
    }

    pub fn smtp(&self) -> u16 {
        self.smtp.load(Ordering::SeqCst)
    }
}

pub struct Rig {
    pub name: &'static str,
    pub redis: PrivateRedis,
    pub stand_in: StandIn,
    pub settings: Settings,
    pub escrow: IdentityKey,
    pub ca_pem: String,
    pub client: reqwest::Client,
    pub ports: Arc<Ports>,
    pub gateway: Option<Serve>,
    /// Web Push on (loopback endpoints allowed) in the gateway's config.
    pub push: bool,
    starts: usize,
    // Last: the files go when everything above has stopped.
    pub dir: tempfile::TempDir,
}

impl Rig {
    /// Everything but the gateway, which [`Self::start_gateway`] starts.
    /// `tweak` adjusts the settings written to the gateway's config (Redis
    /// timeouts).
    pub async fn new(name: &'static str, tweak: impl FnOnce(&mut Settings)) -> Self {
        // What `tipwire serve` will insist on (an acknowledged write must be
        // on disk before Redis answers), and what makes "restarted from its
        // AOF" keep every acknowledged tip.
        // `CONFIG SET dir` is how the MISCONF test makes a snapshot fail.
        let redis = PrivateRedis::start_with(&[
            "--appendfsync",
            "always",
            "--enable-protected-configs",
            "yes",
        ]);
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path());
        settings.redis.url = redis.url();
        // The shipped check, not the tests' override for the shared Redis.
        settings.redis.durability = Durability::Strict;
        tweak(&mut settings);
        let (escrow, cert) = keys_and_certificate(dir.path(), &settings);
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            // Far above any bounded answer: a request that needs it hangs.
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let stand_in = start_stand_in();
        Self {
            name,
            redis,
            stand_in,
            settings,
            escrow,
            ca_pem: cert.ca_pem,
            client,
            ports: Arc::default(),
            gateway: None,
            push: false,
            starts: 0,
            dir,
        }
    }

    /// The config: every channel on against the stand-in, limits out of the
    /// flood's way, the relay polling often, push as [`Self::push`] says.
    fn config(&self) -> std::path::PathBuf {
        let (token, telnyx_key) = write_provider_secrets(self.dir.path());
        let stand_in = &self.stand_in.url;
        let public_key = STANDARD.encode(telnyx_signing_key().verifying_key().as_bytes());
        let lots = "{ count = 1000000, per_secs = 60 }";
        let path = self.dir.path().join("gateway.toml");
        write_config(
            &path,
            &self.settings,
            &format!(
                r#"[server.connections]
requests_per_address = {lots}

[rate_limits.web]
per_client = {lots}
global = {lots}

[rate_limits.sms]
per_client = {lots}
global = {lots}

[rate_limits.email]
per_client = {lots}
per_address = {lots}
global = {lots}

[sms]
public_base_url = "https://tips.example.org"
numbers = ["{PROGRAM_NUMBER}"]

[sms.twilio]
enabled = true
account_sid = "{ACCOUNT_SID}"
auth_token_files = ["{token}"]
api_base_url = "{stand_in}"

[sms.telnyx]
enabled = true
public_key = "{public_key}"
api_key_file = "{telnyx_key}"
api_base_url = "{stand_in}"
media_base_url = "{stand_in}"

[relay]
backoff_base_ms = 1
poll_interval_ms = 200

[email]
enabled = true
addresses = ["{TIP_ADDRESS}"]
host = "127.0.0.1"
port = 0
hostname = "mx.tips.example.org"

[push]
enabled = {push}
subject = "mailto:ops@cvi.example.org"
dangerous_allow_loopback_http_endpoints = {push}
poll_interval_ms = 200
"#,
                push = self.push,
                token = token.display(),
                telnyx_key = telnyx_key.display(),
            ),
        );
        path
    }

    /// Starts the gateway (again) and returns once it is ready; the flood's
    /// clients use its new ports from then on.
    pub async fn start_gateway(&mut self) {
        assert!(self.gateway.is_none(), "one gateway at a time");
        let label = format!("{}#{}", self.name, self.starts);
        let log = self.dir.path().join(format!("{label}.log"));
        self.starts += 1;
        let mut serve = Serve::start(&label, &self.config(), &log, true).await;
        // The rig prints every gateway's log, the killed ones' too.
        serve.echo_log = false;
        serve.wait_ready(&self.client).await;
        self.ports.https.store(serve.https, Ordering::SeqCst);
        self.ports.smtp.store(serve.smtp.unwrap(), Ordering::SeqCst);
        self.gateway = Some(serve);
    }

    /// SIGKILL, mid-whatever.
    pub fn kill_gateway(&mut self) {
        self.gateway.take().expect("a gateway runs").kill();
    }

    /// What every gateway started here logged, in start order.
    pub fn logs(&self) -> String {
        (0..self.starts)
            .map(|n| {
                let log = self.dir.path().join(format!("{}#{n}.log", self.name));
                std::fs::read_to_string(log).unwrap_or_default()
            })
            .collect()
    }

    /// A store of the test's own on the private Redis, with the gateway's
    /// prefix.
    pub fn store(&self) -> Store {
        Store::new(&self.settings.redis).unwrap()
    }

    /// Waits until `/readyz` says 200 again, without a restart.
    pub async fn wait_ready(&mut self) {
        let client = self.client.clone();
        self.gateway
            .as_mut()
            .expect("a gateway runs")
            .wait_ready(&client)
            .await;
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("──── every gateway of {} ────\n{}", self.name, self.logs());
        }
    }
}
