//! The HEIF item model: what each item's type keeps (`iinf`), where its bytes
//! are (`iloc` extents) and how many inputs a derived image has (`iref`).
//! Untrusted: every box read here comes from a tip sender's photo; counts
//! are capped and offsets checked.

use super::reader::{BoxAt, boxes, read_4cc, read_sized, read_u8, read_u16, read_u32};
use crate::privacy::metadata::StripError;

/// Items in `iinf`/`iloc`.
const MAX_ITEMS: usize = 4096;
/// Extents in all of `iloc`.
const MAX_EXTENTS: usize = 16_384;

/// What of an item's bytes is kept, by its type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Keep {
    /// Not image data (`Exif`, `mime`, `uri `, unknown types): nothing.
    Nothing,
    /// `iden` has no data: nothing either.
    NoData,
    /// `grid`: its 8- or 12-byte descriptor, no more.
    GridDescriptor,
    /// `iovl`: its descriptor (fill values, size, an offset pair per input
    /// image), no more.
    OverlayDescriptor,
    /// `hvc1` coded image data: all.
    Image,
}

impl Keep {
    pub(super) fn of(kind: Option<[u8; 4]>) -> Self {
        match kind.as_ref() {
            Some(b"hvc1") => Keep::Image,
            Some(b"grid") => Keep::GridDescriptor,
            Some(b"iovl") => Keep::OverlayDescriptor,
            Some(b"iden") => Keep::NoData,
            _ => Keep::Nothing,
        }
    }
}

/// Where an item's bytes are: in the file (construction method 0) or in
/// `idat` (method 1), each extent as `(offset, length)`; length 0 means "to
/// the end".
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    File,
    Idat,
}

pub(super) struct Extent {
    pub(super) item: u32,
    pub(super) place: Place,
    pub(super) offset: u64,
    pub(super) length: u64,
}

/// Item id → what its type keeps of its bytes.
pub(super) fn item_types(bytes: &[u8], iinf: BoxAt) -> Result<Vec<(u32, Keep)>, StripError> {
    let version = read_u8(bytes, iinf.payload)?;
    let first = iinf.payload + 4 + if version == 0 { 2 } else { 4 };
    let mut items = Vec::new();
    for infe in boxes(bytes, first, iinf.end)? {
        if infe.kind != *b"infe" {
            continue;
        }
        if items.len() >= MAX_ITEMS {
            return Err(StripError::TooComplex);
        }
        let version = read_u8(bytes, infe.payload)?;
        let at = infe.payload + 4;
        // The fields read must lie inside this box: read from what follows
        // it, a short `infe` would describe an item with bytes the cleaning
        // then turns into `free` (found by the `photo_heic` fuzz target:
        // stripping was no fixed point).
        let fields = match version {
            2 => 8,
            3 => 10,
            _ => 2,
        };
        if at + fields > infe.end {
            return Err(StripError::BadBox);
        }
        let (id, kind) = match version {
            2 => (
                u32::from(read_u16(bytes, at)?),
                Some(read_4cc(bytes, at + 4)?),
            ),
            3 => (read_u32(bytes, at)?, Some(read_4cc(bytes, at + 6)?)),
            // Versions 0 and 1 describe MIME-typed items, never image data.
            _ => (u32::from(read_u16(bytes, at)?), None),
        };
        items.push((id, Keep::of(kind)));
    }
    Ok(items)
}

