//! Whether Redis keeps what it acknowledged: the append-only file on, written
//! to disk before each reply (`appendfsync always`), and nothing evicted. A
//! tip is acknowledged once Redis answered its append, so a Redis that can
//! forget an answered write breaks "nothing acknowledged is lost". Redis's
//! answers to CONFIG GET are operator input from another process, read here;
//! what they mean is decided by [`judge`], a pure function. The app asks at
//! start-up (refusing to start), every minute, and when `/readyz` finds Redis
//! back after an outage (it may have been replaced or reconfigured), never on
//! a tip's path.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Store, StoreError};
use crate::config::{ConfigError, Durability, invalid};

/// What Redis says about its persistence (`CONFIG GET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    pub appendonly: String,
    pub appendfsync: String,
    pub maxmemory_policy: String,
}

/// What asking Redis gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Config(Persistence),
    /// CONFIG GET was refused: renamed or disabled (managed services), or not
    /// allowed to this ACL user.
    Refused,
}

/// The verdict on a Redis.
#[derive(Debug)]
pub enum Checked {
    /// Keeps every acknowledged tip, as far as Redis can promise.
    Durable,
    /// Could lose acknowledged tips in a way `redis.durability` accepts; the
    /// text says how, for a start-up warning.
    Accepted(String),
    /// Could lose acknowledged tips: refuse to start, fail `/readyz`.
    Refused(ConfigError),
}

const SETTING: &str = "redis.durability";

/// Decides whether tipwire may acknowledge tips stored in a Redis that
/// answered `observed`, under the operator's `mode`. Eviction is refused in
/// every mode: an evicting Redis that fills up deletes tips, replay markers
/// (replayed webhooks become tips again) and opt-outs (a tipster who said
/// STOP is texted), and nothing an operator could accept makes that safe.
pub fn judge(mode: Durability, observed: &Observed) -> Checked {
    let p = match observed {
        Observed::Config(p) => p,
        Observed::Refused => {
            return match mode {
                Durability::UnverifiedAccepted | Durability::DangerousNoPersistence => {
                    Checked::Accepted(format!(
                        "Redis refused CONFIG GET, so whether it keeps acknowledged tips is not \
                         checked (redis.durability = \"{}\")",
                        mode.as_str()
                    ))
                }
                Durability::Strict | Durability::EverysecAccepted => Checked::Refused(invalid(
                    SETTING,
                    "Redis refused CONFIG GET (managed services often rename or disable it; an \
                     ACL user needs +config|get), so tipwire cannot check that acknowledged tips \
                     survive a Redis crash",
                    "allow CONFIG GET to tipwire's Redis user; or confirm with the provider that \
                     Redis runs with appendonly yes, appendfsync always and maxmemory-policy \
                     noeviction, then set redis.durability = \"unverified-accepted\"",
                )),
            };
        }
    };
    if p.maxmemory_policy != "noeviction" {
        return Checked::Refused(invalid(
            SETTING,
            format!(
                "Redis runs with maxmemory-policy {}: when it fills up it deletes keys, and with \
                 them stored tips, replay markers and opt-outs",
                p.maxmemory_policy
            ),
            "run CONFIG SET maxmemory-policy noeviction on Redis and put \"maxmemory-policy \
             noeviction\" in redis.conf (a full Redis then refuses writes and tipwire answers \
             503); no setting of tipwire accepts an evicting Redis",
        ));
    }
    if p.appendonly != "yes" {
        if mode == Durability::DangerousNoPersistence {
            return Checked::Accepted(
                "Redis runs with appendonly no: a Redis restart loses every tip \
                 (redis.durability = \"dangerous-no-persistence\", for tests only)"
                    .to_owned(),
            );
        }
        return Checked::Refused(invalid(
            SETTING,
            format!(
                "Redis runs with appendonly {}, so a Redis restart loses every tip already \
                 acknowledged to its sender",
                p.appendonly
            ),
            "run CONFIG SET appendonly yes and CONFIG SET appendfsync always on Redis, and put \
             \"appendonly yes\" and \"appendfsync always\" in redis.conf",
        ));
    }
    if p.appendfsync == "always" {
        return Checked::Durable;
    }
    let accepted = match mode {
        Durability::EverysecAccepted => p.appendfsync == "everysec",
        Durability::DangerousNoPersistence => true,
        Durability::Strict | Durability::UnverifiedAccepted => false,
    };
    if accepted {
        return Checked::Accepted(format!(
            "Redis runs with appendfsync {}: a crash of the Redis host can lose tips already \
             acknowledged (redis.durability = \"{}\")",
            p.appendfsync,
            mode.as_str()
        ));
    }
    // `no` leaves writing to the kernel, which flushes about every 30 s.
    let lost = if p.appendfsync == "everysec" {
        "the last second's"
    } else {
        "up to the last half-minute's"
    };
    Checked::Refused(invalid(
        SETTING,
        format!(
            "Redis runs with appendfsync {}, so a crash of the Redis host can lose {lost} tips \
             already acknowledged to their senders",
            p.appendfsync
        ),
        if p.appendfsync == "everysec" {
            "run CONFIG SET appendfsync always on Redis and put \"appendfsync always\" in \
             redis.conf; or accept losing up to a second of tips with redis.durability = \
             \"everysec-accepted\""
        } else {
            "run CONFIG SET appendfsync always on Redis and put \"appendfsync always\" in \
             redis.conf"
        },
    ))
}

