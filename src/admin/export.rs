//! `tipwire export --out DIR [--since T]`: writes each tip's envelope as
//! `<tip_id>.age`, which any age implementation opens with a recipient's
//! identity (`age -d -i identity.txt <tip_id>.age`). File names come from tip
//! ids that were validated as 32 hex digits, so an entry cannot steer a write.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::bus::{AlertReader, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("--out {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    pub written: usize,
    pub skipped_existing: usize,
}

/// Entries read at once: each carries its sealed attachments (an MMS tip
/// tens of megabytes), so a page is small and memory stays bounded.
const PAGE: usize = 8;

/// Exports every tip received at or after `since_secs` into `out`.
pub async fn export(
    reader: &AlertReader,
    out: &Path,
    since_secs: u64,
) -> Result<ExportSummary, ExportError> {
    fs::create_dir_all(out).map_err(|e| ExportError::Write(out.to_owned(), e))?;
    let mut summary = ExportSummary::default();
    let mut page = reader.range_since(since_secs, PAGE).await?;
    while let Some(last) = page.last().map(|a| a.id.clone()) {
        for alert in &page {
            let path = out.join(format!("{}.age", alert.entry.tip_id));
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
            match file {
                Ok(mut f) => {
                    f.write_all(&alert.entry.envelope)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| ExportError::Write(path.clone(), e))?;
                    summary.written += 1;
                }
                // Exports are resumable: an existing file is the same tip.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    summary.skipped_existing += 1
                }
                Err(e) => return Err(ExportError::Write(path, e)),
            }
        }
        page = reader.range_after(&last, PAGE).await?;
    }
    Ok(summary)
}

/// Parses `--since`: unix seconds, an RFC 3339 time, or an age such as `7d`.
pub fn parse_since(s: &str, now_secs: u64) -> Option<u64> {
    if let Ok(secs) = s.parse::<u64>() {
        return Some(secs);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return t
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
    }
    humantime::parse_duration(s)
        .ok()
        .map(|d| now_secs.saturating_sub(d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_seconds_dates_and_ages() {
        assert_eq!(parse_since("1700000000", 0), Some(1_700_000_000));
        assert_eq!(parse_since("2023-11-14T22:13:20Z", 0), Some(1_700_000_000));
        assert_eq!(parse_since("2d", 1_000_000), Some(1_000_000 - 172_800));
        assert_eq!(parse_since("yesterday-ish", 0), None);
    }
}
