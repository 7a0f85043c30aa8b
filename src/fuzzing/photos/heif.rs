//! A reader of the HEIF structure, written apart from `privacy/heif.rs`, that
//! says which bytes of a stripped photo may still hold the fuzzer's marker.
//! Its input is the stripper's output on untrusted bytes: it reads with
//! checked offsets and answers `None` where the boxes do not add up.

use super::{u16_at, u32_at};
// The stripper's allow-list of rendering properties (besides `colr`
// of type `nclx`): what may stay is its decision; that nothing else
// stays is checked here.
use crate::privacy::heif::KEPT_PROPERTIES as PROPERTIES;

/// Item types whose bytes the stripper keeps.
const IMAGE_ITEMS: [&[u8; 4]; 3] = [b"hvc1", b"iovl", b"grid"];

#[derive(Clone, Copy)]
struct Box4 {
    kind: [u8; 4],
    payload: usize,
    end: usize,
}

/// The boxes in `bytes[from..to]`; `None` when they do not add up.
fn boxes(bytes: &[u8], from: usize, to: usize) -> Option<Vec<Box4>> {
    let mut found = Vec::new();
    let mut pos = from;
    while pos < to {
        let size = u64::from(u32_at(bytes, pos)?);
        let kind = *bytes.get(pos + 4..)?.first_chunk::<4>()?;
        let (payload, size) = match size {
            0 => (pos + 8, u64::try_from(to - pos).ok()?),
            1 => (
                pos + 16,
                u64::from(u32_at(bytes, pos + 8)?) << 32 | u64::from(u32_at(bytes, pos + 12)?),
            ),
            n => (pos + 8, n),
        };
        let end = pos.checked_add(usize::try_from(size).ok()?)?;
        if end > to || end < payload {
            return None;
        }
        found.push(Box4 { kind, payload, end });
        pos = end;
    }
    Some(found)
}

fn child<'a>(boxes: &'a [Box4], kind: &[u8; 4]) -> Option<&'a Box4> {
    boxes.iter().find(|b| &b.kind == kind)
}

/// Asserts what a cleaned file must not hold, and returns the byte
/// ranges kept on purpose: image items' extents, rendering properties,
/// item references and property associations. An empty list when the
/// structure cannot be read.
pub(super) fn kept_regions(out: &[u8]) -> Vec<(usize, usize)> {
    read(out).unwrap_or_default()
}

fn read(out: &[u8]) -> Option<Vec<(usize, usize)>> {
    let top = boxes(out, 0, out.len())?;
    for b in &top {
        assert!(
            matches!(&b.kind, b"ftyp" | b"meta" | b"mdat" | b"free"),
            "top-level box {:?} survived",
            b.kind
        );
    }
    let meta = child(&top, b"meta")?;
    let children = boxes(out, meta.payload + 4, meta.end)?;
    for b in &children {
        assert!(
            matches!(
                &b.kind,
                b"hdlr"
                    | b"pitm"
                    | b"iloc"
                    | b"iinf"
                    | b"iref"
                    | b"iprp"
                    | b"idat"
                    | b"dinf"
                    | b"free"
            ),
            "meta box {:?} survived",
            b.kind
        );
    }
    let mut kept = Vec::new();
    // (derived item, input count) of each `dimg` reference.
    let mut inputs = Vec::new();
    if let Some(iref) = child(&children, b"iref") {
        kept.push((iref.payload, iref.end));
        let wide = *out.get(iref.payload)? != 0;
        for r in boxes(out, iref.payload + 4, iref.end)? {
            if &r.kind == b"dimg" {
                let (from, at) = if wide {
                    (u32_at(out, r.payload)?, r.payload + 4)
                } else {
                    (u32::try_from(u16_at(out, r.payload)?).ok()?, r.payload + 2)
                };
                inputs.push((from, u16_at(out, at)?));
            }
        }
    }
    if let Some(iprp) = child(&children, b"iprp") {
        for b in boxes(out, iprp.payload, iprp.end)? {
            match &b.kind {
                b"ipma" => kept.push((b.payload, b.end)),
                b"ipco" => {
                    for p in boxes(out, b.payload, b.end)? {
                        let nclx = &p.kind == b"colr"
                            && out.get(p.payload..p.payload + 4) == Some(b"nclx".as_slice());
                        assert!(
                            PROPERTIES.contains(&&p.kind) || nclx || &p.kind == b"free",
                            "property {:?} survived",
                            p.kind
                        );
                        // `hvcC` keeps its record, not what follows.
                        let end = if &p.kind == b"hvcC" {
                            hevc_record_end(out, p.payload, p.end).unwrap_or(p.payload)
                        } else {
                            p.end
                        };
                        // `auxC` keeps its subtype; its type is a known
                        // URN, never the marker.
                        let start = if &p.kind == b"auxC" {
                            out.get(p.payload + 4..p.end)
                                .and_then(|t| t.iter().position(|&b| b == 0))
                                .map_or(p.end, |nul| p.payload + 4 + nul + 1)
                        } else {
                            p.payload
                        };
                        kept.push((start, end));
                    }
                }
                _ => {}
            }
        }
    }
    // A file without `iinf` or `iloc` has no items (the stripper takes
    // it so), but its boxes are still read.
    let types = match child(&children, b"iinf") {
        Some(iinf) => item_types(out, iinf)?,
        None => Vec::new(),
    };
    let Some(iloc) = child(&children, b"iloc") else {
        return Some(kept);
    };
    let idat = child(&children, b"idat").map(|b| (b.payload, b.end));
    // Where an extent of length 0 ends: at the end of its box.
    let area_end = |method: u64, start: usize| match method {
        1 => idat.map(|(_, end)| end),
        _ => top
            .iter()
            .find(|b| b.payload <= start && start < b.end)
            .map(|b| b.end),
    };
    for (item, from, to) in extents(out, iloc, idat, area_end)? {
        let image = types
            .iter()
            .filter(|(id, _)| *id == item)
            .all(|(_, kind)| IMAGE_ITEMS.contains(&kind));
        let described = types.iter().any(|(id, _)| *id == item);
        let is = |wanted: &[u8; 4]| types.iter().any(|(id, kind)| *id == item && kind == wanted);
        if image && described {
            // A grid keeps its 8- or 12-byte descriptor only; an overlay
            // its descriptor: 10 bytes, then width, height and an offset
            // pair per input, 2 or 4 bytes each (flag bit 0).
            let end = if is(b"grid") {
                to.min(from + 12)
            } else if is(b"iovl") {
                let field = if out.get(from + 1).is_some_and(|f| f & 1 == 1) {
                    4
                } else {
                    2
                };
                let count = inputs
                    .iter()
                    .filter(|(id, _)| *id == item)
                    .map(|(_, n)| *n)
                    .max()
                    .unwrap_or(0);
                to.min(from + 10 + 2 * field * (1 + count))
            } else {
                to
            };
            kept.push((from, end));
        } else {
            assert!(
                out.get(from..to)
                    .unwrap_or_default()
                    .iter()
                    .all(|&b| b == 0),
                "item {item}, not image data, kept its bytes"
            );
        }
    }
    Some(kept)
}

