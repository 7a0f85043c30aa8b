//! Abuse under load (issue 11, part 3): legitimate tips on every channel at
//! a fixed, paced rate below the configured limits, first alone (baseline),
//! then while attackers flood the gateway; the figures are the legitimate
//! tips a second and their p99 latency under attack as ratios of the same
//! figures without it, per channel and round, and the medians over rounds.
//! scripts/bench-abuse.sh starts Redis and the gateway and runs this.
//!
//! cargo bench --bench abuse -- --config FILE --ca FILE --telnyx-seed FILE
//!     [--rate 4] [--seconds 12] [--rounds 3] [--attackers 2]
//!     [--server-pid PID]
//! cargo bench --bench abuse -- --telnyx-seed FILE --print-telnyx-key
//!
//! - Legitimate load: web form (`POST /tips`), signed Twilio and signed
//!   Telnyx webhooks and SMTP (STARTTLS, up to five messages a session), each
//!   at `--rate` tips a second, request k of the four due at start + k /
//!   (4 × rate) and sent then whatever is still in flight (open loop), so a
//!   slow answer never delays the next request. Latency is counted from the
//!   time a request was due. Tipsters come from 127.1.C.x (C per channel),
//!   each web address used at most a few times and each text from its own
//!   number, as real tipsters are spread out; the providers' webhooks come
//!   from one address each, as a provider's do.
//! - Attackers, each from its own addresses, fresh ones every round
//!   (127.{10+round}.{attack}.x: an attacker with many addresses, as one IPv6
//!   /48 or a botnet gives): forged Twilio and Telnyx webhooks (bad
//!   signatures), replayed Twilio and Telnyx webhooks (valid signatures of a
//!   text already stored), oversized and malformed tip forms, invite code
//!   guesses (`POST /api/v1/devices`), invalid session tokens
//!   (`GET /api/v1/session`), oversized SMTP messages and slow-drip SMTP
//!   sessions. Every HTTP attacker sends [`PER_ADDRESS`] requests from an
//!   address, then moves to the next: more than any per-address budget. All
//!   attackers share one thread, sending as fast as it can; the legitimate
//!   clients have another.
//! - Acknowledged: web 2xx, SMTP 250, Twilio 200 carrying the configured
//!   acknowledgement (a "slow down" or "not confirmed" message is not one),
//!   Telnyx 200. Telnyx answers `{}` whatever happened (stored, rate-limited
//!   or dropped), so its figure counts answers, and only the stream count
//!   below tells a Telnyx tip stored from one refused.
//! - Every acknowledged legitimate tip must be in the stream: the stream's
//!   length is read before and after each phase, and must have grown by
//!   exactly the tips acknowledged (attackers must add none). A count: a
//!   lost tip and an attacker's stored one would cancel out.
//! - The target is met only if every legitimate tip of every baseline was
//!   acknowledged: a ratio of two refused loads would read 1.00.
//!
//! Untrusted: the gateway's answers, read only for their status (and, for
//! Twilio, whether they hold the acknowledgement).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Parser;
use common::{TEXT, TIMEOUT, cpu_secs, https_client, median};
use ed25519_dalek::SigningKey;
use lettre::Address;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use rand::RngCore as _;
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, ORIGIN};
use smtp::Template;
use tipwire::bus::Store;
use tipwire::channels::sms::xml_escape;
use tipwire::config::Settings;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinSet;

mod common;
#[path = "common/smtp.rs"]
mod smtp;
#[path = "../tests/support/telnyx.rs"]
mod telnyx;
#[path = "../tests/support/twilio.rs"]
mod twilio;

/// Requests an HTTP attacker sends from one address before moving on.
const PER_ADDRESS: usize = 20;
/// Messages a legitimate SMTP session carries before it says QUIT.
const MESSAGES_PER_SESSION: u32 = 5;
/// Addresses used in each block (127.a.b.1 ..= 127.a.b.250).
const BLOCK: usize = 250;
/// Slow-drip SMTP connections the attacker tries to hold at once.
const DRIPS: usize = 32;
/// A slow-drip client sends one byte this often.
const DRIP_EVERY: Duration = Duration::from_millis(500);
/// Distinct email senders the legitimate messages rotate through.
const SENDERS: usize = 5;

