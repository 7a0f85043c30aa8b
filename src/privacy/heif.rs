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

mod items;
mod kept_boxes;
mod properties;
mod reader;
mod writer;

use super::metadata::StripError;
use items::{
    Keep, Place, derivation_inputs, extent_range, item_extents, item_types, overlay_inputs,
};
use kept_boxes::{
    clean_associations, clean_data_information, clean_file_type, clean_handler, clean_item_infos,
    clean_references,
};
pub(crate) use properties::KEPT_PROPERTIES;
use properties::clean_properties;
use reader::{BoxAt, boxes, read_u8};
use writer::{neutralise, overlap, union, zero, zero_gaps, zero_union};

const KEPT_META: [&[u8; 4]; 8] = [
    b"hdlr", b"pitm", b"iloc", b"iinf", b"iref", b"iprp", b"idat", b"dinf",
];

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

#[cfg(test)]
mod tests;
