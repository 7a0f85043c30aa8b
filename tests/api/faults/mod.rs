//! Crash, restart and fault tests (issue 11, part 2): a real `tipwire serve`
//! child and a private `redis-server` with AOF `always`, tips on every
//! channel at once (web form, signed Twilio and Telnyx webhooks, SMTP), and
//! one fault per test: the gateway killed with SIGKILL, Redis killed with
//! SIGKILL and restarted from its AOF, Redis frozen with SIGSTOP past the
//! response timeout, Redis refusing writes (MISCONF, maxmemory), the relay
//! killed between sending a reply and acknowledging it. After each fault the
//! stream is checked against what the senders were told (`ledger.rs`): every
//! acknowledged tip is there once and opens, nothing is damaged, and tips
//! that got an error but were stored anyway are counted and printed.
//!
//! Every wait is on a condition with a deadline; the faults happen after a
//! number of acknowledgements, not after a time. Failing tests print every
//! gateway's log.

mod workers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::faults::flood::{Channel, Flood, Outcome, PATIENCE, Record};
use crate::support::faults::ledger::{Ledger, Tally};
use crate::support::faults::rig::Rig;

/// Senders per channel: eight requests in flight at once.
const PER_CHANNEL: usize = 2;
/// Tips acknowledged on each channel before a fault and again after it.
const ACKS: usize = 10;

/// Stops the flood, checks the stream and notes which stored tips no answer
/// acknowledged, lets the senders retry (and deliver a few acknowledged
/// ones twice, as providers do), and checks the stream again.
async fn settle(
    rig: &Rig,
    flood: Flood,
    scenario: &str,
) -> (Arc<Record>, BTreeMap<Channel, Tally>) {
    let record = flood.stop().await;
    let mut ledger = Ledger::default();
    let in_doubt = ledger.in_doubt(rig, &record).await;
    record.retry_unacknowledged().await;
    record.resend_acknowledged(3).await;
    let tallies = ledger.check(rig, scenario, &record, &in_doubt).await;
    (record, tallies)
}

