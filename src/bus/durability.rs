//! Whether Redis keeps what it acknowledged: the append-only file on, written
//! to disk before each reply (`appendfsync always`), and nothing evicted. A
//! tip is acknowledged once Redis answered its append, so a Redis that can
//! forget an answered write breaks "nothing acknowledged is lost". Redis's
//! answers to CONFIG GET are operator input from another process, read here;
//! what they mean is decided by [`judge`], a pure function. The app asks at
//! start-up (refusing to start), every minute, and when `/readyz` finds Redis
//! back after an outage (it may have been replaced or reconfigured), never on
//! a tip's path.

use std::sync::Mutex;

use super::{Store, StoreError};
use crate::config::{ConfigError, Durability, invalid};

/// What Redis says about its persistence (`CONFIG GET`): each setting, or
/// `None` when the answer did not hold it in a form read here (a proxy or a
/// Redis-like server may answer in other shapes), which counts as not durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    pub appendonly: Option<String>,
    pub appendfsync: Option<String>,
    pub maxmemory_policy: Option<String>,
}

/// How a setting is named in a verdict: "runs with NAME VALUE", or that
/// Redis did not say.
fn runs_with(name: &str, value: Option<&str>) -> String {
    match value {
        Some(value) => format!("runs with {name} {value}"),
        None => format!("did not report a readable {name} (CONFIG GET answered without one)"),
    }
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
    let policy = p.maxmemory_policy.as_deref();
    if policy != Some("noeviction") {
        return Checked::Refused(invalid(
            SETTING,
            format!(
                "Redis {}: when it fills up it may delete keys, and with them stored tips, \
                 replay markers and opt-outs",
                runs_with("maxmemory-policy", policy)
            ),
            "run CONFIG SET maxmemory-policy noeviction on Redis and put \"maxmemory-policy \
             noeviction\" in redis.conf (a full Redis then refuses writes and tipwire answers \
             503); no setting of tipwire accepts an evicting Redis",
        ));
    }
    let appendonly = p.appendonly.as_deref();
    if appendonly != Some("yes") {
        if mode == Durability::DangerousNoPersistence {
            return Checked::Accepted(format!(
                "Redis {}: a Redis restart loses every tip \
                 (redis.durability = \"dangerous-no-persistence\", for tests only)",
                runs_with("appendonly", appendonly)
            ));
        }
        return Checked::Refused(invalid(
            SETTING,
            format!(
                "Redis {}, so a Redis restart may lose every tip already acknowledged to its \
                 sender",
                runs_with("appendonly", appendonly)
            ),
            "run CONFIG SET appendonly yes and CONFIG SET appendfsync always on Redis, and put \
             \"appendonly yes\" and \"appendfsync always\" in redis.conf",
        ));
    }
    let fsync = p.appendfsync.as_deref();
    if fsync == Some("always") {
        return Checked::Durable;
    }
    let everysec = fsync == Some("everysec");
    let accepted = match mode {
        Durability::EverysecAccepted => everysec,
        Durability::DangerousNoPersistence => true,
        Durability::Strict | Durability::UnverifiedAccepted => false,
    };
    if accepted {
        return Checked::Accepted(format!(
            "Redis {}: a crash of the Redis host can lose tips already acknowledged \
             (redis.durability = \"{}\")",
            runs_with("appendfsync", fsync),
            mode.as_str()
        ));
    }
    // `no` leaves writing to the kernel, which flushes about every 30 s.
    let lost = if everysec {
        "the last second's"
    } else {
        "up to the last half-minute's"
    };
    Checked::Refused(invalid(
        SETTING,
        format!(
            "Redis {}, so a crash of the Redis host can lose {lost} tips already acknowledged \
             to their senders",
            runs_with("appendfsync", fsync)
        ),
        if everysec {
            "run CONFIG SET appendfsync always on Redis and put \"appendfsync always\" in \
             redis.conf; or accept losing up to a second of tips with redis.durability = \
             \"everysec-accepted\""
        } else {
            "run CONFIG SET appendfsync always on Redis and put \"appendfsync always\" in \
             redis.conf"
        },
    ))
}

/// Longest setting value read: every value Redis documents for these three
/// is a short word; anything else is not read (nor logged).
const MAX_VALUE_BYTES: usize = 32;

/// One setting's text, when it is a short printable word.
fn word(value: &redis::Value) -> Option<&str> {
    let text = match value {
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?,
        redis::Value::SimpleString(s) => s.as_str(),
        redis::Value::VerbatimString { text, .. } => text.as_str(),
        _ => return None,
    };
    let ok = !text.is_empty()
        && text.len() <= MAX_VALUE_BYTES
        && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(text)
}

/// The value of `name` in one `CONFIG GET name` reply: a name, value array
/// (RESP2) or a map (RESP3). Any other shape, a pair that is not two short
/// words, or the name given twice with different values: `None`. Read from
/// the reply's shape by construction, so an odd answer is judged (as not
/// durable) rather than mistaken for an unreachable Redis.
fn config_value(reply: &redis::Value, name: &str) -> Option<String> {
    let pairs: Vec<(&redis::Value, &redis::Value)> = match reply {
        redis::Value::Array(items) if items.len() % 2 == 0 => items
            .chunks_exact(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((k, v)),
                _ => None,
            })
            .collect(),
        redis::Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => return None,
    };
    let mut found: Option<&str> = None;
    for (k, v) in pairs {
        if word(k).is_some_and(|k| k.eq_ignore_ascii_case(name)) {
            let v = word(v)?;
            if found.is_some_and(|f| f != v) {
                return None;
            }
            found = Some(v);
        }
    }
    found.map(str::to_owned)
}

