//! Live alert fan-out under load (issue 5, acceptance 5): N mediator devices
//! each hold one `GET /api/v1/alerts/stream` open over TLS while signed
//! Twilio webhooks arrive at a paced rate; the figure is the time from each
//! webhook's 200 to the `alert` event on each open stream, over every
//! (tip, stream) pair. A baseline with one stream open and the same webhook
//! load alternates with it, so the ratio of the two p99s holds up on a
//! shared, noisy machine. scripts/bench-alerts.sh starts the gateway and runs
//! this.
//!
//! cargo bench --bench alert_fanout -- --config FILE --ca FILE
//!     [--devices 1000] [--supervisors 5] [--rate 100] [--seconds 20]
//!     [--rounds 3] [--senders 8] [--server-pid PID] [--escrow-only]
//!
//! - Devices enrol as the app does: an invite made with the library (as
//!   `tipwire mediator invite` does), then `POST /api/v1/devices` with an age
//!   recipient and a P-256 SPKI, a challenge signed for a session cookie.
//!   They are spread over the configured zones; the first `--supervisors`
//!   are supervisors.
//! - Streams: one HTTP/1.1 connection per device, all read by one thread
//!   (the webhooks go from another); a stream counts as open at its `ready`
//!   event. An event's time is when the read that brought it returned, so
//!   the figures include this client's own delays, and it reports the CPU
//!   it used. Streams closed for a baseline reopen with `Last-Event-ID` set
//!   to the newest event id, as an app that is up to date does, so they
//!   replay nothing.
//! - Webhooks: `--senders` connections, each always texting from its own
//!   number and sending one request at a time; request k is due at
//!   start + k / rate, and goes as soon as a sender is free after that.
//! - Correlation: an SMS tip's thread is its sender's, and a sender's next
//!   request leaves only after the previous one was appended, so on every
//!   stream the k-th alert of sender c's thread is sender c's k-th accepted
//!   webhook. Each sender's thread is learned once, before measuring, from
//!   the stream entry its first (unmeasured) text made.
//! - Every stream must receive every accepted tip's alert exactly once (SMS
//!   tips name no zone, so every device sees each); anything missing or extra
//!   fails the run.
//!
//! Untrusted: the gateway's answers and events, read only as far as needed
//! (status, cookie, device id, challenge, event name, id and thread).

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Parser;
use common::{TEXT, TIMEOUT, cpu_secs, https_client, median};
use futures_util::StreamExt as _;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use sha1::Sha1;
use tipwire::bus::{AlertReader, Store};
use tipwire::config::Settings;
use tipwire::crypto::IdentityKey;
use tipwire::domain::Zone;
use tipwire::mediator::MediatorDirectory;
use tipwire::mediator::devices::{DeviceApi, login_message};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

mod common;

/// Sender threads are 128-bit ids in hex.
const THREAD_HEX: usize = 32;
/// Longest wait for a round's last events after its last webhook.
const DRAIN_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for every stream to open.
const OPEN_WAIT: Duration = Duration::from_secs(180);
/// Concurrent enrolments.
const ENROL_CONCURRENCY: usize = 8;

