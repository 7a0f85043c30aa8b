//! In-place writes of the HEIF cleaner: zeroing byte ranges and turning boxes
//! into `free` boxes, on the output copy. Offsets come from untrusted boxes;
//! a range outside the output is skipped, never indexed.

use super::reader::BoxAt;

/// Turns a box into a `free` box of the same size with a zeroed payload.
pub(super) fn neutralise(out: &mut [u8], b: BoxAt) {
    if let Some(kind) = out.get_mut(b.start + 4..b.start + 8) {
        kind.copy_from_slice(b"free");
    }
    // The size fields (a `largesize` included) lie before the payload and
    // stay as they were.
    zero(out, b.payload, b.end);
}

pub(super) fn zero(out: &mut [u8], from: usize, to: usize) {
    if let Some(range) = out.get_mut(from..to) {
        #[cfg(test)]
        super::tests::ZEROED.with(|n| n.set(n.get() + range.len()));
        range.fill(0);
    }
}

/// Zeroes the union of `ranges` (sorted here), each byte once: thousands of
/// extents over the same bytes cost one pass, not one pass each.
pub(super) fn zero_union(out: &mut [u8], ranges: &mut [(usize, usize)]) {
    ranges.sort_unstable();
    let mut cursor = 0;
    for &(start, end) in ranges.iter() {
        let start = start.max(cursor);
        if start < end {
            zero(out, start, end);
        }
        cursor = cursor.max(end);
    }
}

/// Zeroes `[from, to)` except the `kept` ranges (sorted; each lies wholly
/// inside one area, so only those starting in `[from, to)` are looked at).
pub(super) fn zero_gaps(out: &mut [u8], from: usize, to: usize, kept: &[(usize, usize)]) {
    let first = kept.partition_point(|&(start, _)| start < from);
    let last = kept.partition_point(|&(start, _)| start < to);
    let mut cursor = from;
    for &(start, end) in kept.get(first..last).unwrap_or_default() {
        let start = start.clamp(from, to);
        let end = end.clamp(from, to);
        if start > cursor {
            zero(out, cursor, start);
        }
        cursor = cursor.max(end);
    }
    if cursor < to {
        zero(out, cursor, to);
    }
}

/// Sorted ranges merged where they touch or overlap.
pub(super) fn union(sorted: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(sorted.len());
    for &(from, to) in sorted {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

/// Whether two sorted lists of disjoint ranges share a byte (one pass).
pub(super) fn overlap(a: &[(usize, usize)], b: &[(usize, usize)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while let (Some(&(a0, a1)), Some(&(b0, b1))) = (a.get(i), b.get(j)) {
        if a0 < b1 && b0 < a1 {
            return true;
        }
        if a1 <= b1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    false
}