/// One value of `CONFIG GET name` (a name, value pair in RESP2, a map in RESP3).
fn config_value(reply: &HashMap<String, String>, name: &str) -> String {
    reply.get(name).cloned().unwrap_or_default()
}

impl Store {
    /// Asks Redis how it persists. `Observed::Refused` when Redis answered
    /// CONFIG GET with an error (unknown command, no permission); a store
    /// error when Redis could not be asked at all.
    pub async fn persistence(&self) -> Result<Observed, StoreError> {
        let mut conn = self.conn().await?;
        // One parameter per CONFIG GET: Redis 6 takes no more.
        let mut pipe = redis::pipe();
        for name in ["appendonly", "appendfsync", "maxmemory-policy"] {
            pipe.cmd("CONFIG").arg("GET").arg(name);
        }
        let answer: Result<Vec<HashMap<String, String>>, redis::RedisError> =
            pipe.query_async(&mut conn).await;
        match answer {
            Ok(replies) => {
                let get = |i: usize, name: &str| {
                    replies
                        .get(i)
                        .map(|r| config_value(r, name))
                        .unwrap_or_default()
                };
                Ok(Observed::Config(Persistence {
                    appendonly: get(0, "appendonly"),
                    appendfsync: get(1, "appendfsync"),
                    maxmemory_policy: get(2, "maxmemory-policy"),
                }))
            }
            Err(e) if matches!(e.code(), Some("ERR" | "NOPERM")) => Ok(Observed::Refused),
            Err(e) => Err(e.into()),
        }
    }
}

/// The last verdict on Redis, kept for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not asked since start-up or since Redis was last unreachable.
    Unchecked,
    Durable,
    Accepted,
    Refused,
}

/// Keeps asking Redis whether it is durable (see the module docs).
pub struct DurabilityWatch {
    store: Store,
    mode: Durability,
    state: Mutex<State>,
}

impl DurabilityWatch {
    pub fn new(store: Store, mode: Durability) -> Self {
        Self {
            store,
            mode,
            state: Mutex::new(State::Unchecked),
        }
    }

