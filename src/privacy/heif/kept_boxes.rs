//! Cleaning of the structural boxes HEIF keeps (`ftyp`, `hdlr`, `iinf`,
//! `iref`, `ipma`, `dinf`): their free text and trailing bytes are zeroed.
//! Untrusted: the boxes come from a tip sender's photo.

use super::reader::{BoxAt, boxes, read_u8, read_u16, read_u32};
use super::writer::{neutralise, zero};
use crate::privacy::metadata::StripError;

/// Compatible brands a HEIC photo names; others are zeroed.
const KNOWN_BRANDS: [&[u8; 4]; 17] = [
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif", b"mif1", b"mif2", b"msf1",
    b"miaf", b"MiHE", b"MiHA", b"MiHB", b"MiPr", b"MiAn", b"MiCm",
];

/// `ftyp`: the major brand stays (the sniffing accepted it); the minor
/// version is zeroed, and so are compatible brands outside
/// [`KNOWN_BRANDS`] and any bytes after the last whole brand: four free
/// bytes each, to a writer.
pub(super) fn clean_file_type(out: &mut [u8], ftyp: BoxAt) {
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
pub(super) fn clean_handler(out: &mut [u8], hdlr: BoxAt) {
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
pub(super) fn clean_item_infos(
    bytes: &[u8],
    out: &mut [u8],
    iinf: BoxAt,
) -> Result<(), StripError> {
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
pub(super) fn clean_references(
    bytes: &[u8],
    out: &mut [u8],
    iref: BoxAt,
) -> Result<(), StripError> {
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
pub(super) fn clean_associations(
    bytes: &[u8],
    out: &mut [u8],
    ipma: BoxAt,
) -> Result<(), StripError> {
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
pub(super) fn clean_data_information(
    bytes: &[u8],
    out: &mut [u8],
    dinf: BoxAt,
) -> Result<(), StripError> {
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
