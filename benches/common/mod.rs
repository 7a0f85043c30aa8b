//! Pieces the load clients share (`benches/intake_load.rs`,
//! `benches/alert_fanout.rs`, `benches/abuse.rs`): an HTTPS client that trusts only the bench
//! CA, the tip text, CPU time of a process from /proc, and the median of a
//! round's figures.
//!
//! Untrusted: nothing; /proc is the kernel's.

use std::time::Duration;

use anyhow::{Context, Result, ensure};

/// The tip scripts/bench.sh posts, so every benchmark seals the same text.
pub const TEXT: &str = "Two groups arguing outside the corner store on 5th; one said they would come back tonight with friends.";
/// The unit of utime and stime in /proc/PID/stat: USER_HZ, which Linux
/// fixes at 100 on every architecture tipwire is built for.
const USER_HZ: f64 = 100.0;
/// Longest wait for any one answer before the run is abandoned.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP/1.1 client over TLS that trusts only `ca` (PEM) and follows no
/// redirect; callers add pool and timeout settings.
pub fn https_client(ca: &[u8]) -> Result<reqwest::ClientBuilder> {
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca)?)
        .http1_only()
        .redirect(reqwest::redirect::Policy::none()))
}

/// A process's CPU seconds so far, user + system, all threads; `pid` is a
/// number or "self".
pub fn cpu_secs(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the process running?)"))?;
    // The command name (field 2) may hold spaces: count from the last ')'.
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("parsing utime and stime")?;
    ensure!(
        ticks.len() == 2,
        "/proc/{pid}/stat is shorter than expected"
    );
    Ok(ticks.iter().sum::<f64>() / USER_HZ)
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let upper = values.get(n / 2).copied().unwrap_or(f64::NAN);
    match (n / 2).checked_sub(1).and_then(|i| values.get(i)) {
        Some(lower) if n.is_multiple_of(2) => (lower + upper) / 2.0,
        _ => upper,
    }
}