#[derive(Parser)]
#[command(about = "Legitimate tips under attack against a running tipwire gateway")]
struct Args {
    /// The gateway's configuration file: ports, Redis and key prefix, Twilio
    /// account and token file, SMS numbers (the first for Twilio texts, the
    /// second for Telnyx), email address, mediator origin.
    #[arg(long)]
    config: Option<PathBuf>,
    /// PEM file of the CA that signed the gateway's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// File holding the hex seed of the Ed25519 key that signs the Telnyx
    /// webhooks (the script makes it).
    #[arg(long)]
    telnyx_seed: PathBuf,
    /// Print the Telnyx public key (base64) for the gateway's configuration
    /// and exit.
    #[arg(long)]
    print_telnyx_key: bool,
    /// Legitimate tips a second on each of the four channels.
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// Seconds of each phase (baseline, attack).
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Rounds of (baseline, attack).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent tasks per HTTP or oversized-SMTP attack.
    #[arg(long, default_value_t = 2)]
    attackers: usize,
    /// The gateway's process id, for its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn telnyx_key(seed_file: &Path) -> Result<SigningKey> {
    let hex = std::fs::read_to_string(seed_file)
        .with_context(|| format!("reading {}", seed_file.display()))?;
    let seed: [u8; 32] = hex::decode(hex.trim())
        .context("the Telnyx seed is not hex")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the Telnyx seed is not 32 bytes"))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the gateway is and how to sign for it, from its configuration.
struct Target {
    base: String,
    host: String,
    smtp: SocketAddr,
    tip_address: Address,
    twilio_url: String,
    account_sid: String,
    auth_token: String,
    telnyx: SigningKey,
    /// Program numbers texted through Twilio and through Telnyx.
    twilio_to: String,
    telnyx_to: String,
    origin: String,
    /// The TwiML `<Message>` elements that answer a stored Twilio text (one
    /// per language): Twilio's answer is 200 whatever happened, and a
    /// rate-limited text ("slow down") or one whose storing is in doubt
    /// ("not confirmed") is answered with a `<Message>` too.
    twilio_acks: Vec<String>,
    max_body_bytes: usize,
    max_message_bytes: usize,
    /// What docs/architecture.md and docs/email.md say the gateway can be
    /// made to hold, by construction, with this configuration, in MiB.
    ceiling_mib: f64,
    ca: Vec<u8>,
    store: Store,
    /// A genuine Twilio text (form body and signature) and Telnyx event
    /// (body, timestamp, signature), each sent once before the rounds.
    twilio_original: (String, String),
    telnyx_original: (String, String, String),
    run: u64,
}

impl Target {
    fn load(args: &Args, run: u64) -> Result<Self> {
        let config = args.config.as_deref().context("--config is required")?;
        let ca = args.ca.as_deref().context("--ca is required")?;
        let settings =
            Settings::load(Some(config)).context("loading the gateway's configuration")?;
        let token_file = settings
            .sms
            .twilio
            .auth_token_files
            .first()
            .context("sms.twilio.auth_token_files is empty")?;
        let auth_token = std::fs::read_to_string(token_file)
            .with_context(|| format!("reading {}", token_file.display()))?
            .trim()
            .to_owned();
        let (twilio_to, telnyx_to) = match settings.sms.numbers.as_slice() {
            [a, b, ..] => (a.as_str().to_owned(), b.as_str().to_owned()),
            _ => bail!("sms.numbers needs two numbers: Twilio's and Telnyx's"),
        };
        let tip_address: Address = settings
            .email
            .addresses
            .first()
            .context("email.addresses is empty")?
            .as_str()
            .parse()?;
        let smtp = SocketAddr::new(settings.email.host, settings.email.port);
        let acks = &settings.sms.acknowledgement;
        ensure!(
            !acks.en.is_empty() && !acks.es.is_empty(),
            "sms.acknowledgement must be set: it tells a stored Twilio text from a refused one"
        );
        let twilio_acks = [&acks.en, &acks.es]
            .map(|ack| format!("<Message>{}</Message>", xml_escape(ack)))
            .to_vec();
        let mut target = Self {
            base: format!("https://{}:{}", settings.server.host, settings.server.port),
            host: settings.server.host.to_string(),
            smtp,
            tip_address,
            twilio_url: format!(
                "{}/webhooks/sms/twilio",
                settings.sms.public_base_url.trim_end_matches('/')
            ),
            account_sid: settings.sms.twilio.account_sid.clone(),
            auth_token,
            telnyx: telnyx_key(&args.telnyx_seed)?,
            twilio_to,
            telnyx_to,
            origin: settings.mediator.public_base_url.as_str().to_owned(),
            twilio_acks,
            max_body_bytes: settings.server.max_body_bytes,
            max_message_bytes: settings.email.max_message_bytes,
            ceiling_mib: ceiling_mib(&settings),
            ca: std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?,
            store: Store::new(&settings.redis)?,
            twilio_original: Default::default(),
            telnyx_original: Default::default(),
            run,
        };
        target.twilio_original = target.twilio_text(u64::MAX, &target.auth_token)?;
        target.telnyx_original = target.telnyx_event(u64::MAX, None);
        Ok(target)
    }

    /// Text `k`'s Twilio form body and signature under `token`: its own
    /// sender and MessageSid.
    fn twilio_text(&self, k: u64, token: &str) -> Result<(String, String)> {
        let from = format!("+15552{:06}", k % 1_000_000);
        let sid = format!("SM{:016x}{k:016x}", self.run);
        let params = [
            ("AccountSid", self.account_sid.as_str()),
            ("Body", TEXT),
            ("From", from.as_str()),
            ("MessageSid", sid.as_str()),
            ("NumMedia", "0"),
            ("To", self.twilio_to.as_str()),
        ];
        let signature = twilio::signature(token, &self.twilio_url, &params);
        let body = reqwest::Url::parse_with_params("https://x/", &params)?
            .query()
            .unwrap_or_default()
            .to_owned();
        Ok((body, signature))
    }

