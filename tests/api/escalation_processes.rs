//! Escalation across real gateway processes: two `tipwire serve` children
//! share one Redis and one key prefix, and are killed with SIGKILL (no drain,
//! no clean stop of their tasks) and started again around the deadlines. Each
//! stage of a tip must fire exactly once whichever process is up when it falls
//! due, an overdue stage must fire when a process comes back, and a claimed
//! alert must never escalate. `tests/api/escalation.rs` checks the same rules
//! with explicit time inside one process; here time is the wall clock, so
//! every wait has a deadline and every "exactly once" is counted exactly.
//! Deadlines fall on minute boundaries (no finer time is stored), so each
//! test runs for two to four minutes.
//!
//! No mediator is enrolled: firing reads only the alert's state hash, and who
//! hears of a stage is the push fan-out's business (push is off here). The
//! children's logs are read back only to find the port they listen on and who
//! fired what; they are printed when a test fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tipwire::bus::timing::{coarse_due, minute_ceil};
use tipwire::bus::{AlertReader, Store};
use tipwire::config::Settings;
use tipwire::domain::{Priority, TipId, Zone, ZoneChoice};
use tipwire::mediator::{AlertStates, Claim, DeviceId, EscalationPolicy, Escalations, Stage};

use crate::support::app::{delete_prefix, keys_and_certificate, require_redis, test_settings};
use crate::support::serve::{Serve, write_config};

/// From a tip's arrival to stage 1, and from stage 1 to stage 2: short enough
/// for a test, long enough that a kill and a restart fit between the stages
/// on a loaded machine (a start takes well under a second).
const SUPERVISORS_AFTER_SECS: u64 = 2;
const EVERYONE_AFTER_SECS: u64 = 4;
/// How often each gateway's escalation worker steps.
const POLL_MS: u64 = 200;
/// The longest any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long a test keeps watching after the last stage, for duplicates: six
/// poll cycles of every running gateway.
const QUIET: Duration = Duration::from_millis(6 * POLL_MS);
const RETENTION_SECS: u64 = 30 * 86_400;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sleeps until the wall clock reads `ms` (unix milliseconds).
async fn sleep_until_unix_ms(ms: u64) {
    let now = unix_ms();
    if ms > now {
        tokio::time::sleep(Duration::from_millis(ms - now)).await;
    }
}

/// A deadline for one wait, failing with what was awaited.
struct Patience {
    what: String,
    until: Instant,
}

