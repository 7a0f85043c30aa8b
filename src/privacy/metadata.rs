//! Photo metadata stripping (EXIF, GPS, XMP, comments, thumbnails, trailers)
//! for JPEG and PNG (HEIC in [`super::heif`]), and type sniffing from magic
//! bytes. Every byte handed to
//! this module is untrusted network data from a tip sender: parsing never
//! panics, never reads past the input, and never allocates more than the
//! input's size.
//!
//! The rule is an allow-list: a segment or chunk survives only when a decoder
//! needs it to render the pixels and it cannot carry free-form data. What is
//! kept and why:
//!
//! - JPEG: frame and scan headers (SOF*, DHT, DAC, DQT, DRI, DNL, DHP, EXP,
//!   SOS) and the entropy-coded scan data, byte for byte. APP0 JFIF is kept
//!   because it declares YCbCr, and APP14 Adobe because its transform flag
//!   tells a decoder whether the components are RGB, YCbCr or YCCK. Both are
//!   re-emitted in their fixed-size forms: the JFIF header can embed a
//!   thumbnail (which may show what a crop removed) and either can carry
//!   trailing bytes.
//! - JPEG, dropped: APP1 (EXIF with GPS, XMP), APP2 (ICC profiles name the
//!   device maker and model and a calibrated profile fingerprints a device;
//!   MPF points at appended images), APP13 (Photoshop IRB/IPTC: bylines,
//!   places), every other APPn, COM, reserved and JPEG-extension markers,
//!   RST/TEM outside a scan (they mean nothing there), and everything after
//!   EOI (motion-photo videos, depth maps and MPF secondary images live there).
//!   Dropping ICC can shift colours slightly for wide-gamut photos; a tip photo
//!   needs to show what happened, not its exact colour.
//! - PNG: IHDR, PLTE, IDAT, IEND (critical) and tRNS, gAMA, cHRM, sRGB, sBIT,
//!   bKGD, cICP (small rendering data whose every byte has a fixed meaning),
//!   byte for byte with their CRCs, when no longer than their fields and
//!   their CRC is right: otherwise dropped (refused when critical: IHDR,
//!   PLTE, IEND), as either would leave room for bytes of anything.
//! - PNG, dropped: tEXt, zTXt, iTXt (XMP lives here), eXIf, tIME, iCCP (same
//!   reason as JPEG ICC), pHYs (screen density reveals the device class, e.g.
//!   Retina screenshots), sPLT, hIST, oFFs, pCAL, sCAL, APNG frames (a hidden
//!   frame could show anything; the default image still renders), private
//!   chunks such as C2PA `caBX` credentials, and everything after IEND. An
//!   unknown critical chunk is refused: the image cannot render without it, and
//!   passing it on would pass on bytes nobody has looked at.
//! - HEIC/HEIF is cleaned in place by [`super::heif`]: EXIF and XMP items
//!   and every byte no image item uses are zeroed, boxes outside an
//!   allow-list become `free`, and a file it cannot clean for certain is
//!   refused (the caller then withholds it and says so in the tip).

/// Photo formats the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Heic,
}

impl ImageKind {
    /// The IANA media type sealed alongside the photo.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Heic => "image/heic",
        }
    }

    /// Parses a declared media type. Media types are case-insensitive and may
    /// carry parameters (RFC 2045 §5.1), which say nothing about the format.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        [
            ("image/jpeg", Self::Jpeg),
            ("image/png", Self::Png),
            ("image/heic", Self::Heic),
            ("image/heif", Self::Heic),
        ]
        .into_iter()
        .find(|(name, _)| essence.eq_ignore_ascii_case(name))
        .map(|(_, kind)| kind)
    }
}

/// What a declared media type says an attachment is, for the note that
/// tells the mediator an attachment was withheld.
pub fn attachment_kind(declared: &str) -> crate::domain::AttachmentKind {
    use crate::domain::AttachmentKind;
    let essence = declared.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/pdf") {
        AttachmentKind::Pdf
    } else if essence
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case("image/"))
    {
        AttachmentKind::Photo
    } else {
        AttachmentKind::Other
    }
}

