//! Live alert fan-out under load (issue 5, acceptance 5): N mediator devices
//! each hold one `GET /api/v1/alerts/stream` open over TLS while signed
//! Twilio webhooks arrive at a paced rate; the figure is the time from each
//! webhook's 200 to the `alert` event on each stream that should get it,
//! over every such (tip, stream) pair. A baseline with one stream open and
//! the same webhook load alternates with it, so the ratio of the two p99s
//! holds up on a shared, noisy machine. scripts/bench-alerts.sh starts the
//! gateway and runs this.
//!
//! cargo bench --bench alert_fanout -- --config FILE --ca FILE
//!     [--devices 1000] [--supervisors 5] [--rate 100] [--seconds 20]
//!     [--rounds 3] [--senders ZONES] [--server-pid PID] [--not-sure]
//!     [--not-sure-seconds 0] [--escrow-only]
//!
//! - Devices enrol as the app does: an invite made with the library (as
//!   `tipwire mediator invite` does), then `POST /api/v1/devices` with an age
//!   recipient and a P-256 SPKI, a challenge signed for a session cookie.
//!   They are spread over the configured zones; the first `--supervisors`
//!   are supervisors.
//! - Streams: one HTTP/1.1 connection per device, all read by one thread
//!   (the webhooks go from another); a stream counts as open at its `ready`
//!   event. An event's time is when eventsource-stream, reading reqwest's
//!   body stream, yields it, so the figures include this client's own delays, and it reports the CPU
//!   it used. Streams closed for a baseline reopen with `Last-Event-ID` set
//!   to the newest event id, as an app that is up to date does, so they
//!   replay nothing.
//! - Webhooks: `--senders` connections (one per zone by default), sender i
//!   always texting from its own number to zone i mod Z's program number
//!   (`sms.zone_numbers`), so its tips are filed under that zone. Request k
//!   is due at start + k / rate and goes from sender k mod senders, one
//!   request at a time per sender: the zones take turns. With `--not-sure`
//!   every sender texts the program number mapped to no zone, and each tip
//!   goes to every device.
//! - Correlation: an SMS tip's thread is its sender's (the pseudonym of the
//!   `From` number), and a sender's next request leaves only after the
//!   previous one was appended, so on every stream the k-th alert of sender
//!   c's thread is the k-th of sender c's accepted webhooks that the stream
//!   should see. Each sender's thread is learned once, before measuring,
//!   from the stream entry its first (unmeasured) text made; that entry
//!   also shows the zone the tip was filed under and its recipient count.
//! - Every stream must receive, exactly once, the alert of each accepted tip
//!   filed under its device's zone or "not sure" (a supervisor's: every
//!   tip), with the zone the webhook's number maps to; anything missing,
//!   extra or filed elsewhere fails the run.
//! - `--not-sure-seconds S`: after the rounds, one load of S seconds with
//!   every stream open and every text to the unmapped number, reported as
//!   the gateway's capacity for tips sealed to every device.
//!
//! Untrusted: the gateway's answers and events, read only as far as needed
//! (status, cookie, device id, challenge, event name, id, zone and thread).

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use common::{TEXT, TIMEOUT, cpu_secs, https_client, median};
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use reqwest::header::{ACCEPT, COOKIE};
use serde_json::{Value, json};
use tipwire::bus::{AlertReader, Store};
use tipwire::config::Settings;
use tipwire::crypto::IdentityKey;
use tipwire::domain::{Zone, ZoneChoice};
use tipwire::mediator::MediatorDirectory;
use tipwire::mediator::devices::{DeviceApi, login_message};
use tokio::sync::oneshot;

