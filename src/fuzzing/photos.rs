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

mod heif;