/// Why a photo could not be stripped. The variants carry no input bytes, so
/// logging one cannot leak the photo.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StripError {
    #[error("the image ends inside a segment or chunk")]
    Truncated,
    #[error("the bytes do not start with a JPEG start-of-image marker")]
    NotJpeg,
    #[error("the bytes do not start with the PNG signature")]
    NotPng,
    #[error("a JPEG marker or segment is malformed")]
    BadMarker,
    #[error("a PNG chunk is malformed")]
    BadChunk,
    #[error("the PNG has a critical chunk this gateway does not know")]
    UnknownCriticalChunk,
    #[error("the bytes are not a HEIF file with one meta box")]
    NotHeif,
    #[error("a HEIF box or item location is malformed")]
    BadBox,
    #[error("the HEIF file holds more boxes, items or extents than allowed")]
    TooComplex,
    #[error("the HEIF file stores items in a way this gateway cannot clean")]
    Unsupported,
}

/// Detects the type from magic bytes: JPEG `FF D8 FF`, the PNG signature, or
/// an ISOBMFF `ftyp` box whose major brand is a HEIF image brand.
pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageKind::Jpeg)
    } else if bytes.starts_with(&PNG_SIGNATURE) {
        Some(ImageKind::Png)
    } else if is_heif(bytes) {
        Some(ImageKind::Heic)
    } else {
        None
    }
}

/// Removes metadata that can identify the photographer or place; see the
/// module documentation for what is kept and dropped. The output is never
/// larger than the input; HEIC keeps its length, cleaned in place.
pub fn strip(kind: ImageKind, bytes: &[u8]) -> Result<Vec<u8>, StripError> {
    match kind {
        ImageKind::Jpeg => strip_jpeg(bytes),
        ImageKind::Png => strip_png(bytes),
        ImageKind::Heic => super::heif::strip_heif(bytes),
    }
}

// ---------------------------------------------------------------------------
// HEIF

/// HEIF brands for still images and sequences (ISO/IEC 23008-12 Annex B).
/// `mif1`/`msf1` are the generic structural brands, also used by AVIF.
const HEIF_BRANDS: [&[u8; 4]; 9] = [
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif", b"mif1", b"msf1",
];
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

fn is_heif(bytes: &[u8]) -> bool {
    let Some((size, rest)) = bytes.split_first_chunk::<4>() else {
        return false;
    };
    let Some((box_type, rest)) = rest.split_first_chunk::<4>() else {
        return false;
    };
    let Some((major, rest)) = rest.split_first_chunk::<4>() else {
        return false;
    };
    if box_type != b"ftyp" || !HEIF_BRANDS.contains(&major) {
        return false;
    }
    // An AVIF file may name only the generic `mif1` as its major brand; its
    // compatible brands then say it is AV1, which is not HEIC.
    let declared = usize::try_from(u32::from_be_bytes(*size)).unwrap_or(usize::MAX);
    // Compatible brands run from after the minor version (offset 16) to the
    // end of the box; `rest` starts at offset 12.
    let end = declared.saturating_sub(12).min(rest.len());
    let compatible = rest.get(4..end).unwrap_or_default();
    !compatible
        .chunks_exact(4)
        .any(|brand| AVIF_BRANDS.iter().any(|avif| brand == avif.as_slice()))
}

// ---------------------------------------------------------------------------
// JPEG (ITU-T T.81 Annex B)

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP0: u8 = 0xE0;
const APP14: u8 = 0xEE;
/// `JFIF\0`, version (2), units (1), X/Y density (2 + 2); the thumbnail size
/// bytes that follow are rewritten to zero.
const JFIF_HEADER_LEN: usize = 12;
/// `Adobe`, version (2), flags0 (2), flags1 (2), transform (1).
const ADOBE_LEN: usize = 12;

/// What to do with one marker segment.
enum Segment<'a> {
    /// Copy the segment as it is.
    Keep,
    /// Emit the marker with this payload and a thumbnail size of 0×0.
    Jfif(&'a [u8]),
    /// Emit the marker with this payload.
    Adobe(&'a [u8]),
    Drop,
}

fn classify(marker: u8, payload: &[u8]) -> Segment<'_> {
    match marker {
        // SOF0..SOF15, DHT (C4) and DAC (CC); C8 is reserved for extensions.
        0xC0..=0xC7 | 0xC9..=0xCF => Segment::Keep,
        // SOS, DQT, DNL, DRI, DHP, EXP.
        0xDA..=0xDF => Segment::Keep,
        // A JFIF header too short to hold its thumbnail size is malformed;
        // requiring it also keeps the rewritten header no longer than this one.
        APP0 if payload.starts_with(b"JFIF\0") && payload.len() >= JFIF_HEADER_LEN + 2 => payload
            .get(..JFIF_HEADER_LEN)
            .map_or(Segment::Drop, Segment::Jfif),
        APP14 if payload.starts_with(b"Adobe") => payload
            .get(..ADOBE_LEN)
            .map_or(Segment::Drop, Segment::Adobe),
        _ => Segment::Drop,
    }
}