    fn set(&self, state: State) -> State {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *guard, state)
    }

    fn get(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Asks Redis and records the verdict, logging it when it changed (a
    /// refusal every time). A store error leaves the watch unchecked, so the
    /// next look once Redis is back asks again.
    pub async fn step(&self) -> Result<Checked, StoreError> {
        let observed = match self.store.persistence().await {
            Ok(observed) => observed,
            Err(e) => {
                self.forget();
                return Err(e);
            }
        };
        let checked = judge(self.mode, &observed);
        let (state, message) = match &checked {
            Checked::Durable => (State::Durable, None),
            Checked::Accepted(risk) => (State::Accepted, Some(risk.clone())),
            Checked::Refused(e) => (State::Refused, Some(e.to_string())),
        };
        let was = self.set(state.clone());
        match (&state, message) {
            (State::Refused, Some(message)) => {
                tracing::error!(code = "redis-not-durable", "{message}");
            }
            (State::Accepted, Some(risk)) if was != State::Accepted => {
                tracing::warn!(code = "redis-durability-accepted", "{risk}");
            }
            (State::Durable, _) if was == State::Refused => {
                tracing::info!("Redis keeps acknowledged tips again");
            }
            _ => {}
        }
        Ok(checked)
    }

    /// Redis was unreachable: ask again once it answers (it may have been
    /// replaced meanwhile).
    pub fn forget(&self) {
        self.set(State::Unchecked);
    }

    /// Whether tips stored now would be kept, asking Redis only when it was
    /// not asked since it was last unreachable. `Ok(false)`: Redis answered
    /// and could lose acknowledged tips.
    pub async fn durable(&self) -> Result<bool, StoreError> {
        match self.get() {
            State::Durable | State::Accepted => Ok(true),
            State::Refused => Ok(false),
            State::Unchecked => Ok(!matches!(self.step().await?, Checked::Refused(_))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(appendonly: &str, appendfsync: &str, policy: &str) -> Observed {
        Observed::Config(Persistence {
            appendonly: appendonly.into(),
            appendfsync: appendfsync.into(),
            maxmemory_policy: policy.into(),
        })
    }

    const MODES: [Durability; 4] = [
        Durability::Strict,
        Durability::EverysecAccepted,
        Durability::UnverifiedAccepted,
        Durability::DangerousNoPersistence,
    ];

    fn refusal(mode: Durability, observed: &Observed) -> String {
        match judge(mode, observed) {
            Checked::Refused(e) => e.to_string(),
            other => panic!("{mode:?} accepted {observed:?}: {other:?}"),
        }
    }

    #[test]
    fn aof_always_without_eviction_is_durable_in_every_mode() {
        for mode in MODES {
            assert!(matches!(
                judge(mode, &redis("yes", "always", "noeviction")),
                Checked::Durable
            ));
        }
    }

    #[test]
    fn an_evicting_redis_is_refused_in_every_mode_with_the_fix() {
        for policy in [
            "allkeys-lru",
            "volatile-ttl",
            "allkeys-random",
            "volatile-lfu",
        ] {
            for mode in MODES {
                let msg = refusal(mode, &redis("yes", "always", policy));
                assert!(msg.starts_with("redis.durability:"), "{msg}");
                assert!(msg.contains(policy), "{msg}");
                assert!(
                    msg.contains("Fix: run CONFIG SET maxmemory-policy noeviction"),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn aof_off_is_refused_unless_the_dangerous_mode_is_chosen() {
        for mode in [
            Durability::Strict,
            Durability::EverysecAccepted,
            Durability::UnverifiedAccepted,
        ] {
            let msg = refusal(mode, &redis("no", "everysec", "noeviction"));
            assert!(msg.contains("appendonly no"), "{msg}");
            assert!(msg.contains("CONFIG SET appendonly yes"), "{msg}");
            assert!(
                msg.contains("\"appendfsync always\" in redis.conf"),
                "{msg}"
            );
        }
        assert!(matches!(
            judge(
                Durability::DangerousNoPersistence,
                &redis("no", "everysec", "noeviction")
            ),
            Checked::Accepted(risk) if risk.contains("restart loses every tip")
        ));
    }

    #[test]
    fn everysec_needs_the_explicit_override_and_no_needs_dangerous_mode() {
        for mode in [Durability::Strict, Durability::UnverifiedAccepted] {
            let msg = refusal(mode, &redis("yes", "everysec", "noeviction"));
            assert!(msg.contains("appendfsync everysec"), "{msg}");
            assert!(msg.contains("CONFIG SET appendfsync always"), "{msg}");
            assert!(msg.contains("\"everysec-accepted\""), "{msg}");
        }
        assert!(matches!(
            judge(
                Durability::EverysecAccepted,
                &redis("yes", "everysec", "noeviction")
            ),
            Checked::Accepted(_)
        ));
        // "no" leaves flushing to the kernel: no override but the dangerous one.
        let msg = refusal(
            Durability::EverysecAccepted,
            &redis("yes", "no", "noeviction"),
        );
        assert!(msg.contains("appendfsync no"), "{msg}");
        assert!(!msg.contains("everysec-accepted"), "{msg}");
        assert!(matches!(
            judge(
                Durability::DangerousNoPersistence,
                &redis("yes", "no", "noeviction")
            ),
            Checked::Accepted(_)
        ));
    }

    #[test]
    fn a_refused_config_get_is_said_and_needs_the_unverified_override() {
        for mode in [Durability::Strict, Durability::EverysecAccepted] {
            let msg = refusal(mode, &Observed::Refused);
            assert!(msg.contains("refused CONFIG GET"), "{msg}");
            assert!(msg.contains("\"unverified-accepted\""), "{msg}");
        }
        for mode in [
            Durability::UnverifiedAccepted,
            Durability::DangerousNoPersistence,
        ] {
            assert!(matches!(
                judge(mode, &Observed::Refused),
                Checked::Accepted(_)
            ));
        }
        // When CONFIG GET does answer, "unverified" is checked as strict.
        refusal(
            Durability::UnverifiedAccepted,
            &redis("yes", "everysec", "noeviction"),
        );
    }

    #[test]
    fn a_missing_answer_counts_as_not_durable() {
        let msg = refusal(Durability::Strict, &redis("", "", "noeviction"));
        assert!(msg.contains("appendonly"), "{msg}");
        let msg = refusal(Durability::Strict, &redis("yes", "always", ""));
        assert!(msg.contains("maxmemory-policy"), "{msg}");
    }
}