impl Store {
    /// Asks Redis how it persists. `Observed::Refused` when Redis answered
    /// CONFIG GET with an error (unknown command, no permission); a store
    /// error when Redis could not be asked at all.
    pub async fn persistence(&self) -> Result<Observed, StoreError> {
        let mut conn = self.conn().await?;
        // One parameter per CONFIG GET: Redis 6 takes no more.
        let mut pipe = redis::pipe();
        for name in NAMES {
            pipe.cmd("CONFIG").arg("GET").arg(name);
        }
        let answer: Result<Vec<redis::Value>, redis::RedisError> =
            pipe.query_async(&mut conn).await;
        match answer {
            Ok(replies) => Ok(observed(&replies)),
            Err(e) if matches!(e.code(), Some("ERR" | "NOPERM")) => Ok(Observed::Refused),
            Err(e) => Err(e.into()),
        }
    }
}

/// The settings asked, in the order of the replies.
const NAMES: [&str; 3] = ["appendonly", "appendfsync", "maxmemory-policy"];

/// What the three replies to the CONFIG GET pipeline say.
fn observed(replies: &[redis::Value]) -> Observed {
    let get = |i: usize| {
        replies
            .get(i)
            .and_then(|reply| NAMES.get(i).and_then(|name| config_value(reply, name)))
    };
    Observed::Config(Persistence {
        appendonly: get(0),
        appendfsync: get(1),
        maxmemory_policy: get(2),
    })
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

    /// What a Redis answering these values is observed as (`""`: not said).
    fn redis(appendonly: &str, appendfsync: &str, policy: &str) -> Observed {
        let said = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        Observed::Config(Persistence {
            appendonly: said(appendonly),
            appendfsync: said(appendfsync),
            maxmemory_policy: said(policy),
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
    fn a_missing_answer_counts_as_not_durable_and_says_so() {
        let msg = refusal(Durability::Strict, &redis("", "", "noeviction"));
        assert!(
            msg.contains("did not report a readable appendonly"),
            "{msg}"
        );
        let msg = refusal(Durability::Strict, &redis("yes", "", "noeviction"));
        assert!(
            msg.contains("did not report a readable appendfsync"),
            "{msg}"
        );
        for mode in MODES {
            let msg = refusal(mode, &redis("yes", "always", ""));
            assert!(
                msg.contains("did not report a readable maxmemory-policy"),
                "{msg}"
            );
        }
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn pair(name: &str, value: Value) -> Value {
        Value::Array(vec![bulk(name), value])
    }

    /// The replies of a Redis that keeps every acknowledged tip, in RESP2
    /// (name, value arrays) or RESP3 (maps).
    fn durable_replies(resp3: bool) -> Vec<Value> {
        [
            ("appendonly", "yes"),
            ("appendfsync", "always"),
            ("maxmemory-policy", "noeviction"),
        ]
        .into_iter()
        .map(|(name, value)| {
            if resp3 {
                Value::Map(vec![(bulk(name), Value::SimpleString(value.to_owned()))])
            } else {
                pair(name, bulk(value))
            }
        })
        .collect()
    }

    use redis::Value;

    #[test]
    fn config_get_answers_in_either_protocol_are_read() {
        for resp3 in [false, true] {
            let observed = observed(&durable_replies(resp3));
            assert_eq!(observed, redis("yes", "always", "noeviction"));
            assert!(matches!(
                judge(Durability::Strict, &observed),
                Checked::Durable
            ));
        }
    }

    #[test]
    fn odd_config_get_answers_are_judged_not_durable_rather_than_unreachable() {
        let huge = "a".repeat(MAX_VALUE_BYTES + 1);
        let odd_fsync: Vec<Value> = vec![
            // A pair cut short, a nested or missing value, nothing at all.
            Value::Array(vec![bulk("appendfsync")]),
            pair("appendfsync", Value::Array(vec![bulk("always")])),
            pair("appendfsync", Value::Nil),
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![]),
            // Another setting's answer, or the name in another's place.
            pair("appendonly", bulk("always")),
            // Values no Redis gives: unbounded, control bytes, not UTF-8.
            pair("appendfsync", bulk(&huge)),
            pair("appendfsync", bulk("always\nappendonly yes")),
            pair("appendfsync", Value::BulkString(vec![0xff, 0xfe])),
            // Told twice, differently (as a proxy merging nodes might).
            Value::Array(vec![
                bulk("appendfsync"),
                bulk("always"),
                bulk("appendfsync"),
                bulk("no"),
            ]),
        ];
        for odd in odd_fsync {
            let mut replies = durable_replies(false);
            replies[1] = odd.clone();
            let observed = observed(&replies);
            assert_eq!(observed, redis("yes", "", "noeviction"), "{odd:?}");
            let msg = refusal(Durability::Strict, &observed);
            assert!(
                msg.contains("did not report a readable appendfsync"),
                "{msg}"
            );
        }
        // Fewer replies than asked: what is missing is not durable.
        let msg = refusal(Durability::Strict, &observed(&durable_replies(false)[..2]));
        assert!(msg.contains("maxmemory-policy"), "{msg}");
        // The same name told twice alike is read.
        let mut replies = durable_replies(false);
        replies[1] = Value::Array(vec![
            bulk("appendfsync"),
            bulk("always"),
            bulk("appendfsync"),
            bulk("always"),
        ]);
        assert!(matches!(
            judge(Durability::Strict, &observed(&replies)),
            Checked::Durable
        ));
    }
}