fn strip_jpeg(bytes: &[u8]) -> Result<Vec<u8>, StripError> {
    if !bytes.starts_with(&[0xFF, SOI]) {
        return Err(StripError::NotJpeg);
    }
    // Every kept segment is copied or shortened, never lengthened, so the
    // output fits in the input's size.
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xFF, SOI]);
    let mut pos = 2;
    loop {
        let (marker, after_marker) = read_marker(bytes, pos)?;
        match marker {
            EOI => {
                out.extend_from_slice(&[0xFF, EOI]);
                return Ok(out);
            }
            // TEM and RST0..RST7 stand alone, without a length.
            0x01 | 0xD0..=0xD7 => {
                pos = after_marker;
                continue;
            }
            // A second SOI, or a stuffed zero outside a scan, is no JPEG.
            SOI | 0x00 => return Err(StripError::BadMarker),
            _ => {}
        }
        let length = bytes
            .get(after_marker..)
            .and_then(|rest| rest.first_chunk::<2>())
            .map(|len| usize::from(u16::from_be_bytes(*len)))
            .ok_or(StripError::Truncated)?;
        // The length counts its own two bytes.
        if length < 2 {
            return Err(StripError::BadMarker);
        }
        let end = after_marker + length;
        let segment = bytes.get(after_marker..end).ok_or(StripError::Truncated)?;
        let payload = segment.get(2..).unwrap_or_default();
        match classify(marker, payload) {
            Segment::Keep => {
                out.extend_from_slice(&[0xFF, marker]);
                out.extend_from_slice(segment);
            }
            Segment::Jfif(header) => {
                push_segment(&mut out, marker, &[header, &[0, 0]]);
            }
            Segment::Adobe(header) => push_segment(&mut out, marker, &[header]),
            Segment::Drop => {}
        }
        pos = end;
        if marker == SOS {
            pos = copy_scan(bytes, pos, &mut out)?;
        }
    }
}

/// Reads the marker at `pos`, skipping fill bytes (T.81 B.1.1.2: any marker
/// may be preceded by any number of 0xFF). Returns the marker code and the
/// position after it.
fn read_marker(bytes: &[u8], pos: usize) -> Result<(u8, usize), StripError> {
    let rest = bytes.get(pos..).ok_or(StripError::Truncated)?;
    match rest.first() {
        None => return Err(StripError::Truncated),
        Some(0xFF) => {}
        Some(_) => return Err(StripError::BadMarker),
    }
    let fill = rest.iter().take_while(|&&b| b == 0xFF).count();
    let marker = rest.get(fill).copied().ok_or(StripError::Truncated)?;
    Ok((marker, pos + fill + 1))
}

/// Copies entropy-coded data verbatim from `pos` up to the next marker that
/// is not part of the scan, and returns that marker's position. Inside a scan
/// 0xFF is followed by a stuffed 0x00 or is an RST marker; anything else ends
/// the scan, which lets segments between progressive scans be filtered too.
fn copy_scan(bytes: &[u8], pos: usize, out: &mut Vec<u8>) -> Result<usize, StripError> {
    let mut cursor = pos;
    loop {
        let rest = bytes.get(cursor..).ok_or(StripError::Truncated)?;
        // A scan with no marker after it means the image was cut short.
        let ff = rest
            .iter()
            .position(|&b| b == 0xFF)
            .ok_or(StripError::Truncated)?;
        let after_ff = rest.get(ff..).unwrap_or_default();
        let fill = after_ff.iter().take_while(|&&b| b == 0xFF).count();
        let next = after_ff.get(fill).copied().ok_or(StripError::Truncated)?;
        if next == 0x00 || (0xD0..=0xD7).contains(&next) {
            cursor += ff + fill + 1;
        } else {
            let marker_at = cursor + ff;
            out.extend_from_slice(bytes.get(pos..marker_at).unwrap_or_default());
            return Ok(marker_at);
        }
    }
}

