//! Anonymity: identifying data planted in a request must appear nowhere at
//! rest (Redis, files), in logs or in metrics.

use redis::Value;

use crate::helpers::{TestApp, form_body, logs, random_hex, spawn_app, spawn_app_with};

pub fn flatten(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::BulkString(b) => out.extend_from_slice(b),
        Value::SimpleString(s) => out.extend_from_slice(s.as_bytes()),
        Value::VerbatimString { text, .. } => out.extend_from_slice(text.as_bytes()),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| flatten(v, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
    out.push(b'\n');
}

/// Every key and every value in the whole Redis database, as bytes.
pub fn dump_redis(url: &str) -> Vec<u8> {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let mut out = Vec::new();
    for key in keys {
        out.extend_from_slice(&key);
        out.push(b'\n');
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
        let cmd = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .clone(),
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
            _ => continue,
        };
        // A key may vanish between KEYS and the read (other tests clean up).
        if let Ok(value) = cmd.query::<Value>(&mut conn) {
            flatten(&value, &mut out);
        }
    }
    out
}

/// Fails if any canary appears in Redis (every key and value of the whole
/// database), the app's files, the captured logs, or what `/metrics` renders.
pub fn assert_nowhere(app: &TestApp, canaries: &[&str]) {
    let redis = dump_redis(&app.settings.redis.url);
    let mut disk = Vec::new();
    files_under(app.dir.path(), &mut disk);
    let logs = logs();
    let metrics = app.metrics.render();
    for canary in canaries {
        assert!(!contains(&redis, canary), "{canary} found in Redis");
        assert!(!contains(&disk, canary), "{canary} found on disk");
        assert!(!logs.contains(canary), "{canary} found in logs");
        assert!(!metrics.contains(canary), "{canary} found in metrics");
    }
}

pub fn files_under(dir: &std::path::Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.extend_from_slice(&std::fs::read(&path).unwrap());
        }
    }
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_canary_from_a_tip_request_reaches_redis_logs_metrics_or_disk() {
    let app = spawn_app().await;
    let run = random_hex(10);
    let text = format!("CANARY-TEXT-{run} fight at the corner");
    let agent = format!("CANARY-UA-{run}");
    let forwarded = format!("203.0.113.{}", u8::from_str_radix(&run[..2], 16).unwrap());
    let forwarded_canary = format!("CANARY-XFF-{run}");
    let extra = format!("CANARY-HDR-{run}");
    let query = format!("CANARY-QUERY-{run}");
    let zone = format!("canary-zone-{run}");

    let send = |body: String, path: String| {
        app.client
            .post(app.url(&path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .header("User-Agent", &agent)
            .header(
                "X-Forwarded-For",
                format!("{forwarded}, {forwarded_canary}"),
            )
            .header("X-Tipster-Note", &extra)
            .body(body)
            .send()
    };
    let ok = send(
        form_body(&[("text", &text), ("zone", "north"), ("urgency", "now")]),
        format!("/tips?ref={query}"),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    // A refused tip takes the error paths; they must not leak either.
    let refused = send(
        form_body(&[("text", &text), ("zone", &zone), ("urgency", "now")]),
        "/tips".into(),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 422);

    let alerts = app.alerts().await;
    assert_eq!(alerts.len(), 1);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("tipwire_tips_accepted_total{channel=\"web\"} 1"),
        "{metrics}"
    );

    assert_nowhere(
        &app,
        &[
            &text,
            &agent,
            &forwarded,
            &forwarded_canary,
            &extra,
            &query,
            &zone,
            &format!("CANARY-TEXT-{run}"),
        ],
    );
    let logs = logs();
    assert!(
        logs.contains("tip sealed and appended"),
        "the log capture works"
    );
    // The only loopback addresses in the log are listeners the servers
    // announce; a client's ephemeral address would show up as another port.
    let listeners: Vec<&str> = logs
        .match_indices("listening on: 127.0.0.1:")
        .map(|(i, m)| &logs[i + m.len()..])
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap())
        .collect();
    for (i, m) in logs.match_indices("127.0.0.1:") {
        let port = logs[i + m.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap();
        assert!(
            listeners.contains(&port),
            "a client address in the logs: {}",
            &logs[i.saturating_sub(200)..i + 30]
        );
    }
}

#[tokio::test]
async fn a_forwarded_for_canary_from_a_trusted_proxy_is_used_but_never_stored() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
        s.rate_limits.web.per_client.count = 1;
        s.rate_limits.web.per_client.per_secs = 3600;
    })
    .await;
    let run = random_hex(10);
    // Three digits in the last octet, so no other address has this one as a
    // prefix; 198.51.100.0/24 is TEST-NET-2, nobody's real address.
    let octet = |hex: &str| 100 + u16::from(u8::from_str_radix(hex, 16).unwrap()) % 150;
    let client = format!("198.51.100.{}", octet(&run[..2]));
    let neighbour = format!("198.51.100.{}", octet(&run[..2]) + 1);
    let text = format!("CANARY-TEXT-{run} fight at the corner");
    let agent = format!("CANARY-UA-{run}");

    let send = |forwarded: &str| {
        app.client
            .post(app.url("/tips"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .header("User-Agent", &agent)
            .header("X-Forwarded-For", forwarded)
            .body(form_body(&[
                ("text", &text),
                ("zone", "north"),
                ("urgency", "now"),
            ]))
            .send()
    };
    assert_eq!(send(&client).await.unwrap().status(), 200);
    // The forwarded address is believed: the same client is now limited (the
    // refusal path must not leak it either) and another one is not.
    assert_eq!(send(&client).await.unwrap().status(), 429);
    assert_eq!(send(&neighbour).await.unwrap().status(), 200);
    assert_eq!(app.alerts().await.len(), 2);

    assert!(
        logs().contains("tip sealed and appended"),
        "the log capture works"
    );
    assert_nowhere(
        &app,
        &[
            &client,
            &neighbour,
            &text,
            &agent,
            &format!("CANARY-TEXT-{run}"),
        ],
    );
}
