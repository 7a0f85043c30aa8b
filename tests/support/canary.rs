//! Canary scans: everything at rest in Redis (and on disk, and in the
//! gateways' logs) as bytes, searched for planted identifying data.

use redis::Value;

use crate::support::app::{TestApp, logs};

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
