//! After a fault: what is in the alert stream against what the flood was
//! told. Every acknowledged tip is stored exactly once, nothing stored is
//! unknown or damaged (every entry parses, has its summary and opens with the
//! escrow key: the age crate for all, the `age` CLI for a sample of each
//! channel), retries with the same id were stored once, and tips that got an
//! error but were stored anyway (in doubt) are counted and printed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tipwire::bus::{AlertReader, StoredAlert};
use tipwire::domain::TipDocument;

use super::flood::{Channel, Outcome, Record};
use super::rig::Rig;
use crate::support::app::{age_cli_open, open_tip};

/// Per channel, what happened.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub tips: usize,
    pub attempts: usize,
    pub acknowledged: usize,
    /// Attempts answered with a refusal (503, 451, "not received").
    pub refused: usize,
    /// Attempts with no answer (connection refused or reset, timeout).
    pub unanswered: usize,
    /// Tips in the stream when the flood stopped that had been answered
    /// only with errors: stored, but their senders were not told so.
    pub in_doubt: Vec<String>,
    pub stored: usize,
}

/// The stream read so far: entry id → the flood's tip it holds, and the
/// opened document of the first entry of each channel (the `age` CLI's
/// sample). Each entry is opened once.
#[derive(Default)]
pub struct Ledger {
    opened: BTreeMap<String, usize>,
    samples: BTreeMap<Channel, (StoredAlert, TipDocument)>,
}

impl Ledger {
    /// Reads the whole stream (every entry must parse, have its summary and
    /// index, open with the escrow key and hold a tip of `record` as it was
    /// sent) and returns how many copies of each tip it holds.
    async fn read(&mut self, rig: &Rig, record: &Record) -> BTreeMap<usize, usize> {
        let alerts = all_alerts(rig).await;
        assert_complete(rig, &alerts).await;
        let tips = record.tips.lock().unwrap();
        let by_tag: BTreeMap<&str, usize> = tips
            .iter()
            .enumerate()
            .map(|(i, t)| (t.tag.as_str(), i))
            .collect();
        let mut copies: BTreeMap<usize, usize> = BTreeMap::new();
        for alert in alerts {
            if let Some(&i) = self.opened.get(&alert.id) {
                *copies.entry(i).or_default() += 1;
                continue;
            }
            let doc = open_tip(&alert, &rig.escrow)
                .unwrap_or_else(|| panic!("entry {} opens with the escrow key", alert.id));
            assert_eq!(doc.tip_id, alert.entry.tip_id.as_str());
            let tag = doc
                .text
                .split_whitespace()
                .find(|w| w.starts_with("ftag-"))
                .map(|w| w.trim_end_matches(':').to_owned())
                .unwrap_or_else(|| panic!("stored tip {} carries a tag: {:?}", alert.id, doc.text));
            let &i = by_tag
                .get(tag.as_str())
                .unwrap_or_else(|| panic!("stored tip {tag} was sent by the flood"));
            let tip = &tips[i];
            // A mail body's last line keeps its line break.
            assert_eq!(doc.text.trim_end(), tip.text(), "{tag} is stored as sent");
            assert_eq!(doc.channel, tip.channel.stored_as(), "{tag}");
            assert_eq!(alert.entry.channel, tip.channel.stored_as().as_str());
            *copies.entry(i).or_default() += 1;
            self.opened.insert(alert.id.clone(), i);
            self.samples.entry(tip.channel).or_insert((alert, doc));
        }
        copies
    }

    /// When the flood stopped, before any retry: every acknowledged tip is
    /// stored once, and the others stored (in doubt: their senders got an
    /// error) are returned. Stored = acknowledged + in doubt.
    pub async fn in_doubt(&mut self, rig: &Rig, record: &Record) -> BTreeSet<usize> {
        let copies = self.read(rig, record).await;
        let count = record.tips.lock().unwrap().len();
        let acknowledged: Vec<usize> = (0..count).filter(|&i| record.acked(i)).collect();
        for &i in &acknowledged {
            assert_eq!(
                copies.get(&i),
                Some(&1),
                "acknowledged tip {i} is stored once, before any retry"
            );
        }
        let in_doubt: BTreeSet<usize> = copies
            .keys()
            .copied()
            .filter(|&i| !record.acked(i))
            .collect();
        assert_eq!(copies.len(), acknowledged.len() + in_doubt.len());
        in_doubt
    }

