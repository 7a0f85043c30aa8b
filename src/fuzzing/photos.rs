//! Photo metadata stripping (`privacy/metadata.rs`, `privacy/heif.rs`) on
//! arbitrary bytes: an attached photo is untrusted network input. The seeds
//! are real encoder output with [`MARKER`] planted in every kind of metadata
//! (EXIF/GPS, XMP, ICC, comments, text chunks, trailers, HEIF items and
//! boxes); the fuzzer mutates from there.
//!
//! Properties, for each format: stripping refuses or returns an image that
//! - is no larger than the input and strips to itself (a fixed point);
//! - walked by a reader written here, independent of the stripper, holds
//!   only what the allow-list keeps: JPEG frame and scan headers, scan data,
//!   and JFIF/Adobe headers in their fixed short forms, ending at EOI; PNG
//!   critical and rendering chunks, unchanged, ending at IEND; HEIF of the
//!   same length with bytes only ever zeroed or box types renamed `free`,
//!   every item that is not image data zeroed, no box outside the
//!   allow-list;
//! - holds [`MARKER`] only inside bytes kept on purpose (scan data and
//!   decoding tables, pixel and rendering chunks, image items, rendering
//!   properties and item-reference lists), never in what carried metadata;
//! - decodes to the same pixels as the input whenever the input decodes
//!   (JPEG and PNG, with jpeg-decoder and png; built with the
//!   `fuzz-decoders` feature or in tests).

use crate::privacy::metadata::{ImageKind, chunk_length_fits, sniff, strip};

/// Planted in the metadata of every seed.
pub const MARKER: &[u8] = b"TIPWIRE-CANARY-7d3f";

/// The largest photo the gateway keeps (`email.max_attachment_bytes` by
/// default); longer inputs are cut to it.
const MAX_PHOTO_BYTES: usize = 5 << 20;

/// The stripped photo and its second stripping (each at most
/// [`MAX_PHOTO_BYTES`]), or the stripped photo and two decoded images of at
/// most [`MAX_DECODED_BYTES`] with the decoders' own buffers.
pub const PHOTO_MAX_ALLOC_BYTES: usize = 32 << 20;
/// Images with more decoded bytes than this are not decoded (the property
/// is then only the structural one).
#[cfg(any(test, feature = "fuzz-decoders"))]
const MAX_DECODED_BYTES: usize = 4 << 20;

/// JPEG stripping: see the module documentation.
pub fn photo_jpeg(data: &[u8]) {
    let data = cut(data);
    let Ok(out) = common(ImageKind::Jpeg, data) else {
        return;
    };
    let kept = jpeg_kept_regions(&out);
    assert_marker_only_in(&out, &kept);
    #[cfg(any(test, feature = "fuzz-decoders"))]
    if let Some(before) = decode_jpeg(data) {
        assert_eq!(
            decode_jpeg(&out).as_ref(),
            Some(&before),
            "a decodable JPEG no longer decodes to the same pixels"
        );
    }
}

/// PNG stripping: see the module documentation.
pub fn photo_png(data: &[u8]) {
    let data = cut(data);
    let Ok(out) = common(ImageKind::Png, data) else {
        return;
    };
    let kept = png_kept_regions(data, &out);
    assert_marker_only_in(&out, &kept);
    #[cfg(any(test, feature = "fuzz-decoders"))]
    if let Some(before) = decode_png(data) {
        assert_eq!(
            decode_png(&out).as_ref(),
            Some(&before),
            "a decodable PNG no longer decodes to the same pixels"
        );
    }
}

/// HEIC cleaning: see the module documentation.
pub fn photo_heic(data: &[u8]) {
    let data = cut(data);
    let Ok(out) = common(ImageKind::Heic, data) else {
        return;
    };
    assert_eq!(out.len(), data.len(), "HEIF is cleaned in place");
    assert!(only_erased(data, &out), "a byte changed to something new");
    let kept = heif::kept_regions(&out);
    assert_marker_only_in(&out, &kept);
}

/// At most [`MAX_PHOTO_BYTES`] of `data`.
fn cut(data: &[u8]) -> &[u8] {
    data.get(..MAX_PHOTO_BYTES).unwrap_or(data)
}

