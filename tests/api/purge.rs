//! `tipwire purge` as an administrator runs it (the real binary): one thread,
//! or everything before a date, leaves Redis at once, and afterwards the
//! relay key opens nothing of what was purged, in Redis or in its AOF files.

use std::process::Command;

use base64::Engine as _;
use tipwire::crypto::Keyring;
use tipwire::domain::ThreadId;
use tipwire::outbound::relay::Kind;

use crate::support::app::TestApp;
use crate::support::private_redis::PrivateRedis;
use crate::support::sms::{spawn_sms_app, twilio_params};

const ANA: &str = "+15557651111";
const BO: &str = "+15557652222";

fn purge(app: &TestApp, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tipwire"))
        .arg("--config")
        .arg(app.cli_config())
        .arg("purge")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every value under the app's prefix (strings, list items, set and sorted
/// set members, hash values, stream fields), each also base64-decoded.
async fn every_value(app: &TestApp) -> Vec<Vec<u8>> {
    let mut conn = app.store.conn().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", app.store.keys().prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut values: Vec<Vec<u8>> = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let cmd = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
            "hash" => redis::cmd("HVALS").arg(&key).clone(),
            "stream" => {
                let r: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                for e in r.ids {
                    for v in e.map.values() {
                        values.push(redis::from_redis_value(v).unwrap());
                    }
                }
                continue;
            }
            other => panic!("{key}: unexpected type {other}"),
        };
        let v: redis::Value = cmd.query_async(&mut conn).await.unwrap();
        match v {
            redis::Value::Array(items) => {
                values.extend(items.iter().map(|i| redis::from_redis_value(i).unwrap()))
            }
            other => values.push(redis::from_redis_value(&other).unwrap()),
        }
    }
    let decoded: Vec<Vec<u8>> = values
        .iter()
        .filter_map(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .collect();
    values.extend(decoded);
    // JSON members (retry schedules) carry sealed text as base64 in a field.
    let nested: Vec<Vec<u8>> = values
        .iter()
        .filter_map(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
        .filter_map(|j| {
            let text = j.get("text")?.as_str()?.to_owned();
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        })
        .collect();
    values.extend(nested);
    values
}

/// What the relay key opens among `values`, as text.
fn opened_by_relay(app: &TestApp, values: &[Vec<u8>]) -> String {
    let ring = Keyring::load(&app.settings.keys.dir).unwrap();
    let mut out = String::new();
    for v in values {
        if let Ok(plain) = tipwire::crypto::open_with(v, ring.relay_identities()) {
            out.push_str(&String::from_utf8_lossy(&plain));
            out.push('\n');
        }
    }
    out
}

/// Two tipsters text, each gets a reply queued, one of them dead-lettered
/// and one scheduled for a retry: everything the relay key opens for them.
async fn two_threads(app: &TestApp) -> (ThreadId, ThreadId) {
    for (from, body, sid) in [(ANA, "ana's tip", "SM1"), (BO, "bo's tip", "SM2")] {
        assert_eq!(
            app.twilio(&twilio_params(from, body, sid)).await.status(),
            200
        );
    }
    let alerts = app.alerts().await;
    let thread = |i: usize| ThreadId::parse(&alerts[i].entry.thread).unwrap();
    let (ana, bo) = (thread(0), thread(1));
    for (t, who) in [(&ana, "ana"), (&bo, "bo")] {
        app.queue_reply(t, &format!("reply to {who}"), Kind::Reply)
            .await;
    }
    // A reply that failed for good, and one waiting for a retry.
    let keys = app.store.keys();
    let mut conn = app.store.conn().await.unwrap();
    let ring = Keyring::load(&app.settings.keys.dir).unwrap();
    let sealed = |text: &str| {
        let relay = ring.relay_identity().1.to_public();
        base64::engine::general_purpose::STANDARD
            .encode(tipwire::crypto::seal(text.as_bytes(), &[relay]).unwrap())
    };
    let _: String = redis::cmd("XADD")
        .arg(keys.outbound_dead())
        .arg("*")
        .arg("thread")
        .arg(ana.as_str())
        .arg("text")
        .arg(sealed("dead reply to ana"))
        .arg("reason")
        .arg("send-failed")
        .query_async(&mut conn)
        .await
        .unwrap();
    let member = serde_json::json!({
        "thread": ana.as_str(), "text": sealed("retried reply to ana"),
        "kind": "reply", "attempts": 1,
    });
    let _: () = redis::cmd("ZADD")
        .arg(keys.outbound_retry())
        .arg(1)
        .arg(member.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    (ana, bo)
}

#[tokio::test]
async fn purge_thread_removes_the_thread_and_the_relay_key_then_opens_nothing_of_it() {
    // Each key takes a few milliseconds to rewrite, so the rewrite outlasts
    // the purge unless the purge waits for it.
    let redis = PrivateRedis::start_with(&["--rdb-key-save-delay", "20000"]);
    let url = redis.url();
    let (app, _stand_in) = spawn_sms_app(|s| s.redis.url = url).await;
    let (ana, bo) = two_threads(&app).await;
    let before = opened_by_relay(&app, &every_value(&app).await);
    for seen in [
        ANA,
        "reply to ana",
        "dead reply to ana",
        "retried reply to ana",
        BO,
    ] {
        assert!(before.contains(seen), "the scan finds {seen:?}: {before}");
    }
    let mut conn = app.store.conn().await.unwrap();
    let sealed_address: Vec<u8> = redis::cmd("GET")
        .arg(app.store.keys().reply_to(ana.as_str()))
        .query_async(&mut conn)
        .await
        .unwrap();

    let said = purge(&app, &["--thread", ana.as_str()]);
    assert!(said.starts_with("purged 1 tip(s)"), "{said}");

    let after = opened_by_relay(&app, &every_value(&app).await);
    assert!(!after.contains(ANA) && !after.contains("ana"), "{after}");
    assert!(
        after.contains(BO) && after.contains("reply to bo"),
        "{after}"
    );
    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].entry.thread, bo.as_str());
    for key in [
        app.store.keys().reply_to(ana.as_str()),
        app.store.keys().thread_tips(ana.as_str()),
    ] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!exists, "{key}");
    }

    // When the purge returns, the AOF was rewritten and the old files are
    // gone: the sealed address is on disk no more.
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(info.contains("aof_rewrite_in_progress:0"), "{info}");
    let dir: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dir")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut files = 0;
    for entry in walk(std::path::Path::new(&dir[1])) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        assert!(
            !bytes
                .windows(sealed_address.len())
                .any(|w| w == sealed_address.as_slice()),
            "{} still holds ana's sealed address",
            entry.display()
        );
    }
    assert!(files > 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn purge_before_a_date_removes_every_tip_and_address_from_before_it_and_keeps_the_rest() {
    let (app, _stand_in) = spawn_sms_app(|_| {}).await;
    let (ana, bo) = two_threads(&app).await;
    let keys = app.store.keys();
    let mut conn = app.store.conn().await.unwrap();
    // Ana's tip and address are made forty days old, as if she texted then.
    let now = crate::support::sms::now();
    let old_ms = (now - 40 * 86_400) / 60 * 60_000;
    let ana_alert = app
        .alerts()
        .await
        .into_iter()
        .find(|a| a.entry.thread == ana.as_str())
        .unwrap();
    let old_id = format!("{old_ms}-0");
    for stream in [
        keys.alerts().to_owned(),
        format!("{}:alert-summaries", keys.prefix()),
    ] {
        backdate(&app, &stream, &ana_alert.id, &old_id).await;
    }
    // Her last text 25 days ago: the address expires 30 days after the hour.
    let last_contact = now - 25 * 86_400;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(keys.alert_index(&ana_alert.entry.tip_id))
        .arg(&old_id)
        .arg("KEEPTTL")
        .cmd("DEL")
        .arg(keys.thread_tips(ana.as_str()))
        .cmd("RPUSH")
        .arg(keys.thread_tips(ana.as_str()))
        .arg(&old_id)
        .cmd("EXPIREAT")
        .arg(keys.reply_to(ana.as_str()))
        .arg(last_contact - last_contact % 3600 + 3600 + 30 * 86_400)
        .query_async(&mut conn)
        .await
        .unwrap();

    let said = purge(&app, &["--before", "20d"]);
    assert!(said.starts_with("purged 1 tip(s)"), "{said}");

    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].entry.thread, bo.as_str());
    for key in [
        keys.alert_index(&ana_alert.entry.tip_id),
        keys.alert_state(&ana_alert.entry.tip_id),
        keys.reply_to(ana.as_str()),
    ] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!exists, "{key}");
    }
    let kept: bool = redis::cmd("EXISTS")
        .arg(keys.reply_to(bo.as_str()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(kept, "bo texted today: his address stays");
    assert!(!opened_by_relay(&app, &every_value(&app).await).contains(ANA));
}

/// Moves entry `id` of `stream` to the older `new_id`, fields and all (the
/// stream is written again, oldest first, since ids only grow).
async fn backdate(app: &TestApp, stream: &str, id: &str, new_id: &str) {
    let mut conn = app.store.conn().await.unwrap();
    let found: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut entries: Vec<_> = found
        .ids
        .into_iter()
        .map(|e| (if e.id == id { new_id.to_owned() } else { e.id }, e.map))
        .collect();
    entries.sort_by_key(|(id, _)| {
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    });
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("DEL").arg(stream);
    for (id, map) in entries {
        let add = pipe.cmd("XADD").arg(stream).arg(id);
        for (k, v) in map {
            add.arg(k)
                .arg(redis::from_redis_value::<Vec<u8>>(&v).unwrap());
        }
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
}

/// A `--before` in the future (a typo'd year, milliseconds for seconds) would
/// purge every tip there is; it is refused, as is one that is no time, and
/// nothing changes.
#[tokio::test]
async fn purge_before_a_future_or_malformed_time_is_refused_and_removes_nothing() {
    let app = crate::support::app::spawn_app_with(|_| {}).await;
    assert_eq!(
        app.post_tip("still here", "north", "now").await.status(),
        200
    );
    for before in [
        "2999-01-01T00:00:00Z",
        "99999999999999",
        "yesterday-ish",
        "-5",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tipwire"))
            .arg("--config")
            .arg(app.cli_config())
            .arg("purge")
            .arg("--before")
            .arg(before)
            .output()
            .unwrap();
        assert!(!out.status.success(), "--before {before} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--before"), "{stderr}");
        assert_eq!(
            app.alerts().await.len(),
            1,
            "--before {before} removed a tip"
        );
    }
}