    /// Text `k`'s Telnyx event body, timestamp and signature: signed by the
    /// configured key, or by `forged` random bytes.
    fn telnyx_event(
        &self,
        k: u64,
        forged: Option<&mut rand::rngs::ThreadRng>,
    ) -> (String, String, String) {
        let body = serde_json::json!({
            "data": {
                "event_type": "message.received",
                "payload": {
                    "id": format!("{:016x}-{k:016x}", self.run),
                    "from": { "phone_number": format!("+15553{:06}", k % 1_000_000) },
                    "to": [{ "phone_number": self.telnyx_to }],
                    "text": TEXT,
                }
            }
        })
        .to_string();
        let timestamp = now_secs().to_string();
        let signature = match forged {
            Some(rng) => {
                let mut bytes = [0u8; 64];
                rng.fill_bytes(&mut bytes);
                STANDARD.encode(bytes)
            }
            None => telnyx::signature(&self.telnyx, &timestamp, body.as_bytes()),
        };
        (body, timestamp, signature)
    }

    fn twilio_request(
        &self,
        client: &reqwest::Client,
        (body, signature): (String, String),
    ) -> reqwest::RequestBuilder {
        client
            .post(format!("{}/webhooks/sms/twilio", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature)
            .body(body)
    }

    fn telnyx_request(
        &self,
        client: &reqwest::Client,
        (body, timestamp, signature): (String, String, String),
    ) -> reqwest::RequestBuilder {
        client
            .post(format!("{}/webhooks/sms/telnyx", self.base))
            .header(CONTENT_TYPE, "application/json")
            .header("telnyx-timestamp", timestamp)
            .header("telnyx-signature-ed25519", signature)
            .body(body)
    }

    /// Entries in the alert stream now.
    async fn stored(&self) -> Result<u64> {
        let mut conn = self.store.conn().await?;
        Ok(redis::cmd("XLEN")
            .arg(self.store.keys().alerts())
            .query_async(&mut conn)
            .await?)
    }
}

/// The memory ceiling the docs state: the idle process (about 30 MiB),
/// about 400 KiB per HTTPS connection at worst (docs/architecture.md), and
/// for SMTP about 10 MB for its connections, three times the message
/// buffer budget and 100 MB for two messages being parsed (docs/email.md).
fn ceiling_mib(settings: &Settings) -> f64 {
    const MIB: f64 = 1024.0 * 1024.0;
    let https = settings.server.connections.max as f64 * 400.0 / 1024.0;
    let smtp = if settings.email.enabled {
        (10e6 + 3.0 * settings.email.max_buffered_bytes as f64 + 100e6) / MIB
    } else {
        0.0
    };
    30.0 + https + smtp
}

/// A client that trusts only the bench CA and connects from `local`.
fn client_from(target: &Target, local: IpAddr) -> Result<reqwest::Client> {
    Ok(https_client(&target.ca)?
        .local_address(local)
        .timeout(TIMEOUT)
        .build()?)
}

// ---------------------------------------------------------------- legitimate

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Channel {
    Web,
    Twilio,
    Telnyx,
    Smtp,
    /// Not a tip: `GET /healthz` at the same rate, a control that shows how
    /// much of a latency change is the machine's (CPU, scheduling) rather
    /// than the tip path's.
    Healthz,
}

const CHANNELS: [Channel; 5] = [
    Channel::Web,
    Channel::Twilio,
    Channel::Telnyx,
    Channel::Smtp,
    Channel::Healthz,
];

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
            Self::Smtp => "smtp",
            Self::Healthz => "healthz",
        }
    }

    /// Whether an acknowledged request is a stored tip.
    fn stores(self) -> bool {
        self != Self::Healthz
    }

    /// The legitimate clients' address block, 127.1.C.x.
    fn address(self, n: usize) -> IpAddr {
        block(1, self as u8, n)
    }
}

/// The `n`-th address (mod [`BLOCK`]) of the block 127.`a`.`b`.0/24.
fn block(a: u8, b: u8, n: usize) -> IpAddr {
    let host = u8::try_from(1 + n % BLOCK).unwrap_or(1);
    IpAddr::V4(Ipv4Addr::new(127, a, b, host))
}

/// An open legitimate SMTP session and the messages it has carried.
type Session = (AsyncSmtpConnection, u32);

struct Legit {
    target: Arc<Target>,
    /// One client per tipster address.
    web: Vec<reqwest::Client>,
    twilio: reqwest::Client,
    telnyx: reqwest::Client,
    healthz: reqwest::Client,
    sessions: Mutex<Vec<Session>>,
    smtp_addresses: AtomicUsize,
    templates: Vec<Template>,
    next: AtomicU64,
}

impl Legit {
    fn new(target: Arc<Target>) -> Result<Self> {
        let web = (0..BLOCK)
            .map(|n| client_from(&target, Channel::Web.address(n)))
            .collect::<Result<_>>()?;
        let templates = (0..SENDERS)
            .map(|i| {
                let from: Address = format!("tipster{i}@senders.bench").parse()?;
                Template::new(&from, &target.tip_address)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            web,
            twilio: client_from(&target, Channel::Twilio.address(0))?,
            telnyx: client_from(&target, Channel::Telnyx.address(0))?,
            healthz: client_from(&target, Channel::Healthz.address(0))?,
            sessions: Mutex::new(Vec::new()),
            smtp_addresses: AtomicUsize::new(0),
            templates,
            next: AtomicU64::new(0),
            target,
        })
    }