    /// The final check, after the senders that retry have retried: prints a
    /// summary line per channel and returns the tallies.
    pub async fn check(
        &mut self,
        rig: &Rig,
        scenario: &str,
        record: &Record,
        in_doubt: &BTreeSet<usize>,
    ) -> BTreeMap<Channel, Tally> {
        let copies = self.read(rig, record).await;
        for (channel, (alert, doc)) in &self.samples {
            assert_eq!(
                &open_with_age_cli(rig, alert),
                doc,
                "the age CLI opens the {} sample as the age crate does",
                channel.name()
            );
        }
        let tips = record.tips.lock().unwrap();
        let mut tallies: BTreeMap<Channel, Tally> = Channel::ALL
            .iter()
            .map(|&c| (c, Tally::default()))
            .collect();
        for attempt in record.attempts.lock().unwrap().iter() {
            let tally = tallies.get_mut(&tips[attempt.tip].channel).unwrap();
            tally.attempts += 1;
            match &attempt.outcome {
                Outcome::Acked => {}
                Outcome::Refused(_) => tally.refused += 1,
                Outcome::NoAnswer(_) => tally.unanswered += 1,
            }
        }
        for (i, tip) in tips.iter().enumerate() {
            let tally = tallies.get_mut(&tip.channel).unwrap();
            tally.tips += 1;
            let n = copies.get(&i).copied().unwrap_or(0);
            assert!(
                n <= 1,
                "{} is stored once, whatever its retries: {n} copies",
                tip.tag
            );
            tally.stored += n;
            if record.acked(i) {
                tally.acknowledged += 1;
                assert_eq!(n, 1, "acknowledged {} is in the stream", tip.tag);
            }
            if in_doubt.contains(&i) {
                tally.in_doubt.push(tip.tag.clone());
            }
        }
        for (channel, t) in &tallies {
            assert!(t.tips > 0, "the flood sent on {}", channel.name());
            assert_eq!(
                t.acknowledged,
                t.tips,
                "every {} tip acknowledged in the end",
                channel.name()
            );
            eprintln!(
                "faults {scenario}: {:<6} tips {:>4}, attempts {:>4}, acknowledged {:>4}, \
                 refused {:>3}, unanswered {:>3}, in doubt (errored, stored) {:>3}, stored {:>4} {:?}",
                channel.name(),
                t.tips,
                t.attempts,
                t.acknowledged,
                t.refused,
                t.unanswered,
                t.in_doubt.len(),
                t.stored,
                t.in_doubt,
            );
        }
        let distinct: usize = tallies.values().map(|t| t.stored).sum();
        let acknowledged: usize = tallies.values().map(|t| t.acknowledged).sum();
        assert_eq!(
            distinct, acknowledged,
            "distinct tips stored = acknowledged, the ones in doubt once each"
        );
        tallies
    }
}

/// Every entry of the alert stream, parsed: one that misses a field or holds
/// a damaged one fails here. After a Redis restart the test's first command
/// may fail once while its connection reconnects.
async fn all_alerts(rig: &Rig) -> Vec<StoredAlert> {
    let reader = AlertReader::new(rig.store());
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match reader.range_since(0, 100_000).await {
            Ok(alerts) => return alerts,
            Err(e)
                if Instant::now() < until && !matches!(e, tipwire::bus::StoreError::Corrupt(_)) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("every stream entry parses (none half-stored): {e}"),
        }
    }
}

/// Nothing half-stored: the stream holds as many entries as were parsed,
/// and each has its summary (written by the same script) and its index.
async fn assert_complete(rig: &Rig, alerts: &[StoredAlert]) {
    let mut conn = rig.redis.connection();
    let keys = tipwire::bus::Keys::new(&rig.settings.redis.key_prefix);
    let len: usize = redis::cmd("XLEN")
        .arg(keys.alerts())
        .query(&mut conn)
        .unwrap();
    assert_eq!(len, alerts.len(), "every entry parsed");
    let summaries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(keys.alert_summaries())
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let summary_ids: Vec<&str> = summaries.ids.iter().map(|s| s.id.as_str()).collect();
    let alert_ids: Vec<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(summary_ids, alert_ids, "every alert has its summary");
    for alert in alerts {
        let index: Option<String> = redis::cmd("GET")
            .arg(keys.alert_index(&alert.entry.tip_id))
            .query(&mut conn)
            .unwrap();
        assert_eq!(index.as_deref(), Some(alert.id.as_str()), "alert index");
    }
}

/// Opens an entry's envelope with the reference `age` tool and the escrow
/// identity file `keys init` wrote.
fn open_with_age_cli(rig: &Rig, alert: &StoredAlert) -> TipDocument {
    let file = rig.dir.path().join(format!("{}.age", alert.entry.tip_id));
    std::fs::write(&file, &alert.entry.envelope).unwrap();
    let plain = age_cli_open(&rig.dir.path().join("escrow.identity"), &file);
    serde_json::from_slice(&plain).unwrap()
}
