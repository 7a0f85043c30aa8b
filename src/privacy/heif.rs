//! HEIC/HEIF metadata stripping (ISO/IEC 23008-12 on the ISOBMFF box format,
//! ISO/IEC 14496-12). Every byte handed here is untrusted network data from a
//! tip sender: parsing never panics, never reads past the input, walks a
//! fixed number of box levels (no recursion), caps box, item and extent
//! counts, and allocates no more than the input's size plus those caps.
//!
//! HEIF keeps EXIF (GPS included) and XMP as *items*: `iinf` names each item
//! and its type, `iloc` says where its bytes are (absolute file offsets, or
//! offsets into the `idat` box). Removing bytes would shift every offset, so
//! the file is cleaned in place and keeps its length:
//!
//! - Allow-list of items: only coded images (`hvc1`) keep all their bytes;
//!   a `grid` keeps its 8- or 12-byte descriptor and an `iovl` its
//!   descriptor (fill values, size and an offset pair per `dimg` input), no
//!   more; an `iden` (which has no data) nothing. Every other item (`Exif`,
//!   `mime` items such as XMP, `uri `, anything unknown) has its bytes zeroed
//!   wherever `iloc` puts them.
//! - Bytes of `mdat` and `idat` that no kept item uses are zeroed too, so
//!   nothing can hide in the gaps.
//! - Boxes outside the allow-list become `free` boxes of the same size with a
//!   zeroed payload: at the top level everything but `ftyp`, `meta` and
//!   `mdat` (`uuid` blobs, `moov` tracks of sequences, `udta`); in `meta`
//!   everything but `hdlr`, `pitm`, `iloc`, `iinf`, `iref`, `iprp`, `idat` and
//!   `dinf` (the `xml `/`bxml` XMP boxes); in `iprp` everything but `ipco` and
//!   `ipma`; in `ipco` every property but the small rendering ones
//!   (`hvcC`, `ispe`, `pixi`, `irot`, `imir`, `clap`, `pasp`, `auxC`, `rloc`,
//!   `lsel`, `clli`, `mdcv`, and `colr` of type `nclx`; bytes past the
//!   fields of the fixed-size ones, and past `hvcC`'s arrays of parameter
//!   sets, are zeroed; an `hvcC` whose arrays overrun it, and an `auxC`
//!   whose type is not a known URN (free text), become `free`). An ICC profile in
//!   `colr` names the device and can fingerprint it; a `udes` property carries
//!   free text. Their indexes stay, so `ipma` still lines up.
//! - A file this cannot clean for certain is refused: no single `meta` box,
//!   more than one `iref`, an overlay with two lists of inputs,
//!   items stored by reference to other items (`iloc` construction method 2)
//!   or in other files (`data_reference_index`), extents outside the file,
//!   sizes that do not add up, more than the caps.
//!
//! - Free text in the boxes that stay is emptied: the `hdlr` name, each
//!   `infe`'s name, content type, encoding or URI (ids, protection indexes
//!   and types stay), and `url ` locations in `dinf` (marked self-contained;
//!   other `dref` entries become `free`). Bytes of `pitm` past the item id
//!   are zeroed. A child of `iinf` that is not an
//!   `infe` becomes `free`; bytes after the last entry of `iloc`, `ipma` and
//!   each `iref` reference are zeroed.
//!
//! Kept: item ids and types, `iref` references (thumbnails stay: a HEIC
//! thumbnail is the same photo, smaller), the major and known compatible
//! `ftyp` brands (the minor version and other brands are zeroed), and image data
//! as it is (an HEVC stream's own SEI messages, the NAL units in `hvcC`'s
//! arrays, and an `auxC`'s subtype, are not parsed).

use super::metadata::StripError;

/// Boxes per level: far more than a phone writes (an iPhone photo holds ~60
/// items and a few dozen properties).
const MAX_BOXES: usize = 4096;
/// Items in `iinf`/`iloc`.
const MAX_ITEMS: usize = 4096;
/// Extents in all of `iloc`.
const MAX_EXTENTS: usize = 16_384;