mod common;
#[path = "../tests/support/twilio.rs"]
mod twilio;

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
    /// Webhook connections, each texting one zone's number from its own;
    /// a multiple of the zones (default: one per zone).
    #[arg(long)]
    senders: Option<usize>,
    /// Every text goes to the program number mapped to no zone, so each tip
    /// is filed under "not sure", sealed to every device and alerted on
    /// every stream.
    #[arg(long)]
    not_sure: bool,
    /// After the rounds, one load of this many seconds as with `--not-sure`,
    /// every stream open, no baseline: the gateway's capacity for tips
    /// sealed to every device. 0: none.
    #[arg(long, default_value_t = 0)]
    not_sure_seconds: u64,
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
    webhook_url: String,
    account_sid: String,
    auth_token: String,
    zones: Vec<Zone>,
    /// Each zone's program number, by the zone's index, if it has one.
    zone_numbers: Vec<Option<String>>,
    /// A program number mapped to no zone: texts to it are "not sure".
    unmapped: Option<String>,
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
        let zones: Vec<Zone> = settings.zones.clone().into_iter().map(|(z, _)| z).collect();
        let mapped = &settings.sms.zone_numbers;
        let zone_numbers = zones
            .iter()
            .map(|zone| {
                mapped
                    .iter()
                    .find(|(_, z)| z == zone)
                    .map(|(number, _)| number.as_str().to_owned())
            })
            .collect();
        let unmapped = settings
            .sms
            .numbers
            .iter()
            .find(|n| mapped.iter().all(|(m, _)| m != *n))
            .map(|n| n.as_str().to_owned());
        let store = Store::new(&settings.redis)?;
        Ok(Self {
            base: format!("https://{}:{}", settings.server.host, settings.server.port),
            webhook_url: format!(
                "{}/webhooks/sms/twilio",
                settings.sms.public_base_url.trim_end_matches('/')
            ),
            account_sid: settings.sms.twilio.account_sid.clone(),
            auth_token,
            zones,
            zone_numbers,
            unmapped,
            api: DeviceApi::from_settings(&settings, store.clone())?,
            store,
        })
    }

    /// Where sender `i`'s texts go in `case`: the number and the filing.
    fn plan(&self, case: Case, senders: usize) -> Result<Vec<Plan>> {
        (0..senders)
            .map(|i| match case {
                Case::Zones => {
                    let zone = i % self.zones.len().max(1);
                    let to = self
                        .zone_numbers
                        .get(zone)
                        .cloned()
                        .flatten()
                        .with_context(|| {
                            format!(
                                "zone {:?} has no program number in sms.zone_numbers",
                                self.zones.get(zone).map_or("?", Zone::as_str)
                            )
                        })?;
                    Ok(Plan {
                        to,
                        filed: Filed::Zone(zone),
                    })
                }
                Case::NotSure => Ok(Plan {
                    to: self.unmapped.clone().context(
                        "every number in sms.numbers is mapped to a zone: add one that is not, for \"not sure\" texts",
                    )?,
                    filed: Filed::NotSure,
                }),
            })
            .collect()
    }
}

/// Which texts a load sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// Each sender texts its zone's number.
    Zones,
    /// Every sender texts the unmapped number.
    NotSure,
}

/// Where a tip is filed, as its alert's `zone` says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Filed {
    /// The zone of this index in the configuration.
    Zone(usize),
    NotSure,
}

/// One sender's texts in a load: where they go and where they are filed.
struct Plan {
    to: String,
    filed: Filed,
}

/// Whose stream it is, for which alerts it gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Viewer {
    /// A device of the zone of this index.
    Zone(usize),
    Supervisor,
}

impl Viewer {
    /// The gateway's rule: a device sees its zones' tips and every "not
    /// sure" tip; a supervisor sees every tip.
    fn sees(self, filed: Filed) -> bool {
        match (self, filed) {
            (Self::Supervisor, _) | (_, Filed::NotSure) => true,
            (Self::Zone(mine), Filed::Zone(zone)) => mine == zone,
        }
    }
}

// ---------------------------------------------------------------- devices

/// An enrolled, signed-in device: all a stream needs.
struct Device {
    /// `name=value` of the session cookie.
    cookie: String,
    viewer: Viewer,
}

