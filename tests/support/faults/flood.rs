//! Tipsters on every channel at once: web form posts, signed Twilio and
//! Telnyx webhooks and SMTP deliveries, each tip carrying a tag of its own
//! (`ftag-<channel>-<n>`) so what is stored can be matched to what was sent
//! and answered. Every attempt is recorded with its outcome and how long the
//! answer took. Every sender sends an unanswered or refused tip again with
//! the same id, as Telnyx, mail servers and the tip form do (the web client
//! sends its key as the `Idempotency-Key` header); Twilio itself does not
//! retry, and its retries here check the same replay marker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::rig::{Ports, Rig};
use crate::support::app::random_hex;
use crate::support::email::{TIP_ADDRESS, lettre_to};
use crate::support::sms::{
    AUTH_TOKEN, now, post_telnyx, post_twilio, telnyx_event, telnyx_signing_key, twilio_params,
    twilio_signature,
};
use lettre::AsyncTransport;
use tipwire::channels::sms::{Language, Texts};

/// The longest any wait of a scenario may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(120);
/// No flood sends more tips than this, whatever happens.
const MAX_TIPS: usize = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Web,
    Twilio,
    Telnyx,
    Email,
}

impl Channel {
    pub const ALL: [Self; 4] = [Self::Web, Self::Twilio, Self::Telnyx, Self::Email];

    pub fn name(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
            Self::Email => "email",
        }
    }

    /// The channel the sealed document names.
    pub fn stored_as(self) -> tipwire::domain::Channel {
        match self {
            Self::Web => tipwire::domain::Channel::Web,
            Self::Twilio | Self::Telnyx => tipwire::domain::Channel::Sms,
            Self::Email => tipwire::domain::Channel::Email,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx (Twilio: an answer that is not "not received"), SMTP 250.
    Acked,
    /// An answer refusing it: status and code, or the SMTP reply code.
    Refused(String),
    /// No answer at all: connection refused or reset.
    NoAnswer(String),
}

pub struct Tip {
    pub channel: Channel,
    pub tag: String,
    n: usize,
}

impl Tip {
    pub fn text(&self) -> String {
        format!(
            "Fault drill {}: two crews squaring up by the courts, come now",
            self.tag
        )
    }
}

pub struct Attempt {
    pub tip: usize,
    pub outcome: Outcome,
    pub took: Duration,
}

/// Acknowledged and failed attempts so far, per channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub acked: [usize; 4],
    pub failed: [usize; 4],
}

impl Counts {
    /// Every channel had `n` more acknowledged than at `then`.
    pub fn each_acked_since(&self, then: &Counts, n: usize) -> bool {
        (0..4).all(|c| self.acked[c] >= then.acked[c] + n)
    }
}

/// What a flood sent and what came back.
pub struct Record {
    pub tips: Mutex<Vec<Tip>>,
    pub attempts: Mutex<Vec<Attempt>>,
    counts: Mutex<Counts>,
    stop: AtomicBool,
    run: String,
    client: reqwest::Client,
    ports: Arc<Ports>,
    ca_pem: String,
}

impl Record {
    fn new_tip(&self, channel: Channel) -> Option<usize> {
        let mut tips = self.tips.lock().unwrap();
        if tips.len() >= MAX_TIPS {
            return None;
        }
        let n = tips.len();
        tips.push(Tip {
            channel,
            tag: format!("ftag-{}-{n}", channel.name()),
            n,
        });
        Some(n)
    }

    /// Sends tip `i` once and records the outcome.
    async fn attempt(&self, i: usize) -> Outcome {
        let (channel, tag, n, text) = {
            let tips = self.tips.lock().unwrap();
            let tip = &tips[i];
            (tip.channel, tip.tag.clone(), tip.n, tip.text())
        };
        let asked = Instant::now();
        let outcome = match channel {
            Channel::Web => self.web(&tag, &text).await,
            Channel::Twilio => self.twilio(n, &text).await,
            Channel::Telnyx => self.telnyx(n, &text).await,
            Channel::Email => self.email(n, &tag, &text).await,
        };
        let took = asked.elapsed();
        {
            let mut counts = self.counts.lock().unwrap();
            match outcome {
                Outcome::Acked => counts.acked[channel.index()] += 1,
                _ => counts.failed[channel.index()] += 1,
            }
        }
        self.attempts.lock().unwrap().push(Attempt {
            tip: i,
            outcome: outcome.clone(),
            took,
        });
        outcome
    }