#[derive(Parser)]
#[command(about = "Webhook-to-alert latency with many open alert streams")]
struct Args {
    /// The gateway's configuration file: port, Redis and key prefix (for
    /// invites), zones, SMS numbers, Twilio account and token file.
    #[arg(long)]
    config: PathBuf,
    /// PEM file of the CA that signed the gateway's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Devices to enrol, each with one open stream.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// How many of them are supervisors.
    #[arg(long, default_value_t = 5)]
    supervisors: usize,
    /// Webhooks a second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of webhooks in each load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Rounds of (all streams, then one stream).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Webhook connections (Twilio uses several).
    #[arg(long, default_value_t = 8)]
    senders: usize,
    /// Diagnostic, not the product's behaviour: once enrolled, the devices
    /// leave the mediator directory (their records and sessions stay, so
    /// their streams do), and tips are sealed to the escrow key only. Takes
    /// sealing out of the figures to show what the fan-out costs alone.
    #[arg(long)]
    escrow_only: bool,
    /// The gateway's process id, for its RSS, open files and CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Where the gateway is and how to sign for it, from its configuration.
struct Target {
    base: String,
    host: String,
    port: u16,
    webhook_url: String,
    account_sid: String,
    auth_token: String,
    to: String,
    zones: Vec<Zone>,
    store: Store,
    api: DeviceApi,
}

impl Target {
    fn load(path: &std::path::Path) -> Result<Self> {
        let settings = Settings::load(Some(path)).context("loading the gateway's configuration")?;
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
        let store = Store::new(&settings.redis)?;
        Ok(Self {
            base: format!("https://{}:{}", settings.server.host, settings.server.port),
            host: settings.server.host.clone(),
            port: settings.server.port,
            webhook_url: format!(
                "{}/webhooks/sms/twilio",
                settings.sms.public_base_url.trim_end_matches('/')
            ),
            account_sid: settings.sms.twilio.account_sid.clone(),
            auth_token,
            to: settings
                .sms
                .numbers
                .first()
                .context("sms.numbers is empty")?
                .clone(),
            zones: settings.zones()?.into_iter().map(|(z, _)| z).collect(),
            api: DeviceApi::from_settings(&settings, store.clone())?,
            store,
        })
    }
}

// ---------------------------------------------------------------- devices

/// An enrolled, signed-in device: all a stream needs.
struct Device {
    /// `name=value` of the session cookie.
    cookie: String,
}

/// Enrols device `i` through the HTTP API, as the app does, and signs in.
async fn enrol(
    target: &Target,
    client: &reqwest::Client,
    i: usize,
    supervisor: bool,
) -> Result<Device> {
    let zones: Vec<Zone> = if supervisor {
        Vec::new()
    } else {
        let zone = target
            .zones
            .get(i % target.zones.len().max(1))
            .context("no zones configured")?;
        vec![zone.clone()]
    };
    let invite = target
        .api
        .invites
        .create(
            &format!("Bench mediator {i}"),
            &zones,
            supervisor,
            Duration::from_secs(900),
        )
        .await?;
    let signing = SigningKey::random(&mut rand::rngs::OsRng);
    let spki = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_public_key_der()?.as_bytes());
    let (_, enrolled) = post_json(
        client,
        &format!("{}/api/v1/devices", target.base),
        &json!({
            "invite": invite.code.as_str(),
            "age_recipient": IdentityKey::generate().to_public().to_string(),
            "signing_key": spki,
            "device_name": "Bench phone",
        }),
    )
    .await
    .context("POST /api/v1/devices")?;
    let device_id = enrolled
        .get("device_id")
        .and_then(Value::as_str)
        .context("no device_id in the enrolment answer")?
        .to_owned();
    let (_, challenge) = post_json(
        client,
        &format!("{}/api/v1/session/challenge", target.base),
        &json!({ "device_id": device_id }),
    )
    .await
    .context("POST /api/v1/session/challenge")?;
    let challenge: [u8; 32] = URL_SAFE_NO_PAD
        .decode(
            challenge
                .get("challenge")
                .and_then(Value::as_str)
                .context("no challenge")?,
        )?
        .try_into()
        .map_err(|_| anyhow!("the challenge is not 32 bytes"))?;
    let signature: Signature = signing.sign(&login_message(&challenge));
    let (headers, _) = post_json(
        client,
        &format!("{}/api/v1/session", target.base),
        &json!({
            "device_id": device_id,
            "challenge": URL_SAFE_NO_PAD.encode(challenge),
            "signature": URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        }),
    )
    .await
    .context("POST /api/v1/session")?;
    let cookie = headers
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();
    Ok(Device { cookie })
}

/// POSTs JSON; any status outside 2xx is an error.
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<(reqwest::header::HeaderMap, Value)> {
    let response = client.post(url).json(body).send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await?;
    ensure!(
        status.is_success(),
        "answered {status}: {}",
        text.get(..200).unwrap_or(&text)
    );
    Ok((headers, serde_json::from_str(&text)?))
}

async fn enrol_all(target: &Target, ca: &[u8], args: &Args) -> Result<Vec<Device>> {
    let client = https_client(ca)?.timeout(TIMEOUT).build()?;
    let enrolled: Vec<Result<Device>> = futures_util::stream::iter(0..args.devices)
        .map(|i| enrol(target, &client, i, i < args.supervisors))
        .buffered(ENROL_CONCURRENCY)
        .collect()
        .await;
    enrolled.into_iter().collect()
}

// ---------------------------------------------------------------- streams

/// What a stream's reader shares with the coordinator.
#[derive(Default)]
struct Tally {
    /// Alerts of the measured senders' threads, in arrival order: the
    /// sender's index and when the read holding it returned.
    arrivals: Vec<(usize, Instant)>,
    /// Every `alert` event since the stream opened.
    alerts: u64,
    /// The id of the newest event, to resume from.
    last_id: String,
    /// Why the stream stopped, if it did.
    failed: Option<String>,
}

