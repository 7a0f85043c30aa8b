//! Cleaning of HEIF item properties (`ipco`): only small rendering
//! properties stay, trimmed to their fields; `hvcC` and `auxC` are checked.
//! Untrusted: the properties come from a tip sender's photo.

use super::reader::{BoxAt, boxes, read_4cc, read_u8, read_u16};
use super::writer::{neutralise, zero};
use crate::privacy::metadata::StripError;

pub(crate) const KEPT_PROPERTIES: [&[u8; 4]; 12] = [
    b"hvcC", b"ispe", b"pixi", b"irot", b"imir", b"clap", b"pasp", b"auxC", b"rloc", b"lsel",
    b"clli", b"mdcv",
];

/// The length of an `hvcC` record: 22 bytes of fields, an array count, then
/// per array its NAL unit type and unit count, and each unit's 16-bit length
/// and bytes. `None` when the record does not fit its box (only its bytes
/// are read).
pub(super) fn hevc_config_len(bytes: &[u8], hvcc: BoxAt) -> Option<usize> {
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
pub(super) fn known_aux_type(bytes: &[u8], auxc: BoxAt) -> bool {
    let Some(text) = bytes.get(auxc.payload + 4..auxc.end) else {
        return false;
    };
    let aux_type = text.split(|&b| b == 0).next().unwrap_or_default();
    aux_type.len() < text.len() && KNOWN_AUX_TYPES.contains(&aux_type)
}

pub(super) fn clean_properties(
    bytes: &[u8],
    out: &mut [u8],
    ipco: BoxAt,
) -> Result<(), StripError> {
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
