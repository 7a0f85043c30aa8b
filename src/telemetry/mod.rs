//! Logs and metrics. Neither ever carries a client address, user agent, phone
//! number, email address or tip content: log fields are limited to tip ids,
//! pseudonyms, channels, zones, routes, statuses and error codes.

mod access_log;
mod metrics;

pub use access_log::{access_log, error_pages};
pub use metrics::Metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// Log timestamps to the minute only: a log line holding a tip id or a
/// pseudonym must not say when the tip arrived more precisely than the stream
/// does. (A journal adds its own timestamps: ship these logs to a collector
/// that does not, or accept that the journal knows the second.)
struct MinuteClock;

impl FormatTime for MinuteClock {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = crate::clock::now_secs();
        let minute = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now - now % 60);
        let stamp = humantime::format_rfc3339_seconds(minute).to_string();
        // "2026-11-26T14:03:00Z" → "2026-11-26T14:03Z"
        w.write_str(stamp.strip_suffix(":00Z").map_or(stamp.as_str(), |s| s))?;
        if stamp.ends_with(":00Z") {
            w.write_str("Z")?;
        }
        Ok(())
    }
}

/// Installs the global subscriber writing to `writer` with `filter`.
pub fn init<W>(filter: &str, writer: W) -> Result<(), String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("log.filter: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_timer(MinuteClock)
        .with_target(true)
        .try_init()
        .map_err(|e| e.to_string())
}