/// Locks a tally; a reader that panicked holding it left nothing worth
/// refusing to read.
fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One open stream: its tally and the task reading it.
struct Stream {
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

/// Every stream is read by one thread running this runtime, straight from
/// its TLS connection: at 1,000 streams and 100 tips a second the client
/// reads 100,000 events a second on a machine it shares with the gateway,
/// so it skips the HTTP library (and the extra task hop a body chunk takes
/// there) and decodes only chunk sizes and the event lines it needs.
struct Readers {
    handle: tokio::runtime::Handle,
    tls: tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
    server_name: ServerName<'static>,
    host: String,
    /// The senders' threads, once learned; alerts of other threads are only
    /// counted.
    threads: Arc<OnceLock<Vec<[u8; THREAD_HEX]>>>,
    _stop: oneshot::Sender<()>,
}

impl Readers {
    fn start(target: &Target, ca: &[u8]) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("stream-readers".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            handle,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            addr: std::net::SocketAddr::new(target.host.parse()?, target.port),
            server_name: ServerName::try_from(target.host.clone())?,
            host: format!("{}:{}", target.host, target.port),
            threads: Arc::new(OnceLock::new()),
            _stop: stop,
        })
    }

    /// Opens a stream for `device`; the receiver fires at its `ready` event.
    fn open(&self, device: &Device, resume: Option<&str>) -> (Stream, oneshot::Receiver<()>) {
        let mut request = format!(
            "GET /api/v1/alerts/stream HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nAccept: text/event-stream\r\n",
            self.host, device.cookie
        );
        if let Some(id) = resume {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (ready, on_ready) = oneshot::channel();
        let threads = self.threads.clone();
        let shared = tally.clone();
        let (tls, addr, name) = (self.tls.clone(), self.addr, self.server_name.clone());
        let task = self.handle.spawn(async move {
            let read = async {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let mut conn = tls.connect(name, tcp).await?;
                conn.write_all(request.as_bytes()).await?;
                read_stream(conn, &shared, &threads, ready).await
            };
            if let Err(e) = read.await {
                lock(&shared).failed = Some(format!("{e:#}"));
            }
        });
        (Stream { tally, task }, on_ready)
    }

    /// Opens a stream for each device and waits until every one is ready.
    async fn open_all(&self, devices: &[Device], resume: Option<&str>) -> Result<Vec<Stream>> {
        let (streams, ready): (Vec<_>, Vec<_>) =
            devices.iter().map(|d| self.open(d, resume)).unzip();
        let waited = tokio::time::timeout(OPEN_WAIT, futures_util::future::join_all(ready)).await;
        if let Some(failed) = streams.iter().find_map(|s| lock(&s.tally).failed.clone()) {
            bail!("a stream failed to open: {failed}");
        }
        let ready = waited.context("the streams did not all open in time")?;
        ensure!(
            ready.iter().all(Result::is_ok),
            "a stream ended before it was ready"
        );
        Ok(streams)
    }
}

/// Closes streams and waits until their readers are gone.
async fn close(streams: Vec<Stream>) {
    for s in &streams {
        s.task.abort();
    }
    for s in streams {
        let _ = s.task.await;
    }
}

/// Where the chunked body's framing stands.
#[derive(Clone, Copy)]
enum Chunk {
    /// Expecting a size line.
    Size,
    /// This many data bytes to go.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    End,
}

/// Moves the body bytes of `raw` (HTTP/1.1 chunked framing) to `body`,
/// leaving an incomplete size line or CRLF in `raw` for the next read.
fn dechunk(raw: &mut Vec<u8>, body: &mut Vec<u8>, state: &mut Chunk) -> Result<()> {
    let mut at = 0;
    loop {
        let rest = raw.get(at..).unwrap_or_default();
        match *state {
            Chunk::Size => {
                let Some(eol) = find(rest, b"\r\n") else {
                    ensure!(rest.len() < 64, "a chunk size line is too long");
                    break;
                };
                let line = rest.get(..eol).unwrap_or_default();
                let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                let size = usize::from_str_radix(std::str::from_utf8(hex)?.trim(), 16)
                    .context("a chunk size is not hex")?;
                ensure!(size > 0, "the gateway ended the stream's body");
                at += eol + 2;
                *state = Chunk::Data(size);
            }
            Chunk::Data(left) => {
                let take = left.min(rest.len());
                body.extend_from_slice(rest.get(..take).unwrap_or_default());
                at += take;
                if take < left {
                    *state = Chunk::Data(left - take);
                    break;
                }
                *state = Chunk::End;
            }
            Chunk::End => {
                if rest.len() < 2 {
                    break;
                }
                ensure!(rest.starts_with(b"\r\n"), "a chunk does not end in CRLF");
                at += 2;
                *state = Chunk::Size;
            }
        }
    }
    raw.drain(..at);
    Ok(())
}

