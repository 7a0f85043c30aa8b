//! The Redis connection. The gateway starts even when Redis is down and
//! connects on first use; the connection manager reconnects by itself after
//! Redis returns, so no restart is ever needed. Every failure maps to
//! [`StoreError::Unavailable`], which the HTTP edge answers with 503.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use super::Keys;
use crate::config::RedisSettings;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer, or refused; the message names why (see
    /// [`refusal`]), which is what the one log line at the edge says.
    #[error("{}: {}", refusal(.0), .0)]
    Unavailable(#[source] redis::RedisError),
    #[error("redis returned data tipwire did not write: {0}")]
    Corrupt(&'static str),
}

/// What an operator must fix, from the error code Redis answered with: a
/// server that cannot persist (`MISCONF`: with `stop-writes-on-bgsave-error`,
/// a failed snapshot or AOF write) or is full (`OOM`: `maxmemory` reached
/// under `noeviction`) is up and answering, so "unavailable" alone would send
/// the operator looking at the network. The public answer (503
/// `store-unavailable`, SMTP 451) is the same for every cause.
fn refusal(e: &redis::RedisError) -> &'static str {
    match e.code() {
        Some("MISCONF") => "redis refuses writes",
        Some("OOM") => "redis is out of memory (maxmemory)",
        Some("READONLY") => "redis refuses writes (read-only replica)",
        _ => "redis is unavailable",
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        Self::Unavailable(e)
    }
}

/// `s` with Redis glob characters escaped, so a key prefix such as
/// `{tipwire}` or one holding `*` matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    config: ConnectionManagerConfig,
    manager: ArcSwapOption<ConnectionManager>,
    connecting: tokio::sync::Mutex<()>,
    connect_timeout: Duration,
    keys: Keys,
}

impl Store {
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        let client = redis::Client::open(settings.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(settings.connect_timeout)
            .set_response_timeout(settings.response_timeout)
            .set_number_of_retries(1)
            .set_max_delay(500);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                manager: ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(()),
                connect_timeout: settings.connect_timeout,
                keys: Keys::new(&settings.key_prefix),
            }),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// A connection handle; connects on first use.
    pub async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(m) = self.inner.manager.load_full() {
            return Ok((*m).clone());
        }
        let _guard = self.inner.connecting.lock().await;
        if let Some(m) = self.inner.manager.load_full() {
            return Ok((*m).clone());
        }
        let manager = ConnectionManager::new_with_config(
            self.inner.client.clone(),
            self.inner.config.clone(),
        )
        .await?;
        self.inner.manager.store(Some(Arc::new(manager.clone())));
        Ok(manager)
    }

    /// A connection of its own, not shared and without a response timeout,
    /// for commands that block on purpose (`XREAD BLOCK`): on the shared
    /// connection a blocked command would hold up every other caller and trip
    /// the response timeout. It does not reconnect by itself; the caller
    /// makes a new one after an error.
    pub async fn dedicated_conn(&self) -> Result<MultiplexedConnection, StoreError> {
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(self.inner.connect_timeout);
        Ok(self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// Round trip used by `/readyz`.
    /// Entries of stream `key` after id `after` (exclusive; `0-0` for all),
    /// oldest first, at most `count`: how every reader catches up.
    pub async fn range_after(
        &self,
        key: &str,
        after: &str,
        count: usize,
    ) -> Result<redis::streams::StreamRangeReply, StoreError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("XRANGE")
            .arg(key)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?)
    }

    /// Every key named `<prefix>:<kind>:…` (`kind` one of the
    /// [`super::names`] suffixes), for the rare administrative sweeps that
    /// must find keys by kind (offboarding: a person's invites and claims).
    /// `SCAN`, so Redis is never blocked; as many keys as there are of that
    /// kind (bounded by their expiry).
    pub async fn scan_kind(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}:{kind}:*", glob_escape(self.keys().prefix()));
        let mut conn = self.conn().await?;
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await?;
            out.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key twice.
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusing_redis_is_named_by_its_cause() {
        let misconf = redis::make_extension_error(
            "MISCONF".into(),
            Some("Errors writing to the AOF file".into()),
        );
        let oom = redis::make_extension_error(
            "OOM".into(),
            Some("command not allowed when used memory > 'maxmemory'.".into()),
        );
        assert!(
            StoreError::from(misconf)
                .to_string()
                .starts_with("redis refuses writes: MISCONF"),
        );
        assert!(
            StoreError::from(oom)
                .to_string()
                .starts_with("redis is out of memory (maxmemory): OOM"),
        );
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(
            StoreError::from(redis::RedisError::from(io))
                .to_string()
                .starts_with("redis is unavailable: ")
        );
    }

    #[test]
    fn a_prefix_matches_only_itself_in_a_scan_pattern() {
        assert_eq!(glob_escape("{tipwire}"), "{tipwire}");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