impl Patience {
    fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            until: Instant::now() + PATIENCE,
        }
    }

    async fn tick(&self) {
        assert!(
            Instant::now() < self.until,
            "waited {PATIENCE:?} for {}",
            self.what
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A tip posted through a gateway, with its deadlines as scheduled in Redis.
struct Tip {
    id: TipId,
    /// Unix milliseconds when stage 1 and stage 2 are due.
    due: [u64; 2],
}

/// Fired stages of one tip, counted per stage.
type Counts = BTreeMap<Stage, usize>;

fn counts(stages: &[(Stage, usize)]) -> Counts {
    stages.iter().copied().collect()
}

/// One `tipwire serve` child. Dropping it kills it.
type Gateway = Serve;

/// What the gateways share: one Redis and key prefix, one keys directory, one
/// certificate; each gateway name has its own config file. On drop (after the
/// test's gateways, which are declared later) it deletes the prefix's keys and,
/// if the test failed, prints every child's log.
struct Cluster {
    settings: Settings,
    dir: tempfile::TempDir,
    client: reqwest::Client,
    store: Store,
    /// Every child's log file, in start order, with the gateway's name and
    /// start number (`a#0`, `b#1`, `a#2`…).
    logs: Vec<(String, PathBuf)>,
}

impl Cluster {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(dir.path());
        require_redis(&settings.redis.url);
        let (_, cert) = keys_and_certificate(dir.path(), &settings);
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let store = Store::new(&settings.redis).unwrap();
        Self {
            settings,
            dir,
            client,
            store,
            logs: Vec::new(),
        }
    }

    /// The config file of gateway `name`: email and push off, short
    /// escalation delays and a short poll.
    fn config(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        write_config(
            &path,
            &self.settings,
            &format!(
                r#"[email]
enabled = false

[push]
enabled = false

[escalation]
poll_interval_ms = {POLL_MS}

[escalation.now]
enabled = true
supervisors_after_secs = {SUPERVISORS_AFTER_SECS}
everyone_after_secs = {EVERYONE_AFTER_SECS}
"#
            ),
        );
        path
    }

    /// Starts gateway `name` and returns once it answers `/readyz`.
    async fn start(&mut self, name: &'static str) -> Gateway {
        let started = Instant::now();
        let label = format!("{name}#{}", self.logs.len());
        let log = self.dir.path().join(format!("{label}.log"));
        self.logs.push((label.clone(), log.clone()));
        let mut serve = Serve::start(&label, &self.config(name), &log, false).await;
        // The cluster prints every child's log, the killed ones' too.
        serve.echo_log = false;
        serve.wait_ready(&self.client).await;
        println!("gateway {label} ready in {:?}", started.elapsed());
        serve
    }

    /// Posts an urgent web tip for zone north through `gateway` and returns
    /// it with the deadlines its append scheduled.
    async fn post_tip(&self, gateway: &Gateway, text: &str) -> Tip {
        let reader = AlertReader::new(self.store.clone());
        let before: Vec<TipId> = reader
            .range_since(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.entry.tip_id)
            .collect();
        let posted = unix_ms();
        let response = self
            .client
            .post(format!("https://localhost:{}/tips", gateway.https))
            .header("Accept", "application/json")
            .form(&[("text", text), ("zone", "north"), ("urgency", "now")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let answered = unix_ms();
        let new: Vec<TipId> = reader
            .range_since(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.entry.tip_id)
            .filter(|id| !before.contains(id))
            .collect();
        assert_eq!(new.len(), 1, "one tip stored: {new:?}");
        let id = new.into_iter().next().unwrap();

        let mut conn = self.store.conn().await.unwrap();
        let mut due = [0; 2];
        for (slot, stage) in due.iter_mut().zip([Stage::Supervisors, Stage::Everyone]) {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(self.store.keys().escalations())
                .arg(format!("{id}:{}", stage.as_str()))
                .query_async(&mut conn)
                .await
                .unwrap();
            *slot = score.unwrap_or_else(|| panic!("stage {stage:?} of {id} is scheduled")) as u64;
        }
        // The gateways' [escalation] settings, not the shipped defaults, on
        // minute boundaries (no finer time is stored): never early, within
        // two minutes of the delay.
        let first = SUPERVISORS_AFTER_SECS * 1000;
        assert!(
            posted + first <= due[0] && due[0] <= coarse_due(answered, first),
            "stage 1 is due {SUPERVISORS_AFTER_SECS} s after arrival, on the minute: {posted} {due:?} {answered}"
        );
        assert_eq!(due[1], minute_ceil(due[0] + EVERYONE_AFTER_SECS * 1000));
        assert_eq!((due[0] % 60_000, due[1] % 60_000), (0, 0));
        Tip { id, due }
    }

    /// Claims `tip` on the shared Redis, as a phone on either gateway would.
    async fn claim(&self, tip: &Tip) {
        let states = AlertStates::new(self.store.clone(), RETENTION_SECS);
        let ana = DeviceId::parse("phone-ana").unwrap();
        // As an enrolled phone: the claim script refuses unenrolled devices.
        let mut conn = self.store.conn().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(self.store.keys().device(ana.as_str()))
            .arg("{}")
            .query_async(&mut conn)
            .await
            .unwrap();
        let claim = states.claim(&tip.id, &ana).await.unwrap();
        assert_eq!(claim, Claim::Claimed { version: 1 });
        assert!(
            unix_ms() < tip.due[0],
            "the claim landed before stage 1 was due"
        );
    }

    /// How often each stage of `tip` fired, from `<prefix>:escalation-events`.
    async fn fired(&self, tip: &Tip) -> Counts {
        let escalations = Escalations::new(
            self.store.clone(),
            EscalationPolicy::default(),
            RETENTION_SECS,
        );
        let mut counts = Counts::new();
        for event in escalations.events_after("0-0", 10_000).await.unwrap() {
            if event.tip_id == tip.id {
                assert_eq!(event.zone, ZoneChoice::Known(Zone::parse("north").unwrap()));
                assert_eq!(event.priority, Priority::Now);
                *counts.entry(event.stage).or_default() += 1;
            }
        }
        counts
    }

    /// Members of `<prefix>:escalations` still waiting for `tip`.
    async fn pending(&self, tip: &Tip) -> Vec<String> {
        let mut conn = self.store.conn().await.unwrap();
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.store.keys().escalations())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let own = format!("{}:", tip.id);
        members
            .into_iter()
            .filter(|m| m.starts_with(&own))
            .collect()
    }

    /// Waits until `stage` of `tip` fired (from when it is due), and returns
    /// the counts then.
    async fn wait_for(&self, tip: &Tip, stage: Stage) -> Counts {
        let due = match stage {
            Stage::Supervisors => tip.due[0],
            Stage::Everyone => tip.due[1],
        };
        sleep_until_unix_ms(due).await;
        let patience = Patience::new(format!("stage {} of {}", stage.as_str(), tip.id));
        loop {
            let counts = self.fired(tip).await;
            if counts.contains_key(&stage) {
                return counts;
            }
            patience.tick().await;
        }
    }

    /// Waits until no deadline of any of `tips` is left in the sorted set.
    async fn wait_until_settled(&self, tips: &[&Tip]) {
        let patience = Patience::new("every deadline to leave the sorted set");
        loop {
            let mut left = Vec::new();
            for tip in tips {
                left.extend(self.pending(tip).await);
            }
            if left.is_empty() {
                return;
            }
            patience.tick().await;
        }
    }

    /// Lines of every child's log saying `stage` of `tip` fired there, with
    /// the gateway's name: at most one in all, since a process killed right
    /// after its script ran may not have logged.
    fn fired_in_logs(&self, tip: &Tip, stage: Stage) -> Vec<&str> {
        let mut by = Vec::new();
        for (name, log) in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            for line in text.lines() {
                if line.contains("escalation fired")
                    && line.contains(tip.id.as_str())
                    && line.contains(&format!("stage=\"{}\"", stage.as_str()))
                {
                    by.push(name.as_str());
                }
            }
        }
        by
    }

    /// The final checks once every gateway in `running` has stepped for a
    /// while after the last stage: each stage of `tip` fired exactly once (in
    /// the durable record, and in at most one log), none of `claimed`'s did,
    /// and nothing of either is left in the sorted set.
    async fn assert_settled(&self, running: &mut [&mut Gateway], tip: &Tip, claimed: Option<&Tip>) {
        let all: Vec<&Tip> = std::iter::once(tip).chain(claimed).collect();
        self.wait_until_settled(&all).await;
        tokio::time::sleep(QUIET).await;
        for gateway in running.iter_mut() {
            gateway.assert_running();
        }
        assert_eq!(
            self.fired(tip).await,
            counts(&[(Stage::Supervisors, 1), (Stage::Everyone, 1)]),
            "each stage fired exactly once"
        );
        for stage in [Stage::Supervisors, Stage::Everyone] {
            let by = self.fired_in_logs(tip, stage);
            assert!(by.len() <= 1, "stage {stage:?} logged by {by:?}");
            println!("stage {} fired by {by:?}", stage.as_str());
        }
        assert_eq!(self.pending(tip).await, Vec::<String>::new());
        if let Some(claimed) = claimed {
            assert_eq!(
                self.fired(claimed).await,
                Counts::new(),
                "an alert claimed before stage 1 never escalates"
            );
            assert_eq!(self.pending(claimed).await, Vec::<String>::new());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, log) in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                eprintln!("──── gateway {name}: {} ────\n{text}", log.display());
            }
        }
        delete_prefix(&self.settings.redis.url, &self.settings.redis.key_prefix);
    }
}