    /// Sends one tip; `Err` holds why it was not acknowledged (a status, a
    /// reply code or an error kind).
    async fn send(&self, channel: Channel) -> Result<(), String> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let t = &*self.target;
        let response = match channel {
            Channel::Smtp => return self.mail(k).await,
            Channel::Web => {
                let client = self
                    .web
                    .get(k as usize % self.web.len())
                    .ok_or("no web client")?;
                client
                    .post(format!("{}/tips", t.base))
                    .header(ACCEPT, "application/json")
                    .form(&[("text", TEXT), ("zone", "north"), ("urgency", "now")])
            }
            Channel::Twilio => {
                let text = t.twilio_text(k, &t.auth_token).map_err(|e| e.to_string())?;
                t.twilio_request(&self.twilio, text)
            }
            Channel::Telnyx => t.telnyx_request(&self.telnyx, t.telnyx_event(k, None)),
            Channel::Healthz => self.healthz.get(format!("{}/healthz", t.base)),
        }
        .send()
        .await
        .map_err(|e| error_kind(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| error_kind(&e))?;
        if !status.is_success() {
            return Err(status.as_u16().to_string());
        }
        // Twilio's answer is 200 whatever happened; the acknowledgement in
        // it, not any message, is what says the tip was stored.
        if channel == Channel::Twilio {
            let body = String::from_utf8_lossy(&body);
            if !t.twilio_acks.iter().any(|ack| body.contains(ack.as_str())) {
                return Err("200-without-ack".into());
            }
        }
        Ok(())
    }

    /// One message over a pooled session, or a new one from the next address.
    async fn mail(&self, k: u64) -> Result<(), String> {
        let pooled = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let (mut conn, sent) = match pooled {
            Some(session) => session,
            None => {
                let n = self.smtp_addresses.fetch_add(1, Ordering::Relaxed);
                let t = &*self.target;
                let conn = smtp::open(t.smtp, Some(Channel::Smtp.address(n)), &t.host, &t.ca)
                    .await
                    .map_err(|e| format!("connect: {e:#}"))?;
                (conn, 0)
            }
        };
        let template = self
            .templates
            .get(k as usize % self.templates.len())
            .ok_or("no template")?;
        let mut raw = Vec::with_capacity(1024);
        template.write(format_args!("{}.{k}", self.target.run), &mut raw);
        let reply = tokio::time::timeout(TIMEOUT, conn.send(&template.envelope, &raw))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| match e.status() {
                Some(code) => code.to_string(),
                None => "smtp-error".to_owned(),
            })?;
        if !reply.is_positive() {
            return Err(reply.code().to_string());
        }
        if sent + 1 < MESSAGES_PER_SESSION {
            self.sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((conn, sent + 1));
        } else {
            tokio::spawn(async move {
                let _ = conn.quit().await;
            });
        }
        Ok(())
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect-error".into()
    } else {
        "closed".into()
    }
}

/// One channel's figures in one phase.
#[derive(Default)]
struct ChannelRun {
    acked: u64,
    refused: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
    /// From the phase's start to this channel's last answer.
    secs: f64,
}

impl ChannelRun {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.secs.max(f64::EPSILON)
    }

    /// The 99th percentile of every request's latency, acknowledged or not.
    fn p99(&mut self) -> f64 {
        self.latencies_ms.sort_by(f64::total_cmp);
        let n = self.latencies_ms.len();
        let at = (n * 99).div_ceil(100).saturating_sub(1);
        self.latencies_ms.get(at).copied().unwrap_or(f64::NAN)
    }
}

/// Runs the legitimate load for `secs` seconds at `rate` per channel.
async fn legit_phase(legit: &Arc<Legit>, secs: u64, rate: f64) -> Vec<ChannelRun> {
    let total = (secs as f64 * rate).round() as u64 * CHANNELS.len() as u64;
    let every = Duration::from_secs_f64(1.0 / (rate * CHANNELS.len() as f64));
    let start = tokio::time::Instant::now();
    let mut set = JoinSet::new();
    for k in 0..total {
        let channel = CHANNELS
            .get(k as usize % CHANNELS.len())
            .copied()
            .unwrap_or(Channel::Web);
        let due = start + every * u32::try_from(k).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let legit = legit.clone();
        set.spawn(async move {
            let outcome = legit.send(channel).await;
            (channel, outcome, due.elapsed(), start.elapsed())
        });
    }
    let mut runs: Vec<ChannelRun> = CHANNELS.iter().map(|_| ChannelRun::default()).collect();
    while let Some(done) = set.join_next().await {
        let Ok((channel, outcome, latency, since_start)) = done else {
            continue;
        };
        let Some(run) = runs.get_mut(channel as usize) else {
            continue;
        };
        run.latencies_ms.push(latency.as_secs_f64() * 1000.0);
        run.secs = run.secs.max(since_start.as_secs_f64());
        match outcome {
            Ok(()) => run.acked += 1,
            Err(why) => *run.refused.entry(why).or_default() += 1,
        }
    }
    runs
}