/// Enrols device `i` through the HTTP API, as the app does, and signs in.
async fn enrol(
    target: &Target,
    client: &reqwest::Client,
    i: usize,
    supervisor: bool,
) -> Result<Device> {
    let viewer = if supervisor {
        Viewer::Supervisor
    } else {
        Viewer::Zone(i % target.zones.len().max(1))
    };
    let zones: Vec<Zone> = match viewer {
        Viewer::Supervisor => Vec::new(),
        Viewer::Zone(zone) => vec![
            target
                .zones
                .get(zone)
                .context("no zones configured")?
                .clone(),
        ],
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
    Ok(Device { cookie, viewer })
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
    /// sender's index, the zone the alert names (`None`: not one of ours),
    /// and when the read holding it returned.
    arrivals: Vec<(usize, Option<Filed>, Instant)>,
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

/// One open stream: whose it is, its tally and the task reading it.
struct Stream {
    viewer: Viewer,
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

/// Every stream is read by one thread running this runtime (the webhooks go
/// from another), each over its own HTTP/1.1 connection: reqwest undoes the
/// chunked framing and eventsource-stream splits the events.
struct Readers {
    handle: tokio::runtime::Handle,
    client: reqwest::Client,
    url: String,
    /// The senders' threads, once learned; alerts of other threads are only
    /// counted.
    threads: Arc<OnceLock<Vec<[u8; THREAD_HEX]>>>,
    /// The configured zone ids, by index, to read an alert's zone.
    zones: Arc<Vec<String>>,
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
        Ok(Self {
            handle,
            // No overall timeout: a stream stays open for the whole run.
            client: https_client(ca)?.connect_timeout(TIMEOUT).build()?,
            url: format!("{}/api/v1/alerts/stream", target.base),
            threads: Arc::new(OnceLock::new()),
            zones: Arc::new(target.zones.iter().map(|z| z.as_str().to_owned()).collect()),
            _stop: stop,
        })
    }

    /// Opens a stream for `device`; the receiver fires at its `ready` event.
    fn open(&self, device: &Device, resume: Option<&str>) -> (Stream, oneshot::Receiver<()>) {
        let mut request = self
            .client
            .get(&self.url)
            .header(COOKIE, &device.cookie)
            .header(ACCEPT, "text/event-stream");
        if let Some(id) = resume {
            request = request.header("Last-Event-ID", id);
        }
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (ready, on_ready) = oneshot::channel();
        let (threads, zones) = (self.threads.clone(), self.zones.clone());
        let shared = tally.clone();
        let task = self.handle.spawn(async move {
            let read = async {
                let response = request.send().await?;
                ensure!(
                    response.status() == reqwest::StatusCode::OK,
                    "GET /api/v1/alerts/stream answered {}",
                    response.status()
                );
                read_stream(response, &shared, &threads, &zones, ready).await
            };
            if let Err(e) = read.await {
                lock(&shared).failed = Some(format!("{e:#}"));
            }
        });
        (
            Stream {
                viewer: device.viewer,
                tally,
                task,
            },
            on_ready,
        )
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

/// Reads one stream's events until it fails: their ids, and the thread and
/// zone of each alert, timed when the event came out of the parser.
async fn read_stream(
    response: reqwest::Response,
    tally: &Mutex<Tally>,
    threads: &OnceLock<Vec<[u8; THREAD_HEX]>>,
    zones: &[String],
    ready: oneshot::Sender<()>,
) -> Result<()> {
    let mut ready = Some(ready);
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let at = Instant::now();
        let event = event?;
        let mut t = lock(tally);
        if !event.id.is_empty() {
            t.last_id.clone_from(&event.id);
        }
        match event.event.as_str() {
            "alert" => {
                t.alerts += 1;
                let data = event.data.as_bytes();
                let sender = thread_of(data)
                    .and_then(|thread| threads.get()?.iter().position(|known| known == thread));
                if let Some(sender) = sender {
                    let zone = string_field(data, b"\"zone\":\"").and_then(|z| filed_of(z, zones));
                    t.arrivals.push((sender, zone, at));
                }
            }
            "ready" => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            "end" => bail!("the gateway ended the stream: {}", event.data),
            _ => {}
        }
    }
    bail!("the gateway closed the stream")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A string field of an alert's JSON, without parsing the rest: what
/// follows `key` (`"name":"`) up to the next quote. The fields read here
/// (ids and zone names) hold no escapes.
fn string_field<'a>(data: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let rest = data.get(find(data, key)? + key.len()..)?;
    rest.get(..rest.iter().position(|&b| b == b'"')?)
}

/// The `thread` of an alert's JSON.
fn thread_of(data: &[u8]) -> Option<&[u8; THREAD_HEX]> {
    string_field(data, b"\"thread\":\"")?.try_into().ok()
}

/// Where an alert's `zone` says its tip was filed; `None` for a zone not
/// configured here.
fn filed_of(zone: &[u8], zones: &[String]) -> Option<Filed> {
    if zone == ZoneChoice::Unsure.as_str().as_bytes() {
        return Some(Filed::NotSure);
    }
    zones
        .iter()
        .position(|z| z.as_bytes() == zone)
        .map(Filed::Zone)
}

// ---------------------------------------------------------------- webhooks

/// One webhook connection, always texting from the same number.
struct Sender {
    client: reqwest::Client,
    from: String,
}

/// When one accepted webhook left, when its 200 came back, and where its
/// tip was filed.
#[derive(Clone, Copy)]
struct Sent {
    sent: Instant,
    answered: Instant,
    filed: Filed,
}

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

    /// One signed webhook to program number `to`, as Twilio sends it: form
    /// parameters, signed with HMAC-SHA1 over the public URL and the sorted
    /// name-value pairs.
    async fn text(&self, target: &Target, to: &str, sid: &str) -> Result<()> {
        let params = [
            ("AccountSid", target.account_sid.as_str()),
            ("Body", TEXT),
            ("From", self.from.as_str()),
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("To", to),
        ];
        let signature = twilio::signature(&target.auth_token, &target.webhook_url, &params);
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

/// What the newest stream entry shows about the tip that made it.
struct Entry {
    thread: [u8; THREAD_HEX],
    zone: String,
    /// Recipient stanzas in the envelope's age header.
    recipients: usize,
    envelope: usize,
}

/// The newest alert stream entry; callers make sure no other tip is being
/// sent meanwhile.
async fn newest_entry(target: &Target) -> Result<Entry> {
    let reader = AlertReader::new(target.store.clone());
    let last = reader.last_id().await?;
    let entry = reader
        .by_ids(&[last])
        .await?
        .pop()
        .context("the text made no stream entry")?
        .entry;
    let thread = entry
        .thread
        .as_bytes()
        .try_into()
        .map_err(|_| anyhow!("a thread id is not {THREAD_HEX} hex digits"))?;
    // An age header is "age-encryption.org/v1", a "-> " line per stanza
    // (one per recipient, plus a random "grease" one), then "--- " and the
    // MAC.
    let header = find(&entry.envelope, b"\n--- ")
        .and_then(|end| entry.envelope.get(..end))
        .context("the envelope has no age header")?;
    let stanza = b"\n-> X25519 ";
    let recipients = header.windows(stanza.len()).filter(|w| w == stanza).count();
    Ok(Entry {
        thread,
        zone: entry.zone,
        recipients,
        envelope: entry.envelope.len(),
    })
}

/// Checks that a tip was filed where its number says.
fn check_filed(target: &Target, plan: &Plan, entry: &Entry) -> Result<()> {
    let expected = match plan.filed {
        Filed::Zone(zone) => target.zones.get(zone).map_or("?", Zone::as_str),
        Filed::NotSure => ZoneChoice::Unsure.as_str(),
    };
    ensure!(
        entry.zone == expected,
        "a text to {} was filed under {:?}, not {expected:?} (does the gateway map sms.zone_numbers?)",
        plan.to,
        entry.zone
    );
    Ok(())
}

/// Texts once from each sender as `plan` says, one after another, and reads
/// each text's thread, zone and recipients back from the alert stream: no
/// other tip is being sent meanwhile.
async fn learn_threads(
    target: &Target,
    senders: &[Sender],
    plan: &[Plan],
    sids: &Sids,
) -> Result<(Vec<[u8; THREAD_HEX]>, Vec<Entry>)> {
    let mut threads = Vec::new();
    let mut entries = Vec::new();
    for (sender, plan) in senders.iter().zip(plan) {
        sender.text(target, &plan.to, &sids.next()).await?;
        let entry = newest_entry(target).await?;
        check_filed(target, plan, &entry)?;
        ensure!(
            !threads.contains(&entry.thread),
            "two senders share a thread"
        );
        threads.push(entry.thread);
        entries.push(entry);
    }
    Ok((threads, entries))
}

/// Sends webhooks at `rate` for `seconds`, request k from sender
/// k mod senders as `plan` says; returns each sender's accepted webhooks in
/// order and the most any left behind schedule.
async fn load(
    target: &Target,
    senders: &[Sender],
    plan: &[Plan],
    sids: &Sids,
    rate: f64,
    seconds: u64,
) -> Result<(Vec<Vec<Sent>>, Duration)> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let runs = senders
        .iter()
        .zip(plan)
        .enumerate()
        .map(|(i, (sender, plan))| async move {
            let mut sent = Vec::new();
            let mut lag = Duration::ZERO;
            for k in (i..).step_by(senders.len()) {
                let due = start + interval.mul_f64(k as f64);
                if due >= deadline || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let at = Instant::now();
                lag = lag.max(tokio::time::Instant::now() - due);
                sender.text(target, &plan.to, &sids.next()).await?;
                sent.push(Sent {
                    sent: at,
                    answered: Instant::now(),
                    filed: plan.filed,
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

/// Alerts a kind of stream got, of those it should have.
#[derive(Clone, Copy, Default)]
struct Events {
    streams: usize,
    matched: u64,
    expected: u64,
}

impl Events {
    fn add(&mut self, matched: u64, expected: u64) {
        self.streams += 1;
        self.matched += matched;
        self.expected += expected;
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
    zone_events: Events,
    supervisor_events: Events,
    /// Streams that got fewer of the alerts they should have.
    short: usize,
    /// Alerts of measured threads a stream should not have got (or got twice).
    extra: u64,
    /// Alerts that name another zone than their webhook's number maps to.
    misfiled: u64,
    /// Cores' worth of CPU the gateway and this client used, load to last event.
    gateway_cores: Option<f64>,
    client_cores: f64,
    /// Mean seal time per tip in this load, from the gateway's metrics (it
    /// includes a large seal's wait for a core).
    seal_ms: Option<f64>,
}

impl Round {
    /// Every stream got exactly the alerts it should have, filed right.
    fn complete(&self) -> bool {
        self.short == 0 && self.extra == 0 && self.misfiled == 0
    }

    fn print(&self, label: &str) {
        let mut events = Vec::new();
        for (kind, e) in [
            ("zone", self.zone_events),
            ("supervisor", self.supervisor_events),
        ] {
            if e.streams > 0 {
                events.push(format!(
                    "{kind} stream{} {} of {}",
                    if e.streams == 1 { "" } else { "s" },
                    e.matched,
                    e.expected
                ));
            }
        }
        for (n, what) in [
            (self.short as u64, "streams short"),
            (self.extra, "extra"),
            (self.misfiled, "filed under another zone"),
        ] {
            if n > 0 {
                events.push(format!("{n} {what}"));
            }
        }
        println!(
            "{label}, {} stream{}: {} webhooks accepted ({:.1}/s; up to {:.1} s behind schedule)  events: {}",
            self.streams,
            if self.streams == 1 { "" } else { "s" },
            self.accepted,
            self.rate,
            self.lag.as_secs_f64(),
            events.join(", "),
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
    /// Where each sender texts in the rounds.
    plan: Vec<Plan>,
    /// The same senders texting the unmapped number: flushes and the
    /// all-devices load.
    not_sure: Vec<Plan>,
    metrics: reqwest::Client,
    /// The highest gateway RSS seen, in MB.
    peak: Cell<f64>,
}

/// Each sender's accepted webhooks that a viewer's stream should get, in
/// order, for every kind of viewer among `streams`.
fn views(streams: &[Stream], sent: &[Vec<Sent>]) -> Vec<(Viewer, Vec<Vec<Sent>>)> {
    let mut views: Vec<(Viewer, Vec<Vec<Sent>>)> = Vec::new();
    for s in streams {
        if views.iter().all(|(v, _)| *v != s.viewer) {
            let lists = sent
                .iter()
                .map(|list| {
                    list.iter()
                        .filter(|w| s.viewer.sees(w.filed))
                        .copied()
                        .collect()
                })
                .collect();
            views.push((s.viewer, lists));
        }
    }
    views
}

impl Bench<'_> {
    /// One load of `seconds` as `plan` says against the open `streams`,
    /// then the wait for every event.
    async fn round(&self, streams: &[Stream], plan: &[Plan], seconds: u64) -> Result<Round> {
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
            plan,
            self.sids,
            self.args.rate,
            seconds,
        )
        .await?;
        let views = views(streams, &sent);
        let view = |viewer: Viewer| {
            views
                .iter()
                .find(|(v, _)| *v == viewer)
                .map(|(_, lists)| lists.as_slice())
                .unwrap_or_default()
        };
        let expected = |s: &Stream| view(s.viewer).iter().map(Vec::len).sum::<usize>();
        let drain_until = Instant::now() + DRAIN_WAIT;
        loop {
            let mut drained = true;
            for s in streams {
                let t = lock(&s.tally);
                if let Some(failed) = &t.failed {
                    bail!("a stream failed during the load: {failed}");
                }
                drained &= t.arrivals.len() >= expected(s);
            }
            if drained || Instant::now() >= drain_until {
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
        let (mut zone_events, mut supervisor_events) = (Events::default(), Events::default());
        let (mut short, mut extra, mut misfiled) = (0, 0, 0);
        for s in streams {
            let lists = view(s.viewer);
            let t = lock(&s.tally);
            let mut k = vec![0usize; lists.len()];
            let mut matched = 0;
            for &(sender, zone, at) in &t.arrivals {
                let nth = k.get_mut(sender).context("an unknown sender")?;
                match lists.get(sender).and_then(|list| list.get(*nth)) {
                    Some(webhook) => {
                        matched += 1;
                        if zone != Some(webhook.filed) {
                            misfiled += 1;
                        }
                        after_answer.push(ms_between(at, webhook.answered));
                        after_send.push(ms_between(at, webhook.sent));
                    }
                    None => extra += 1,
                }
                *nth += 1;
            }
            let expected = expected(s);
            if matched < expected {
                short += 1;
            }
            match s.viewer {
                Viewer::Zone(_) => zone_events.add(matched as u64, expected as u64),
                Viewer::Supervisor => supervisor_events.add(matched as u64, expected as u64),
            }
        }
        let accepted = sent.iter().map(Vec::len).sum::<usize>();
        Ok(Round {
            streams: streams.len(),
            accepted,
            rate: accepted as f64 / seconds as f64,
            lag,
            answered: Spread::of(&mut answered),
            after_answer: Spread::of(&mut after_answer),
            after_send: Spread::of(&mut after_send),
            zone_events,
            supervisor_events,
            short,
            extra,
            misfiled,
            gateway_cores,
            client_cores,
            seal_ms,
        })
    }

    /// One unmeasured text to the unmapped number, so every stream's
    /// connection is written to, and the wait until it reached every one of
    /// `open`. After streams were closed: the gateway notices a closed
    /// stream only when it next writes to it (a heartbeat, or an alert), and
    /// the baseline starts once the gateway holds at most `target_fds` open
    /// files (a few more may be other clients' connections coming and
    /// going). Returns what the tip's stream entry shows.
    async fn flush(&self, open: &[Stream], target_fds: Option<usize>) -> Result<Entry> {
        let seen = |s: &Stream| lock(&s.tally).alerts;
        let before: Vec<u64> = open.iter().map(seen).collect();
        let (sender, plan) = self
            .senders
            .first()
            .zip(self.not_sure.first())
            .context("no sender")?;
        sender
            .text(self.target, &plan.to, &self.sids.next())
            .await?;
        let entry = newest_entry(self.target).await?;
        check_filed(self.target, plan, &entry)?;
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
        Ok(entry)
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

    /// Unmeasured: one text per sender, to learn its thread and check where
    /// its tips are filed, then the wait until each reached every stream
    /// that should get it. Returns the texts sent.
    async fn warm_up(&self, readers: &Readers, streams: &[Stream]) -> Result<u64> {
        let (threads, entries) =
            learn_threads(self.target, self.senders, &self.plan, self.sids).await?;
        let should =
            |s: &Stream| self.plan.iter().filter(|p| s.viewer.sees(p.filed)).count() as u64;
        let until = Instant::now() + DRAIN_WAIT;
        while streams.iter().any(|s| lock(&s.tally).alerts < should(s)) {
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
        let fanout: Vec<usize> = self
            .plan
            .iter()
            .map(|p| streams.iter().filter(|s| s.viewer.sees(p.filed)).count())
            .collect();
        let what = match self.plan.first().map(|p| p.filed) {
            Some(Filed::NotSure) => "\"not sure\" tips (texts to the unmapped number)",
            _ => "zone tips (each sender texts its zone's number)",
        };
        self.per_tip(what, &entries, &fanout);
        Ok(self.senders.len() as u64)
    }

    /// Prints recipients, envelope size and fan-out per tip.
    fn per_tip(&self, what: &str, entries: &[Entry], fanout: &[usize]) {
        let recipients: Vec<usize> = entries.iter().map(|e| e.recipients).collect();
        let envelope =
            entries.iter().map(|e| e.envelope).sum::<usize>() as f64 / entries.len().max(1) as f64;
        let mean = fanout.iter().sum::<usize>() as f64 / fanout.len().max(1) as f64;
        let whom = if self.args.escrow_only {
            "escrow only, --escrow-only"
        } else if entries
            .iter()
            .any(|e| e.zone == ZoneChoice::Unsure.as_str())
        {
            "every device and escrow"
        } else {
            "the zone's devices, the supervisors and escrow"
        };
        println!(
            "{what}: recipients per tip {}: {whom}; envelope {:.1} KB; fan-out per tip {} streams, {:.0} events/s at {} tips/s",
            range(&recipients),
            envelope / 1024.0,
            range(fanout),
            mean * self.args.rate,
            self.args.rate,
        );
    }
}

/// "n", or "min-max (mean m)".
fn range(values: &[usize]) -> String {
    let (min, max) = (
        values.iter().min().copied().unwrap_or_default(),
        values.iter().max().copied().unwrap_or_default(),
    );
    if min == max {
        min.to_string()
    } else {
        let mean = values.iter().sum::<usize>() as f64 / values.len() as f64;
        format!("{min}-{max} (mean {mean:.1})")
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
fn report(args: &Args, what: &str, fanout: &[Round], single: &[Round]) {
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
        "target p99 < 50 ms with {} streams at {}/s, {what}: {} (p99 {p99_all:.1} ms at {accepted:.1} tips/s accepted{})",
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
    ensure!(args.rate > 0.0, "--rate must be positive");
    ensure!(args.seconds > 0, "--seconds must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let ca = std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let target = Target::load(&args.config)?;
    let zones = target.zones.len();
    ensure!(
        args.supervisors < args.devices,
        "--supervisors must leave some zone devices"
    );
    let case = if args.not_sure {
        Case::NotSure
    } else {
        Case::Zones
    };
    let senders = args.senders.unwrap_or(zones);
    ensure!(senders > 0, "--senders must be at least 1");
    ensure!(
        case == Case::NotSure || senders.is_multiple_of(zones),
        "--senders must be a multiple of the {zones} zones, so the zones take turns"
    );
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let sids = Sids {
        run,
        next: AtomicU64::new(0),
    };
    let plan = target.plan(case, senders)?;
    let not_sure = target.plan(Case::NotSure, senders)?;
    let senders = (0..senders)
        .map(|i| Sender::new(&ca, i))
        .collect::<Result<Vec<_>>>()?;
    let readers = Readers::start(&target, &ca)?;
    let what = match case {
        Case::Zones => "zone tips",
        Case::NotSure => "\"not sure\" tips",
    };

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
            plan,
            not_sure,
            metrics: https_client(&ca)?.timeout(TIMEOUT).build()?,
            peak: Cell::new(0.0),
        };
        println!(
            "alert fan-out, {what}: {} devices ({} supervisors, the rest over {zones} zones), {} webhook connections at {} tips/s for {} s per load, {} rounds",
            args.devices,
            args.supervisors,
            senders.len(),
            args.rate,
            args.seconds,
            args.rounds
        );
        let t = Instant::now();
        let devices = enrol_all(&target, &ca, &args).await?;
        let per_zone: Vec<usize> = (0..zones)
            .map(|z| devices.iter().filter(|d| d.viewer == Viewer::Zone(z)).count())
            .collect();
        println!(
            "enrolled and signed in {} devices in {:.1} s; devices per zone {}",
            devices.len(),
            t.elapsed().as_secs_f64(),
            range(&per_zone)
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

        // Reopens the closed streams, resuming from the newest event: they
        // replay nothing. The one left open is a supervisor's, which sees
        // every tip.
        let reopen = |streams: &[Stream]| {
            let newest = streams
                .first()
                .map(|s| lock(&s.tally).last_id.clone())
                .context("no stream")?;
            anyhow::Ok((devices.get(1..).unwrap_or_default(), newest))
        };
        let (mut fanout, mut single) = (Vec::new(), Vec::new());
        let mut after_load = f64::NAN;
        for round in 1..=args.rounds {
            let label = format!("round {round}/{}", args.rounds);
            if round > 1 {
                let (rest, newest) = reopen(&streams)?;
                streams.extend(readers.open_all(rest, Some(&newest)).await?);
            }
            let all = bench.round(&streams, &bench.plan, args.seconds).await?;
            all.print(&label);
            fanout.push(all);
            if let Some(rss) = bench.memory("after the load, all streams open")? {
                after_load = after_load.max(rss);
            }
            let fds = args.server_pid.and_then(open_fds);
            let closing = streams.split_off(1.min(streams.len()));
            let target_fds = fds.map(|n| n.saturating_sub(closing.len()));
            close(closing).await;
            bench.flush(&streams, target_fds).await?;
            unmeasured += 1;
            bench.memory("one stream open")?;
            let one = bench.round(&streams, &bench.plan, args.seconds).await?;
            one.print(&label);
            single.push(one);
        }
        report(&args, what, &fanout, &single);
        let peak_rounds = bench.peak.get();

        let mut capacity = None;
        if args.not_sure_seconds > 0 && case == Case::Zones {
            println!();
            println!(
                "secondary, all devices (--not-sure): every text to the number mapped to no zone, {} s at {} tips/s offered, every stream open, no baseline",
                args.not_sure_seconds, args.rate
            );
            let (rest, newest) = reopen(&streams)?;
            streams.extend(readers.open_all(rest, Some(&newest)).await?);
            let probe = bench.flush(&streams, None).await?;
            unmeasured += 1;
            bench.per_tip(
                "\"not sure\" tips",
                std::slice::from_ref(&probe),
                &[streams.len()],
            );
            let load = bench
                .round(&streams, &bench.not_sure, args.not_sure_seconds)
                .await?;
            load.print("all devices");
            bench.memory("after the all-devices load, all streams open")?;
            println!(
                "capacity, all devices: {:.1} tips/s accepted of {}/s offered, each tip sealed to {} recipients; at that load webhook 200 -> event p50 {:.1} ms p99 {:.1} ms, request sent -> event p99 {:.1} ms",
                load.rate,
                args.rate,
                probe.recipients,
                load.after_answer.p50,
                load.after_answer.p99,
                load.after_send.p99,
            );
            capacity = Some(load);
        }
        close(streams).await;

        if let Some(open) = open_before {
            bench.memory("end")?;
            let peak = bench.peak.get();
            let all_devices = if capacity.is_some() {
                format!(", {peak:.1} MB with the all-devices load")
            } else {
                String::new()
            };
            println!(
                "target RSS < 150 MB: {} ({} streams open: {open:.1} MB before load, {after_load:.1} MB after a round's load at most; peak {peak_rounds:.1} MB in the rounds{all_devices})",
                verdict(peak < 150.0),
                args.devices
            );
        }
        let rounds: Vec<&Round> = fanout.iter().chain(&single).chain(&capacity).collect();
        let accepted: usize = rounds.iter().map(|r| r.accepted).sum();
        println!(
            "accepted: measured={accepted} unmeasured={unmeasured} total={}",
            accepted as u64 + unmeasured
        );
        ensure!(
            rounds.iter().all(|r| r.complete()),
            "some streams missed alerts, got extra ones or ones filed elsewhere (see \"events\" above)"
        );
        Ok(())
    })
}