/// What of an item's bytes is kept, by its type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Keep {
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
    fn of(kind: Option<[u8; 4]>) -> Self {
        match kind.as_ref() {
            Some(b"hvc1") => Keep::Image,
            Some(b"grid") => Keep::GridDescriptor,
            Some(b"iovl") => Keep::OverlayDescriptor,
            Some(b"iden") => Keep::NoData,
            _ => Keep::Nothing,
        }
    }
}
const KEPT_META: [&[u8; 4]; 8] = [
    b"hdlr", b"pitm", b"iloc", b"iinf", b"iref", b"iprp", b"idat", b"dinf",
];
pub(crate) const KEPT_PROPERTIES: [&[u8; 4]; 12] = [
    b"hvcC", b"ispe", b"pixi", b"irot", b"imir", b"clap", b"pasp", b"auxC", b"rloc", b"lsel",
    b"clli", b"mdcv",
];

/// One box as found: where it starts, where its payload starts and ends.
#[derive(Clone, Copy)]
struct BoxAt {
    kind: [u8; 4],
    start: usize,
    payload: usize,
    end: usize,
}

/// The boxes in `bytes[from..to]`, in order.
fn boxes(bytes: &[u8], from: usize, to: usize) -> Result<Vec<BoxAt>, StripError> {
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

/// Turns a box into a `free` box of the same size with a zeroed payload.
fn neutralise(out: &mut [u8], b: BoxAt) {
    if let Some(kind) = out.get_mut(b.start + 4..b.start + 8) {
        kind.copy_from_slice(b"free");
    }
    // The size fields (a `largesize` included) lie before the payload and
    // stay as they were.
    zero(out, b.payload, b.end);
}

fn zero(out: &mut [u8], from: usize, to: usize) {
    if let Some(range) = out.get_mut(from..to) {
        #[cfg(test)]
        tests::ZEROED.with(|n| n.set(n.get() + range.len()));
        range.fill(0);
    }
}

/// Zeroes the union of `ranges` (sorted here), each byte once: thousands of
/// extents over the same bytes cost one pass, not one pass each.
fn zero_union(out: &mut [u8], ranges: &mut [(usize, usize)]) {
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

fn read_u8(bytes: &[u8], at: usize) -> Result<u8, StripError> {
    bytes.get(at).copied().ok_or(StripError::Truncated)
}

/// The `N` bytes at `at`, or `Truncated`.
fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], StripError> {
    bytes
        .get(at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .ok_or(StripError::Truncated)
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16, StripError> {
    read_array(bytes, at).map(u16::from_be_bytes)
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, StripError> {
    read_array(bytes, at).map(u32::from_be_bytes)
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64, StripError> {
    read_array(bytes, at).map(u64::from_be_bytes)
}

fn read_4cc(bytes: &[u8], at: usize) -> Result<[u8; 4], StripError> {
    read_array(bytes, at)
}

/// An unsigned big-endian field of 0, 4 or 8 bytes (the `iloc` sizes).
fn read_sized(bytes: &[u8], at: usize, size: u8) -> Result<(u64, usize), StripError> {
    match size {
        0 => Ok((0, at)),
        4 => Ok((u64::from(read_u32(bytes, at)?), at + 4)),
        8 => Ok((read_u64(bytes, at)?, at + 8)),
        _ => Err(StripError::BadBox),
    }
}

/// Where an item's bytes are: in the file (construction method 0) or in
/// `idat` (method 1), each extent as `(offset, length)`; length 0 means "to
/// the end".
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    File,
    Idat,
}

struct Extent {
    item: u32,
    place: Place,
    offset: u64,
    length: u64,
}

/// Item id → what its type keeps of its bytes.
fn item_types(bytes: &[u8], iinf: BoxAt) -> Result<Vec<(u32, Keep)>, StripError> {
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
fn item_extents(bytes: &[u8], iloc: BoxAt) -> Result<(Vec<Extent>, usize), StripError> {
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
fn extent_range(
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

/// Zeroes `[from, to)` except the `kept` ranges (sorted; each lies wholly
/// inside one area, so only those starting in `[from, to)` are looked at).
fn zero_gaps(out: &mut [u8], from: usize, to: usize, kept: &[(usize, usize)]) {
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

/// Cleans a HEIF file in place (see the module documentation). The output
/// has the input's length.
pub fn strip_heif(bytes: &[u8]) -> Result<Vec<u8>, StripError> {
    let top = boxes(bytes, 0, bytes.len())?;
    if top.first().map(|b| b.kind) != Some(*b"ftyp") {
        return Err(StripError::NotHeif);
    }
    let mut metas = top.iter().filter(|b| b.kind == *b"meta");
    let (Some(meta), None) = (metas.next(), metas.next()) else {
        return Err(StripError::NotHeif);
    };
    let mut out = bytes.to_vec();
    for b in &top {
        match &b.kind {
            b"ftyp" => clean_file_type(&mut out, *b),
            b"meta" | b"mdat" => {}
            _ => neutralise(&mut out, *b),
        }
    }

    // `meta` is a full box: version and flags, then its children.
    let children = boxes(bytes, meta.payload + 4, meta.end)?;
    let one = |kind: &[u8; 4]| -> Result<Option<BoxAt>, StripError> {
        let mut found = children.iter().filter(|b| b.kind == *kind);
        match (found.next(), found.next()) {
            (first, None) => Ok(first.copied()),
            _ => Err(StripError::BadBox),
        }
    };
    let (iinf, iloc, idat, iprp) = (one(b"iinf")?, one(b"iloc")?, one(b"idat")?, one(b"iprp")?);
    for b in &children {
        match &b.kind {
            b"hdlr" => clean_handler(&mut out, *b),
            // The primary item's id (16 bits, 32 in version 1) and no more:
            // a longer `pitm` would carry anything (found by the
            // `photo_heic` fuzz target).
            b"pitm" => {
                let id_end = b.payload
                    + if read_u8(bytes, b.payload)? == 0 {
                        6
                    } else {
                        8
                    };
                zero(&mut out, id_end.min(b.end), b.end);
            }
            b"iinf" => clean_item_infos(bytes, &mut out, *b)?,
            b"iref" => clean_references(bytes, &mut out, *b)?,
            b"dinf" => clean_data_information(bytes, &mut out, *b)?,
            kind if KEPT_META.contains(&kind) => {}
            _ => neutralise(&mut out, *b),
        }
    }
    if let Some(iprp) = iprp {
        for b in boxes(bytes, iprp.payload, iprp.end)? {
            match &b.kind {
                b"ipco" => clean_properties(bytes, &mut out, b)?,
                b"ipma" => clean_associations(bytes, &mut out, b)?,
                _ => neutralise(&mut out, b),
            }
        }
    }

    let mut types = match iinf {
        Some(iinf) => item_types(bytes, iinf)?,
        None => Vec::new(),
    };
    // Sorted, so each extent finds its item by binary search: the caps
    // allow thousands of items and extents, not their product in work.
    types.sort_unstable();
    let extents = match iloc {
        Some(iloc) => {
            let (extents, used) = item_extents(bytes, iloc)?;
            // Bytes after the last entry are read by nobody.
            zero(&mut out, used, iloc.end);
            extents
        }
        None => Vec::new(),
    };
    let inputs = match one(b"iref")? {
        Some(iref) => derivation_inputs(bytes, iref)?,
        None => Vec::new(),
    };
    let idat_area = idat.map(|b| (b.payload, b.end));
    let mdats: Vec<BoxAt> = top.iter().filter(|b| b.kind == *b"mdat").copied().collect();
    let mut kept_in_file = Vec::new();
    let mut kept_in_idat = Vec::new();
    let mut dropped = Vec::new();
    // Bytes an item may still keep, by its first index in `types` (set at
    // its first extent, in `iloc` order).
    let mut left: Vec<Option<usize>> = vec![None; types.len()];
    for e in &extents {
        let (start, end) = match e.place {
            // Only inside an `mdat`: an extent over box headers would let
            // zeroing change the structure the rest of this walk relied on.
            Place::File => {
                let offset = usize::try_from(e.offset).map_err(|_| StripError::BadBox)?;
                // Top-level boxes are in file order: the last `mdat`
                // starting at or before the offset, found by binary search.
                let mdat = mdats
                    .partition_point(|b| b.payload <= offset)
                    .checked_sub(1)
                    .and_then(|i| mdats.get(i))
                    .filter(|b| offset < b.end)
                    .ok_or(StripError::BadBox)?;
                extent_range(e, mdat.payload, mdat.end, offset - mdat.payload)?
            }
            Place::Idat => {
                let (from, to) = idat_area.ok_or(StripError::BadBox)?;
                let offset = usize::try_from(e.offset).map_err(|_| StripError::BadBox)?;
                extent_range(e, from, to, offset)?
            }
        };
        // Kept only when the item is described, and only as image data: a
        // second description of the same id cannot vouch for metadata (the
        // sort puts the most restrictive description first).
        let from = types.partition_point(|&(id, _)| id < e.item);
        let described = types.get(from).is_some_and(|&(id, _)| id == e.item);
        let keep = match types.get(from) {
            Some(&(_, keep)) if described => keep,
            _ => Keep::Nothing,
        };
        let mut undescribed = None;
        let budget = match left.get_mut(from) {
            Some(budget) if described => budget,
            _ => &mut undescribed,
        };
        if budget.is_none() {
            *budget = Some(match keep {
                Keep::Nothing | Keep::NoData => 0,
                // Version, flags (bit 0: 32-bit sizes), rows and columns,
                // then width and height.
                Keep::GridDescriptor if read_u8(bytes, start + 1)? & 1 == 1 => 12,
                Keep::GridDescriptor => 8,
                // Version, flags (bit 0: 32-bit fields), four 16-bit fill
                // values, width and height, then a horizontal and vertical
                // offset per input image (its `dimg` references).
                Keep::OverlayDescriptor => {
                    let field = if read_u8(bytes, start + 1)? & 1 == 1 {
                        4
                    } else {
                        2
                    };
                    let inputs = overlay_inputs(&inputs, e.item)?;
                    2 + 8 + 2 * field * (1 + inputs)
                }
                Keep::Image => usize::MAX,
            });
        }
        let allowed = budget.get_or_insert(0);
        let take = (end - start).min(*allowed);
        *allowed -= take;
        // A descriptor is read from its first extent only: its size depends
        // on a flag that metadata sharing those bytes may zero, so a budget
        // carried to a later extent would keep different bytes on a second
        // pass (found by the `photo_heic` fuzz target).
        if matches!(keep, Keep::GridDescriptor | Keep::OverlayDescriptor) {
            *allowed = 0;
        }
        let split = start + take;
        if take > 0 {
            match e.place {
                Place::File => kept_in_file.push((start, split)),
                Place::Idat => kept_in_idat.push((start, split)),
            }
        }
        if split < end {
            dropped.push((split, end));
        }
    }
    // Metadata items' bytes go, and so does what no kept item uses.
    kept_in_file.sort_unstable();
    kept_in_idat.sort_unstable();
    // Metadata sharing bytes with kept image data is refused: zeroing it
    // would change what a second pass reads there (a grid descriptor's
    // size flag), so the cleaning would not be a fixed point (found by the
    // `photo_heic` fuzz target). Cameras never write such files.
    dropped.sort_unstable();
    let gone = union(&dropped);
    if overlap(&gone, &union(&kept_in_file)) || overlap(&gone, &union(&kept_in_idat)) {
        return Err(StripError::BadBox);
    }
    zero_union(&mut out, &mut dropped);
    for b in &mdats {
        zero_gaps(&mut out, b.payload, b.end, &kept_in_file);
    }
    if let Some((from, to)) = idat_area {
        zero_gaps(&mut out, from, to, &kept_in_idat);
    }
    Ok(out)
}

/// `(from item, input count)` of each `dimg` reference in `iref`, sorted:
/// how many images each derived image (a grid, an overlay) is made of.
fn derivation_inputs(bytes: &[u8], iref: BoxAt) -> Result<Vec<(u32, usize)>, StripError> {
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
fn overlay_inputs(inputs: &[(u32, usize)], item: u32) -> Result<usize, StripError> {
    let from = inputs.partition_point(|&(id, _)| id < item);
    match inputs.get(from..).unwrap_or_default() {
        [(a, _), (b, _), ..] if *a == item && *b == item => Err(StripError::BadBox),
        [(a, count), ..] if *a == item => Ok(*count),
        _ => Ok(0),
    }
}

/// Sorted ranges merged where they touch or overlap.
fn union(sorted: &[(usize, usize)]) -> Vec<(usize, usize)> {
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
fn overlap(a: &[(usize, usize)], b: &[(usize, usize)]) -> bool {
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

/// Compatible brands a HEIC photo names; others are zeroed.
const KNOWN_BRANDS: [&[u8; 4]; 17] = [
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif", b"mif1", b"mif2", b"msf1",
    b"miaf", b"MiHE", b"MiHA", b"MiHB", b"MiPr", b"MiAn", b"MiCm",
];

/// `ftyp`: the major brand stays (the sniffing accepted it); the minor
/// version is zeroed, and so are compatible brands outside
/// [`KNOWN_BRANDS`] and any bytes after the last whole brand: four free
/// bytes each, to a writer.
fn clean_file_type(out: &mut [u8], ftyp: BoxAt) {
    zero(
        out,
        (ftyp.payload + 4).min(ftyp.end),
        (ftyp.payload + 8).min(ftyp.end),
    );
    let mut at = ftyp.payload + 8;
    while at < ftyp.end {
        let whole = at + 4 <= ftyp.end;
        let known = whole
            && out
                .get(at..at + 4)
                .is_some_and(|brand| KNOWN_BRANDS.iter().any(|k| brand == k.as_slice()));
        if !known {
            zero(out, at, (at + 4).min(ftyp.end));
        }
        at += 4;
    }
}

/// `hdlr`: version and flags, `pre_defined`, the handler type and 12
/// reserved bytes, then a free-text name (a writer's or device's). Only the
/// handler type is kept: version, flags, `pre_defined` and the reserved
/// bytes are zero in every file the standard allows, and kept as found they
/// would carry 20 bytes of anything (found by the `photo_heic` fuzz target);
/// the name is emptied.
fn clean_handler(out: &mut [u8], hdlr: BoxAt) {
    zero(
        out,
        hdlr.payload.min(hdlr.end),
        (hdlr.payload + 8).min(hdlr.end),
    );
    zero(out, (hdlr.payload + 12).min(hdlr.end), hdlr.end);
}

/// `iinf`: every child but `infe` becomes `free`; each `infe` keeps its id,
/// protection index and type, and loses its name, content type, encoding or
/// URI (free text), and anything after them.
fn clean_item_infos(bytes: &[u8], out: &mut [u8], iinf: BoxAt) -> Result<(), StripError> {
    let version = read_u8(bytes, iinf.payload)?;
    let first = iinf.payload + 4 + if version == 0 { 2 } else { 4 };
    for b in boxes(bytes, first, iinf.end)? {
        if b.kind != *b"infe" {
            neutralise(out, b);
            continue;
        }
        // Version and flags, then id (2 bytes, 4 from version 3), protection
        // index (2), and from version 2 the item type (4).
        let fixed = match read_u8(bytes, b.payload)? {
            0 | 1 => 4 + 2 + 2,
            2 => 4 + 2 + 2 + 4,
            _ => 4 + 4 + 2 + 4,
        };
        zero(out, (b.payload + fixed).min(b.end), b.end);
    }
    Ok(())
}

/// `iref`: each reference box holds a from-id, a count and that many to-ids
/// (2 bytes each, 4 from version 1); bytes past them are zeroed.
fn clean_references(bytes: &[u8], out: &mut [u8], iref: BoxAt) -> Result<(), StripError> {
    let id_size = if read_u8(bytes, iref.payload)? == 0 {
        2
    } else {
        4
    };
    for b in boxes(bytes, iref.payload + 4, iref.end)? {
        let count = usize::from(read_u16(bytes, b.payload + id_size)?);
        let used = b.payload + id_size + 2 + count * id_size;
        if used > b.end {
            return Err(StripError::BadBox);
        }
        zero(out, used, b.end);
    }
    Ok(())
}

/// `ipma`: an entry count, then per item its id (2 bytes, 4 from version 1),
/// an association count and the associations (1 byte, 2 with flag 1); bytes
/// past them are zeroed.
fn clean_associations(bytes: &[u8], out: &mut [u8], ipma: BoxAt) -> Result<(), StripError> {
    let version = read_u8(bytes, ipma.payload)?;
    let wide = read_u8(bytes, ipma.payload + 3)? & 1 == 1;
    let id_size = if version == 0 { 2 } else { 4 };
    let entries = read_u32(bytes, ipma.payload + 4)?;
    let mut at = ipma.payload + 8;
    for _ in 0..entries {
        // Each entry takes at least 3 bytes: the box end bounds the loop.
        if at >= ipma.end {
            return Err(StripError::Truncated);
        }
        let count = usize::from(read_u8(bytes, at + id_size)?);
        at += id_size + 1 + count * if wide { 2 } else { 1 };
    }
    if at > ipma.end {
        return Err(StripError::Truncated);
    }
    zero(out, at, ipma.end);
    Ok(())
}

/// `dinf`: only `dref` stays; its `url ` entries are marked self-contained
/// (flag 1, which every item already is: other files are refused) and lose
/// their location text; any other entry (`urn `, ...) becomes `free`.
fn clean_data_information(bytes: &[u8], out: &mut [u8], dinf: BoxAt) -> Result<(), StripError> {
    for b in boxes(bytes, dinf.payload, dinf.end)? {
        if b.kind != *b"dref" {
            neutralise(out, b);
            continue;
        }
        for entry in boxes(bytes, b.payload + 8, b.end)? {
            if entry.kind == *b"url " && entry.payload + 4 <= entry.end {
                if let Some(flags) = out.get_mut(entry.payload + 1..entry.payload + 4) {
                    flags.copy_from_slice(&[0, 0, 1]);
                }
                zero(out, entry.payload + 4, entry.end);
            } else {
                neutralise(out, entry);
            }
        }
    }
    Ok(())
}

/// The length of an `hvcC` record: 22 bytes of fields, an array count, then
/// per array its NAL unit type and unit count, and each unit's 16-bit length
/// and bytes. `None` when the record does not fit its box (only its bytes
/// are read).
fn hevc_config_len(bytes: &[u8], hvcc: BoxAt) -> Option<usize> {
    let record = bytes.get(hvcc.payload..hvcc.end)?;
    let mut at = 22;
    let arrays = read_u8(record, at).ok()?;
    at += 1;
    for _ in 0..arrays {
        let units = read_u16(record, at + 1).ok()?;
        at += 3;
        for _ in 0..units {
            // Each unit takes at least 2 bytes of the record: its end
            // bounds the loop.
            at += 2 + usize::from(read_u16(record, at).ok()?);
        }
    }
    (at <= record.len()).then_some(at)
}

/// Auxiliary image types (`auxC`) phones and the standards write: alpha,
/// depth, Apple's HDR gain map and mattes. Any other type is free text.
const KNOWN_AUX_TYPES: [&[u8]; 13] = [
    b"urn:mpeg:hevc:2015:auxid:1",
    b"urn:mpeg:hevc:2015:auxid:2",
    b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha",
    b"urn:mpeg:mpegB:cicp:systems:auxiliary:depth",
    b"urn:com:apple:photo:2020:aux:hdrgainmap",
    b"urn:com:apple:photo:2018:aux:portraiteffectsmatte",
    b"urn:com:apple:photo:2019:aux:semanticskinmatte",
    b"urn:com:apple:photo:2019:aux:semantichairmatte",
    b"urn:com:apple:photo:2019:aux:semanticteethmatte",
    b"urn:com:apple:photo:2020:aux:semanticglassesmatte",
    b"urn:com:apple:photo:2020:aux:semanticskymatte",
    b"tag:apple.com,2023:photo:aux:styledeltamap",
    b"tag:apple.com,2023:photo:aux:linearthumbnail",
];

/// Whether an `auxC` (version and flags, then a NUL-terminated type) names a
/// type of [`KNOWN_AUX_TYPES`] (only its bytes are read).
fn known_aux_type(bytes: &[u8], auxc: BoxAt) -> bool {
    let Some(text) = bytes.get(auxc.payload + 4..auxc.end) else {
        return false;
    };
    let aux_type = text.split(|&b| b == 0).next().unwrap_or_default();
    aux_type.len() < text.len() && KNOWN_AUX_TYPES.contains(&aux_type)
}

fn clean_properties(bytes: &[u8], out: &mut [u8], ipco: BoxAt) -> Result<(), StripError> {
    for p in boxes(bytes, ipco.payload, ipco.end)? {
        let keep = KEPT_PROPERTIES.contains(&&p.kind)
            || (p.kind == *b"colr" && read_4cc(bytes, p.payload).ok() == Some(*b"nclx"));
        // An `hvcC` whose arrays do not end inside it has no end to keep
        // bytes up to: it goes whole (a decoder could not read it either).
        let config = match &p.kind {
            b"hvcC" => hevc_config_len(bytes, p),
            _ => None,
        };
        let unreadable = match &p.kind {
            b"hvcC" => config.is_none(),
            b"auxC" => !known_aux_type(bytes, p),
            _ => false,
        };
        if !keep || unreadable {
            neutralise(out, p);
            continue;
        }
        // Fixed-size properties: bytes past their fields are zeroed, and so
        // are those past `hvcC`'s arrays of parameter sets. `auxC` (a known
        // type URN, then a subtype) is kept whole.
        let size = match &p.kind {
            b"hvcC" => config,
            b"ispe" | b"rloc" => Some(12),
            b"pixi" => Some(5 + usize::from(read_u8(bytes, p.payload + 4)?)),
            b"irot" | b"imir" => Some(1),
            b"lsel" => Some(2),
            b"clli" => Some(4),
            b"pasp" => Some(8),
            b"colr" => Some(11),
            b"mdcv" => Some(24),
            b"clap" => Some(32),
            _ => None,
        };
        if let Some(size) = size {
            zero(out, (p.payload + size).min(p.end), p.end);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