// ---------------------------------------------------------------- attackers

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Attack {
    ForgedTwilio,
    ReplayedTwilio,
    ForgedTelnyx,
    ReplayedTelnyx,
    OversizedForm,
    MalformedForm,
    InviteGuess,
    BadSession,
    SmtpOversized,
    SmtpSlowDrip,
}

const ATTACKS: [Attack; 10] = [
    Attack::ForgedTwilio,
    Attack::ReplayedTwilio,
    Attack::ForgedTelnyx,
    Attack::ReplayedTelnyx,
    Attack::OversizedForm,
    Attack::MalformedForm,
    Attack::InviteGuess,
    Attack::BadSession,
    Attack::SmtpOversized,
    Attack::SmtpSlowDrip,
];

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Self::ForgedTwilio => "forged twilio",
            Self::ReplayedTwilio => "replayed twilio",
            Self::ForgedTelnyx => "forged telnyx",
            Self::ReplayedTelnyx => "replayed telnyx",
            Self::OversizedForm => "oversized form",
            Self::MalformedForm => "malformed form",
            Self::InviteGuess => "invite guess",
            Self::BadSession => "bad session token",
            Self::SmtpOversized => "smtp oversized",
            Self::SmtpSlowDrip => "smtp slow drip",
        }
    }

    /// Round `round`'s `n`-th address for this attack: 127.{10+round}.{attack}.x.
    fn address(self, round: usize, n: usize) -> IpAddr {
        block(u8::try_from(10 + round).unwrap_or(u8::MAX), self as u8, n)
    }
}

/// Requests an attack made, by outcome.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn count(&self, outcome: impl Into<String>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(outcome.into())
            .or_default() += 1;
    }

    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// What the HTTP attackers send, made once.
struct Payloads {
    oversized: bytes::Bytes,
    message: bytes::Bytes,
    enrol_recipient: String,
}

impl Payloads {
    fn new(target: &Target) -> Self {
        let mut form = b"zone=north&urgency=now&text=".to_vec();
        form.resize(target.max_body_bytes * 4, b'a');
        let mut message = b"Subject: x\r\n\r\n".to_vec();
        let line = [b'a'; 998];
        while message.len() <= target.max_message_bytes + 64 * 1024 {
            message.extend_from_slice(&line);
            message.extend_from_slice(b"\r\n");
        }
        message.extend_from_slice(b".\r\n");
        Self {
            oversized: form.into(),
            message: message.into(),
            enrol_recipient: tipwire::crypto::IdentityKey::generate()
                .to_public()
                .to_string(),
        }
    }
}

fn random_text(chars: usize, alphabet: &[u8]) -> String {
    let mut bytes = vec![0u8; chars];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect()
}