/// Every extent `iloc` lists, and where its entries end.
pub(super) fn item_extents(bytes: &[u8], iloc: BoxAt) -> Result<(Vec<Extent>, usize), StripError> {
    let version = read_u8(bytes, iloc.payload)?;
    if version > 2 {
        return Err(StripError::BadBox);
    }
    let mut at = iloc.payload + 4;
    let sizes = read_u8(bytes, at)?;
    let (offset_size, length_size) = (sizes >> 4, sizes & 0x0F);
    let sizes = read_u8(bytes, at + 1)?;
    let base_size = sizes >> 4;
    let index_size = if version == 0 { 0 } else { sizes & 0x0F };
    at += 2;
    let count = if version < 2 {
        let n = u32::from(read_u16(bytes, at)?);
        at += 2;
        n
    } else {
        let n = read_u32(bytes, at)?;
        at += 4;
        n
    };
    if !usize::try_from(count).is_ok_and(|n| n <= MAX_ITEMS) {
        return Err(StripError::TooComplex);
    }
    let mut extents = Vec::new();
    for _ in 0..count {
        let item = if version < 2 {
            let id = u32::from(read_u16(bytes, at)?);
            at += 2;
            id
        } else {
            let id = read_u32(bytes, at)?;
            at += 4;
            id
        };
        let place = if version == 0 {
            Place::File
        } else {
            let method = read_u16(bytes, at)? & 0x000F;
            at += 2;
            match method {
                0 => Place::File,
                1 => Place::Idat,
                // Offsets into other items: not followed, so not cleaned.
                _ => return Err(StripError::Unsupported),
            }
        };
        // Data in another file: nothing here to clean, nothing to trust.
        if read_u16(bytes, at)? != 0 {
            return Err(StripError::Unsupported);
        }
        at += 2;
        let (base, next) = read_sized(bytes, at, base_size)?;
        at = next;
        let extent_count = read_u16(bytes, at)?;
        at += 2;
        for _ in 0..extent_count {
            if extents.len() >= MAX_EXTENTS {
                return Err(StripError::TooComplex);
            }
            if index_size > 0 {
                // An extent index refers into another item's data (method 2).
                return Err(StripError::Unsupported);
            }
            let (offset, next) = read_sized(bytes, at, offset_size)?;
            let (length, next) = read_sized(bytes, next, length_size)?;
            at = next;
            extents.push(Extent {
                item,
                place,
                offset: base.checked_add(offset).ok_or(StripError::BadBox)?,
                length,
            });
        }
    }
    if at > iloc.end {
        return Err(StripError::Truncated);
    }
    Ok((extents, at))
}

/// The byte range an extent covers inside `[area_start, area_end)`, at
/// `offset` from the area's start; length 0 runs to the area's end.
pub(super) fn extent_range(
    e: &Extent,
    area_start: usize,
    area_end: usize,
    offset: usize,
) -> Result<(usize, usize), StripError> {
    let start = area_start.checked_add(offset).ok_or(StripError::BadBox)?;
    let end = if e.length == 0 {
        area_end
    } else {
        usize::try_from(e.length)
            .ok()
            .and_then(|len| start.checked_add(len))
            .ok_or(StripError::BadBox)?
    };
    if start > end || end > area_end {
        return Err(StripError::BadBox);
    }
    Ok((start, end))
}

/// `(from item, input count)` of each `dimg` reference in `iref`, sorted:
/// how many images each derived image (a grid, an overlay) is made of.
pub(super) fn derivation_inputs(
    bytes: &[u8],
    iref: BoxAt,
) -> Result<Vec<(u32, usize)>, StripError> {
    let wide = read_u8(bytes, iref.payload)? != 0;
    let mut inputs = Vec::new();
    for b in boxes(bytes, iref.payload + 4, iref.end)? {
        if b.kind != *b"dimg" {
            continue;
        }
        let (from, at) = if wide {
            (read_u32(bytes, b.payload)?, b.payload + 4)
        } else {
            (u32::from(read_u16(bytes, b.payload)?), b.payload + 2)
        };
        inputs.push((from, usize::from(read_u16(bytes, at)?)));
    }
    inputs.sort_unstable();
    Ok(inputs)
}

/// How many input images the overlay `item` places: the count of its one
/// `dimg` reference (0 without one). Two lists of inputs would leave its
/// descriptor's length to the reader's choice: refused.
pub(super) fn overlay_inputs(inputs: &[(u32, usize)], item: u32) -> Result<usize, StripError> {
    let from = inputs.partition_point(|&(id, _)| id < item);
    match inputs.get(from..).unwrap_or_default() {
        [(a, _), (b, _), ..] if *a == item && *b == item => Err(StripError::BadBox),
        [(a, count), ..] if *a == item => Ok(*count),
        _ => Ok(0),
    }
}