/// Every refusal is the clear one for a store that cannot take the tip:
/// `503 store-unavailable` on the web and Telnyx, Twilio's "not received"
/// TwiML (Twilio does not retry), SMTP 451 (the sending server retries).
fn assert_refusals_are_store_unavailable(record: &Record) {
    let tips = record.tips.lock().unwrap();
    for attempt in record.attempts.lock().unwrap().iter() {
        if let Outcome::Refused(answer) = &attempt.outcome {
            let expected = match tips[attempt.tip].channel {
                Channel::Web | Channel::Telnyx => "503 store-unavailable",
                Channel::Twilio => "200 not-received",
                Channel::Email => "451",
            };
            assert_eq!(answer, expected, "{}", tips[attempt.tip].tag);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_tips_survive_the_gateway_killed_mid_flood_and_restarted() {
    let mut rig = Rig::new("gateway-kill", |_| {}).await;
    rig.start_gateway().await;
    let flood = Flood::start(&rig, PER_CHANNEL);
    flood.acked_on_every_channel(ACKS, "before the kill").await;
    rig.kill_gateway();
    flood
        .failing_on_every_channel("while the gateway is down", || true)
        .await;
    rig.start_gateway().await;
    flood
        .acked_on_every_channel(ACKS, "after the restart")
        .await;
    let (record, tallies) = settle(&rig, flood, "gateway SIGKILL").await;
    assert_refusals_are_store_unavailable(&record);
    for (channel, tally) in &tallies {
        assert!(tally.unanswered > 0, "the kill cut {} off", channel.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_tips_survive_redis_killed_mid_flood_and_restarted_from_its_aof() {
    let mut rig = Rig::new("redis-kill", |s| {
        s.redis.connect_timeout = std::time::Duration::from_millis(500);
        s.redis.response_timeout = std::time::Duration::from_millis(1_000);
    })
    .await;
    rig.start_gateway().await;
    let flood = Flood::start(&rig, PER_CHANNEL);
    flood.acked_on_every_channel(ACKS, "before the kill").await;
    rig.redis.kill();
    flood
        .failing_on_every_channel("while Redis is down", || true)
        .await;
    rig.redis.start_again_as_before();
    flood
        .acked_on_every_channel(ACKS, "after Redis restarted")
        .await;
    rig.wait_ready().await;
    let (record, tallies) = settle(&rig, flood, "redis SIGKILL").await;
    assert_refusals_are_store_unavailable(&record);
    for (channel, tally) in &tallies {
        assert!(
            tally.refused > 0,
            "{} refused while Redis was down",
            channel.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_gets_fast_refusals_not_hangs_and_service_comes_back_by_itself() {
    const TIMEOUT_MS: u64 = 1_000;
    // Far above what a refusal takes (a few round trips, each bounded by the
    // response timeout): this catches a hang, not a slow answer.
    const BOUND: Duration = Duration::from_secs(20);
    let mut rig = Rig::new("redis-sigstop", |s| {
        s.redis.connect_timeout = std::time::Duration::from_millis(500);
        s.redis.response_timeout = std::time::Duration::from_millis(TIMEOUT_MS);
    })
    .await;
    rig.start_gateway().await;
    let flood = Flood::start(&rig, PER_CHANNEL);
    flood
        .acked_on_every_channel(ACKS, "before the freeze")
        .await;
    rig.redis.freeze();
    let frozen = Instant::now();
    // Frozen until every channel was refused, and well past the timeout.
    flood
        .failing_on_every_channel("while Redis is frozen", || {
            frozen.elapsed() > Duration::from_millis(3 * TIMEOUT_MS)
        })
        .await;
    rig.redis.thaw();
    flood.acked_on_every_channel(ACKS, "after SIGCONT").await;
    let (record, tallies) = settle(&rig, flood, "redis SIGSTOP").await;
    assert_refusals_are_store_unavailable(&record);
    let attempts = record.attempts.lock().unwrap();
    let slowest = attempts.iter().map(|a| a.took).max().unwrap();
    for attempt in attempts.iter() {
        assert!(
            !matches!(attempt.outcome, Outcome::NoAnswer(_)),
            "every request got an answer: {:?}",
            attempt.outcome
        );
        assert!(attempt.took < BOUND, "an answer took {:?}", attempt.took);
    }
    eprintln!(
        "faults redis SIGSTOP: slowest answer {slowest:?} (response timeout {TIMEOUT_MS} ms)"
    );
    for (channel, tally) in &tallies {
        assert!(
            tally.refused > 0,
            "{} refused while Redis was frozen",
            channel.name()
        );
    }
}

/// Sets `CONFIG SET` `name` to `value` on the rig's Redis.
fn config_set(rig: &Rig, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(&mut rig.redis.connection())
        .unwrap();
}

/// Runs BGSAVE and waits for its end; returns `rdb_last_bgsave_status`.
async fn bgsave(rig: &Rig) -> String {
    let mut conn = rig.redis.connection();
    let _: String = redis::cmd("BGSAVE").query(&mut conn).unwrap();
    let until = Instant::now() + PATIENCE;
    loop {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut conn)
            .unwrap();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .unwrap()
                .trim()
                .to_owned()
        };
        if field("rdb_bgsave_in_progress") == "0" {
            return field("rdb_last_bgsave_status");
        }
        assert!(Instant::now() < until, "BGSAVE ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the gateways' logs hold `line`.
async fn wait_for_log(rig: &Rig, line: &str) {
    let until = Instant::now() + PATIENCE;
    while !rig.logs().contains(line) {
        assert!(Instant::now() < until, "the gateway logged {line:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusing_writes_gets_clear_refusals_and_a_log_line_naming_the_cause() {
    let mut rig = Rig::new("redis-refuses", |_| {}).await;
    rig.start_gateway().await;
    let flood = Flood::start(&rig, PER_CHANNEL);
    flood.acked_on_every_channel(ACKS, "before MISCONF").await;

    // MISCONF: snapshots on, and one fails (its directory is gone), so
    // `stop-writes-on-bgsave-error` refuses every write.
    let data = rig.redis.dir().to_owned();
    let gone = data.join("gone");
    std::fs::create_dir(&gone).unwrap();
    config_set(&rig, "save", "3600 1");
    config_set(&rig, "dir", gone.to_str().unwrap());
    std::fs::remove_dir(&gone).unwrap();
    assert_eq!(bgsave(&rig).await, "err");
    flood
        .failing_on_every_channel("while Redis refuses writes", || true)
        .await;
    wait_for_log(&rig, "redis refuses writes: MISCONF").await;
    // The operator's fix: a directory Redis can write to.
    config_set(&rig, "dir", data.to_str().unwrap());
    assert_eq!(bgsave(&rig).await, "ok");
    config_set(&rig, "save", "");
    flood.acked_on_every_channel(ACKS, "after MISCONF").await;

    // maxmemory reached under noeviction.
    config_set(&rig, "maxmemory", "1");
    flood
        .failing_on_every_channel("while Redis is full", || true)
        .await;
    wait_for_log(&rig, "redis is out of memory (maxmemory): OOM").await;
    config_set(&rig, "maxmemory", "0");
    flood.acked_on_every_channel(ACKS, "after OOM").await;

    let (record, tallies) = settle(&rig, flood, "redis refuses writes").await;
    assert_refusals_are_store_unavailable(&record);
    for (channel, tally) in &tallies {
        assert_eq!(
            tally.unanswered,
            0,
            "every {} request was answered",
            channel.name()
        );
        assert!(
            tally.refused >= 2,
            "{} refused for both causes",
            channel.name()
        );
    }
    let logs = rig.logs();
    for cause in [
        "redis refuses writes: MISCONF",
        "redis is out of memory (maxmemory): OOM",
    ] {
        let lines = logs.lines().filter(|l| l.contains(cause)).count();
        eprintln!("faults redis refuses writes: {lines} log lines say {cause:?}");
    }
}
