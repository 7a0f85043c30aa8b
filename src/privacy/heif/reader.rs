//! The ISOBMFF box reader of the HEIF cleaner: box headers and big-endian
//! fields. Every byte it reads is untrusted (a tip sender's photo): reads are
//! bounds-checked and return `Truncated` or `BadBox`, never panic.

use crate::privacy::metadata::StripError;

/// Boxes per level: far more than a phone writes (an iPhone photo holds ~60
/// items and a few dozen properties).
pub(super) const MAX_BOXES: usize = 4096;

/// One box as found: where it starts, where its payload starts and ends.
#[derive(Clone, Copy)]
pub(super) struct BoxAt {
    pub(super) kind: [u8; 4],
    pub(super) start: usize,
    pub(super) payload: usize,
    pub(super) end: usize,
}

/// The boxes in `bytes[from..to]`, in order.
pub(super) fn boxes(bytes: &[u8], from: usize, to: usize) -> Result<Vec<BoxAt>, StripError> {
    let mut found = Vec::new();
    let mut pos = from;
    while pos < to {
        if found.len() >= MAX_BOXES {
            return Err(StripError::TooComplex);
        }
        let size = u64::from(read_u32(bytes, pos)?);
        let kind = read_4cc(bytes, pos + 4)?;
        let (payload, size) = match size {
            // Runs to the end of the enclosing box (or file).
            0 => (pos + 8, u64::try_from(to - pos).unwrap_or(u64::MAX)),
            1 => (pos + 16, read_u64(bytes, pos + 8)?),
            n => (pos + 8, n),
        };
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| pos.checked_add(size))
            .ok_or(StripError::BadBox)?;
        if end > to || end < payload {
            return Err(StripError::BadBox);
        }
        if kind == *b"uuid" && payload + 16 > end {
            return Err(StripError::BadBox);
        }
        found.push(BoxAt {
            kind,
            start: pos,
            payload,
            end,
        });
        pos = end;
    }
    Ok(found)
}

pub(super) fn read_u8(bytes: &[u8], at: usize) -> Result<u8, StripError> {
    bytes.get(at).copied().ok_or(StripError::Truncated)
}

/// The `N` bytes at `at`, or `Truncated`.
pub(super) fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], StripError> {
    bytes
        .get(at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .ok_or(StripError::Truncated)
}

pub(super) fn read_u16(bytes: &[u8], at: usize) -> Result<u16, StripError> {
    read_array(bytes, at).map(u16::from_be_bytes)
}

pub(super) fn read_u32(bytes: &[u8], at: usize) -> Result<u32, StripError> {
    read_array(bytes, at).map(u32::from_be_bytes)
}

pub(super) fn read_u64(bytes: &[u8], at: usize) -> Result<u64, StripError> {
    read_array(bytes, at).map(u64::from_be_bytes)
}

pub(super) fn read_4cc(bytes: &[u8], at: usize) -> Result<[u8; 4], StripError> {
    read_array(bytes, at)
}

/// An unsigned big-endian field of 0, 4 or 8 bytes (the `iloc` sizes).
pub(super) fn read_sized(bytes: &[u8], at: usize, size: u8) -> Result<(u64, usize), StripError> {
    match size {
        0 => Ok((0, at)),
        4 => Ok((u64::from(read_u32(bytes, at)?), at + 4)),
        8 => Ok((read_u64(bytes, at)?, at + 8)),
        _ => Err(StripError::BadBox),
    }
}
