use super::reader::MAX_BOXES;
use super::*;
use crate::privacy::metadata::{ImageKind, sniff, strip};
use proptest::prelude::*;
use std::cell::Cell;

thread_local! {
    /// Bytes zeroed on this thread: the work the walk does.
    pub(super) static ZEROED: Cell<usize> = const { Cell::new(0) };
}

const GPS_CANARY: &[u8] = b"GPS-CANARY-40.7128N-74.0060W";
const IDAT_GPS_CANARY: &[u8] = b"IDAT-GPS-CANARY";
const XMP_CANARY: &[u8] = b"XMP-CANARY-CreatorTool";
const XML_BOX_CANARY: &[u8] = b"XML-BOX-CANARY";
const ICC_CANARY: &[u8] = b"ICC-CANARY-iPhone15Pro";
const UDES_CANARY: &[u8] = b"UDES-CANARY-Maple-and-3rd";
const UUID_CANARY: &[u8] = b"UUID-CANARY-maker-notes";
const GAP_CANARY: &[u8] = b"GAP-CANARY-hidden";
const CANARIES: [&[u8]; 8] = [
    GPS_CANARY,
    IDAT_GPS_CANARY,
    XMP_CANARY,
    XML_BOX_CANARY,
    ICC_CANARY,
    UDES_CANARY,
    UUID_CANARY,
    GAP_CANARY,
];
/// Stand-ins for HEVC tiles and a grid descriptor: kept byte for byte.
const TILE: &[u8] = b"HEVC-TILE-0123456789abcdef";
const THUMB: &[u8] = b"HEVC-THUMB-0123";
const GRID: &[u8] = b"\0\0\0\x01\x0F\x00\x0B\x40";

fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = u32::try_from(payload.len() + 8)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(payload);
    b
}

fn full(kind: &[u8; 4], version: u8, payload: &[u8]) -> Vec<u8> {
    bx(kind, &[&[version, 0, 0, 0], payload].concat())
}

fn infe(id: u16, kind: &[u8; 4], content_type: Option<&str>) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(kind);
    p.push(0); // empty item name
    if let Some(ct) = content_type {
        p.extend_from_slice(ct.as_bytes());
        p.push(0);
    }
    full(b"infe", 2, &p)
}