/// Where an `hvcC` record in `[from, to)` ends: 22 bytes of fields, an
/// array count, per array a type byte and a unit count, per unit a
/// 16-bit length and its bytes.
fn hevc_record_end(out: &[u8], from: usize, to: usize) -> Option<usize> {
    let mut at = from + 22;
    let arrays = *out.get(at)?;
    at += 1;
    for _ in 0..arrays {
        let units = u16_at(out, at + 1)?;
        at += 3;
        for _ in 0..units {
            if at >= to {
                return None;
            }
            at += 2 + u16_at(out, at)?;
        }
    }
    (at <= to).then_some(at)
}

/// (item id, item type) of each `infe` (versions 2 and 3).
fn item_types(out: &[u8], iinf: &Box4) -> Option<Vec<(u32, [u8; 4])>> {
    let version = *out.get(iinf.payload)?;
    let first = iinf.payload + 4 + if version == 0 { 2 } else { 4 };
    let mut types = Vec::new();
    for infe in boxes(out, first, iinf.end)? {
        if &infe.kind != b"infe" {
            continue;
        }
        let v = *out.get(infe.payload)?;
        let (id, at) = match v {
            2 => (
                u32::try_from(u16_at(out, infe.payload + 4)?).ok()?,
                infe.payload + 8,
            ),
            3 => (u32_at(out, infe.payload + 4)?, infe.payload + 10),
            _ => continue,
        };
        types.push((id, *out.get(at..)?.first_chunk::<4>()?));
    }
    Some(types)
}

/// (item id, start, end) of each extent in `iloc`, as file offsets.
fn extents(
    out: &[u8],
    iloc: &Box4,
    idat: Option<(usize, usize)>,
    area_end: impl Fn(u64, usize) -> Option<usize>,
) -> Option<Vec<(u32, usize, usize)>> {
    let version = *out.get(iloc.payload)?;
    let sizes = *out.get(iloc.payload + 4)?;
    let more = *out.get(iloc.payload + 5)?;
    let (offset_size, length_size) = (sizes >> 4, sizes & 0x0F);
    let (base_size, index_size) = (more >> 4, if version == 0 { 0 } else { more & 0x0F });
    let mut at = iloc.payload + 6;
    let mut read = |n: u8| -> Option<u64> {
        let mut value = 0_u64;
        for _ in 0..n {
            value = value << 8 | u64::from(*out.get(at)?);
            at += 1;
        }
        Some(value)
    };
    let count = read(if version < 2 { 2 } else { 4 })?;
    let mut found = Vec::new();
    for _ in 0..count {
        let item = u32::try_from(read(if version < 2 { 2 } else { 4 })?).ok()?;
        let method = if version == 0 { 0 } else { read(2)? & 0x0F };
        read(2)?;
        let base = read(base_size)?;
        let extent_count = read(2)?;
        for _ in 0..extent_count {
            read(index_size)?;
            let offset = base.checked_add(read(offset_size)?)?;
            let length = read(length_size)?;
            let origin = if method == 1 { idat?.0 } else { 0 };
            let start = origin.checked_add(usize::try_from(offset).ok()?)?;
            let end = match length {
                0 => area_end(method, start)?,
                n => start.checked_add(usize::try_from(n).ok()?)?,
            };
            found.push((item, start, end.min(out.len())));
        }
    }
    Some(found)
}
