//! Logs and metrics. Neither ever carries a client address, user agent, phone
//! number, email address or tip content: log fields are limited to tip ids,
//! pseudonyms, channels, zones, routes, statuses and error codes.

mod access_log;
mod metrics;

pub use access_log::{access_log, error_pages};
pub use metrics::Metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
        .with_target(true)
        .try_init()
        .map_err(|e| e.to_string())
}