/// Attack request number `i`.
fn attack_request(
    attack: Attack,
    target: &Target,
    payloads: &Payloads,
    client: &reqwest::Client,
    i: u64,
) -> Result<reqwest::RequestBuilder> {
    let t = target;
    Ok(match attack {
        Attack::ForgedTwilio => t.twilio_request(client, t.twilio_text(i, "not-the-auth-token")?),
        Attack::ReplayedTwilio => t.twilio_request(client, t.twilio_original.clone()),
        Attack::ForgedTelnyx => {
            t.telnyx_request(client, t.telnyx_event(i, Some(&mut rand::thread_rng())))
        }
        Attack::ReplayedTelnyx => t.telnyx_request(client, t.telnyx_original.clone()),
        Attack::OversizedForm => client
            .post(format!("{}/tips", t.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(payloads.oversized.clone()),
        Attack::MalformedForm => {
            let (content_type, body) = match i % 3 {
                0 => (
                    "application/x-www-form-urlencoded",
                    "text=%zz%&zone=north&urgency=now",
                ),
                1 => (
                    "application/x-www-form-urlencoded",
                    "zone=north&urgency=now",
                ),
                _ => ("text/plain", "text=hello&zone=north&urgency=now"),
            };
            client
                .post(format!("{}/tips", t.base))
                .header(CONTENT_TYPE, content_type)
                .body(body)
        }
        Attack::InviteGuess => client
            .post(format!("{}/api/v1/devices", t.base))
            .header(ORIGIN, &t.origin)
            .json(&serde_json::json!({
                "invite": random_text(26, b"abcdefghijklmnopqrstuvwxyz234567"),
                "age_recipient": payloads.enrol_recipient,
                "signing_key": URL_SAFE_NO_PAD.encode([4u8; 65]),
                "device_name": "phone",
            })),
        Attack::BadSession => client.get(format!("{}/api/v1/session", t.base)).header(
            COOKIE,
            format!(
                "__Host-tipwire_session={}",
                random_text(
                    43,
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                )
            ),
        ),
        Attack::SmtpOversized | Attack::SmtpSlowDrip => bail!("not an HTTP attack"),
    })
}

/// One attacking task: which attack, its share of the round's addresses,
/// and where it counts what it did.
struct Attacker {
    attack: Attack,
    round: usize,
    /// This task's next address index; tasks of one attack take turns.
    next: usize,
    tasks: usize,
    target: Arc<Target>,
    payloads: Arc<Payloads>,
    tally: Arc<Tally>,
    deadline: Instant,
}

impl Attacker {
    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    fn next_address(&mut self) -> IpAddr {
        let address = self.attack.address(self.round, self.next);
        self.next += self.tasks;
        address
    }

    async fn run(self) -> Result<()> {
        match self.attack {
            Attack::SmtpOversized => self.smtp_oversized().await,
            Attack::SmtpSlowDrip => self.smtp_drip().await,
            _ => self.http().await,
        }
    }

    /// [`PER_ADDRESS`] requests from each of its addresses in turn, as fast
    /// as answers come.
    async fn http(mut self) -> Result<()> {
        let mut i = (self.next as u64) << 32;
        while self.running() {
            let address = self.next_address();
            let client = client_from(&self.target, address)?;
            for _ in 0..PER_ADDRESS {
                if !self.running() {
                    break;
                }
                i += 1;
                let request =
                    attack_request(self.attack, &self.target, &self.payloads, &client, i)?;
                match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16().to_string();
                        let _ = response.bytes().await;
                        self.tally.count(status);
                    }
                    Err(e) => self.tally.count(error_kind(&e)),
                }
            }
        }
        Ok(())
    }

    /// Plain TCP to the SMTP port from the next address, and its greeting;
    /// `None` (counted, after a pause) when refused.
    async fn smtp_session(&mut self) -> Option<(tokio::net::TcpStream, Vec<u8>)> {
        let address = self.next_address();
        let connected = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(address, 0))?;
            anyhow::Ok(tokio::time::timeout(TIMEOUT, socket.connect(self.target.smtp)).await??)
        };
        let mut buf = Vec::new();
        let refused = match connected.await {
            Ok(mut conn) => match smtp_reply(&mut conn, &mut buf).await.as_deref() {
                Some("220") => return Some((conn, buf)),
                other => format!("greeting {}", other.unwrap_or_default()),
            },
            Err(_) => "connect-error".to_owned(),
        };
        self.tally.count(refused);
        tokio::time::sleep(Duration::from_secs(1)).await;
        None
    }

    /// Oversized messages, one after another on each connection, until the
    /// gateway stops taking MAIL FROM from the address; then the next
    /// address. Each message counts as one request, by the reply to its end
    /// of data (or to the command that was refused).
    async fn smtp_oversized(mut self) -> Result<()> {
        let mail = format!(
            "MAIL FROM:<junk@attack.bench>\r\nRCPT TO:<{}>\r\nDATA\r\n",
            self.target.tip_address
        );
        while self.running() {
            let Some((mut conn, mut buf)) = self.smtp_session().await else {
                continue;
            };
            conn.write_all(b"EHLO attack.bench\r\n").await?;
            smtp_reply(&mut conn, &mut buf).await;
            while self.running() {
                // Pipelined: MAIL, RCPT, DATA; each answered in turn.
                conn.write_all(mail.as_bytes()).await?;
                let mut codes = Vec::with_capacity(3);
                for _ in 0..3 {
                    codes.push(smtp_reply(&mut conn, &mut buf).await);
                }
                let outcome = match codes.as_slice() {
                    [Some(_), Some(_), Some(data)] if data == "354" => {
                        if conn.write_all(&self.payloads.message).await.is_err() {
                            None
                        } else {
                            smtp_reply(&mut conn, &mut buf).await
                        }
                    }
                    [Some(mail), Some(_), Some(_)] => {
                        self.tally.count(format!("MAIL {mail}"));
                        let _ = conn.write_all(b"QUIT\r\n").await;
                        break;
                    }
                    _ => None,
                };
                let Some(code) = outcome else {
                    self.tally.count("closed");
                    break;
                };
                self.tally.count(code);
            }
        }
        Ok(())
    }

    /// Holds one SMTP connection, a byte every [`DRIP_EVERY`], until the
    /// deadline or the gateway closes it; then opens another from the next
    /// address. Counts connections, by how they ended.
    async fn smtp_drip(mut self) -> Result<()> {
        let command = b"EHLO a-very-slow-client.attack.bench\r\n";
        while self.running() {
            let Some((mut conn, _)) = self.smtp_session().await else {
                continue;
            };
            let mut held = "held to the end";
            for byte in command.iter().cycle() {
                if !self.running() {
                    break;
                }
                if conn.write_all(&[*byte]).await.is_err() {
                    held = "cut off";
                    break;
                }
                tokio::time::sleep(DRIP_EVERY).await;
            }
            self.tally.count(held);
        }
        Ok(())
    }
}

/// Reads one SMTP reply (the last line of a multi-line one) and returns its
/// code; `None` when the connection ended.
async fn smtp_reply(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..end + 2).collect();
            if line.get(3) != Some(&b'-') {
                return Some(String::from_utf8_lossy(line.get(..3)?).into_owned());
            }
        }
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(TIMEOUT, conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(chunk.get(..n)?),
            _ => return None,
        }
    }
}

