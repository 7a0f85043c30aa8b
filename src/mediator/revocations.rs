//! Revocation notices: when a device is revoked or its person removed (by the
//! admin CLI, a process of its own) or a session logs out, a notice naming the
//! device or the session's hash goes on the stream `<prefix>:revocations`.
//! Every gateway replica's live reader ([`super::live::LiveFeed`]) follows that
//! stream with the alert streams, on the same blocking read, and ends the
//! matching open alert streams at once. A reader that was cut off from Redis
//! reads the notices it missed when it reconnects (its cursor survives); a
//! stream whose liveness check cannot reach Redis ends too (fail closed).
//!
//! Entries carry no time beyond their coarse (minute) ids and only ids that
//! Redis already holds elsewhere: a device id, or the SHA-256 of a session
//! token (the name of its session key). The stream is trimmed to the newest
//! [`REVOCATIONS_KEPT`] notices.
//!
//! Untrusted: entries read back (parsed again; a foreign one is skipped).

use std::collections::HashMap;

use redis::{FromRedisValue, Value};

use super::DeviceId;
use crate::bus::names::REVOCATIONS_KEPT;
use crate::bus::scripts::REVOCATION_ANNOUNCE;
use crate::bus::{Store, StoreError, coarse_script};

/// What a notice ends: every stream of a device, or of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Device(DeviceId),
    /// The SHA-256 (hex) of the session's token.
    Session(String),
}

impl Ended {
    /// Parses a notice read back from Redis.
    pub fn parse(map: &HashMap<String, Value>) -> Option<Self> {
        let text = |name: &str| map.get(name).and_then(|v| String::from_redis_value(v).ok());
        if let Some(device) = text("device") {
            return DeviceId::parse(&device).map(Self::Device);
        }
        let session = text("session")?;
        let ok = session.len() == 64 && session.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then_some(Self::Session(session))
    }
}

/// Puts a notice on `<prefix>:revocations` for every replica's live reader.
pub async fn announce(store: &Store, ended: &Ended) -> Result<(), StoreError> {
    let (field, value) = match ended {
        Ended::Device(d) => ("device", d.as_str()),
        Ended::Session(hash) => ("session", hash.as_str()),
    };
    let now = crate::clock::now_ms();
    let mut conn = store.conn().await?;
    let _: String = coarse_script(REVOCATION_ANNOUNCE)
        .key(store.keys().revocations())
        .arg(now - now % 60_000)
        .arg(REVOCATIONS_KEPT)
        .arg(field)
        .arg(value)
        .invoke_async(&mut conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn notices_name_a_device_or_a_session_hash_and_nothing_else_parses() {
        assert_eq!(
            Ended::parse(&map(&[("device", "d_0123")])),
            Some(Ended::Device(DeviceId::parse("d_0123").unwrap()))
        );
        let hash = "ab".repeat(32);
        assert_eq!(
            Ended::parse(&map(&[("session", &hash)])),
            Some(Ended::Session(hash))
        );
        for bad in [
            map(&[]),
            map(&[("device", "a b")]),
            map(&[("session", "short")]),
            map(&[("session", &"zz".repeat(32))]),
            map(&[("other", "d_1")]),
        ] {
            assert_eq!(Ended::parse(&bad), None);
        }
    }
}