/// Strips `data`; on success checks the size and the fixed point.
fn common(kind: ImageKind, data: &[u8]) -> Result<Vec<u8>, ()> {
    let out = strip(kind, data).map_err(|_| ())?;
    assert!(out.len() <= data.len(), "stripping grew the image");
    if sniff(data) == Some(kind) {
        assert_eq!(sniff(&out), Some(kind), "the stripped image changed type");
    }
    assert_eq!(
        strip(kind, &out).as_ref(),
        Ok(&out),
        "stripping is not a fixed point"
    );
    Ok(out)
}

/// Every occurrence of [`MARKER`] in `out` lies inside `kept` (ranges that
/// touch or overlap count as one: two image extents side by side).
fn assert_marker_only_in(out: &[u8], kept: &[(usize, usize)]) {
    let mut sorted = kept.to_vec();
    sorted.sort_unstable();
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(sorted.len());
    for (from, to) in sorted {
        match kept.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => kept.push((from, to)),
        }
    }
    for (at, _) in out
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
    {
        let end = at + MARKER.len();
        assert!(
            kept.iter().any(|&(from, to)| from <= at && end <= to),
            "the marker survived at offset {at}, outside the bytes kept on purpose"
        );
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<usize> {
    let pair = bytes.get(at..)?.first_chunk::<2>()?;
    Some(usize::from(u16::from_be_bytes(*pair)))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let quad = bytes.get(at..)?.first_chunk::<4>()?;
    Some(u32::from_be_bytes(*quad))
}

// ---------------------------------------------------------------------------
// JPEG

/// Walks a stripped JPEG, asserting its shape, and returns where decoding
/// tables and scan data lie.
fn jpeg_kept_regions(out: &[u8]) -> Vec<(usize, usize)> {
    assert!(out.starts_with(&[0xFF, 0xD8]), "no SOI");
    let mut kept = Vec::new();
    let mut pos = 2;
    loop {
        let marker = out.get(pos..pos + 2);
        assert!(
            marker.is_some_and(|m| m.first() == Some(&0xFF)),
            "a stripped JPEG has bytes between segments"
        );
        let code = out.get(pos + 1).copied().unwrap_or_default();
        if code == 0xD9 {
            assert_eq!(pos + 2, out.len(), "bytes after EOI");
            return kept;
        }
        let length = u16_at(out, pos + 2).unwrap_or_default();
        let payload = (pos + 4, pos + 2 + length);
        assert!(length >= 2 && payload.1 <= out.len(), "a cut segment");
        assert!(
            matches!(code, 0xC0..=0xC7 | 0xC9..=0xCF | 0xDA..=0xDF | 0xE0 | 0xEE),
            "segment {code:#04X} survived stripping"
        );
        match code {
            0xC0..=0xC7 | 0xC9..=0xCF | 0xDA..=0xDF => kept.push(payload),
            0xE0 => assert!(
                length == 16
                    && out.get(payload.0..payload.0 + 5) == Some(b"JFIF\0".as_slice())
                    && out.get(payload.1 - 2..payload.1) == Some([0, 0].as_slice()),
                "APP0 is not the short JFIF header without a thumbnail"
            ),
            0xEE => assert!(
                length == 14 && out.get(payload.0..payload.0 + 5) == Some(b"Adobe".as_slice()),
                "APP14 is not the short Adobe header"
            ),
            _ => {}
        }
        pos = payload.1;
        if code == 0xDA {
            // Scan data runs to the first 0xFF (of a run of fill bytes) not
            // followed by a stuffed zero or a restart marker.
            let start = pos;
            while let Some(at) = out
                .get(pos..)
                .and_then(|r| r.iter().position(|&b| b == 0xFF))
            {
                let run = out
                    .get(pos + at..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|&&b| b == 0xFF)
                    .count();
                if matches!(out.get(pos + at + run), Some(0x00 | 0xD0..=0xD7)) {
                    pos += at + run + 1;
                } else {
                    pos += at;
                    break;
                }
            }
            kept.push((start, pos));
        }
    }
}

#[cfg(any(test, feature = "fuzz-decoders"))]
fn decode_jpeg(bytes: &[u8]) -> Option<(u16, u16, Vec<u8>)> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(MAX_DECODED_BYTES);
    // The decoder holds coefficients (two bytes each, per component) for the
    // whole frame besides the pixels: only small frames are decoded.
    decoder.read_info().ok()?;
    let header = decoder.info()?;
    let samples = usize::from(header.width) * usize::from(header.height) * 4;
    if samples * 3 > MAX_DECODED_BYTES {
        return None;
    }
    let pixels = decoder.decode().ok()?;
    let info = decoder.info()?;
    Some((info.width, info.height, pixels))
}