/// Both gateways run; a tip comes in through `a`, another through `b` and is
/// claimed at once. After stage 1 fired, `victim` is killed with SIGKILL and
/// started again before stage 2 is due.
async fn stages_fire_once_when_a_gateway_is_killed_and_restarted_between_them(
    victim: &'static str,
) {
    let mut cluster = Cluster::new();
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let tip = cluster
        .post_tip(&a, "Two crews on Maple & 3rd, nobody answering")
        .await;
    let claimed = cluster.post_tip(&b, "Same crews, someone is on it").await;
    cluster.claim(&claimed).await;

    assert_eq!(
        cluster.wait_for(&tip, Stage::Supervisors).await,
        counts(&[(Stage::Supervisors, 1)]),
        "stage 1 fired once"
    );
    let mut survivor = if victim == "a" {
        a.kill();
        b
    } else {
        b.kill();
        a
    };
    assert!(
        unix_ms() < tip.due[1],
        "gateway {victim} was killed before stage 2 was due"
    );
    assert_eq!(
        cluster.fired(&tip).await,
        counts(&[(Stage::Supervisors, 1)])
    );

    let mut restarted = cluster.start(victim).await;
    assert!(
        unix_ms() < tip.due[1],
        "gateway {victim} was back before stage 2 was due, so both race for it"
    );
    cluster.wait_for(&tip, Stage::Everyone).await;
    cluster
        .assert_settled(&mut [&mut survivor, &mut restarted], &tip, Some(&claimed))
        .await;
}