fn push_segment(out: &mut Vec<u8>, marker: u8, parts: &[&[u8]]) {
    let payload_len: usize = parts.iter().map(|part| part.len()).sum();
    // Callers pass at most 14 bytes taken from a segment that had a u16 length.
    let length = u16::try_from(payload_len + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&length.to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

// ---------------------------------------------------------------------------
// PNG (ISO/IEC 15948, PNG Third Edition)

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
const KNOWN_CRITICAL: [&[u8; 4]; 4] = [b"IHDR", b"PLTE", b"IDAT", b"IEND"];
/// Ancillary chunks with small rendering data and no room for text.
const KEPT_ANCILLARY: [&[u8; 4]; 7] = [
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"cICP",
];
/// Length (4) + type (4) + CRC (4).
const CHUNK_OVERHEAD: usize = 12;

fn strip_png(bytes: &[u8]) -> Result<Vec<u8>, StripError> {
    let mut rest = bytes
        .strip_prefix(PNG_SIGNATURE.as_slice())
        .ok_or(StripError::NotPng)?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&PNG_SIGNATURE);
    let mut first = true;
    loop {
        let (chunk, tail) = split_chunk(rest)?;
        let chunk_type = chunk.chunk_type;
        if first && chunk_type != *b"IHDR" {
            return Err(StripError::BadChunk);
        }
        first = false;
        // Bit 5 of the first type byte clear (an uppercase letter) marks a
        // chunk a decoder must understand to render the image.
        let [first_byte, ..] = chunk_type;
        let critical = first_byte.is_ascii_uppercase();
        let fits = chunk_length_fits(
            &chunk_type,
            chunk.bytes.len().saturating_sub(CHUNK_OVERHEAD),
        ) && crc_holds(chunk.bytes);
        if critical && !fits {
            return Err(StripError::BadChunk);
        }
        if fits && (KNOWN_CRITICAL.contains(&&chunk_type) || KEPT_ANCILLARY.contains(&&chunk_type))
        {
            // Kept chunks are not altered, and their CRCs are checked: a
            // wrong one would be four bytes of anything (found by the
            // `photo_png` fuzz target).
            out.extend_from_slice(chunk.bytes);
        } else if critical {
            return Err(StripError::UnknownCriticalChunk);
        }
        if chunk_type == *b"IEND" {
            return Ok(out);
        }
        rest = tail;
    }
}

/// Whether a kept chunk is no longer than its fields (PNG Third Edition
/// §11), so it has no room for anything but them: a chunk a decoder would
/// read past could carry any bytes (an EXIF block in an IEND was found by
/// the `photo_png` fuzz target).
pub(crate) fn chunk_length_fits(kind: &[u8], length: usize) -> bool {
    match kind {
        b"IHDR" => length == 13,
        b"IEND" => length == 0,
        b"PLTE" => length.is_multiple_of(3) && length <= 768,
        b"tRNS" => length <= 256,
        b"gAMA" | b"cICP" => length == 4,
        b"cHRM" => length == 32,
        b"sRGB" => length == 1,
        b"sBIT" => (1..=4).contains(&length),
        b"bKGD" => matches!(length, 1 | 2 | 6),
        _ => true,
    }
}

/// Whether a whole chunk's CRC (over its type and data) is right.
fn crc_holds(chunk: &[u8]) -> bool {
    let Some((body, crc)) = chunk.get(4..).and_then(|rest| rest.split_last_chunk::<4>()) else {
        return false;
    };
    crc32fast::hash(body) == u32::from_be_bytes(*crc)
}

/// One PNG chunk as it appeared in the input.
struct Chunk<'a> {
    chunk_type: [u8; 4],
    /// Length, type, data and CRC, byte for byte.
    bytes: &'a [u8],
}

/// Splits one chunk off the front, returning it and what follows.
fn split_chunk(bytes: &[u8]) -> Result<(Chunk<'_>, &[u8]), StripError> {
    let (length, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(StripError::Truncated)?;
    let (chunk_type, _) = rest.split_first_chunk::<4>().ok_or(StripError::Truncated)?;
    let length = u32::from_be_bytes(*length);
    // The spec caps chunk lengths at 2^31 - 1 and type bytes at ASCII letters.
    if length > 0x7FFF_FFFF || !chunk_type.iter().all(u8::is_ascii_alphabetic) {
        return Err(StripError::BadChunk);
    }
    let total = usize::try_from(length)
        .ok()
        .and_then(|len| len.checked_add(CHUNK_OVERHEAD))
        .ok_or(StripError::Truncated)?;
    let (chunk, tail) = bytes.split_at_checked(total).ok_or(StripError::Truncated)?;
    let chunk = Chunk {
        chunk_type: *chunk_type,
        bytes: chunk,
    };
    Ok((chunk, tail))
}

#[cfg(test)]
mod tests;