/// An EXIF item as a phone writes it: the offset to the TIFF header,
/// `Exif\0\0`, then TIFF data whose GPS IFD holds the canary.
fn exif_item(canary: &[u8]) -> Vec<u8> {
    let mut e = 6u32.to_be_bytes().to_vec();
    e.extend_from_slice(b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x88\x25");
    e.extend_from_slice(canary);
    e
}

/// A HEIF photo shaped like an iPhone's: a grid item (descriptor in
/// `idat`) over one HEVC tile, a thumbnail, EXIF in `mdat` and in `idat`,
/// XMP as a `mime` item and as an `xml ` box, an ICC `colr` and a `udes`
/// property, a top-level `uuid` box, and stray bytes in `mdat`.
fn iphone_like_heic() -> Vec<u8> {
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heicmiaf");
    let exif = exif_item(GPS_CANARY);
    let idat_exif = exif_item(IDAT_GPS_CANARY);
    let xmp = [b"<x:xmpmeta>".as_slice(), XMP_CANARY, b"</x:xmpmeta>"].concat();
    let mdat_payload = [TILE, THUMB, &exif, &xmp, GAP_CANARY].concat();
    let uuid = bx(b"uuid", &[[7u8; 16].as_slice(), UUID_CANARY].concat());
    let meta = |mdat_at: u32| {
        let hdlr = full(
            b"hdlr",
            0,
            &[&[0; 4], b"pict".as_slice(), &[0; 12], &[0]].concat(),
        );
        let pitm = full(b"pitm", 0, &1u16.to_be_bytes());
        let iinf = full(
            b"iinf",
            0,
            &[
                5u16.to_be_bytes().to_vec(),
                infe(1, b"grid", None),
                infe(2, b"hvc1", None),
                infe(3, b"hvc1", None),
                infe(4, b"Exif", None),
                infe(5, b"mime", Some("application/rdf+xml")),
                infe(6, b"Exif", None),
            ]
            .concat(),
        );
        // iloc v1: offset, length and base offset 4 bytes, no index.
        let mut iloc = vec![0x44, 0x40];
        iloc.extend_from_slice(&6u16.to_be_bytes());
        let tile_len = TILE.len() as u32;
        let thumb_len = THUMB.len() as u32;
        let exif_len = exif.len() as u32;
        let items: [(u16, u16, u32, u32, u32); 6] = [
            (1, 1, 0, 0, GRID.len() as u32),
            (2, 0, mdat_at, 0, tile_len),
            (3, 0, mdat_at, tile_len, thumb_len),
            (4, 0, mdat_at, tile_len + thumb_len, exif_len),
            (
                5,
                0,
                mdat_at,
                tile_len + thumb_len + exif_len,
                xmp.len() as u32,
            ),
            (6, 1, 0, GRID.len() as u32, idat_exif.len() as u32),
        ];
        for (id, method, base, offset, length) in items {
            iloc_entry(&mut iloc, id, method, base, offset, length);
        }
        let iloc = full(b"iloc", 1, &iloc);
        let ipco = bx(
            b"ipco",
            &[
                bx(b"hvcC", &hvcc(&[(0xA0, &[b"VPS"])])),
                full(b"ispe", 0, &[0, 0, 0x0F, 0, 0, 0, 0x0B, 0x40]),
                bx(b"colr", &[b"prof".as_slice(), ICC_CANARY].concat()),
                bx(b"colr", b"nclx\0\x01\0\x0D\0\x06\x80"),
                full(
                    b"udes",
                    0,
                    &[b"en\0".as_slice(), UDES_CANARY, b"\0\0\0"].concat(),
                ),
            ]
            .concat(),
        );
        let ipma = full(
            b"ipma",
            0,
            &[&1u32.to_be_bytes()[..], &[0, 1, 3, 0x81, 0x82, 0x03]].concat(),
        );
        let iprp = bx(b"iprp", &[ipco, ipma].concat());
        let idat = bx(b"idat", &[GRID, &idat_exif].concat());
        let xml = full(b"xml ", 0, XML_BOX_CANARY);
        full(
            b"meta",
            0,
            &[hdlr, pitm, iinf, iloc, iprp, idat, xml].concat(),
        )
    };
    let head = ftyp.len() + meta(0).len() + uuid.len() + 8;
    let meta = meta(u32::try_from(head).unwrap());
    [ftyp, meta, uuid, bx(b"mdat", &mdat_payload)].concat()
}

/// An iloc v1 entry: item id, construction method, offset and length
/// (file offsets relative to the start of `mdat`'s payload for method
/// 0, `idat` offsets for method 1), one extent each.
/// Appends one `iloc` version-1 entry (4-byte offsets, lengths and
/// base offset): item id, construction method, data reference 0, base
/// offset, one extent of `offset` and `length`.
fn iloc_entry(iloc: &mut Vec<u8>, id: u16, method: u16, base: u32, offset: u32, length: u32) {
    iloc.extend_from_slice(&id.to_be_bytes());
    iloc.extend_from_slice(&method.to_be_bytes());
    iloc.extend_from_slice(&0u16.to_be_bytes());
    iloc.extend_from_slice(&base.to_be_bytes());
    iloc.extend_from_slice(&1u16.to_be_bytes());
    iloc.extend_from_slice(&offset.to_be_bytes());
    iloc.extend_from_slice(&length.to_be_bytes());
}

type Entry = (u16, u16, u32, u32);

/// A small HEIC of the given `infe`s, `iloc` entries, `iref` children,
/// `ipco` properties, `idat` and `mdat` payloads.
fn custom_heic(
    infes: &[Vec<u8>],
    entries: &[Entry],
    iref: &[u8],
    ipco: &[u8],
    idat: &[u8],
    mdat: &[u8],
) -> Vec<u8> {
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    let meta = |mdat_at: u32| {
        let hdlr = full(
            b"hdlr",
            0,
            &[&[0; 4], b"pict".as_slice(), &[0; 13]].concat(),
        );
        let count = u16::try_from(infes.len()).unwrap().to_be_bytes();
        let iinf = full(b"iinf", 0, &[&count, infes.concat().as_slice()].concat());
        let mut iloc = vec![0x44, 0x40];
        iloc.extend_from_slice(&u16::try_from(entries.len()).unwrap().to_be_bytes());
        for &(id, method, offset, length) in entries {
            let base = if method == 0 { mdat_at } else { 0 };
            iloc_entry(&mut iloc, id, method, base, offset, length);
        }
        let ipma = full(b"ipma", 0, &0u32.to_be_bytes());
        let iprp = bx(b"iprp", &[bx(b"ipco", ipco), ipma].concat());
        full(
            b"meta",
            0,
            &[
                hdlr,
                full(b"pitm", 0, &1u16.to_be_bytes()),
                iinf,
                full(b"iloc", 1, &iloc),
                full(b"iref", 0, iref),
                iprp,
                bx(b"idat", idat),
            ]
            .concat(),
        )
    };
    let head = ftyp.len() + meta(0).len() + 8;
    let meta = meta(u32::try_from(head).unwrap());
    [ftyp, meta, bx(b"mdat", mdat)].concat()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn a_heic_loses_its_exif_gps_xmp_icc_and_hidden_bytes_and_keeps_its_image_data() {
    let dirty = iphone_like_heic();
    assert_eq!(sniff(&dirty), Some(ImageKind::Heic));
    for canary in CANARIES {
        assert!(contains(&dirty, canary), "test photo lacks {canary:?}");
    }

    let clean = strip(ImageKind::Heic, &dirty).unwrap();

    for canary in CANARIES {
        assert!(
            !contains(&clean, canary),
            "{:?} survived",
            String::from_utf8_lossy(canary)
        );
    }
    assert_eq!(clean.len(), dirty.len(), "cleaned in place: offsets hold");
    for kept in [TILE, THUMB, GRID] {
        let at = position(&dirty, kept);
        assert_eq!(
            &clean[at..at + kept.len()],
            kept,
            "image data moved or changed"
        );
    }
    assert_eq!(sniff(&clean), Some(ImageKind::Heic));
    assert_eq!(
        strip(ImageKind::Heic, &clean).unwrap(),
        clean,
        "a fixed point"
    );
}

#[test]
fn a_cleaned_heic_still_has_the_structure_a_decoder_reads() {
    let dirty = iphone_like_heic();
    let clean = strip_heif(&dirty).unwrap();
    let kinds = |bytes: &[u8]| -> Vec<[u8; 4]> {
        boxes(bytes, 0, bytes.len())
            .unwrap()
            .iter()
            .map(|b| b.kind)
            .collect()
    };
    assert_eq!(kinds(&clean), [*b"ftyp", *b"meta", *b"free", *b"mdat"]);
    let top = boxes(&clean, 0, clean.len()).unwrap();
    let meta = top[1];
    let children: Vec<[u8; 4]> = boxes(&clean, meta.payload + 4, meta.end)
        .unwrap()
        .iter()
        .map(|b| b.kind)
        .collect();
    assert_eq!(
        children,
        [
            *b"hdlr", *b"pitm", *b"iinf", *b"iloc", *b"iprp", *b"idat", *b"free"
        ]
    );
    let child = |kind: &[u8; 4]| {
        *boxes(&clean, meta.payload + 4, meta.end)
            .unwrap()
            .iter()
            .find(|b| b.kind == *kind)
            .unwrap()
    };
    assert_eq!(item_types(&clean, child(b"iinf")).unwrap().len(), 6);
    assert_eq!(item_extents(&clean, child(b"iloc")).unwrap().0.len(), 6);
    let iprp = child(b"iprp");
    let ipco = boxes(&clean, iprp.payload, iprp.end).unwrap()[0];
    let properties: Vec<[u8; 4]> = boxes(&clean, ipco.payload, ipco.end)
        .unwrap()
        .iter()
        .map(|b| b.kind)
        .collect();
    assert_eq!(
        properties,
        [*b"hvcC", *b"ispe", *b"free", *b"colr", *b"free"],
        "property indexes unchanged, so ipma still lines up"
    );
}

/// The test photo with its `iloc` rewritten by `edit` (given the iloc
/// box's payload offset).
fn with_iloc_edit(edit: impl Fn(&mut [u8], usize)) -> Vec<u8> {
    let mut heic = iphone_like_heic();
    let top = boxes(&heic, 0, heic.len()).unwrap();
    let meta = top[1];
    let iloc = *boxes(&heic, meta.payload + 4, meta.end)
        .unwrap()
        .iter()
        .find(|b| b.kind == *b"iloc")
        .unwrap();
    edit(&mut heic, iloc.payload);
    heic
}

#[test]
fn heic_files_that_cannot_be_cleaned_for_certain_are_refused() {
    // First item: id (2), method (2), data reference (2), base (4), ...
    let first_item = 4 + 2 + 2;
    let by_item_offset = with_iloc_edit(|h, at| h[at + first_item + 3] = 2);
    assert_eq!(strip_heif(&by_item_offset), Err(StripError::Unsupported));
    let other_file = with_iloc_edit(|h, at| h[at + first_item + 5] = 1);
    assert_eq!(strip_heif(&other_file), Err(StripError::Unsupported));
    let past_the_end = with_iloc_edit(|h, at| h[at + first_item + 12] = 0x7F);
    assert_eq!(strip_heif(&past_the_end), Err(StripError::BadBox));
    let too_many = with_iloc_edit(|h, at| h[at + 6..at + 8].copy_from_slice(&[0xFF, 0xFF]));
    assert_eq!(strip_heif(&too_many), Err(StripError::TooComplex));

    let heic = iphone_like_heic();
    let top = boxes(&heic, 0, heic.len()).unwrap();
    let meta = &heic[top[1].start..top[1].end];
    let two_metas = [&heic[..top[2].start], meta, &heic[top[2].start..]].concat();
    assert_eq!(strip_heif(&two_metas), Err(StripError::NotHeif));
    let no_meta = [&heic[..top[1].start], &heic[top[2].start..]].concat();
    assert_eq!(strip_heif(&no_meta), Err(StripError::NotHeif));
    let mut overlong = heic.clone();
    overlong[top[1].start..top[1].start + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(strip_heif(&overlong), Err(StripError::BadBox));
}

#[test]
fn a_heic_cut_short_anywhere_is_refused_or_clean() {
    let heic = iphone_like_heic();
    for cut in 0..heic.len() {
        if let Ok(out) = strip_heif(&heic[..cut]) {
            for canary in CANARIES {
                assert!(!contains(&out, canary), "cut at {cut}");
            }
        }
    }
}

#[test]
fn box_counts_are_capped() {
    let many = bx(b"free", &[]).repeat(MAX_BOXES + 1);
    let heic = [bx(b"ftyp", b"heic\0\0\0\0mif1heic"), many].concat();
    assert_eq!(strip_heif(&heic), Err(StripError::TooComplex));
}

/// A HEIC whose one EXIF item lists `extents` extents, each "from the
/// start of `mdat` to its end", over an `mdat` of `mdat_len` bytes.
fn overlapping_exif_extents(extents: u16, mdat_len: usize) -> Vec<u8> {
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    let iinf = full(
        b"iinf",
        0,
        &[1u16.to_be_bytes().to_vec(), infe(1, b"Exif", None)].concat(),
    );
    let meta = |mdat_at: u32| {
        // iloc v1: no offset or length fields (offset = base, length 0
        // = to the end), a 4-byte base offset.
        let mut iloc = vec![0x00, 0x40];
        iloc.extend_from_slice(&1u16.to_be_bytes());
        iloc.extend_from_slice(&1u16.to_be_bytes());
        iloc.extend_from_slice(&0u16.to_be_bytes());
        iloc.extend_from_slice(&0u16.to_be_bytes());
        iloc.extend_from_slice(&mdat_at.to_be_bytes());
        iloc.extend_from_slice(&extents.to_be_bytes());
        full(
            b"meta",
            0,
            &[iinf.clone(), full(b"iloc", 1, &iloc)].concat(),
        )
    };
    let at = u32::try_from(ftyp.len() + meta(0).len() + 8).unwrap();
    [ftyp, meta(at), bx(b"mdat", &vec![0xAB; mdat_len])].concat()
}

#[test]
fn overlapping_extents_cost_one_pass_over_the_bytes_not_one_each() {
    let heic = overlapping_exif_extents(16_384, 64 * 1024);
    ZEROED.with(|n| n.set(0));
    let clean = strip_heif(&heic).unwrap();
    let zeroed = ZEROED.with(Cell::get);
    assert!(
        !contains(&clean, &[0xAB; 16]),
        "the EXIF item's bytes are gone"
    );
    assert!(
        zeroed <= 2 * heic.len(),
        "zeroed {zeroed} bytes for a {}-byte file",
        heic.len()
    );
}

/// Where [`planted_heic`] can hide a marker: every place of a HEIC that
/// is not image data.
const SPOTS: [&str; 21] = [
    "hdlr name",
    "hvc1 item name",
    "Exif item name",
    "mime item content type",
    "stray box in iinf",
    "bytes after iloc's entries",
    "bytes after an iref reference",
    "bytes after ipma's entries",
    "dref url location",
    "dref urn entry",
    "EXIF item in mdat",
    "mdat gap",
    "idat gap",
    "xml box in meta",
    "top-level uuid box",
    "udes property",
    "grid item data past its descriptor",
    "iden item data",
    "ftyp compatible brands",
    "bytes after ispe's fields",
    "bytes after an nclx colr's fields",
];

/// A small HEIC (one hvc1 tile, an EXIF and a mime item, a grid in
/// `idat`) with `marker` hidden at `SPOTS[spot]` and nowhere else.
fn planted_heic(spot: usize, marker: &[u8]) -> Vec<u8> {
    let at = |here: &str| -> &[u8] {
        if SPOTS.get(spot) == Some(&here) {
            marker
        } else {
            &[]
        }
    };
    let ftyp = bx(
        b"ftyp",
        &[
            b"heic\0\0\0\0mif1heic".as_slice(),
            at("ftyp compatible brands"),
        ]
        .concat(),
    );
    let exif = exif_item(at("EXIF item in mdat"));
    let mdat = bx(b"mdat", &[TILE, &exif, at("mdat gap")].concat());
    let uuid = bx(
        b"uuid",
        &[[9u8; 16].as_slice(), at("top-level uuid box")].concat(),
    );
    let meta = |mdat_at: u32| {
        let name = |item: &[u8]| [item, b"\0"].concat();
        let hdlr = full(
            b"hdlr",
            0,
            &[
                &[0; 4],
                b"pict".as_slice(),
                &[0; 12],
                &name(at("hdlr name")),
            ]
            .concat(),
        );
        let infe_named = |id: u16, kind: &[u8; 4], item_name: &[u8], rest: &[u8]| {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(kind);
            p.extend_from_slice(&name(item_name));
            p.extend_from_slice(rest);
            full(b"infe", 2, &p)
        };
        let mut iinf = 5u16.to_be_bytes().to_vec();
        iinf.extend(infe_named(1, b"grid", b"", b""));
        iinf.extend(infe_named(2, b"hvc1", at("hvc1 item name"), b""));
        iinf.extend(infe_named(3, b"Exif", at("Exif item name"), b""));
        iinf.extend(infe_named(
            4,
            b"mime",
            b"",
            &name(
                &[
                    b"application/rdf+xml;".as_slice(),
                    at("mime item content type"),
                ]
                .concat(),
            ),
        ));
        iinf.extend(infe_named(5, b"iden", b"", b""));
        if !at("stray box in iinf").is_empty() {
            iinf.extend(bx(b"abcd", marker));
        }
        let iinf = full(b"iinf", 0, &iinf);
        let mut iloc = vec![0x44, 0x40];
        let tile_len = TILE.len() as u32;
        let grid_len = (GRID.len() + at("grid item data past its descriptor").len()) as u32;
        let mut items = vec![
            (1u16, 1u16, 0u32, 0u32, grid_len),
            (2, 0, mdat_at, 0, tile_len),
            (3, 0, mdat_at, tile_len, exif.len() as u32),
        ];
        if !at("iden item data").is_empty() {
            items.push((5, 1, 0, grid_len, marker.len() as u32));
        }
        iloc.extend_from_slice(&(items.len() as u16).to_be_bytes());
        for (id, method, base, offset, length) in items {
            iloc_entry(&mut iloc, id, method, base, offset, length);
        }
        iloc.extend_from_slice(at("bytes after iloc's entries"));
        let iloc = full(b"iloc", 1, &iloc);
        let iref = full(
            b"iref",
            0,
            &[
                bx(
                    b"dimg",
                    &[&[0, 1, 0, 1, 0, 2], at("bytes after an iref reference")].concat(),
                ),
                bx(b"cdsc", &[0, 3, 0, 1, 0, 2]),
            ]
            .concat(),
        );
        let ipco = bx(
            b"ipco",
            &[
                bx(b"hvcC", &hvcc(&[(0xA0, &[b"VPS"])])),
                full(
                    b"ispe",
                    0,
                    &[
                        &[0, 0, 0x0F, 0, 0, 0, 0x0B, 0x40],
                        at("bytes after ispe's fields"),
                    ]
                    .concat(),
                ),
                bx(
                    b"colr",
                    &[
                        b"nclx\0\x01\0\x0D\0\x06\x80".as_slice(),
                        at("bytes after an nclx colr's fields"),
                    ]
                    .concat(),
                ),
                full(
                    b"udes",
                    0,
                    &[b"en\0".as_slice(), at("udes property"), b"\0\0\0"].concat(),
                ),
            ]
            .concat(),
        );
        let ipma = full(
            b"ipma",
            0,
            &[
                &2u32.to_be_bytes()[..],
                &[0, 1, 3, 0x82, 0x83, 0x04, 0, 2, 1, 0x81],
                at("bytes after ipma's entries"),
            ]
            .concat(),
        );
        let iprp = bx(b"iprp", &[ipco, ipma].concat());
        let mut dref = 1u32.to_be_bytes().to_vec();
        if at("dref url location").is_empty() {
            dref.extend(full(b"url ", 0, b""));
            dref[..4].copy_from_slice(&1u32.to_be_bytes());
        } else {
            dref.extend(full(b"url ", 0, &name(marker)));
        }
        if !at("dref urn entry").is_empty() {
            dref[..4].copy_from_slice(&2u32.to_be_bytes());
            dref.extend(full(b"urn ", 0, &[&name(marker)[..], b"\0"].concat()));
        }
        let dinf = bx(b"dinf", &full(b"dref", 0, &dref));
        let idat = bx(
            b"idat",
            &[
                GRID,
                at("grid item data past its descriptor"),
                at("iden item data"),
                at("idat gap"),
            ]
            .concat(),
        );
        let mut children = [hdlr, iinf, iloc, iref, iprp, dinf, idat].concat();
        if !at("xml box in meta").is_empty() {
            children.extend(full(b"xml ", 0, marker));
        }
        full(b"meta", 0, &children)
    };
    let head = ftyp.len() + meta(0).len() + uuid.len() + 8;
    let meta = meta(u32::try_from(head).unwrap());
    [ftyp, meta, uuid, mdat].concat()
}

#[test]
fn no_spot_keeps_a_planted_marker() {
    let marker = b"MARKER-47.6062N-122.3321W";
    let survivors: Vec<&str> = (0..SPOTS.len())
        .filter(|&spot| {
            let clean = strip_heif(&planted_heic(spot, marker)).unwrap();
            contains(&clean, marker)
        })
        .map(|spot| SPOTS[spot])
        .collect();
    assert_eq!(survivors, Vec::<&str>::new());
}

/// An overlay descriptor: version, flags, four fill values, width and
/// height, one offset pair per input image (16-bit fields).
fn overlay(inputs: usize) -> Vec<u8> {
    [
        &[0u8, 0],
        &[0u8; 8][..],
        &[0, 16, 0, 16],
        &[0, 1, 0, 2].repeat(inputs),
    ]
    .concat()
}

#[test]
fn an_overlay_keeps_its_descriptor_and_not_the_bytes_after_it() {
    let marker = b"MARKER-47.6062N-122.3321W";
    let tile = u32::try_from(TILE.len()).unwrap();
    for wide in [false, true] {
        let mut iovl = overlay(2);
        if wide {
            // 32-bit fields: width, height and offsets twice as long.
            iovl = [&[0u8, 1], &[0u8; 8][..], &[0, 0, 0, 16].repeat(2 + 4)].concat();
        }
        let kept = iovl.len();
        let heic = custom_heic(
            &[infe(1, b"iovl", None), infe(2, b"hvc1", None)],
            &[
                (1, 1, 0, u32::try_from(kept + marker.len()).unwrap()),
                (2, 0, 0, tile),
            ],
            &bx(b"dimg", &[0, 1, 0, 2, 0, 2, 0, 2]),
            &[],
            &[&iovl[..], marker].concat(),
            TILE,
        );
        let clean = strip_heif(&heic).unwrap();
        assert!(!contains(&clean, marker), "wide: {wide}");
        let at = position(&heic, &iovl);
        assert_eq!(&clean[at..at + kept], iovl, "the descriptor stays");
        assert_eq!(strip_heif(&clean), Ok(clean.clone()), "a fixed point");
    }
}

#[test]
fn an_overlay_with_two_lists_of_inputs_is_refused() {
    let iovl = overlay(1);
    let heic = custom_heic(
        &[infe(1, b"iovl", None), infe(2, b"hvc1", None)],
        &[(1, 1, 0, u32::try_from(iovl.len()).unwrap()), (2, 0, 0, 4)],
        &[
            bx(b"dimg", &[0, 1, 0, 1, 0, 2]),
            bx(b"dimg", &[0, 1, 0, 1, 0, 2]),
        ]
        .concat(),
        &[],
        &iovl,
        TILE,
    );
    assert_eq!(strip_heif(&heic), Err(StripError::BadBox));
}

/// An `hvcC` record: 22 bytes of fields, then its arrays of NAL units.
fn hvcc(arrays: &[(u8, &[&[u8]])]) -> Vec<u8> {
    let mut c = vec![1u8; 22];
    c.push(u8::try_from(arrays.len()).unwrap());
    for (kind, units) in arrays {
        c.push(*kind);
        c.extend_from_slice(&u16::try_from(units.len()).unwrap().to_be_bytes());
        for unit in *units {
            c.extend_from_slice(&u16::try_from(unit.len()).unwrap().to_be_bytes());
            c.extend_from_slice(unit);
        }
    }
    c
}

#[test]
fn hvcc_keeps_its_parameter_sets_and_not_the_bytes_after_them() {
    let marker = b"MARKER-47.6062N-122.3321W";
    let config = hvcc(&[(0xA0, &[b"VPS"]), (0xA1, &[b"SPS", b"SPS2"]), (0xA2, &[])]);
    let heic = custom_heic(
        &[infe(1, b"hvc1", None)],
        &[(1, 0, 0, u32::try_from(TILE.len()).unwrap())],
        &[],
        &bx(b"hvcC", &[&config[..], marker].concat()),
        &[],
        TILE,
    );
    let clean = strip_heif(&heic).unwrap();
    assert!(!contains(&clean, marker));
    let at = position(&heic, &config);
    assert_eq!(&clean[at..at + config.len()], config, "the record stays");
    assert_eq!(strip_heif(&clean), Ok(clean.clone()), "a fixed point");

    // Arrays longer than the box, or a box shorter than the fields:
    // no end to keep bytes up to, so the box goes whole.
    for short in [&config[..config.len() - 1], &config[..21]] {
        let heic = custom_heic(
            &[infe(1, b"hvc1", None)],
            &[(1, 0, 0, 4)],
            &[],
            &bx(b"hvcC", short),
            &[],
            TILE,
        );
        let clean = strip_heif(&heic).unwrap();
        let at = position(&heic, b"hvcC");
        assert_eq!(&clean[at..at + 4], b"free");
        assert!(clean[at + 4..at + 4 + short.len()].iter().all(|&b| b == 0));
    }
}

#[test]
fn an_auxiliary_image_type_is_kept_only_when_it_is_a_known_urn() {
    let marker = b"MARKER-47.6062N-122.3321W";
    let heic = |aux_type: &[u8]| {
        custom_heic(
            &[infe(1, b"hvc1", None)],
            &[(1, 0, 0, 4)],
            &[],
            &full(b"auxC", 0, &[aux_type, b"\0"].concat()),
            &[],
            TILE,
        )
    };
    let free_text = heic(&[b"urn:".as_slice(), marker].concat());
    let clean = strip_heif(&free_text).unwrap();
    assert!(!contains(&clean, marker));
    assert!(!contains(&clean, b"auxC"), "an unknown type goes whole");
    assert_eq!(strip_heif(&clean), Ok(clean.clone()), "a fixed point");

    for known in [
        b"urn:mpeg:hevc:2015:auxid:1".as_slice(),
        b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha",
        b"urn:com:apple:photo:2020:aux:hdrgainmap",
    ] {
        let clean = strip_heif(&heic(known)).unwrap();
        assert!(contains(&clean, &[b"auxC\0\0\0\0", known, b"\0"].concat()));
    }
}

proptest! {
    #[test]
    fn a_marker_planted_anywhere_but_the_image_data_is_gone(
        spot in 0..SPOTS.len(),
        tail in proptest::collection::vec(any::<u8>(), 4..24),
    ) {
        let marker = [b"MARKER-".as_slice(), &tail].concat();
        let dirty = planted_heic(spot, &marker);
        prop_assert!(contains(&dirty, &marker));
        let clean = strip_heif(&dirty);
        prop_assert!(clean.is_ok(), "{} refused: {:?}", SPOTS[spot], clean);
        let clean = clean.unwrap_or_default();
        prop_assert!(
            !contains(&clean, &marker),
            "the marker in the {} survived",
            SPOTS[spot]
        );
        prop_assert!(!contains(&clean, b"MARKER-"), "{}", SPOTS[spot]);
        let tile = position(&dirty, TILE);
        prop_assert_eq!(&clean[tile..tile + TILE.len()], TILE);
        prop_assert_eq!(strip_heif(&clean), Ok(clean.clone()), "a fixed point");
    }

    #[test]
    fn corrupted_heic_never_panics_and_strips_to_a_fixed_point(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut input = iphone_like_heic();
        let len = input.len();
        for (at, byte) in edits {
            input[at % len] = byte;
        }
        if let Ok(out) = strip_heif(&input) {
            prop_assert_eq!(out.len(), input.len());
            prop_assert_eq!(strip_heif(&out), Ok(out.clone()));
        }
    }
}