/// Reads one stream until it fails: the status line, then event names, ids
/// and the thread of each alert.
async fn read_stream<S: AsyncRead + Unpin>(
    mut conn: S,
    tally: &Mutex<Tally>,
    threads: &OnceLock<Vec<[u8; THREAD_HEX]>>,
    ready: oneshot::Sender<()>,
) -> Result<()> {
    let mut raw: Vec<u8> = Vec::with_capacity(16 * 1024);
    let head = loop {
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            break end;
        }
        ensure!(raw.len() < 16 * 1024, "the answer's head is too long");
        ensure!(
            conn.read_buf(&mut raw).await? > 0,
            "closed before answering"
        );
    };
    {
        let head = raw.get(..head).unwrap_or_default().to_ascii_lowercase();
        ensure!(
            head.starts_with(b"http/1.1 200 "),
            "GET /api/v1/alerts/stream answered {}",
            String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default())
        );
        ensure!(
            find(&head, b"\r\ntransfer-encoding: chunked").is_some(),
            "the stream is not chunked"
        );
    }
    raw.drain(..head + 4);
    let mut ready = Some(ready);
    let mut state = Chunk::Size;
    let mut body: Vec<u8> = Vec::with_capacity(4096);
    let mut at = Instant::now();
    loop {
        dechunk(&mut raw, &mut body, &mut state)?;
        let mut start = 0;
        while let Some(end) = find(body.get(start..).unwrap_or_default(), b"\n\n") {
            let block = body.get(start..start + end).unwrap_or_default();
            start += end + 2;
            let mut lines = block.split(|&b| b == b'\n');
            let Some(name) = lines.next().and_then(|l| l.strip_prefix(b"event: ")) else {
                // Comments (heartbeats) and the retry hint.
                continue;
            };
            let id = lines.next().and_then(|l| l.strip_prefix(b"id: "));
            let data = lines.next().and_then(|l| l.strip_prefix(b"data: "));
            let mut t = lock(tally);
            if let Some(id) = id {
                t.last_id.clear();
                t.last_id.push_str(&String::from_utf8_lossy(id));
            }
            match name {
                b"alert" => {
                    t.alerts += 1;
                    let sender = data
                        .and_then(thread_of)
                        .and_then(|thread| threads.get()?.iter().position(|known| known == thread));
                    if let Some(sender) = sender {
                        t.arrivals.push((sender, at));
                    }
                }
                b"ready" => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                b"end" => bail!(
                    "the gateway ended the stream: {}",
                    String::from_utf8_lossy(data.unwrap_or_default())
                ),
                _ => {}
            }
        }
        body.drain(..start);
        if conn.read_buf(&mut raw).await? == 0 {
            bail!("the gateway closed the stream");
        }
        at = Instant::now();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `thread` of an alert's JSON, without parsing the rest.
fn thread_of(data: &[u8]) -> Option<&[u8; THREAD_HEX]> {
    const KEY: &[u8] = b"\"thread\":\"";
    let at = find(data, KEY)? + KEY.len();
    data.get(at..at + THREAD_HEX)?.try_into().ok()
}

// ---------------------------------------------------------------- webhooks

/// One webhook connection, always texting from the same number.
struct Sender {
    client: reqwest::Client,
    from: String,
}

/// When one accepted webhook left and when its 200 came back.
#[derive(Clone, Copy)]
struct Sent {
    sent: Instant,
    answered: Instant,
}

type HmacSha1 = Hmac<Sha1>;

impl Sender {
    fn new(ca: &[u8], index: usize) -> Result<Self> {
        Ok(Self {
            client: https_client(ca)?
                .pool_max_idle_per_host(1)
                .timeout(TIMEOUT)
                .build()?,
            from: format!("+1555300{index:04}"),
        })
    }

    /// One signed webhook, as Twilio sends it: form parameters, signed with
    /// HMAC-SHA1 over the public URL and the sorted name-value pairs.
    async fn text(&self, target: &Target, sid: &str) -> Result<()> {
        let mut params = [
            ("AccountSid", target.account_sid.as_str()),
            ("Body", TEXT),
            ("From", self.from.as_str()),
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("To", target.to.as_str()),
        ];
        params.sort_unstable();
        let mut mac = HmacSha1::new_from_slice(target.auth_token.as_bytes())?;
        mac.update(target.webhook_url.as_bytes());
        for (name, value) in &params {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        let signature = STANDARD.encode(mac.finalize().into_bytes());
        let response = self
            .client
            .post(format!("{}/webhooks/sms/twilio", target.base))
            .header("X-Twilio-Signature", signature)
            .form(&params)
            .send()
            .await
            .context("POST /webhooks/sms/twilio")?;
        let status = response.status();
        let body = response.bytes().await?;
        ensure!(
            status == reqwest::StatusCode::OK,
            "the webhook answered {status}: {}",
            String::from_utf8_lossy(body.get(..200).unwrap_or(&body))
        );
        Ok(())
    }
}

/// Message ids unique to this run, so none is taken for a retry.
struct Sids {
    run: u64,
    next: AtomicU64,
}

impl Sids {
    fn next(&self) -> String {
        format!(
            "SM{:016x}{:016x}",
            self.run,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Texts once from each sender, one after another, and reads each text's
/// thread back from the alert stream: no other tip is being sent meanwhile.
/// Also returns the size of one sealed envelope.
async fn learn_threads(
    target: &Target,
    senders: &[Sender],
    sids: &Sids,
) -> Result<(Vec<[u8; THREAD_HEX]>, usize)> {
    let reader = AlertReader::new(target.store.clone());
    let mut threads = Vec::new();
    let mut envelope = 0;
    for sender in senders {
        sender.text(target, &sids.next()).await?;
        let last = reader.last_id().await?;
        let entry = reader
            .by_ids(&[last])
            .await?
            .pop()
            .context("the text made no stream entry")?;
        envelope = entry.entry.envelope.len();
        let thread: [u8; THREAD_HEX] = entry
            .entry
            .thread
            .as_bytes()
            .try_into()
            .map_err(|_| anyhow!("a thread id is not {THREAD_HEX} hex digits"))?;
        ensure!(!threads.contains(&thread), "two senders share a thread");
        threads.push(thread);
    }
    Ok((threads, envelope))
}

/// Sends webhooks at `rate` for `seconds` over every sender; returns each
/// sender's accepted webhooks in order and the most any left behind
/// schedule.
async fn load(
    target: &Target,
    senders: &[Sender],
    sids: &Sids,
    rate: f64,
    seconds: u64,
) -> Result<(Vec<Vec<Sent>>, Duration)> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let next = AtomicU64::new(0);
    let runs = senders.iter().map(|sender| async {
        let mut sent = Vec::new();
        let mut lag = Duration::ZERO;
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let due = start + interval.mul_f64(k as f64);
            if due >= deadline || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep_until(due).await;
            let at = Instant::now();
            lag = lag.max(tokio::time::Instant::now() - due);
            sender.text(target, &sids.next()).await?;
            sent.push(Sent {
                sent: at,
                answered: Instant::now(),
            });
        }
        anyhow::Ok((sent, lag))
    });
    let done = futures_util::future::try_join_all(runs).await?;
    let lag = done.iter().map(|(_, l)| *l).max().unwrap_or_default();
    Ok((done.into_iter().map(|(s, _)| s).collect(), lag))
}

// ---------------------------------------------------------------- figures

/// p50, p99 and max of a set of milliseconds.
#[derive(Clone, Copy, Default)]
struct Spread {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Spread {
    fn of(values: &mut [f64]) -> Self {
        values.sort_by(f64::total_cmp);
        // Nearest rank.
        let at = |q: f64| {
            let rank = (q * values.len() as f64).ceil() as usize;
            values
                .get(rank.saturating_sub(1))
                .copied()
                .unwrap_or(f64::NAN)
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: values.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            self.p50, self.p99, self.max
        )
    }
}

/// `a - b` in milliseconds, negative when `a` came first.
fn ms_between(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(b - a).as_secs_f64() * 1000.0,
    }
}

/// One load's figures.
struct Round {
    streams: usize,
    accepted: usize,
    rate: f64,
    lag: Duration,
    answered: Spread,
    after_answer: Spread,
    after_send: Spread,
    expected: u64,
    matched: u64,
    extra: u64,
    /// Cores' worth of CPU the gateway and this client used, load to last event.
    gateway_cores: Option<f64>,
    client_cores: f64,
    /// Mean seal time per tip in this load, from the gateway's metrics.
    seal_ms: Option<f64>,
}

impl Round {
    fn print(&self, label: &str) {
        println!(
            "{label}, {} stream{}: {} webhooks accepted ({:.1}/s; up to {:.1} s behind schedule)  events {} of {} expected{}",
            self.streams,
            if self.streams == 1 { "" } else { "s" },
            self.accepted,
            self.rate,
            self.lag.as_secs_f64(),
            self.matched,
            self.expected,
            if self.extra > 0 {
                format!(", {} extra", self.extra)
            } else {
                String::new()
            },
        );
        println!("    webhook 200 -> event  {}", self.after_answer);
        println!("    request sent -> event {}", self.after_send);
        let seal = self
            .seal_ms
            .map_or_else(String::new, |s| format!("  mean seal {s:.1} ms/tip"));
        let gateway = self
            .gateway_cores
            .map_or_else(String::new, |c| format!("  gateway CPU {c:.2} cores"));
        println!(
            "    webhook answered in   {}{seal}{gateway}  client CPU {:.2} cores",
            self.answered, self.client_cores
        );
    }
}

/// The gateway's seal histogram: (sum of seconds, count).
async fn seal_metrics(client: &reqwest::Client, base: &str) -> Option<(f64, f64)> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    Some((
        value("tipwire_seal_duration_seconds_sum")?,
        value("tipwire_seal_duration_seconds_count")?,
    ))
}

/// VmRSS and VmHWM of a process, in MB.
fn rss_mb(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .with_context(|| format!("no {key} in /proc/{pid}/status"))
    };
    Ok((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
}

/// Open file descriptors of a process (its sockets, mostly).
fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Everything a round needs.
struct Bench<'a> {
    args: &'a Args,
    target: &'a Target,
    senders: &'a [Sender],
    sids: &'a Sids,
    metrics: reqwest::Client,
    /// The highest gateway RSS seen, in MB.
    peak: Cell<f64>,
}

impl Bench<'_> {
    /// One load against the open `streams`, then the wait for every event.
    async fn round(&self, streams: &[Stream]) -> Result<Round> {
        for s in streams {
            lock(&s.tally).arrivals.clear();
        }
        let pid = self.args.server_pid.map(|p| p.to_string());
        let seal0 = seal_metrics(&self.metrics, &self.target.base).await;
        let cpu0 = pid.as_deref().map(cpu_secs).transpose()?;
        let own0 = cpu_secs("self")?;
        let started = Instant::now();
        let (sent, lag) = load(
            self.target,
            self.senders,
            self.sids,
            self.args.rate,
            self.args.seconds,
        )
        .await?;
        let per_stream: u64 = sent.iter().map(|s| s.len() as u64).sum();
        let expected = per_stream * streams.len() as u64;
        let drain_until = Instant::now() + DRAIN_WAIT;
        loop {
            let mut received = 0;
            for s in streams {
                let t = lock(&s.tally);
                if let Some(failed) = &t.failed {
                    bail!("a stream failed during the load: {failed}");
                }
                received += t.arrivals.len() as u64;
            }
            if received >= expected || Instant::now() >= drain_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let gateway_cores = match (cpu0, pid.as_deref().map(cpu_secs).transpose()?) {
            (Some(before), Some(after)) => Some((after - before) / elapsed),
            _ => None,
        };
        let client_cores = (cpu_secs("self")? - own0) / elapsed;
        let seal_ms = match (seal0, seal_metrics(&self.metrics, &self.target.base).await) {
            (Some((s0, n0)), Some((s1, n1))) if n1 > n0 => Some((s1 - s0) * 1000.0 / (n1 - n0)),
            _ => None,
        };

        let mut answered: Vec<f64> = sent
            .iter()
            .flatten()
            .map(|s| ms_between(s.answered, s.sent))
            .collect();
        let (mut after_answer, mut after_send) = (Vec::new(), Vec::new());
        let mut extra = 0;
        for s in streams {
            let t = lock(&s.tally);
            let mut k = vec![0usize; sent.len()];
            for &(sender, at) in &t.arrivals {
                let nth = k.get_mut(sender).context("an unknown sender")?;
                match sent.get(sender).and_then(|list| list.get(*nth)) {
                    Some(webhook) => {
                        after_answer.push(ms_between(at, webhook.answered));
                        after_send.push(ms_between(at, webhook.sent));
                    }
                    None => extra += 1,
                }
                *nth += 1;
            }
        }
        Ok(Round {
            streams: streams.len(),
            accepted: per_stream as usize,
            rate: per_stream as f64 / self.args.seconds as f64,
            lag,
            answered: Spread::of(&mut answered),
            matched: after_answer.len() as u64,
            after_answer: Spread::of(&mut after_answer),
            after_send: Spread::of(&mut after_send),
            expected,
            extra,
            gateway_cores,
            client_cores,
            seal_ms,
        })
    }

    /// After streams were closed: the gateway notices a closed stream only
    /// when it next writes to it (a heartbeat, or an alert), so one
    /// unmeasured text goes out, and the baseline starts once the gateway
    /// holds at most `target_fds` open files (a few more may be other
    /// clients' connections coming and going). Returns the texts sent.
    async fn flush(&self, open: &[Stream], target_fds: Option<usize>) -> Result<u64> {
        let seen = |s: &Stream| lock(&s.tally).alerts;
        let before: Vec<u64> = open.iter().map(seen).collect();
        let sender = self.senders.first().context("no sender")?;
        sender.text(self.target, &self.sids.next()).await?;
        let until = Instant::now() + DRAIN_WAIT;
        while open.iter().zip(&before).any(|(s, b)| seen(s) <= *b) {
            ensure!(
                Instant::now() < until,
                "the flush text did not reach the open streams"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let (Some(pid), Some(target)) = (self.args.server_pid, target_fds) {
            let until = Instant::now() + Duration::from_secs(20);
            while open_fds(pid).is_some_and(|n| n > target + 2) {
                if Instant::now() >= until {
                    println!("(the gateway still holds more sockets than expected)");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(1)
    }

    /// Prints the gateway's RSS and open files; returns the RSS in MB.
    fn memory(&self, label: &str) -> Result<Option<f64>> {
        let Some(pid) = self.args.server_pid else {
            return Ok(None);
        };
        let (rss, hwm) = rss_mb(pid)?;
        // VmHWM is updated lazily; a VmRSS read may be above it.
        self.peak.set(self.peak.get().max(rss).max(hwm));
        let fds = open_fds(pid).map_or_else(String::new, |n| format!(", {n} open files"));
        println!("gateway RSS {rss:.1} MB{fds}  ({label})");
        Ok(Some(rss))
    }

    /// Unmeasured: one text per sender, to learn its thread, then the wait
    /// until each reached every stream. Returns the texts sent.
    async fn warm_up(&self, readers: &Readers, streams: &[Stream]) -> Result<u64> {
        let (threads, envelope) = learn_threads(self.target, self.senders, self.sids).await?;
        let warm = self.senders.len() as u64;
        let until = Instant::now() + DRAIN_WAIT;
        while streams.iter().any(|s| lock(&s.tally).alerts < warm) {
            ensure!(
                Instant::now() < until,
                "the warm-up alerts did not reach every stream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ensure!(
            readers.threads.set(threads).is_ok(),
            "threads learned twice"
        );
        let recipients = if self.args.escrow_only {
            1
        } else {
            self.args.devices + 1
        };
        println!(
            "each tip is sealed to {recipients} recipient{} (envelope {:.1} KB); SMS tips name no zone, so every stream sees every tip",
            if recipients == 1 { "" } else { "s" },
            envelope as f64 / 1024.0
        );
        Ok(warm)
    }
}

/// Diagnostic: takes every device out of the mediator directory, so tips
/// are sealed to escrow only; records, sessions and streams stay.
async fn leave_directory(target: &Target) -> Result<()> {
    let directory = MediatorDirectory::new(target.store.clone());
    let entries = directory.list().await?;
    for entry in &entries {
        directory.remove(&entry.id).await?;
    }
    println!(
        "DIAGNOSTIC --escrow-only: {} directory entries removed; tips are sealed to escrow only, streams stay",
        entries.len()
    );
    Ok(())
}

/// The medians over rounds, the ratio and the verdicts.
fn report(args: &Args, fanout: &[Round], single: &[Round]) {
    let p = |rounds: &[Round], f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        median(&mut v)
    };
    let (p99_all, p99_one) = (
        p(fanout, |r| r.after_answer.p99),
        p(single, |r| r.after_answer.p99),
    );
    println!();
    println!(
        "median over {} rounds, webhook 200 -> event: {} streams p50 {:.1} ms p99 {:.1} ms (max {:.1} ms); 1 stream p50 {:.1} ms p99 {:.1} ms",
        args.rounds,
        args.devices,
        p(fanout, |r| r.after_answer.p50),
        p99_all,
        p(fanout, |r| r.after_answer.max),
        p(single, |r| r.after_answer.p50),
        p99_one,
    );
    println!(
        "median over {} rounds, request sent -> event: {} streams p50 {:.1} ms p99 {:.1} ms; 1 stream p50 {:.1} ms p99 {:.1} ms",
        args.rounds,
        args.devices,
        p(fanout, |r| r.after_send.p50),
        p(fanout, |r| r.after_send.p99),
        p(single, |r| r.after_send.p50),
        p(single, |r| r.after_send.p99),
    );
    println!(
        "ratio p99({} streams) / p99(1 stream) = {:.2}",
        args.devices,
        p99_all / p99_one
    );
    let accepted = p(fanout, |r| r.rate);
    println!(
        "webhooks accepted: {accepted:.1}/s with {} streams, {:.1}/s with 1 (offered {}/s)",
        args.devices,
        p(single, |r| r.rate),
        args.rate
    );
    let kept_up = accepted >= 0.95 * args.rate;
    println!(
        "target p99 < 50 ms with {} streams at {}/s: {} (p99 {p99_all:.1} ms at {accepted:.1} tips/s accepted{})",
        args.devices,
        args.rate,
        verdict(p99_all < 50.0 && kept_up),
        if kept_up {
            ""
        } else {
            "; the offered rate was not accepted"
        }
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.devices > 0, "--devices must be at least 1");
    ensure!(args.senders > 0, "--senders must be at least 1");
    ensure!(args.rate > 0.0, "--rate must be positive");
    ensure!(args.seconds > 0, "--seconds must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let ca = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let target = Target::load(&args.config)?;
    ensure!(
        args.supervisors < args.devices || target.zones.is_empty(),
        "--supervisors must leave some zone devices"
    );
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let sids = Sids {
        run,
        next: AtomicU64::new(0),
    };
    let senders = (0..args.senders)
        .map(|i| Sender::new(&ca, i))
        .collect::<Result<Vec<_>>>()?;
    let readers = Readers::start(&target, &ca)?;

    // Webhooks, enrolment and the bookkeeping run here, on one thread; the
    // streams are read on another, so neither delays the other's clock.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let bench = Bench {
            args: &args,
            target: &target,
            senders: &senders,
            sids: &sids,
            metrics: https_client(&ca)?.timeout(TIMEOUT).build()?,
            peak: Cell::new(0.0),
        };
        println!(
            "alert fan-out: {} devices ({} supervisors, the rest over {} zones), {} webhook connections at {} tips/s for {} s per load, {} rounds",
            args.devices,
            args.supervisors,
            target.zones.len(),
            args.senders,
            args.rate,
            args.seconds,
            args.rounds
        );
        let t = Instant::now();
        let devices = enrol_all(&target, &ca, &args).await?;
        println!(
            "enrolled and signed in {} devices in {:.1} s",
            devices.len(),
            t.elapsed().as_secs_f64()
        );
        bench.memory("devices enrolled, no stream open")?;
        if args.escrow_only {
            leave_directory(&target).await?;
        }
        let t = Instant::now();
        let mut streams = readers.open_all(&devices, None).await?;
        println!(
            "opened {} streams in {:.1} s",
            streams.len(),
            t.elapsed().as_secs_f64()
        );
        let open_before = bench.memory("all streams open, before any tip")?;
        let mut unmeasured = bench.warm_up(&readers, &streams).await?;

        let (mut fanout, mut single) = (Vec::new(), Vec::new());
        let mut after_load = f64::NAN;
        for round in 1..=args.rounds {
            let label = format!("round {round}/{}", args.rounds);
            if round > 1 {
                // Reopen the closed streams, resuming from the newest event:
                // they replay nothing.
                let newest = streams
                    .first()
                    .map(|s| lock(&s.tally).last_id.clone())
                    .context("no stream")?;
                let rest = devices.get(1..).unwrap_or_default();
                streams.extend(readers.open_all(rest, Some(&newest)).await?);
            }
            let all = bench.round(&streams).await?;
            all.print(&label);
            fanout.push(all);
            if let Some(rss) = bench.memory("after the load, all streams open")? {
                after_load = after_load.max(rss);
            }
            let fds = args.server_pid.and_then(open_fds);
            let closing = streams.split_off(1.min(streams.len()));
            let target_fds = fds.map(|n| n.saturating_sub(closing.len()));
            close(closing).await;
            unmeasured += bench.flush(&streams, target_fds).await?;
            bench.memory("one stream open")?;
            let one = bench.round(&streams).await?;
            one.print(&label);
            single.push(one);
        }
        close(streams).await;

        report(&args, &fanout, &single);
        if let Some(open) = open_before {
            bench.memory("end")?;
            let peak = bench.peak.get();
            println!(
                "target RSS < 150 MB: {} ({} streams open: {open:.1} MB before load, {after_load:.1} MB after load at most; peak {peak:.1} MB)",
                verdict(peak < 150.0),
                args.devices
            );
        }
        let accepted: usize = fanout.iter().chain(&single).map(|r| r.accepted).sum();
        println!(
            "accepted: measured={accepted} unmeasured={unmeasured} total={}",
            accepted as u64 + unmeasured
        );
        let missing = fanout
            .iter()
            .chain(&single)
            .any(|r| r.matched != r.expected || r.extra > 0);
        ensure!(
            !missing,
            "some streams missed alerts or got extra ones (see \"events\" above)"
        );
        Ok(())
    })
}