/// Runs every attack until `deadline` on this thread; returns each attack's
/// outcomes.
async fn attack_phase(
    round: usize,
    tasks: usize,
    target: Arc<Target>,
    payloads: Arc<Payloads>,
    deadline: Instant,
) -> Vec<BTreeMap<String, u64>> {
    let tallies: Vec<Arc<Tally>> = ATTACKS.iter().map(|_| Arc::default()).collect();
    let mut set = JoinSet::new();
    for (&attack, tally) in ATTACKS.iter().zip(&tallies) {
        let tasks = if attack == Attack::SmtpSlowDrip {
            DRIPS
        } else {
            tasks
        };
        for task in 0..tasks {
            let attacker = Attacker {
                attack,
                round,
                next: task,
                tasks,
                target: target.clone(),
                payloads: payloads.clone(),
                tally: tally.clone(),
                deadline,
            };
            set.spawn(attacker.run());
        }
    }
    while let Some(done) = set.join_next().await {
        if let Ok(Err(e)) = done {
            eprintln!("an attacker stopped: {e:#}");
        }
    }
    tallies.iter().map(|t| t.take()).collect()
}

// ---------------------------------------------------------------- report

/// Memory of the gateway from /proc, in MiB: (VmRSS, VmHWM).
fn memory(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn outcomes(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One phase's figures, printed as a table row.
struct Phase {
    runs: Vec<ChannelRun>,
    p99: Vec<f64>,
    gateway_cpu: Option<f64>,
    /// This process's CPU seconds: the legitimate clients, and in an
    /// attack phase the attackers too.
    client_cpu: f64,
    /// The machine's one-minute load average at the phase's end: runnable
    /// threads of everyone, this run's and its neighbours'.
    load: String,
    secs: f64,
}

/// Acknowledged requests that are stored tips.
fn stored_acks(runs: &[ChannelRun]) -> u64 {
    CHANNELS
        .iter()
        .zip(runs)
        .filter(|(c, _)| c.stores())
        .map(|(_, r)| r.acked)
        .sum()
}

fn print_phase(round: usize, what: &str, phase: &Phase) {
    let cells: Vec<String> = phase
        .runs
        .iter()
        .zip(&phase.p99)
        .map(|(r, p99)| format!("{:>6.2} {:>8.1}", r.rate(), p99))
        .collect();
    let cpu = phase
        .gateway_cpu
        .map_or_else(String::new, |c| format!("{:.2}", c / phase.secs));
    println!(
        "{round:>5} {what:<8} {}  {cpu:>7}  {:>7.2}  {:>5}",
        cells.join("  "),
        phase.client_cpu / phase.secs,
        phase.load
    );
    for (channel, run) in CHANNELS.iter().zip(&phase.runs) {
        if !run.refused.is_empty() {
            println!(
                "        {} not acknowledged: {}",
                channel.name(),
                outcomes(&run.refused)
            );
        }
    }
}

async fn phase(legit: &Arc<Legit>, args: &Args, expected: &mut u64) -> Result<Phase> {
    let cpu0 = args
        .server_pid
        .map(|p| cpu_secs(&p.to_string()))
        .transpose()?;
    let own0 = cpu_secs("self")?;
    let started = Instant::now();
    let mut runs = legit_phase(legit, args.seconds, args.rate).await;
    let secs = started.elapsed().as_secs_f64();
    let gateway_cpu = match (cpu0, args.server_pid) {
        (Some(before), Some(pid)) => Some(cpu_secs(&pid.to_string())? - before),
        _ => None,
    };
    *expected += stored_acks(&runs);
    let p99 = runs.iter_mut().map(ChannelRun::p99).collect();
    Ok(Phase {
        runs,
        p99,
        gateway_cpu,
        client_cpu: cpu_secs("self")? - own0,
        load: std::fs::read_to_string("/proc/loadavg")?
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_owned(),
        secs,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.print_telnyx_key {
        let key = telnyx_key(&args.telnyx_seed)?;
        println!("{}", STANDARD.encode(key.verifying_key().as_bytes()));
        return Ok(());
    }
    ensure!(args.rate > 0.0, "--rate must be positive");
    ensure!(args.seconds > 0, "--seconds must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(args.attackers > 0, "--attackers must be at least 1");
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let target = Arc::new(Target::load(&args, run)?);
    let payloads = Arc::new(Payloads::new(&target));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let legit = Arc::new(Legit::new(target.clone())?);
        let mut expected = target.stored().await?;
        // The texts the replay attacks resend, each stored once now.
        let t = &*target;
        for (what, request) in [
            ("twilio", t.twilio_request(&legit.twilio, t.twilio_original.clone())),
            ("telnyx", t.telnyx_request(&legit.telnyx, t.telnyx_original.clone())),
        ] {
            let response = request.send().await?;
            ensure!(
                response.status().is_success(),
                "the {what} original answered {}",
                response.status()
            );
            expected += 1;
        }
        println!(
            "abuse under load: legitimate web, Twilio, Telnyx and SMTP tips at {} a second each, {} s a phase, {} rounds of (baseline, attack); {} tasks per attack, {DRIPS} slow-drip connections",
            args.rate, args.seconds, args.rounds, args.attackers
        );
        let (mut baselines, mut attacks, mut attack_outcomes) = (Vec::new(), Vec::new(), Vec::new());
        let mut peak_rss = 0.0_f64;
        println!();
        println!(
            "round phase     {}  gateway  clients (cores)  load",
            CHANNELS
                .iter()
                .map(|c| format!("{:>6} {:>8}", format!("{}/s", c.name()), "p99 ms"))
                .collect::<Vec<_>>()
                .join("  ")
        );
        for round in 1..=args.rounds {
            let base = phase(&legit, &args, &mut expected).await?;
            print_phase(round, "baseline", &base);
            baselines.push(base);
            tokio::time::sleep(Duration::from_secs(1)).await;

            let deadline = Instant::now() + Duration::from_secs(args.seconds);
            let (tgt, pl, tasks) = (target.clone(), payloads.clone(), args.attackers);
            let attackers = std::thread::Builder::new()
                .name("attackers".into())
                .spawn(move || -> Result<_> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let started = Instant::now();
                    let outcomes = runtime.block_on(attack_phase(round, tasks, tgt, pl, deadline));
                    Ok((outcomes, started.elapsed().as_secs_f64()))
                })?;
            let under = phase(&legit, &args, &mut expected).await?;
            let (outcomes, attack_secs) = attackers
                .join()
                .map_err(|_| anyhow::anyhow!("the attackers' thread panicked"))??;
            print_phase(round, "attack", &under);
            attacks.push(under);
            attack_outcomes.push((outcomes, attack_secs));
            if let Some(pid) = args.server_pid {
                let (rss, hwm) = memory(pid)?;
                peak_rss = peak_rss.max(rss).max(hwm);
            }
            let stored = target.stored().await?;
            ensure!(
                stored == expected,
                "after round {round} the stream holds {stored} entries, {expected} expected: acknowledged tips missing or attackers' tips stored"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        println!();
        println!("attackers' requests a second, by round (outcome × count):");
        for (i, attack) in ATTACKS.iter().enumerate() {
            for (round, (per_attack, secs)) in attack_outcomes.iter().enumerate() {
                let Some(o) = per_attack.get(i) else { continue };
                let total: u64 = o.values().sum();
                let unit = if *attack == Attack::SmtpSlowDrip {
                    "connections"
                } else {
                    "requests"
                };
                println!(
                    "  {:<17} round {}: {:>8.1}/s  {total} {unit}: {}",
                    attack.name(),
                    round + 1,
                    total as f64 / secs,
                    outcomes(o)
                );
            }
        }

        println!();
        println!("ratios under attack / baseline, per round (tips/s: attack/baseline; p99: baseline/attack; target >= 0.80):");
        let mut verdict = true;
        for (c, channel) in CHANNELS.iter().enumerate() {
            let mut rates = Vec::new();
            let mut p99s = Vec::new();
            for (b, a) in baselines.iter().zip(&attacks) {
                let (Some(br), Some(ar)) = (b.runs.get(c), a.runs.get(c)) else {
                    continue;
                };
                rates.push(ar.rate() / br.rate());
                p99s.push(b.p99.get(c).copied().unwrap_or(f64::NAN) / a.p99.get(c).copied().unwrap_or(f64::NAN));
            }
            let list = |v: &[f64]| v.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ");
            let (rm, pm) = (median(&mut rates.clone()), median(&mut p99s.clone()));
            // A ratio of two refused loads is no measure: a gateway that
            // refused legitimate tips with and without attack alike would
            // show 1.00. Every legitimate tip of a baseline must be
            // acknowledged for the ratios to count.
            let refused_alone: u64 = baselines
                .iter()
                .filter_map(|b| b.runs.get(c))
                .map(|r| r.refused.values().sum::<u64>())
                .sum();
            let what = if channel.stores() {
                verdict &= rm >= 0.8 && pm >= 0.8 && refused_alone == 0;
                "tips/s"
            } else {
                "req/s "
            };
            println!(
                "  {:<7} {what} {}  median {rm:.2}   p99 {}  median {pm:.2}{}",
                channel.name(),
                list(&rates),
                list(&p99s),
                if channel.stores() { "" } else { "   (control, not a target)" }
            );
            if channel.stores() && refused_alone > 0 {
                println!(
                    "          {refused_alone} legitimate {} tips refused without attack: the baseline is not the rate offered",
                    channel.name()
                );
            }
        }
        println!("target (every median >= 0.80, every baseline tip acknowledged): {}", if verdict { "met" } else { "MISSED" });
        if let Some(pid) = args.server_pid {
            let (rss, hwm) = memory(pid)?;
            let peak = hwm.max(peak_rss);
            println!(
                "gateway memory: VmRSS {rss:.1} MiB now, VmHWM (peak) {peak:.1} MiB; ceiling by construction {:.0} MiB: {}",
                target.ceiling_mib,
                if peak <= target.ceiling_mib { "within" } else { "OVER" }
            );
        }
        let acked: u64 = baselines
            .iter()
            .chain(&attacks)
            .map(|p| stored_acks(&p.runs))
            .sum();
        println!(
            "legitimate tips acknowledged: {acked} (+2 replay originals); stream entries: {} of {expected} expected",
            target.stored().await?
        );
        Ok(())
    })
}