// ---------------------------------------------------------------------------
// PNG

const PNG_KEPT: [&[u8; 4]; 11] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD",
    b"cICP",
];

/// Walks a stripped PNG, asserting its shape (every chunk allowed and
/// copied unchanged from the input), and returns where chunk data lies.
fn png_kept_regions(input: &[u8], out: &[u8]) -> Vec<(usize, usize)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    assert!(out.starts_with(SIGNATURE), "no PNG signature");
    let mut kept = Vec::new();
    let mut pos = SIGNATURE.len();
    let mut first = true;
    loop {
        let length = u32_at(out, pos).and_then(|l| usize::try_from(l).ok());
        let kind = out.get(pos + 4..pos + 8);
        let end = length.map(|l| pos + 12 + l);
        let chunk = end.and_then(|end| out.get(pos..end));
        assert!(chunk.is_some(), "a cut chunk in a stripped PNG");
        let (Some(length), Some(kind), Some(chunk)) = (length, kind, chunk) else {
            return kept;
        };
        assert!(
            PNG_KEPT.iter().any(|k| k.as_slice() == kind),
            "chunk {kind:?} survived stripping"
        );
        assert!(!first || kind == b"IHDR", "IHDR is not first");
        assert!(
            chunk_length_fits(kind, length),
            "chunk {kind:?} of {length} bytes: room for more than its fields"
        );
        first = false;
        assert!(
            input.windows(chunk.len()).any(|w| w == chunk),
            "a kept chunk was altered"
        );
        kept.push((pos + 8, pos + 8 + length));
        pos += 12 + length;
        if kind == b"IEND" {
            assert_eq!(pos, out.len(), "bytes after IEND");
            return kept;
        }
    }
}

#[cfg(any(test, feature = "fuzz-decoders"))]
fn decode_png(bytes: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let limits = png::Limits {
        bytes: MAX_DECODED_BYTES,
    };
    let decoder = png::Decoder::new_with_limits(std::io::Cursor::new(bytes), limits);
    let mut reader = decoder.read_info().ok()?;
    let size = reader.output_buffer_size()?;
    if size > MAX_DECODED_BYTES {
        return None;
    }
    let mut pixels = vec![0; size];
    let frame = reader.next_frame(&mut pixels).ok()?;
    pixels.truncate(frame.buffer_size());
    Some((frame.width, frame.height, pixels))
}

// ---------------------------------------------------------------------------
// HEIF

/// Whether every byte of `out` equals the input's, is zero, belongs to a
/// box type renamed `free`, or is the "self-contained" flag of a `url `
/// data reference (its location is emptied).
fn only_erased(input: &[u8], out: &[u8]) -> bool {
    let mut i = 0;
    while let (Some(&a), Some(&b)) = (input.get(i), out.get(i)) {
        if a == b || b == 0 {
            i += 1;
            continue;
        }
        // A changed byte inside a "free" written over a box type.
        let renamed = (0..4).any(|back| {
            i.checked_sub(back)
                .and_then(|start| out.get(start..start + 4))
                .is_some_and(|w| w == b"free")
        });
        let self_contained = b == 1
            && i.checked_sub(7)
                .and_then(|start| out.get(start..start + 4))
                .is_some_and(|w| w == b"url ");
        if !renamed && !self_contained {
            return false;
        }
        i += 1;
    }
    true
}

/// A reader of the HEIF structure, written apart from `privacy/heif.rs`.
mod heif {
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
            let is =
                |wanted: &[u8; 4]| types.iter().any(|(id, kind)| *id == item && kind == wanted);
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
}
