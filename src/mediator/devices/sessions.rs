//! Login challenges and device sessions.
//!
//! A device asks for a challenge (32 random bytes, bound to its id, single
//! use, a minute), signs it (see [`super::keys`]) and gets a session: a random
//! 256-bit token in a `__Host-` cookie (HttpOnly, Secure, SameSite=Strict) and
//! a random CSRF token the app sends back in `X-CSRF-Token` on every
//! state-changing call. Redis holds the SHA-256 of each secret, never the
//! secret, except the CSRF token, which only matters alongside the cookie.
//! A session ends after `mediator.session_ttl_secs` without use, after
//! `mediator.session_max_secs` in any case, at logout, or when the device is
//! revoked.
//!
//! Untrusted: device ids, challenges, signatures and cookies come from phones;
//! session records read back from Redis are parsed again.

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderMap};
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::keys::B64URL;
use super::{CHALLENGE_LEN, DeviceError, DeviceRecord, Devices};
use crate::bus::timing::{coarse_due, minute_floor};
use crate::bus::{Store, StoreError};
use crate::clock;
use crate::config::CheckedQuota;
use crate::mediator::DeviceId;
use crate::mediator::revocations::{self, Ended};
use crate::ratelimit::{KeyedLimiter, Scope};

/// The session cookie. `__Host-`: the browser keeps it only if it is Secure,
/// has Path=/ and no Domain, so no sibling subdomain can set or read it.
pub const SESSION_COOKIE: &str = "__Host-tipwire_session";
/// Seconds a challenge can be answered.
pub const CHALLENGE_TTL_SECS: u64 = 60;
const TOKEN_BYTES: usize = 32;
/// 32 bytes in unpadded base64url.
const TOKEN_CHARS: usize = 43;
/// Challenges one device may ask for per minute (per replica): enough for a
/// few retries, not enough to fill Redis.
const CHALLENGES_PER_MINUTE: u32 = 10;

/// A challenge for the device to sign.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// 32 bytes, base64url.
    pub challenge: String,
    /// Unix seconds.
    pub expires: u64,
}

/// A session just made: the token goes into the cookie and nowhere else.
pub struct NewSession {
    token: Zeroizing<String>,
    pub csrf_token: Zeroizing<String>,
    pub device_id: DeviceId,
    /// The cookie's Max-Age: `mediator.session_max_secs`.
    pub max_age_secs: u64,
}

impl NewSession {
    /// The `Set-Cookie` value.
    pub fn cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
            self.token.as_str(),
            self.max_age_secs
        )
    }
}

/// The `Set-Cookie` value that makes the browser drop the session cookie.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

#[derive(Serialize, Deserialize)]
struct SessionRecord {
    device_id: String,
    csrf: String,
    /// Unix milliseconds.
    created_ms: u64,
}

/// A live session and its device.
pub struct Session {
    pub device_id: DeviceId,
    pub device: DeviceRecord,
    csrf: Zeroizing<String>,
    token_hash: String,
}

impl Session {
    /// Compares in constant time with the session's CSRF token.
    pub fn csrf_matches(&self, header: &str) -> bool {
        header.len() == self.csrf.len() && bool::from(header.as_bytes().ct_eq(self.csrf.as_bytes()))
    }

    /// Whether a revocation notice ends this session: its device was
    /// revoked or removed, or the session itself logged out.
    pub fn ended_by(&self, notice: &Ended) -> bool {
        match notice {
            Ended::Device(d) => *d == self.device_id,
            Ended::Session(hash) => *hash == self.token_hash,
        }
    }

    /// For the app to read back after a reload (`GET /api/v1/session`). Only
    /// same-origin pages can read that answer: no CORS header is ever sent.
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }
}

/// The session cookie's value, if the request has one that could be a token.
/// HTTP/2 may split cookies over several `Cookie` fields; all are read.
pub fn session_cookie(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    headers
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| Zeroizing::new(value.trim().to_owned()))
}