    fn base(&self) -> String {
        format!("https://localhost:{}", self.ports.https())
    }

    async fn web(&self, tag: &str, text: &str) -> Outcome {
        let sent = self
            .client
            .post(format!("{}/tips", self.base()))
            .header("Accept", "application/json")
            .header("Idempotency-Key", format!("{}-{tag}", self.run))
            .form(&[("text", text), ("zone", "north"), ("urgency", "now")])
            .send()
            .await;
        match sent {
            Err(e) => Outcome::NoAnswer(e.to_string()),
            Ok(r) if r.status() == 200 => Outcome::Acked,
            Ok(r) => refused(r).await,
        }
    }

    /// A sender number, message id of its own per tip (the same on a retry).
    fn sender(&self, n: usize) -> (String, String) {
        (format!("+1555{:07}", n), format!("{}{n:08x}", self.run))
    }

    async fn twilio(&self, n: usize, text: &str) -> Outcome {
        let (from, id) = self.sender(n);
        let sid = format!("SM{id}");
        let params = twilio_params(&from, text, &sid);
        let signature = twilio_signature(
            AUTH_TOKEN,
            "https://tips.example.org/webhooks/sms/twilio",
            &params,
        );
        match post_twilio(&self.client, &self.base(), &params, &signature).await {
            Err(e) => Outcome::NoAnswer(e.to_string()),
            Ok(r) if r.status() == 200 => match r.text().await {
                // Twilio does not retry: the tipster is told, in TwiML.
                Ok(twiml) if twiml.contains(Texts::not_confirmed(Language::En)) => {
                    Outcome::Refused("200 not-received".into())
                }
                Ok(_) => Outcome::Acked,
                Err(e) => Outcome::NoAnswer(e.to_string()),
            },
            Ok(r) => refused(r).await,
        }
    }

    async fn telnyx(&self, n: usize, text: &str) -> Outcome {
        let (from, id) = self.sender(n);
        let body = telnyx_event(&from, text, &id);
        let key = telnyx_signing_key();
        match post_telnyx(&self.client, &self.base(), &key, &body, now()).await {
            Err(e) => Outcome::NoAnswer(e.to_string()),
            Ok(r) if r.status().is_success() => Outcome::Acked,
            Ok(r) => refused(r).await,
        }
    }

    async fn email(&self, n: usize, tag: &str, text: &str) -> Outcome {
        let mail = lettre::Message::builder()
            .from(format!("tipster{n}@example.net").parse().unwrap())
            .to(TIP_ADDRESS.parse().unwrap())
            .subject("Fault drill")
            .message_id(Some(format!("<{tag}@example.net>")))
            .body(text.to_owned())
            .unwrap();
        // A transport per message: none keeps a connection to a gateway
        // that was killed.
        match lettre_to(self.ports.smtp(), &self.ca_pem, false)
            .send(mail)
            .await
        {
            Ok(_) => Outcome::Acked,
            Err(e) => match e.status() {
                Some(code) => Outcome::Refused(code.to_string()),
                None => Outcome::NoAnswer(e.to_string()),
            },
        }
    }

    pub fn counts(&self) -> Counts {
        *self.counts.lock().unwrap()
    }