#[tokio::test]
async fn each_stage_fires_once_when_the_gateway_that_took_the_tip_is_killed_and_restarted() {
    stages_fire_once_when_a_gateway_is_killed_and_restarted_between_them("a").await;
}

#[tokio::test]
async fn each_stage_fires_once_when_the_other_gateway_is_killed_and_restarted() {
    stages_fire_once_when_a_gateway_is_killed_and_restarted_between_them("b").await;
}

#[tokio::test]
async fn an_overdue_stage_fires_once_when_a_gateway_starts_after_both_were_down() {
    let mut cluster = Cluster::new();
    let a = cluster.start("a").await;
    let b = cluster.start("b").await;
    let tip = cluster
        .post_tip(&a, "Shots talk on the east corner, nobody on shift")
        .await;
    a.kill();
    b.kill();
    assert!(
        unix_ms() < tip.due[0],
        "both gateways were down before stage 1 was due"
    );

    // Stage 1 falls due while nothing runs: nothing fires, nothing is lost.
    sleep_until_unix_ms(tip.due[0] + 3 * POLL_MS).await;
    assert_eq!(cluster.fired(&tip).await, Counts::new());
    assert_eq!(cluster.pending(&tip).await.len(), 2);

    // The gateway that did not take the tip comes back alone: the overdue
    // stage 1 fires on its first steps. It dies again before stage 2.
    let b = cluster.start("b").await;
    assert_eq!(
        cluster.wait_for(&tip, Stage::Supervisors).await,
        counts(&[(Stage::Supervisors, 1)]),
        "the overdue stage 1 fired once"
    );
    b.kill();
    assert!(
        unix_ms() < tip.due[1],
        "gateway b was down again before stage 2 was due"
    );

    // Stage 2 falls due while nothing runs; the other gateway comes back
    // alone and fires it, then both run for a while.
    sleep_until_unix_ms(tip.due[1] + 3 * POLL_MS).await;
    assert_eq!(
        cluster.fired(&tip).await,
        counts(&[(Stage::Supervisors, 1)])
    );
    assert_eq!(cluster.pending(&tip).await, vec![format!("{}:2", tip.id)]);
    let mut a = cluster.start("a").await;
    assert_eq!(
        cluster.wait_for(&tip, Stage::Everyone).await,
        counts(&[(Stage::Supervisors, 1), (Stage::Everyone, 1)]),
        "the overdue stage 2 fired once"
    );
    let mut b = cluster.start("b").await;
    cluster
        .assert_settled(&mut [&mut a, &mut b], &tip, None)
        .await;
}