fn random_b64(len: usize) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut_slice());
    Zeroizing::new(B64URL.encode(bytes.as_slice()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub struct Sessions {
    store: Store,
    idle: Duration,
    max: Duration,
    challenges: KeyedLimiter<String>,
}

impl Sessions {
    pub fn new(store: Store, idle: Duration, max: Duration) -> Self {
        let per_minute = NonZeroU32::new(CHALLENGES_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            store,
            idle,
            max: max.max(idle),
            challenges: KeyedLimiter::new(
                CheckedQuota {
                    count: per_minute,
                    period: Duration::from_secs(60),
                },
                Scope::Client,
            ),
        }
    }

    /// `mediator.session_ttl_secs`.
    pub fn idle_ttl(&self) -> Duration {
        self.idle
    }

    /// `mediator.session_max_secs`.
    pub fn max_age(&self) -> Duration {
        self.max
    }

    /// A fresh challenge for an enrolled device. Unknown ids get nothing
    /// stored, so made-up ids cost Redis nothing.
    pub async fn challenge(
        &self,
        devices: &Devices,
        id: &DeviceId,
        now: SystemTime,
    ) -> Result<Challenge, DeviceError> {
        if devices.get(id).await?.is_none() {
            return Err(DeviceError::UnknownDevice);
        }
        self.challenges
            .check(&id.as_str().to_owned())
            .map_err(|limited| DeviceError::RateLimited {
                retry_after_secs: limited.retry_after_secs_past(),
            })?;
        let mut bytes = [0u8; CHALLENGE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let mut conn = self.store.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(self.store.keys().challenge(&sha256_hex(&bytes)))
            .arg(id.as_str())
            // An absolute minute: a relative expiry would tell the second a
            // mediator (perhaps woken by a push) asked to sign in.
            .arg("PXAT")
            .arg(coarse_due(
                clock::unix_ms(now),
                CHALLENGE_TTL_SECS.saturating_mul(1000),
            ))
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let expires = clock::unix_secs(now).saturating_add(CHALLENGE_TTL_SECS);
        Ok(Challenge {
            challenge: B64URL.encode(bytes),
            expires,
        })
    }

    /// Checks the signature over a challenge this device was given and makes
    /// a session. The challenge is used up whatever the outcome.
    pub async fn login(
        &self,
        devices: &Devices,
        id: &DeviceId,
        challenge: &str,
        signature: &str,
        now: SystemTime,
    ) -> Result<NewSession, DeviceError> {
        let challenge = decode_challenge(challenge).ok_or(DeviceError::ChallengeInvalid)?;
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        let bound: Option<String> = redis::cmd("GETDEL")
            .arg(keys.challenge(&sha256_hex(&challenge)))
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        if bound.as_deref() != Some(id.as_str()) {
            return Err(DeviceError::ChallengeInvalid);
        }
        let device = devices.get(id).await?.ok_or(DeviceError::UnknownDevice)?;
        if !device.signing_key()?.verifies_login(&challenge, signature) {
            return Err(DeviceError::SignatureInvalid);
        }
        let token = random_b64(TOKEN_BYTES);
        let csrf = random_b64(TOKEN_BYTES);
        let hash = sha256_hex(token.as_bytes());
        let record = Zeroizing::new(
            serde_json::to_string(&SessionRecord {
                device_id: id.as_str().to_owned(),
                csrf: csrf.to_string(),
                // To the minute, like every time stored.
                created_ms: minute_floor(clock::unix_ms(now)),
            })
            .map_err(|_| StoreError::Corrupt("session"))?,
        );
        let _: () = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(keys.session(&hash))
            .arg(record.as_str())
            .arg("PXAT")
            .arg(self.idle_end(minute_floor(clock::unix_ms(now)), clock::unix_ms(now)))
            .ignore()
            .sadd(keys.device_sessions(id.as_str()), &hash)
            .ignore()
            // No session outlives `max`, so neither need the list of them.
            .cmd("PEXPIREAT")
            .arg(keys.device_sessions(id.as_str()))
            .arg(coarse_due(clock::unix_ms(now), millis(self.max)))
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(NewSession {
            token,
            csrf_token: csrf,
            device_id: id.clone(),
            max_age_secs: self.max.as_secs(),
        })
    }

    /// The session of a cookie, with its device; restarts the idle timer.
    pub async fn load(
        &self,
        devices: &Devices,
        token: &str,
        now: SystemTime,
    ) -> Result<Session, DeviceError> {
        if token.len() != TOKEN_CHARS || !token.bytes().all(is_b64url) {
            return Err(DeviceError::SessionExpired);
        }
        let hash = sha256_hex(token.as_bytes());
        let key = self.store.keys().session(&hash);
        let mut conn = self.store.conn().await?;
        let raw: Option<Zeroizing<String>> = redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(StoreError::from)?
            .map(Zeroizing::new);
        let record: SessionRecord = raw
            .and_then(|json| serde_json::from_str(&json).ok())
            .ok_or(DeviceError::SessionExpired)?;
        let device_id = DeviceId::parse(&record.device_id).ok_or(DeviceError::SessionExpired)?;
        let age = clock::unix_ms(now).saturating_sub(record.created_ms);
        let left = millis(self.max).saturating_sub(age);
        if left == 0 {
            let _: Result<(), _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            return Err(DeviceError::SessionExpired);
        }
        // Sliding, but never past the session's absolute end; absolute
        // minutes, since a relative expiry restarted by every request would
        // tell when a mediator claimed or answered a tip, to the millisecond.
        let _: () = redis::cmd("PEXPIREAT")
            .arg(&key)
            .arg(self.idle_end(record.created_ms, clock::unix_ms(now)))
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        // A revoked device has no record: its sessions die with it even if
        // one was made while the revocation ran.
        let device = devices
            .get(&device_id)
            .await?
            .ok_or(DeviceError::SessionExpired)?;
        Ok(Session {
            device_id,
            device,
            csrf: Zeroizing::new(record.csrf),
            token_hash: hash,
        })
    }

    /// When a session made at `created_ms` and used at `now_ms` expires: a
    /// minute boundary at least `idle` after this minute, never past the
    /// session's end (`max` after it was made). Up to two minutes longer
    /// than `idle`: sessions store no time finer than the minute.
    fn idle_end(&self, created_ms: u64, now_ms: u64) -> u64 {
        let end = minute_floor(created_ms.saturating_add(millis(self.max)));
        coarse_due(now_ms, millis(self.idle)).min(end)
    }

    /// Whether the session still exists and its device is still enrolled,
    /// without restarting the idle timer: a long-lived stream asks this now
    /// and then, and ends when the answer is no (revoked, logged out or
    /// expired). An open stream alone does not keep a session alive.
    pub async fn is_live(&self, session: &Session) -> Result<bool, DeviceError> {
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        let (session_exists, device_exists): (bool, bool) = redis::pipe()
            .exists(keys.session(&session.token_hash))
            .exists(keys.device(session.device_id.as_str()))
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(session_exists && device_exists)
    }

    /// Ends one session, and its open alert streams on every replica.
    pub async fn logout(&self, session: &Session) -> Result<(), DeviceError> {
        let keys = self.store.keys();
        let mut conn = self.store.conn().await?;
        let _: () = redis::pipe()
            .atomic()
            .del(keys.session(&session.token_hash))
            .ignore()
            .srem(
                keys.device_sessions(session.device_id.as_str()),
                &session.token_hash,
            )
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        // The session is gone whatever happens here; a stream a lost notice
        // leaves open ends at its next liveness check.
        if let Err(e) =
            revocations::announce(&self.store, &Ended::Session(session.token_hash.clone())).await
        {
            tracing::warn!(error = %e, "logout notice not sent; open streams end at their next check");
        }
        Ok(())
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn decode_challenge(s: &str) -> Option<[u8; CHALLENGE_LEN]> {
    let s = s.trim();
    if s.len() > 64 {
        return None;
    }
    B64URL.decode(s).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    #[test]
    fn the_cookie_is_host_only_httponly_secure_and_strict() {
        let session = NewSession {
            token: random_b64(TOKEN_BYTES),
            csrf_token: random_b64(TOKEN_BYTES),
            device_id: DeviceId::parse("d_1").unwrap(),
            max_age_secs: 43_200,
        };
        let cookie = session.cookie();
        assert!(cookie.starts_with("__Host-tipwire_session="), "{cookie}");
        for attribute in [
            "; Path=/",
            "; Max-Age=43200",
            "; HttpOnly",
            "; Secure",
            "; SameSite=Strict",
        ] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(!cookie.contains("Domain"));
        assert_eq!(session.token.len(), TOKEN_CHARS);
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_across_split_headers() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; __Host-tipwire_session=tok; x=y"),
        );
        assert_eq!(session_cookie(&headers).unwrap().as_str(), "tok");
        let mut other = HeaderMap::new();
        other.append(
            header::COOKIE,
            HeaderValue::from_static("tipwire_session=tok; __Host-tipwire_sessionx=1"),
        );
        assert!(session_cookie(&other).is_none());
    }

    #[test]
    fn challenges_decode_only_at_32_bytes() {
        let ok = B64URL.encode([1u8; 32]);
        assert_eq!(decode_challenge(&ok), Some([1u8; 32]));
        assert!(decode_challenge(&B64URL.encode([1u8; 31])).is_none());
        assert!(decode_challenge(&B64URL.encode([1u8; 33])).is_none());
        assert!(decode_challenge("!!").is_none());
        assert!(decode_challenge(&"A".repeat(500)).is_none());
    }

    #[test]
    fn csrf_tokens_match_only_exactly() {
        let session = Session {
            device_id: DeviceId::parse("d_1").unwrap(),
            device: DeviceRecord {
                device_id: "d_1".into(),
                mediator_id: "m_1".into(),
                name: "Ana".into(),
                device_name: None,
                zones: vec![],
                supervisor: true,
                recipient: String::new(),
                signing_key: String::new(),
                on_duty: true,
                created: 0,
            },
            csrf: Zeroizing::new("abc".into()),
            token_hash: String::new(),
        };
        assert!(session.csrf_matches("abc"));
        for bad in ["", "ab", "abcd", "ABC", "abd"] {
            assert!(!session.csrf_matches(bad), "{bad}");
        }
    }
}