    /// Whether tip `i` was acknowledged by any attempt.
    pub fn acked(&self, i: usize) -> bool {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.tip == i && a.outcome == Outcome::Acked)
    }

    /// Sends every tip that is not acknowledged again, as its sender would,
    /// until it is (the gateway is up and well now).
    pub async fn retry_unacknowledged(&self) {
        let count = self.tips.lock().unwrap().len();
        for i in 0..count {
            let until = Instant::now() + PATIENCE;
            while !self.acked(i) {
                assert!(
                    Instant::now() < until,
                    "tip {i} acknowledged on a retry within {PATIENCE:?}"
                );
                if self.attempt(i).await != Outcome::Acked {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Record {
    /// Sends the first `n` acknowledged tips of each channel once more, as a
    /// sender does when an answer was lost on the way back: each must be
    /// acknowledged again and stay stored once.
    pub async fn resend_acknowledged(&self, n: usize) {
        for channel in Channel::ALL {
            let some: Vec<usize> = {
                let tips = self.tips.lock().unwrap();
                (0..tips.len())
                    .filter(|&i| tips[i].channel == channel)
                    .filter(|&i| self.acked(i))
                    .take(n)
                    .collect()
            };
            assert_eq!(some.len(), n, "{} tips to send again", channel.name());
            for i in some {
                assert_eq!(
                    self.attempt(i).await,
                    Outcome::Acked,
                    "a duplicate is answered"
                );
            }
        }
    }
}

/// "503 store-unavailable": the status and the stable code of the JSON body.
async fn refused(r: reqwest::Response) -> Outcome {
    let status = r.status().as_u16();
    let code = r
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|b| b["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Outcome::Refused(format!("{status} {code}"))
}

/// Tipsters sending on every channel until stopped.
pub struct Flood {
    pub record: Arc<Record>,
    senders: JoinSet<()>,
}

impl Flood {
    /// Starts `per_channel` senders on each channel, each sending one tip
    /// after another (pausing briefly after a failure).
    pub fn start(rig: &Rig, per_channel: usize) -> Self {
        let record = Arc::new(Record {
            tips: Mutex::default(),
            attempts: Mutex::default(),
            counts: Mutex::default(),
            stop: AtomicBool::new(false),
            run: random_hex(24),
            client: rig.client.clone(),
            ports: rig.ports.clone(),
            ca_pem: rig.ca_pem.clone(),
        });
        let mut senders = JoinSet::new();
        for channel in Channel::ALL {
            for _ in 0..per_channel {
                let record = record.clone();
                senders.spawn(async move {
                    while !record.stop.load(Ordering::SeqCst) {
                        let Some(i) = record.new_tip(channel) else {
                            return;
                        };
                        if record.attempt(i).await != Outcome::Acked {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                });
            }
        }
        Self { record, senders }
    }

    pub fn counts(&self) -> Counts {
        self.record.counts()
    }

    /// Waits until `done` holds for the counts, failing after [`PATIENCE`].
    pub async fn until(&self, what: &str, done: impl Fn(&Counts) -> bool) -> Counts {
        let until = Instant::now() + PATIENCE;
        loop {
            let counts = self.counts();
            if done(&counts) {
                return counts;
            }
            assert!(
                Instant::now() < until,
                "waited {PATIENCE:?} for {what}: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every channel has `n` more acknowledged tips than now.
    pub async fn acked_on_every_channel(&self, n: usize, when: &str) -> Counts {
        let then = self.counts();
        self.until(
            &format!("{n} tips acknowledged on every channel {when}"),
            |c| c.each_acked_since(&then, n),
        )
        .await
    }

    /// Waits until every channel has failed once more than now, and `also`
    /// holds.
    pub async fn failing_on_every_channel(&self, when: &str, also: impl Fn() -> bool) -> Counts {
        let then = self.counts();
        self.until(&format!("a failure on every channel {when}"), |c| {
            (0..4).all(|ch| c.failed[ch] > then.failed[ch]) && also()
        })
        .await
    }

    /// Stops the senders once each has its answer, and returns the record.
    pub async fn stop(mut self) -> Arc<Record> {
        self.record.stop.store(true, Ordering::SeqCst);
        while let Some(done) = self.senders.join_next().await {
            done.unwrap();
        }
        self.record
    }
}
